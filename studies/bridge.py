"""The bridge from the original protocol to the earlier Python replica's, one factor (or group) at a time.

Each row switches one factor of the original protocol to the replica's value, or one factor of the
replica protocol (--protocol replica) back to the original's, and runs SRC on five seeds (with
sequential and parallel training where the factor changes training). The table and the figure say which
factors carry the difference between the two protocols' SRC accuracies: a factor carries it when
switching it alone moves the five-seed mean by more than twice the standard error of that difference.

    python studies/bridge.py --run                       # run every row that is not finished yet (hours on 2 cores)
    python studies/bridge.py                             # the table and figure from the finished rows: runs/bridge/
    python studies/bridge.py --png-dir png               # the figure the README shows

Rows are ordinary run folders of mnist_exp.py: a row's command is printed with it.
"""
import sys

import project  # noqa: F401  (first: the root's library on the import path, studies/project.py)
import sweep  # first: the pinned code paths, and matplotlib's file backend
import matplotlib.pyplot as plt
import numpy as np

import config
import constants
import methods

# The two protocols' sleep constants (constants.py; the original's steps are the protocol's defaults)
ORIGINAL = dict(vars(config.DEFAULTS), **constants.ORIGINAL["mnist"])
REPLICA = constants.REPLICA_SLEEP


def values(*names, of):
    """The options that set these fields to their values in `of`."""
    return [a for k in names for a in (config.option(k), *map(str, of[k] if isinstance(of[k], tuple) else [of[k]]))]


# The factors: name, what changes (original -> replica), options towards the replica, options back, whether
# training changes. Two groups hold factors that only make sense together: the replica's inc/dec are sized
# for its logistic factor (about 0.5 everywhere, where g is about 2 or 0), and inverted dropout and a fresh
# optimiser per task are what one torch training loop per task does.
FACTORS = [
    ("width", "hidden layers 1200 -> 4000", ["--hidden", "4000", "4000"], ["--hidden", "1200", "1200"], True),
    ("init", "uniform +-0.01 -> torch default +-1/sqrt(fan_in)", ["--init", "torch"], ["--init", "uniform"], True),
    ("output and loss", "ReLU + half squared error -> logits + cross-entropy", ["--output", "linear-ce"],
     ["--output", "relu-mse"], True),
    ("learning rate", "0.1 -> 0.01", ["--lr", "0.01"], ["--lr", "0.1"], True),
    ("torch training loop", "dropout inverted, momentum reset per task", ["--inverted-dropout", "--no-keep-momentum"],
     ["--no-inverted-dropout", "--keep-momentum"], True),
    ("plasticity rule", "g(w), inc/dec 0.032/0.0033 -> sigmoid(w), 0.001/0.0001",
     values("plasticity_factor", "inc", "dec", of=REPLICA), values("plasticity_factor", "inc", "dec", of=ORIGINAL), False),
    ("sleep length", "15000 + 5000(k-1) -> 400 + 133(k-1) steps", values("sleep_steps", "sleep_steps_increment", of=REPLICA),
     values("sleep_steps", "sleep_steps_increment", of=ORIGINAL), False),
    ("sleep input", "window of the seen tasks' mean -> masked means of current-task images",
     values("sleep_input", of=REPLICA), values("sleep_input", of=ORIGINAL), False),
    ("scale factors", "data-based -> fixed", values("alpha", of=REPLICA), ["--alpha"], False),
]


def rows(args=None):
    """Every row: the two protocols, then each factor from each side (Row.group: the side)."""
    both = "sequential,src,parallel"
    out = [sweep.Row("original protocol", [], both, "original"),
           sweep.Row("replica protocol", ["--protocol", "replica"], both, "replica")]
    for name, change, there, back, training in FACTORS:
        which = both if training else "src"
        out.append(sweep.Row(f"original with the replica's {name} ({change})", there, which, "original"))
        out.append(sweep.Row(f"replica with the original's {name}", ["--protocol", "replica", *back], which, "replica"))
    return out


def protocols(results):
    """{side: SRC's (mean, std, n, diverged) of that side's protocol row}."""
    return {row.group: got.get("src") for row, got in results if row.label.endswith("protocol")}


def table(results):
    """SRC per row against its side's protocol, with sequential and parallel where training changes."""
    base = protocols(results)
    ctx = methods.prepare(config.resolve(config.DEFAULTS, ["--device", "cpu"]))   # the dataset's counts, for what sleeps keep
    lines = ["| row | SRC final, all classes (%) | change vs its protocol | 2 SE | carries? | sequential | parallel | "
             "SRC's sleep reads; bytes kept between tasks | options |", "|---|---|---|---|---|---|---|---|---|"]
    for row, got in results:
        src, ref = got.get("src"), base.get(row.group)
        delta = se2 = carries = ""
        if src and ref and not row.label.endswith("protocol") and src[2] > 1 and ref[2] > 1:
            d = src[0] - ref[0]
            se = np.sqrt(src[1] ** 2 / src[2] + ref[1] ** 2 / ref[2])
            delta, se2, carries = f"{d:+.1f}", f"{2 * se:.1f}", "**yes**" if abs(d) > 2 * se else "no"
        other = [sweep.fmt(got.get(m)) if m in got else "" for m in ("sequential", "parallel")]
        reads, kept = methods.sleep_keeps(config.resolve(config.DEFAULTS, row.options), ctx)
        lines.append(f"| {row.label} | {sweep.fmt(src)} | {delta} | {se2} | {carries} | {other[0]} | {other[1]} | "
                     f"{reads}; {kept:,} | `{' '.join(row.options) or '(defaults)'}` |")
    return lines


def figure(results):
    """SRC final accuracy per row, mean ± sample std, each side against its protocol."""
    base = protocols(results)
    shown = [(row.group, row.label, got["src"]) for row, got in results if "src" in got]
    fig, ax = plt.subplots(figsize=(13, 0.32 * len(shown) + 1.4))
    for i, (side, label, (mean, std, n, _)) in enumerate(shown):
        ax.errorbar(mean, i, xerr=std if n > 1 else None, fmt="o", color="tab:blue" if side == "original" else "tab:orange",
                    capsize=3, markersize=5)
    for side, color in (("original", "tab:blue"), ("replica", "tab:orange")):
        if base.get(side):
            ax.axvline(base[side][0], color=color, linestyle="--", linewidth=1, label=f"{side} protocol")
    ax.set_yticks(range(len(shown)), [label for _, label, _ in shown], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("SRC final accuracy, all 10 classes (%), mean ± sample std over seeds")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    return fig


SWEEP = sweep.Sweep(name="bridge", doc=__doc__, rows=rows, table=table, figure=figure)

if __name__ == "__main__":
    sweep.main(SWEEP, sys.argv[1:])
