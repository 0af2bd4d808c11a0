"""Sensitivity of SRC to each of the authors' seven sleep constants, one at a time (MNIST, original protocol).

Each of the seven constants the authors searched (MNIST/run_class_task_summary.m: the input rate, inc, dec,
the three thresholds' multipliers beta and the scale of the data-based factors) is multiplied by each of
--factors while the other six keep the authors' values. Every row is SRC on five seeds that no report reads
(100-104), scored on the validation split (the last 1000 training images of each class, which neither
training nor the sleep reads; the test set is not read). The table gives each row's final accuracy and,
per constant, the range of the means: how far the result moves when that constant is off by the factors.

    python studies/sensitivity.py --run                  # every row (2 processes; about a minute a row here)
    python studies/sensitivity.py --run --factors 0.5 2   # fewer rows
    python studies/sensitivity.py --png-dir png          # the table and png/sensitivity.png
"""
import sys

import project  # noqa: F401  (first: the root's library on the import path, studies/project.py)
import sweep  # first: the pinned code paths, and matplotlib's file backend
import config
import matplotlib.pyplot as plt
import numpy as np

SEEDS = ("100", "101", "102", "103", "104")   # tuning seeds: none of them is a report seed
CONSTANTS = ("rate", "inc", "dec", "beta_1", "beta_2", "beta_3", "alpha_scale")
SCORING = ["--validation", "1000"]


def authors():
    """The authors' seven constants for MNIST (the original preset)."""
    c = config.PRESETS["original"][1]["mnist"]
    return dict(rate=c["rate"], inc=c["inc"], dec=c["dec"], alpha_scale=c["alpha_scale"],
                **{f"beta_{l + 1}": b for l, b in enumerate(c["beta"])})


def options(name, factor):
    """mnist_exp.py's options for the authors' constants with `name` multiplied by `factor`."""
    if factor == 1:
        return list(SCORING)
    c = authors()
    if name.startswith("beta_"):
        beta = [c[f"beta_{l + 1}"] * (factor if f"beta_{l + 1}" == name else 1) for l in range(3)]
        return [*SCORING, "--beta", *(f"{b:.6g}" for b in beta)]
    return [*SCORING, "--" + name.replace("_", "-"), f"{c[name] * factor:.6g}"]


def rows(args):
    factors = sorted(set([1.0, *args.factors]))
    return [sweep.Row(f"{name} x{f:g}", options(name, f), "src", group=name) for name in CONSTANTS for f in factors]


def factor(row):
    return float(row.label.rsplit("x", 1)[1])


def table(results):
    factors = sorted({factor(row) for row, _ in results})
    lines = ["| constant | authors' value | " + " | ".join(f"x{f:g}" for f in factors) + " | range of the means |",
             "|---|---|" + "---|" * len(factors) + "---|"]
    for name in CONSTANTS:
        got = {factor(row): v.get("src") for row, v in results if row.group == name}
        means = [v[0] for v in got.values() if v]
        spread = f"{max(means) - min(means):.1f}" if len(means) > 1 else ""
        lines.append(f"| {name} | {authors()[name]:.6g} | " + " | ".join(sweep.fmt(got.get(f)) for f in factors)
                     + f" | {spread} |")
    return lines


def figure(results):
    """Final validation accuracy against each constant's factor, one line per constant."""
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for name, color in zip(CONSTANTS, plt.cm.tab10(np.arange(len(CONSTANTS)))):
        points = sorted((factor(row), v["src"]) for row, v in results if row.group == name and v.get("src"))
        sweep.curve(ax, points, fmt="o-", color=color, markersize=4, label=name)
    ax.set_xscale("log")
    factors = sorted({factor(row) for row, _ in results})
    ax.set_xticks(factors, [f"x{f:g}" for f in factors])
    ax.minorticks_off()
    ax.axvline(1, color="0.6", lw=0.8, ls=":")
    ax.set_xlabel("factor on the authors' value (the other six at theirs)")
    ax.set_ylabel("final accuracy on validation (%)")
    ax.set_title("SRC, original protocol: one constant at a time (seeds 100-104)", fontsize=10)
    ax.grid(alpha=0.3)
    sweep.legend([ax], fontsize=8, ncol=2)
    fig.tight_layout()
    return fig


def arguments(p):
    p.add_argument("--factors", nargs="+", type=float, default=[0.25, 0.5, 2.0, 4.0],
                   help="multipliers of each constant (default: 0.25 0.5 2 4; x1, the authors', is always a row)")


SWEEP = sweep.Sweep(name="sensitivity", doc=__doc__, rows=rows, table=table, figure=figure, arguments=arguments,
                    seeds=SEEDS)

if __name__ == "__main__":
    sweep.main(SWEEP, sys.argv[1:])
