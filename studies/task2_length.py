"""Task-2 training length: two tasks, the second trained longer and longer, with and without sleep.

MNIST/run_sleep_with_variable_task2_length.m learns only digits (0, 1) for 2 epochs and then (2, 3) for 5,
10, ..., 40 epochs (--n-tasks 2 --task-epochs 2 E), sleeping after each task with the class task's
constants (15 000 and 20 000 steps on every training image seen), and reports the slept network's accuracy
on each task's test images; one trial. Here five seeds, each E an ordinary run folder of mnist_exp.py, and
the accuracy before the second sleep as well. Sequential training without any sleep is an addition (the
script has no such curve). The Fashion-MNIST version (FashionMNIST/run_variable_task2_length_sweep.m)
calls a helper its folder lacks; here it is the same study on Fashion-MNIST with Fashion's class-task
constants (the project's --dataset fashion-mnist defaults). Cross-modal (--datasets mnist-fashion,
CrossModalMNIST/run_sleep_with_variable_task2_length.m): all of MNIST for 2 epochs, then all of
Fashion-MNIST for 1, 3, 5, 7 or 9, a 255-step sleep reading MNIST after each, its own constants.

    python studies/task2_length.py --run                              # every row (about 2 minutes a row)
    python studies/task2_length.py --run --datasets mnist --epochs 5 40
    python studies/task2_length.py --png-dir png                      # the table and png/task2_length.png
    python studies/task2_length.py --datasets mnist-fashion --png-dir png   # alone: png/task2_length_cross.png
"""
import sys

import project  # noqa: F401  (first: the root's library on the import path, studies/project.py)
import sweep  # first: the pinned code paths, and matplotlib's file backend
import analysis
import matplotlib.pyplot as plt

EPOCHS = {"mnist": [str(e) for e in range(5, 41, 5)], "fashion-mnist": [str(e) for e in range(5, 41, 5)],   # the scripts'
          "mnist-fashion": [str(e) for e in range(1, 10, 2)]}


def options(dataset, epochs):
    if dataset == "mnist-fashion":   # its two tasks are its datasets, with the length script's constants
        return ["--dataset", dataset, "--preset", "cross-replay-0", "--task-epochs", "2", epochs]
    return ["--dataset", dataset, "--n-tasks", "2", "--task-epochs", "2", epochs]


def rows(args):
    return [sweep.Row(f"{d}, task 2 for {e} epochs", options(d, e), group=d)
            for d in args.datasets for e in (args.epochs or EPOCHS[d])]


def cell(value):
    return "" if value is None else analysis.text(value[0], value[1])


def table(results):
    lines = ["| dataset | task-2 epochs | no sleep: task 1 | no sleep: task 2 | SRC before sleep 2: task 1 | task 2 | "
             "SRC after sleep 2: task 1 | task 2 | no sleep, both tasks | SRC, both tasks | n |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for row, _ in results:
        seq, src = sweep.stages(row, "sequential"), sweep.stages(row, "src")
        get = lambda got, stage, col: got.get(stage, {}).get(col)
        n = get(src, "sleep_2", "all")
        lines.append(f"| {row.group} | {row.options[-1]} | {cell(get(seq, 'train_2', 'task_1'))} | "
                     f"{cell(get(seq, 'train_2', 'task_2'))} | {cell(get(src, 'train_2', 'task_1'))} | "
                     f"{cell(get(src, 'train_2', 'task_2'))} | {cell(get(src, 'sleep_2', 'task_1'))} | "
                     f"{cell(get(src, 'sleep_2', 'task_2'))} | {cell(get(seq, 'train_2', 'all'))} | {cell(n)} | "
                     f"{n[2] if n else 'not run'} |")
    return lines


def figure(results):
    """One panel per dataset: each task's accuracy against task 2's epochs."""
    datasets = list(dict.fromkeys(row.group for row, _ in results))
    fig, axes = plt.subplots(1, len(datasets), figsize=(5.2 * len(datasets), 4), squeeze=False, sharey=True)
    curves = (("sequential", "train_2", "no sleep (an addition)", "tab:gray"),
              ("src", "train_2", "SRC before sleep 2", "tab:cyan"), ("src", "sleep_2", "SRC after sleep 2", "tab:blue"))
    for ax, dataset in zip(axes[0], datasets):
        got = [(int(row.options[-1]), {m: sweep.stages(row, m) for m in ("sequential", "src")})
               for row, _ in results if row.group == dataset]
        for method, stage, label, color in curves:
            for col, line, task in (("task_1", "-", "task 1"), ("task_2", ":", "task 2")):
                sweep.curve(ax, [(e, s[method][stage][col]) for e, s in got if stage in s[method]], fmt="o" + line,
                            color=color, markersize=4, label=f"{label}, {task}")
        ax.set_title(f"{dataset}: " + ("MNIST (2 epochs), then Fashion-MNIST" if dataset == "mnist-fashion"
                                       else "task 1 = classes 0, 1 (2 epochs), task 2 = 2, 3"))
        ax.set_xlabel("epochs of task 2")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("test accuracy on the task's images (%)")
    sweep.legend(axes[0], fontsize=7)
    fig.tight_layout()
    return fig


def arguments(p):
    p.add_argument("--datasets", nargs="+", default=["mnist", "fashion-mnist"], choices=list(EPOCHS),
                   help="datasets (default: mnist fashion-mnist; also mnist-fashion)")
    p.add_argument("--epochs", nargs="+", help="epochs of task 2 (default: the script's, " +
                   "; ".join(f"{d}: {' '.join(e)}" for d, e in EPOCHS.items()) + ")")


SWEEP = sweep.Sweep(name="task2_length", doc=__doc__, rows=rows, table=table, figure=figure, arguments=arguments,
                    suffix=lambda args: "_cross" if args.datasets == ["mnist-fashion"] else "")

if __name__ == "__main__":
    sweep.main(SWEEP, sys.argv[1:])
