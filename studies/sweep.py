"""The one runner of the studies whose rows are ordinary run folders of mnist_exp.py (bridge.py, replay.py).

A sweep is a declaration (`Sweep`): its rows (a label, mnist_exp.py's options and the methods to run), the
table made from the finished rows and a figure. `main` gives every sweep the same command line: it checks
every row's options before anything runs (a bad one is mnist_exp.py's one-line error), with --run runs
the rows that are not finished (finished jobs are skipped, so a stopped sweep resumes; Ctrl-C or SIGTERM
stops it, and the running row, with one line), and rebuilds the table and the figure from the run folders alone. --out is the folder of the
rows' run folders, as for mnist_exp.py; the table and the figure go in OUT/NAME/. What it reads of a run
folder is results.py's. A library: python studies/bridge.py (or another sweep) runs one.
"""
import argparse
import dataclasses
import os
import sys
from dataclasses import dataclass, field
from typing import Callable

import project  # noqa: F401  (first: the root's library on the import path, studies/project.py)
import config  # first: the pinned code paths and threads
import matplotlib

matplotlib.use("Agg")

import analysis
import results
import runner
import visualize

SEEDS = ("0", "1", "2", "3", "4")   # the report seeds
DATASET_SUFFIX = {"mnist": "", "fashion-mnist": "_fashion", "mnist-fashion": "_cross"}


@dataclass(frozen=True)
class Row:
    label: str
    options: list              # mnist_exp.py's options: they name the row's run folder
    methods: str = "sequential,src"
    group: str = ""            # a sweep's own grouping (the bridge: which protocol the row starts from)
    out: str = "runs"          # where its run folder is (the sweep's --out)


@dataclass(frozen=True)
class Sweep:
    name: str                  # the table NAME.md and the figure NAME.png, in OUT/NAME
    doc: str                   # the script's docstring, its --help
    rows: Callable             # rows(args) -> [Row]
    table: Callable            # table(results) -> markdown lines; results: [(Row, finished(row))]
    figure: Callable           # figure(results) -> a matplotlib figure
    arguments: Callable = field(default=lambda parser: None)   # the sweep's own options
    seeds: tuple = SEEDS
    suffix: Callable = field(default=lambda args: "")   # NAME's ending for these options: another dataset's
                                                          # table and figure never replace the default's


def fmt(value):
    """A row's mean ± sample std (n), 'not run' when its folder has no summary."""
    if value is None:
        return "not run"
    mean, std, n, diverged = value
    return analysis.text(mean, std if n > 1 else None) + f" (n={n}" + (f", {diverged} diverged)" if diverged else ")")


def folder(row, options=None):
    """The run folder of a row (or of other options of mnist_exp.py, in the same --out)."""
    return results.run_dir(row.options if options is None else options, row.methods, row.out)


def finished(row, options=None):
    """{method: (mean, std, n, diverged)} of the final accuracy in a row's run folder (results.finals)."""
    return results.finals(folder(row, options))


def paired(row, first, second, nme=False):
    """second's final accuracy minus first's, seed by seed, in a row's run folder (results.paired)."""
    return results.paired(folder(row), first, second, nme)


def stages(row, method):
    """{stage: {column: (mean, sample std, n)}} of one method in a row's run folder (results.stages)."""
    return results.stages(folder(row), method)


def curve(ax, points, **style):
    """points [(x, (mean, std, ...))] as a line with error bars (nothing when there are none)."""
    if points:
        ax.errorbar([x for x, _ in points], [v[0] for _, v in points], yerr=[v[1] for _, v in points], capsize=3, **style)


def legend(axes, **style):
    """One legend, on the last of the axes, with every label of any of them once."""
    handles = {label: h for ax in axes for h, label in zip(*ax.get_legend_handles_labels())}
    if handles:
        axes[-1].legend(handles.values(), handles.keys(), **style)


def sleep_table(results, first, without="without sleep (%)", with_="with sleep (%)", options=False):
    """A table of sequential training and SRC per row, and what the sleep adds (the difference of the means);
    options: a last column with the row's options."""
    lines = [f"| {first} | {without} | {with_} | sleep adds |" + (" options |" if options else ""),
             "|---|---|---|---|" + ("---|" if options else "")]
    for row, got in results:
        seq, src = got.get("sequential"), got.get("src")
        adds = f"{src[0] - seq[0]:+.1f}" if seq and src else ""
        lines.append(f"| {row.label} | {fmt(seq)} | {fmt(src)} | {adds} |" + (f" `{' '.join(row.options)}` |" if options else ""))
    return lines


def run_rows(rows, seeds, workers, prog):
    """Each row's mnist_exp.py in turn (finished jobs are skipped). Ctrl-C or SIGTERM stops the row's processes,
    which keep their finished jobs, and says so in one line; a kill -9 of this process stops them too
    (results.child)."""
    try:
        for row in rows:
            print(f"== {row.label}", flush=True)
            if results.experiment(row.options, row.methods, seeds, row.out, workers):
                config.fail(f"the row '{row.label}' failed; see its message above", prog)
    except KeyboardInterrupt:
        kept = sum(len(results.jobs_in(folder(r))) for r in rows)
        print(f"{prog}: stopped; {kept} finished jobs kept; run the same command to resume", file=sys.stderr)
        raise SystemExit(130)


def main(sweep, argv):
    prog = f"{sweep.name}.py"
    p = config.Parser(prog=prog, description=sweep.doc, formatter_class=argparse.RawDescriptionHelpFormatter,
                      allow_abbrev=False)
    p.add_argument("--run", action="store_true", help="run the rows first (finished jobs are skipped)")
    p.add_argument("--workers", type=int, default=2, help="processes per row (default: 2)")
    p.add_argument("--out", default="runs", help=f"folder of the rows' run folders; the table and figure go in "
                                                 f"OUT/{sweep.name} (with the dataset's ending) (default: runs)")
    p.add_argument("--png-dir", default="", help="where the figure goes (default: beside the table)")
    sweep.arguments(p)
    args = p.parse_args(argv)
    name = sweep.name + sweep.suffix(args)
    rows = [dataclasses.replace(row, out=args.out) for row in sweep.rows(args)]
    for row in rows:   # every row's options are checked before any row runs
        config.resolve(config.DEFAULTS, [*row.options, "--methods", row.methods, "--workers", str(args.workers)], prog)
    if args.run:
        run_rows(rows, sweep.seeds, args.workers, prog)
    results = [(row, finished(row)) for row in rows]
    lines = sweep.table(results)
    table_dir = os.path.join(args.out, name)
    runner.writable(table_dir, "--out")
    table = os.path.join(table_dir, f"{name}.md")
    runner.write_text(table, "\n".join(lines) + "\n")
    print("\n".join(lines))
    png_dir = args.png_dir or table_dir
    runner.writable(png_dir, "--png-dir")
    figure = os.path.join(png_dir, f"{name}.png")
    fig = sweep.figure(results)
    if not any(got for _, got in results):   # empty axes: each says why
        for ax in fig.axes:
            visualize.say(ax, f"no row has a finished job\nin {args.out}: --run runs them")
    runner.write_atomic(figure, lambda tmp: fig.savefig(tmp, dpi=110), "--png-dir")
    print(f"table in {table}, figure in {figure}")


if __name__ == "__main__":
    config.fail("a library, not a study: it runs the sweeps of bridge.py, replay.py, sensitivity.py, reduced_data.py, "
                "task2_length.py and icarl_epochs.py (python studies/bridge.py --help)", "sweep.py")
