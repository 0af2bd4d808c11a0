"""iCaRL with and without sleep against the epochs each task trains, as the authors' sweep runs it.

MNIST/run_icarl_sleep.m trains every task for 1 to 10 epochs, draws a task order per trial (the same for
every setting of the trial: --task-order random, a permutation drawn from the seed), keeps a memory of 100,
1 000, 2 000 or 20 000 exemplars shared by the classes seen, chosen by herding, without distillation, and
saves the network's argmax accuracy (the nearest-mean-of-exemplars one, NME, is computed and dropped).
Each (memory, epochs) is an ordinary run folder of mnist_exp.py with iCaRL and iCaRL + sleep (the iCaRL
script's constants for the memory), seeds 0-4. Besides the table of both accuracies, "epochs saved": how
many epochs per task iCaRL alone needs (read off its mean curve, linear between the epochs run) to reach what
iCaRL + sleep reaches at E epochs, minus E.

    python studies/icarl_epochs.py --run --memory 100 --epochs 1 2 5 10   # some rows (each ~1-4 minutes a seed)
    python studies/icarl_epochs.py --png-dir png                           # the tables and png/icarl_epochs.png
    python studies/icarl_epochs.py --dataset fashion-mnist --run --memory 100 --epochs 2   # icarl_epochs_fashion.*

FashionMNIST/run_icarl_fashionmnist.m trains with lr 0.065 and dropout 0.2 and has its own constants for
memory 50, 100-500 and 1 000-5 000 (presets icarl-small, -medium, -large for fashion-mnist); it has none for
20 000, where its sweep stops: here the largest set serves (as MNIST's script's "else").
"""
import sys

import project  # noqa: F401  (first: the root's library on the import path, studies/project.py)
import sweep  # first: the pinned code paths, and matplotlib's file backend
import analysis
import matplotlib.pyplot as plt
import numpy as np

MEMORIES = ["100", "1000", "2000", "20000"]     # the script's four sizes
EPOCHS = [str(e) for e in range(1, 11)]          # its epochs per task
METHODS = "icarl,icarl-src"


def options(memory, epochs, dataset="mnist"):
    return ["--output", "linear-ce", "--memory", memory, "--epochs", epochs, "--task-order", "random"] + \
        (["--dataset", dataset] if dataset != "mnist" else [])


def rows(args):
    return [sweep.Row(f"memory {m}, {e} epochs", options(m, e, args.dataset), METHODS, group=m)
            for m in args.memory for e in args.epochs]


def epochs_of(row):
    return row.options[row.options.index("--epochs") + 1]


def curve(results, memory, method):
    """[(epochs, (mean, std, n, diverged))] of one memory's rows that have the method."""
    return sorted((int(epochs_of(row)), got[method]) for row, got in results if row.group == memory and method in got)


def epochs_needed(points, target):
    """The epochs at which a mean curve [(epochs, mean)] first reaches target, linear between the points;
    None when it never does."""
    for (e0, a0), (e1, a1) in zip([(0, -np.inf)] + points, points):
        if a1 >= target:
            return e1 if a0 == -np.inf or a1 == a0 else e0 + (target - a0) / (a1 - a0) * (e1 - e0)
    return None


def table(results):
    lines = ["| memory | epochs per task | iCaRL (%) | iCaRL + sleep (%) | sleep adds (paired) | iCaRL NME (%) | "
             "iCaRL + sleep NME (%) | sleep adds, NME (paired) |", "|---|---|---|---|---|---|---|---|"]
    def paired(row, got, nme):
        if not {"icarl", "icarl-src"} <= set(got):   # a row still running: its job files are not yet its table
            return ""
        d = sweep.paired(row, "icarl", "icarl-src", nme)
        return "" if d is None else analysis.text(d[0], d[1], sign=True)
    for row, got in results:
        m, e = row.group, epochs_of(row)
        lines.append(f"| {m} | {e} | {sweep.fmt(got.get('icarl'))} | {sweep.fmt(got.get('icarl-src'))} | "
                     f"{paired(row, got, False)} | {sweep.fmt(got.get('icarl (NME)'))} | "
                     f"{sweep.fmt(got.get('icarl-src (NME)'))} | {paired(row, got, True)} |")
    lines += ["", "Epochs saved: the epochs per task iCaRL alone needs to reach the mean accuracy of iCaRL + sleep at E "
              "epochs (linear between the epochs run; '> E_max' when it never does), minus E.", "",
              "| memory | accuracy | E (with sleep) | iCaRL + sleep (%) | iCaRL alone needs | epochs saved |",
              "|---|---|---|---|---|---|"]
    for memory in dict.fromkeys(row.group for row, _ in results):
        for what, suffix in (("argmax", ""), ("NME", " (NME)")):
            alone = [(e, v[0]) for e, v in curve(results, memory, "icarl" + suffix)]
            for e, v in curve(results, memory, "icarl-src" + suffix):
                need = epochs_needed(alone, v[0]) if alone else None
                shown = f"{need:.1f}" if need is not None else f"> {max(x for x, _ in alone)}" if alone else "not run"
                saved = f"{need - e:+.1f}" if need is not None else ""
                lines.append(f"| {memory} | {what} | {e} | {v[0]:.1f} | {shown} | {saved} |")
    return lines


def figure(results):
    """One panel per memory: accuracy against epochs, with and without sleep, argmax and NME."""
    memories = list(dict.fromkeys(row.group for row, _ in results))
    fig, axes = plt.subplots(1, len(memories), figsize=(4.2 * len(memories), 3.8), squeeze=False, sharey=True)
    for ax, memory in zip(axes[0], memories):
        for method, label, color in (("icarl", "iCaRL", "tab:gray"), ("icarl-src", "iCaRL + sleep", "tab:blue")):
            for suffix, line in (("", "-"), (" (NME)", "--")):
                sweep.curve(ax, curve(results, memory, method + suffix), fmt="o" + line, color=color, markersize=4,
                            label=label + (", nearest mean" if suffix else ", network (argmax)"))
        ax.set_title(f"memory {memory} ({int(memory) // 10} per class at the end)")
        ax.set_xlabel("epochs per task")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("final accuracy, all 10 classes (%)")
    sweep.legend(axes[0], fontsize=8)
    fig.tight_layout()
    return fig


def arguments(p):
    p.add_argument("--dataset", default="mnist", choices=["mnist", "fashion-mnist"],
                   help="mnist (default) or fashion-mnist (its script's training and constants; its table and figure are "
                        "icarl_epochs_fashion.*)")
    p.add_argument("--memory", nargs="+", default=MEMORIES[:3], help=f"memory sizes (default: {' '.join(MEMORIES[:3])})")
    p.add_argument("--epochs", nargs="+", default=EPOCHS, help=f"epochs per task (default: {' '.join(EPOCHS)})")


SWEEP = sweep.Sweep(name="icarl_epochs", doc=__doc__, rows=rows, table=table, figure=figure, arguments=arguments,
                    suffix=lambda args: sweep.DATASET_SUFFIX[args.dataset])

if __name__ == "__main__":
    sweep.main(SWEEP, sys.argv[1:])
