"""The one runner of the studies whose rows are ordinary run folders of mnist_exp.py (bridge.py, replay.py).

A sweep is a declaration (`Sweep`): its rows (a label, mnist_exp.py's options and the methods to run), the
table made from the finished rows and a figure. `main` gives every sweep the same command line: it checks
every row's options before anything runs (a bad one is mnist_exp.py's one-line error), with --run runs
the rows that are not finished (finished jobs are skipped, so a stopped sweep resumes; Ctrl-C stops it with
one line), and rebuilds the table and the figure from the run folders alone. --out is the folder of the
rows' run folders, as for mnist_exp.py; the table and the figure go in OUT/NAME/.
"""
import argparse
import csv
import dataclasses
import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Callable

import config  # first: the pinned code paths and threads
import matplotlib
import numpy as np

matplotlib.use("Agg")

import analysis
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
    cfg = config.resolve(config.DEFAULTS, [*(row.options if options is None else options), "--methods", row.methods,
                                           "--out", row.out])
    return os.path.join(cfg.out, config.run_name(cfg))


def job_files(run_dir):
    """The finished job files of a run folder."""
    jobs = os.path.join(run_dir, "jobs")
    return [os.path.join(jobs, f) for f in os.listdir(jobs) if f.endswith(".json") and not f.startswith(".")] \
        if os.path.isdir(jobs) else []


def finished(row, options=None):
    """{method: (mean, std, n, diverged)} of the final accuracy in a row's run folder (empty if none has
    finished). A row stopped part way has job files newer than its summary: the summary is made again first."""
    run_dir = folder(row, options)
    path = os.path.join(run_dir, "summary.csv")
    jobs = job_files(run_dir)
    if jobs and (not os.path.exists(path) or max(map(os.path.getmtime, jobs)) > os.path.getmtime(path)):
        visualize.tables(run_dir)
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        return {r["method"]: (float(r["all_mean"]), float(r["all_std"]), int(r["n"]), int(r.get("diverged") or 0))
                for r in csv.DictReader(f)}


def paired(row, first, second, nme=False):
    """second's final accuracy minus first's, seed by seed, in a row's run folder (a seed gives both the same
    initial weights, task order and random streams): (mean, sample std, n), or None without two such seeds.
    nme: iCaRL's nearest-mean-of-exemplars accuracy instead of the network's."""
    jobs = os.path.join(folder(row), "jobs")
    def final(method, seed):
        with open(os.path.join(jobs, f"{method}-seed{seed}.json")) as f:
            return json.load(f)["nme" if nme else "rows"][-1]["all"]
    diffs = [final(second, s) - final(first, s) for s in sweep_seeds(jobs, first, second)]
    return (float(np.mean(diffs)), float(np.std(diffs, ddof=1)), len(diffs)) if len(diffs) > 1 else None


def stages(row, method):
    """{stage: {column: (mean, sample std, n)}} of one method in a row's run folder (its results.csv): the
    accuracy on each task and on all after every stage; {} when the folder has none."""
    path = os.path.join(folder(row), "results.csv")
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


def run_rows(rows, seeds, workers, prog):
    """Each row's mnist_exp.py in turn (finished jobs are skipped). Ctrl-C reaches this process alone (a row
    runs in a session of its own): it stops the row's processes, which keep their finished jobs, and says so
    in one line."""
    child = None
    try:
        for row in rows:
            print(f"== {row.label}", flush=True)
            cmd = [sys.executable, os.path.join(config.ROOT, "mnist_exp.py"), *row.options, "--methods", row.methods,
                   "--seeds", *seeds, "--workers", str(workers), "--out", row.out, "--quiet", "--no-figures"]
            child = subprocess.Popen(cmd, start_new_session=True)
            if child.wait():
                config.fail(f"the row '{row.label}' failed; see its message above", prog)
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, signal.SIG_IGN)   # a second Ctrl-C must not cut the clean-up short
        if child is not None and child.poll() is None:
            os.killpg(child.pid, signal.SIGTERM)
            child.wait()
        kept = sum(len(job_files(folder(r))) for r in rows)
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
