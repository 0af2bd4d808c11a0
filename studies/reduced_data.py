"""Reduced training data: one task of all ten classes on few images, with and without one sleep.

The authors' MNIST/run_reduced_training{10,20,40}.m train the network on the first 5 000 training images
(one task of all ten digits: --classes-per-task 10) with lr 0.01 for 10, 20 or 40 epochs, each with its own
sleep constants, then sleep once for 20 000 steps with the input and the scale factors taken from all
60 000 training images (the sleep reads every training image of the task, --sleep-data seen). The script
reports the accuracy on the 60 000 training images (--score-on train); the test accuracy is the other row.
An addition: the same sleep reading only the 5 000 images trained on (--sleep-data current). Each row is an
ordinary run folder of mnist_exp.py (sequential training and SRC, seeds 0-4: the same network before the
sleep, so each seed's pair differs only by the sleep).

    python studies/reduced_data.py --run              # run the rows that are not finished (about 10 minutes on 2 cores)
    python studies/reduced_data.py --png-dir png      # the table (runs/reduced_data/reduced_data.md) and the figure
"""
import sys

import project  # noqa: F401  (first: the root's library on the import path, studies/project.py)
import sweep  # first: the pinned code paths, and matplotlib's file backend
import matplotlib.pyplot as plt

import constants


def options(epochs, scored="test", data="seen"):
    c = constants.REDUCED[epochs]   # the script's own sleep constants
    return ["--classes-per-task", "10", "--n-per-task", "5000", "--lr", "0.01", "--epochs", str(epochs),
            "--sleep-steps", "20000", "--rate", str(c["rate"]), "--inc", str(c["inc"]), "--dec", str(c["dec"]),
            "--beta", *map(str, c["beta"]), "--alpha-scale", str(c["alpha_scale"]), "--sleep-data", data,
            "--score-on", scored]


def rows(args=None):
    return [sweep.Row(f"{e} epochs, {scored} accuracy" + (", sleep on the 5 000 trained on" if data == "current" else ""),
                      options(e, scored, data), group=f"{scored}-{data}")
            for e in constants.REDUCED for scored, data in (("test", "seen"), ("train", "seen"), ("test", "current"))]


def figure(results):
    """Accuracy against epochs, with and without sleep, on the test and the training images."""
    fig, ax = plt.subplots(figsize=(6.5, 4))
    styles = {"test-seen": ("test images", "-"), "train-seen": ("training images", "--"),
              "test-current": ("test images, sleep on the 5 000", ":")}
    for group, (where, line) in styles.items():
        for method, label, color in (("sequential", "without sleep", "tab:gray"), ("src", "with sleep", "tab:blue")):
            points = [(int(row.options[row.options.index("--epochs") + 1]), got[method]) for row, got in results
                      if row.group == group and method in got]
            if not (group == "test-current" and method == "sequential"):   # the same as test-seen's
                sweep.curve(ax, points, fmt="o" + line, color=color, label=f"{label}, {where}")
    ax.set_xticks(list(constants.REDUCED))
    ax.set_xlabel("epochs on the first 5 000 training images (lr 0.01)")
    ax.set_ylabel("accuracy, all 10 classes (%)")
    ax.grid(alpha=0.3)
    sweep.legend([ax], fontsize=8)
    fig.tight_layout()
    return fig


SWEEP = sweep.Sweep(name="reduced_data", doc=__doc__, rows=rows, figure=figure,
                    table=lambda results: sweep.sleep_table(results, "row", options=True))

if __name__ == "__main__":
    sweep.main(SWEEP, sys.argv[1:])
