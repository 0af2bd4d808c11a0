"""Rehearsal with and without sleep: final accuracy against the fraction of earlier tasks' images replayed.

The authors' sweep (MNIST/run_sleep_replay_sweep.m) trains each task k >= 2 on its own 5 000 images plus a
random fraction of all training images of the earlier tasks (mnist_exp.py --replay F), with and without
sleep, five runs each, with the authors' seven constants except at 10 %, where the script sleeps with its own
(--preset replay-10). Fashion-MNIST's sweep (FashionMNIST/run_sleep_replay_sweep.m, fractions 0 to 50 %) has
constants by fraction: below 2.5 % the MNIST class task's seven (not Fashion's), then its own at 2.5 %, at
5 % and from 10 % on (presets/fashion-replay-*.json). Each fraction here is an ordinary run folder of
mnist_exp.py (sequential and SRC, seeds 0-4); the table and the figure are built from the finished folders.
Cross-modal (--dataset mnist-fashion, CrossModalMNIST/run_sleep_with_replay.m): Fashion-MNIST's 60 000 images
plus a fraction of MNIST's, one sleep after task 2 (the script computes the first sleep and trains on from
the network before it: --sleep-after 2), its constants by fraction (presets/cross-replay-*.json). The
script passes the sleep's length through uint8(), so every sleep lasts 255 steps (the default);
--nominal-lengths gives the second sleep the script's own length instead (SRC alone: the sequential
training of a fraction is the same run either way, read from its folder).

    python studies/replay.py --run                       # run every fraction that is not finished yet
    python studies/replay.py --fractions 0 0.05 --run    # only some of them
    python studies/replay.py --dataset fashion-mnist --run     # runs/replay_fashion/replay_fashion.{md,png}
    python studies/replay.py --png-dir png               # the table (runs/replay/replay.md) and the figure
    python studies/replay.py --dataset mnist-fashion --nominal-lengths --run   # runs/replay_cross_nominal/
"""
import dataclasses
import sys

import project  # noqa: F401  (first: the root's library on the import path, studies/project.py)
import sweep  # first: the pinned code paths, and matplotlib's file backend
import config
import matplotlib.pyplot as plt

FRACTIONS = {"mnist": ["0", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1"],   # the authors' sweeps
             "fashion-mnist": ["0", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5"],
             "mnist-fashion": ["0", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5"]}
CROSS = {0.0: "cross-replay-0", 0.01: "cross-replay-1", 0.025: "cross-replay-2.5", 0.05: "cross-replay-5"}
NOMINAL = {0.0: 7719, 0.01: 4171, 0.025: 11856, 0.05: 1830}   # the cross-modal script's second sleep, rounded
NOMINAL_HIGH = 8812                                           # before uint8() makes it 255; any other fraction


def preset(fraction, dataset):
    """The script's constants for a fraction: MNIST's own at 10 %; Fashion-MNIST's by range."""
    if dataset == "mnist":
        return "replay-10" if fraction == 0.1 else None
    if dataset == "mnist-fashion":   # the script's branches by equality; any other fraction takes the last
        return CROSS.get(fraction, "cross-replay-high")
    return ("fashion-replay-low" if fraction < 0.025 else "fashion-replay-2.5" if fraction < 0.05 else
            "fashion-replay-5" if fraction < 0.1 else "fashion-replay-high")


def options(fraction, dataset="mnist", nominal=False):
    """mnist_exp.py's options for one fraction (as given: it names the run folder; 0.10 finds 0.1's preset);
    nominal: the cross-modal second sleep's own length."""
    name, steps = preset(float(fraction), dataset), NOMINAL.get(float(fraction), NOMINAL_HIGH)
    return ["--replay", fraction] + (["--dataset", dataset] if dataset != "mnist" else []) + (["--preset", name] if name else []) \
        + (["--sleep-after", "2"] if dataset == "mnist-fashion" else []) \
        + (["--sleep-steps", str(steps), "--sleep-steps-increment", "0"] if nominal else [])   # T_2 = steps


def fractions(args):
    """--fractions (default: the dataset's sweep), each a fraction in [0, 1] given once (0.1 and 0.10 are one run
    folder); else one line that names it."""
    given = args.fractions or FRACTIONS[args.dataset]
    try:
        values = [float(f) for f in given]
    except ValueError:
        values = []   # one is not a number
    if len(values) < len(given) or not all(0 <= v <= 1 for v in values):
        config.fail("--fractions takes the rows' --replay values, and --replay must be a fraction in [0, 1] (0.05: 5 % "
                    f"of the earlier tasks' images); got {' '.join(given)}", "replay.py")
    twice = [f for f, v in zip(given, values) if values.count(v) > 1]
    if twice:
        config.fail(f"--fractions gives one fraction more than once ({', '.join(twice)}): give each once", "replay.py")
    return given


def rows(args):
    if args.nominal_lengths and args.dataset != "mnist-fashion":
        config.fail("--nominal-lengths needs --dataset mnist-fashion (only the cross-modal script's sleeps are cut to "
                    "255 steps)", "replay.py")
    group = args.dataset + (", the second sleep's nominal length" if args.nominal_lengths else "")
    return [sweep.Row(label(f), options(f, args.dataset, args.nominal_lengths), "src" if args.nominal_lengths else
                      "sequential,src", group=group) for f in fractions(args)]


def with_baseline(results):
    """A nominal-length row runs SRC alone: its sequential training (no sleep) is the 255-step row's run."""
    baseline = lambda row: {m: v for m, v in sweep.finished(
        dataclasses.replace(row, methods="sequential,src"), options(row.options[1], "mnist-fashion")).items()
        if m == "sequential"}
    return [(row, {**baseline(row), **got} if row.methods == "src" else got) for row, got in results]


def figure(results):
    """Mean ± sample std over seeds against the replayed fraction."""
    results = with_baseline(results)
    fig, ax = plt.subplots(figsize=(6.5, 4))
    percent = lambda row: 100 * float(row.options[1])
    for method, label, color in (("sequential", "without sleep", "tab:gray"), ("src", "with sleep (SRC)", "tab:blue")):
        sweep.curve(ax, [(percent(row), got[method]) for row, got in results if method in got], fmt="o-", color=color,
                    label=label)
    shown = None
    for row, got in results:   # where the sleep starts to run with the script's other constants
        name = row.options[row.options.index("--preset") + 1] if "--preset" in row.options else None
        if name and name != shown and "src" in got:
            ax.annotate(name, (percent(row), got["src"][0]), textcoords="offset points", xytext=(-40, 10), fontsize=8,
                        color="tab:blue")
        shown = name
    ax.set_xscale("symlog", linthresh=1)
    ticks = [percent(row) for row, _ in results]
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.set_xlabel("replayed: % of the earlier tasks' training images")
    ax.set_ylabel("final accuracy, " + ("both test sets" if "mnist-fashion" in results[0][0].options else "all 10 classes")
                  + " (%)" if results else "final accuracy (%)")
    ax.set_title(results[0][0].group if results else "")
    ax.grid(alpha=0.3)
    sweep.legend([ax])
    fig.tight_layout()
    return fig


def label(fraction):
    """The row's name in the table: the fraction in percent."""
    return f"{100 * float(fraction):g} %"


def arguments(p):
    p.add_argument("--dataset", default="mnist", choices=list(FRACTIONS), help="mnist (default), fashion-mnist or mnist-fashion")
    p.add_argument("--fractions", nargs="+", help="fractions (default: the dataset's sweep, " +
                   "; ".join(f"{d}: {' '.join(f)}" for d, f in FRACTIONS.items()) + ")")
    p.add_argument("--nominal-lengths", action="store_true",
                   help="mnist-fashion: the second sleep lasts the script's length, not uint8's 255 steps (SRC only)")


SWEEP = sweep.Sweep(
    name="replay", doc=__doc__, arguments=arguments, rows=rows,
    table=lambda results: sweep.sleep_table(with_baseline(results), "replayed fraction", "sequential + rehearsal (%)",
                                            "SRC + rehearsal (%)"),
    figure=figure, suffix=lambda args: sweep.DATASET_SUFFIX[args.dataset] + ("_nominal" if args.nominal_lengths else ""))


if __name__ == "__main__":
    sweep.main(SWEEP, sys.argv[1:])
