"""Where src.calibrate's default targets come from: what the authors' constants do on the project's network.

For each preset, the project's network (784-1200-1200-10) is trained on task 1 of a --validation run (tuning
seed 100, the held-out training images apart; the test set is not read) and slept without plasticity for
src.CALIBRATION_STEPS steps on the images its first sleep reads (methods.sleep_reads): the firing rate of each
layer (spikes per neuron per step), the input's, and inc and dec relative to g's width (src.G_WIDTH) are the
dimensionless targets those constants amount to (the weights' root mean square is printed too). Then src.calibrate, with those targets and with its
defaults (beyond-weights-only's, rounded), on the same network and images: thresholds to compare with the
preset's (as beta / alpha_scale: calibrate's alpha_scale is 1).

    python studies/calibration.py            # both presets, about a minute on 2 cores (training task 1 twice)
"""
import argparse

import project  # noqa: F401  (first: the root's library on the import path, studies/project.py)
import codepath  # noqa: F401  (before torch: the pinned code paths and threads)
import torch

import config
import methods
import src


def measure(preset, seed):
    """(the targets the preset's constants amount to, the calibrated Sleep, the preset's Sleep) on task 1."""
    cfg = config.resolve(config.DEFAULTS, ["--preset", preset, "--methods", "src", "--validation", "1000",
                                           "--seeds", str(seed), "--device", "cpu"])
    ctx = methods.prepare(cfg)
    net = methods.train_task(methods.initial_net(seed, cfg, ctx), 1, seed, cfg, ctx)
    x = ctx.train_x[methods.sleep_reads(1, cfg, ctx)[0]]
    c = cfg.sleep
    rates = src.firing_rates(net, x, c, seed=seed, dropout=cfg.dropout)
    rms = torch.cat([w.flatten() for w in net.weights_only()]).double().pow(2).mean().sqrt().item()
    targets = dict(firing=tuple(rates[1:]), input_rate=rates[0], inc=c.inc / src.G_WIDTH, dec=c.dec / src.G_WIDTH)
    calibrated = src.calibrate(net, x, seed=seed, dropout=cfg.dropout, **targets)
    by_default = src.calibrate(net, x, seed=seed, dropout=cfg.dropout)
    return targets, calibrated, by_default, c, rms, len(x)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seed", type=int, default=100, help="a tuning seed (default 100)")
    args = p.parse_args()
    for preset in ("original", "beyond-weights-only"):
        targets, got, by_default, c, rms, n = measure(preset, args.seed)
        print(f"{preset} ({n} images, weights' rms {rms:.4g}): firing per layer "
              + " ".join(f"{r:.4g}" for r in targets["firing"]) + f", input {targets['input_rate']:.4g}, "
              f"inc / G_WIDTH {targets['inc']:.4g}, dec / G_WIDTH {targets['dec']:.4g}")
        print(f"  the preset: rate {c.rate:.4g}, beta / alpha_scale " + " ".join(f"{b / c.alpha_scale:.4g}" for b in c.beta)
              + f"; calibrated to these targets: rate {got.rate:.4g}, beta " + " ".join(f"{b:.4g}" for b in got.beta))
        print(f"  calibrated to the default targets: rate {by_default.rate:.4g}, beta "
              + " ".join(f"{b:.4g}" for b in by_default.beta) + f", inc {by_default.inc:.4g}, dec {by_default.dec:.4g}"
              f" (the preset's inc {c.inc:.4g}, dec {c.dec:.4g})")
