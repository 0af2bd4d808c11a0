"""The one runner of the studies whose rows are ordinary run folders of mnist_exp.py (bridge.py, replay.py).

A sweep is a declaration (`Sweep`): its rows (a label, mnist_exp.py's options and the methods to run), the
table made from the finished rows and a figure. `main` gives every sweep the same command line: it checks
every row's options before anything runs (a bad one is mnist_exp.py's one-line error), with --run runs
the rows that are not finished (finished jobs are skipped, so a stopped sweep resumes), and rebuilds the
table and the figure from the run folders alone.
"""
import argparse
import os
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Callable

import config  # first: the pinned code paths and threads
import matplotlib
import numpy as np

matplotlib.use("Agg")

import runner

SEEDS = ("0", "1", "2", "3", "4")   # the report seeds
DATASET_SUFFIX = {"mnist": "", "fashion-mnist": "_fashion", "mnist-fashion": "_cross"}


@dataclass(frozen=True)
class Row:
    label: str
    options: list              # mnist_exp.py's options: they name the row's run folder
    methods: str = "sequential,src"
    group: str = ""            # a sweep's own grouping (the bridge: which protocol the row starts from)


@dataclass(frozen=True)
class Sweep:
    name: str                  # the table NAME.md and the figure NAME.png, in runs/NAME unless --out
    doc: str                   # the script's docstring, its --help
    rows: Callable             # rows(args) -> [Row]
    table: Callable            # table(results) -> markdown lines; results: [(Row, runner.finished(row.options))]
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
    return (f"{mean:.1f} ± {std:.1f} (n={n}" if n > 1 else f"{mean:.1f} (n=1") + (f", {diverged} diverged)" if diverged else ")")


def paired(row, first, second, nme=False):
    """second's final accuracy minus first's, seed by seed, in a row's run folder (a seed gives both the same
    initial weights, task order and random streams): (mean, sample std, n), or None without two such seeds.
    nme: iCaRL's nearest-mean-of-exemplars accuracy instead of the network's."""
    import json
    cfg = config.resolve(config.DEFAULTS, [*row.options, "--methods", row.methods])
    jobs = os.path.join(cfg.out, config.run_name(cfg), "jobs")
    def final(method, seed):
        with open(os.path.join(jobs, f"{method}-seed{seed}.json")) as f:
            return json.load(f)["nme" if nme else "rows"][-1]["all"]
    diffs = [final(second, s) - final(first, s) for s in sweep_seeds(jobs, first, second)]
    return (float(np.mean(diffs)), float(np.std(diffs, ddof=1)), len(diffs)) if len(diffs) > 1 else None


def stages(row, method):
    """{stage: {column: (mean, sample std, n)}} of one method in a row's run folder (its results.csv): the
    accuracy on each task and on all after every stage; {} when the folder has none."""
    import csv
    cfg = config.resolve(config.DEFAULTS, [*row.options, "--methods", row.methods])
    path = os.path.join(cfg.out, config.run_name(cfg), "results.csv")
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        found = [r for r in csv.DictReader(f) if r["method"] == method]
    out = {}
    for stage in dict.fromkeys(r["stage"] for r in found):
        got = [r for r in found if r["stage"] == stage]
        out[stage] = {c: (float(np.mean(v)), float(np.std(v, ddof=1)) if len(v) > 1 else 0.0, len(v))
                      for c in got[0] if c not in ("method", "seed", "stage") for v in [[float(r[c]) for r in got]]}
    return out


def sweep_seeds(jobs, *methods):
    """The seeds every one of the methods has finished in a jobs folder."""
    have = lambda m: {int(f[len(m) + 5:-5]) for f in os.listdir(jobs) if f.startswith(f"{m}-seed") and f.endswith(".json")} \
        if os.path.isdir(jobs) else set()
    return sorted(set.intersection(*(have(m) for m in methods)))


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


def main(sweep, argv):
    prog = f"{sweep.name}.py"
    p = config.Parser(prog=prog, description=sweep.doc, formatter_class=argparse.RawDescriptionHelpFormatter,
                      allow_abbrev=False)
    p.add_argument("--run", action="store_true", help="run the rows first (finished jobs are skipped)")
    p.add_argument("--workers", type=int, default=2, help="processes per row (default: 2)")
    p.add_argument("--out", help=f"where the table and figure go (default: runs/{sweep.name}, with the dataset's ending)")
    p.add_argument("--png-dir", default="", help="where the figure goes (default: --out)")
    sweep.arguments(p)
    args = p.parse_args(argv)
    name = sweep.name + sweep.suffix(args)
    args.out = args.out or os.path.join("runs", name)
    rows = sweep.rows(args)
    for row in rows:   # every row's options are checked before any row runs
        config.resolve(config.DEFAULTS, [*row.options, "--methods", row.methods, "--workers", str(args.workers)], prog)
    if args.run:
        for row in rows:
            print(f"== {row.label}", flush=True)
            cmd = [sys.executable, os.path.join(config.ROOT, "mnist_exp.py"), *row.options, "--methods", row.methods,
                   "--seeds", *sweep.seeds, "--workers", str(args.workers), "--quiet", "--no-figures"]
            if subprocess.run(cmd).returncode:
                config.fail(f"the row '{row.label}' failed; see its message above", prog)
    results = [(row, runner.finished([*row.options, "--methods", row.methods])) for row in rows]
    lines = sweep.table(results)
    runner.writable(args.out, "--out")
    table = os.path.join(args.out, f"{name}.md")
    runner.write_text(table, "\n".join(lines) + "\n")
    print("\n".join(lines))
    png_dir = args.png_dir or args.out
    runner.writable(png_dir, "--png-dir")
    figure = os.path.join(png_dir, f"{name}.png")
    fig = sweep.figure(results)
    runner.write_atomic(figure, lambda tmp: fig.savefig(tmp, dpi=110), "--png-dir")
    print(f"table in {table}, figure in {figure}")
