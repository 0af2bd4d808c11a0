"""The authors' constants and the built-in presets, written once: config.py resolves a preset from them, and
the studies that re-run an authors' script read them here.

A preset is (the protocol it belongs to, {dataset: {Config field: value}}). presets/NAME.json holds more
(studies/tune.py writes them); `read_presets` reads such a folder. This module imports nothing of the
project's: it sits below config.py.
"""
import glob
import json
import os

# The seven constants the authors found by genetic search (MNIST/ and FashionMNIST/run_class_task_summary.m)
ORIGINAL = {
    "mnist": dict(rate=239.515363, inc=0.032064, dec=0.003344, beta=(14.548273, 44.560317, 38.046326),
                  alpha_scale=55.882454),
    "fashion-mnist": dict(rate=181.047258, inc=0.041001, dec=0.003344, beta=(40.446884, 27.596929, 33.109393),
                          alpha_scale=31.592987),
    # CrossModalMNIST/run_cross_modal_summary.m: its tasks are the two datasets, all their images; both sleeps
    # read MNIST's images only; the lengths 6665.96 and 12468.27 pass through uint8(), which saturates at 255
    "mnist-fashion": dict(rate=227.437205, inc=0.050052, dec=0.005592, beta=(4.700579, 7.750487, 7.055086),
                          alpha_scale=9.284002, classes_per_task=10, n_per_task=0, sleep_steps=255,
                          sleep_steps_increment=0, sleep_data="first"),
}
# the earlier Python replica's sleep (agbld/sleep-replay-consolidation-python at commit 4d1755d)
REPLICA_SLEEP = dict(plasticity_factor="logistic", inc=0.001, dec=0.0001, sleep_steps=400, sleep_steps_increment=133,
                     sleep_input="replica", alpha=(14.983829, 253.17746, 7.770772))
# the iCaRL scripts' constants by memory size (MNIST/run_icarl_mnist.m: 50; 100, 200 or 500; any other, here
# by range), with scale factors on softmax probabilities
ICARL = dict(
    small=dict(rate=95.654279, inc=0.058705, dec=0.009112, beta=(27.477005, 21.155469, 22.567029), alpha_scale=19.001764),
    medium=dict(rate=114.365720, inc=0.042289, dec=0.005498, beta=(38.451454, 22.198208, 6.893450), alpha_scale=4.253433),
    large=dict(rate=27.393650, inc=0.019093, dec=0.060217, beta=(9.625520, 34.737610, 31.296881), alpha_scale=2.023822),
)
# FashionMNIST/run_icarl_fashionmnist.m: its own training (lr 0.065, dropout 0.2) and constants for memory 50;
# 100, 200 or 500; 1000, 2000 or 5000 (no branch for the sweep's 20 000: here the largest, as MNIST's else)
ICARL_FASHION = dict(
    small=dict(rate=142.945655, inc=0.003775, dec=0.009083, beta=(39.917543, 39.468197, 12.188520), alpha_scale=5.573700),
    medium=dict(rate=42.162268, inc=0.060285, dec=0.003577, beta=(36.717054, 20.800337, 30.249532), alpha_scale=12.253680),
    large=dict(rate=20.0, inc=0.1, dec=0.000001, beta=(0.862173, 0.318765, 0.0), alpha_scale=0.1),
)
ICARL_SIZES = [(50, "icarl-small"), (500, "icarl-medium"), (float("inf"), "icarl-large")]   # largest memory of each
# MNIST/run_reduced_training{10,20,40}.m: each number of epochs on the first 5 000 images has its own
# (studies/reduced_data.py)
REDUCED = {
    10: dict(rate=42.162268, inc=0.022175, dec=0.076886, beta=(37.312702, 7.101362, 32.780841), alpha_scale=14.308178),
    20: dict(rate=56.274254, inc=0.089164, dec=0.094930, beta=(39.355043, 18.459940, 35.408674), alpha_scale=2.683161),
    40: dict(rate=29.393650, inc=0.031111, dec=0.000001, beta=(8.102056, 26.252258, 33.832234), alpha_scale=2.023822),
}

# Tadros et al., ICLR 2020 (tmtadros/Sleep-Robustness; studies/robustness.py): each script sets its sleep from
# one vector x, position by position: x(1) t_opts.max_rate (Sleep.rate), x(2) sleep_opts.inc (Sleep.inc),
# x(3) sleep_opts.dec (Sleep.dec), x(4:6) sleep_opts.beta (Sleep.beta), x(7) the factor on normalize_nn_data's
# constants (Sleep.alpha_scale), x(8) sleepnn_old's iterations (Sleep.steps), training image t shown at step
# t (Sleep.input "images"); dt 0.001 and decay 0.999 as the class task's
ROBUSTNESS_VECTORS = {
    # MNIST_generalization_test.m and save_FGSM_results.m (which names its networks *blurtuned*): the sleep
    # of the blur, noise and FGSM tests
    "blurtuned": (39.037119, 0.063997, 0.069220, 36.186585, 23.362736, 36.384713, 2.193698, 27105),
    # save_CW_results.m, save_JSMA_results.m, save_deepfool_results.m: the sleep before CW, JSMA and DeepFool
    "attacks": (455.364521, 0.066056, 0.054991, 22.687400, 48.092672, 18.983305, 34.657870, 3365),
}
ROBUSTNESS = {name: dict(rate=x[0], inc=x[1], dec=x[2], beta=x[3:6], alpha_scale=x[6], steps=x[7], steps_increment=0,
                         input="images")
              for name, x in ROBUSTNESS_VECTORS.items()}

# --preset: the built-in presets. The replica's sleep on each dataset's constants; the iCaRL scripts'
# (on Fashion-MNIST with that script's training)
BUILT_IN = {
    "original": ("original", ORIGINAL),
    "replica": ("replica", {d: dict(c, **REPLICA_SLEEP) for d, c in ORIGINAL.items()}),
    **{f"icarl-{size}": ("original", {"mnist": dict(c, alpha_softmax=True),
                                      "fashion-mnist": dict(ICARL_FASHION[size], alpha_softmax=True, lr=0.065, dropout=0.2)})
       for size, c in ICARL.items()},
    # FashionMNIST/run_sleep_with_replay.m below 2.5 % rehearsal (percent_replay < 0.025): the MNIST class
    # task's constants, not Fashion-MNIST's
    "fashion-replay-low": ("original", {"fashion-mnist": ORIGINAL["mnist"]}),
}


def read_presets(folder):
    """The presets of a folder's NAME.json files: {dataset: {"constants": {field: value}, ...}}, made on
    --protocol original unless an entry says "protocol". A file that is not one is a ValueError naming it."""
    found = {}
    for path in sorted(glob.glob(os.path.join(folder, "*.json"))):
        try:
            with open(path) as f:
                entries = json.load(f)
            protocols = {e.get("protocol", "original") for e in entries.values()}
            found[os.path.basename(path)[:-5]] = (protocols.pop(), {d: e["constants"] for d, e in entries.items()})
            assert not protocols
        except (OSError, ValueError, KeyError, TypeError, AttributeError, AssertionError) as err:
            raise ValueError(f"{path} is not a preset file ({type(err).__name__}: {err}); restore it with git checkout") from None
    return found
