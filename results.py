"""Reading run folders: the run folder of mnist_exp.py's options, its jobs (each checked when it is read), the
tables made from them (results.csv, stable_rank.csv, capacity.csv, summary.csv, summary.md; visualize.py's
docstring says what each holds), and what the studies read from them: a row's finals, stages and paired
differences. Also the one way a study runs mnist_exp.py for its options (`experiment`).

runner.py writes the run folders, and names a job's files (runner.job_path, runner.JOB).
"""
import codepath  # noqa: F401  (first: the pinned code paths and threads, before numpy loads)
import csv
import io
import json
import os
import signal
import subprocess
import sys
import threading
from collections import defaultdict

import numpy as np

import analysis
import config
import data
import runner
from config import fail
from methods import METHODS


# ---------------------------------------------------------------- the run folder of options, and running it
def with_methods(options, methods):
    """mnist_exp.py's options with --methods METHODS (comma-separated), unless they name their own."""
    return [*options] + ([] if "--methods" in options else ["--methods", methods])


def run_dir(options, methods, out, prog=None):
    """The run folder mnist_exp.py fills for these options and methods, under out (a bad option: one line)."""
    return runner.folder(config.resolve(config.DEFAULTS, with_methods(options, methods) + ["--out", out], prog))


def experiment(options, methods, seeds, out, workers):
    """Run mnist_exp.py for these options, methods and seeds into out (quiet, no figures; the jobs it finished before
    are skipped); returns its exit code. See `child` for how it stops."""
    return child([sys.executable, os.path.join(config.ROOT, "mnist_exp.py"), *with_methods(options, methods),
                  "--seeds", *map(str, seeds), "--workers", str(workers), "--out", out, "--quiet", "--no-figures"])


def child(cmd):
    """Run a command to its end; returns its exit code. It runs in a session of its own (a terminal's Ctrl-C reaches
    this process alone) and ends with this process however this one ends: Ctrl-C or SIGTERM here are passed on to it
    as SIGTERM and awaited (it keeps its finished jobs), then raised here as KeyboardInterrupt; a kill -9 here makes
    the system send it SIGTERM (runner.die_with_parent)."""
    main = threading.current_thread() is threading.main_thread()
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)} if main else {}
    proc = None
    try:
        if main:
            signal.signal(signal.SIGTERM, runner.interrupt)
        proc = subprocess.Popen(cmd, start_new_session=True,
                                preexec_fn=runner.die_with_parent if sys.platform == "linux" else None)
        return proc.wait()
    except KeyboardInterrupt:
        if main:   # a second Ctrl-C or SIGTERM must not cut the clean-up short
            for s in previous:
                signal.signal(s, signal.SIG_IGN)
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait()
        raise
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


# ---------------------------------------------------------------- jobs
def jobs_in(run_dir):
    """[(method, seed)] of the job files a run folder holds, by method, then seed."""
    folder = os.path.join(run_dir, "jobs")
    found = [runner.JOB.fullmatch(name) for name in (os.listdir(folder) if os.path.isdir(folder) else [])]
    return sorted((m[1], int(m[2])) for m in found if m)


def job(run_dir, method, seed):
    """A finished job's record, checked; None when it has no file or a damaged one (its command computes it again)."""
    return runner.read_job(run_dir, method, seed)[0]


def tasks(rec):
    """The task columns of a job's rows: task_1, ..."""
    return [c for c in rec["rows"][0] if c.startswith("task_") and c[5:].isdigit()]


def read_jobs(run_dir, asked=None):
    """The records of a run folder's jobs (asked: [(method, seed)], those of them it holds; None: every job it
    holds), each checked (runner.record_problem), in the order of the methods' table, then by seed. A damaged one,
    or none at all: one line naming it, exit 2."""
    recs = []
    for method, seed in jobs_in(run_dir) if asked is None else asked:
        rec, problem = runner.read_job(run_dir, method, seed)
        first = next((r for r in recs if r["method"] == method), rec)
        if rec and ([r["stage"] for r in rec["rows"]] != [r["stage"] for r in first["rows"]]
                    or recs and tasks(rec) != tasks(recs[0])):   # (the tables and figures stack them)
            problem = f"its stages or tasks differ from those of {first['method']} seed {first['seed']}"
        if problem:
            fail(f"{runner.job_path(run_dir, method, seed)}.json is damaged ({problem}): delete it and run the "
                 "experiment's command again (or add --force)")
        recs += [rec] if rec else []
    if not recs:
        fail(f"{run_dir} holds no finished job (jobs/*.json): is it a run folder of mnist_exp.py?")
    order = {m: i for i, m in enumerate(METHODS)}
    return sorted(recs, key=lambda r: (order.get(r["method"], len(order)), r["method"], r["seed"]))


def run_field(run_dir, name):
    """A field of a run folder's config.json (its dataset, its scenario), None when it cannot be read."""
    try:
        with open(os.path.join(run_dir, "config.json")) as f:
            return json.load(f).get(name)
    except (OSError, ValueError, AttributeError):
        return None


# ---------------------------------------------------------------- tables
def task_names(recs, n, dataset=None):
    """The names of the n task columns: "T1 (0, 1)", ... by their digits (of a pair of datasets: by the
    dataset; of permuted tasks: by their permutation, the first unpermuted) when every job learnt the same order;
    "T1", ... (the first task learnt, ...) when the order is the seed's (--task-order random), and then one line
    per seed with its order."""
    orders = {tuple(map(tuple, r["tasks"])) for r in recs if "tasks" in r}
    parts = data.DATASETS.get(dataset, {}).get("parts")
    name = ((lambda t: parts[t[0] // len(t)]) if parts
            else (lambda t: f"permutation {t[0] // len(t)}" if t[0] else "unpermuted") if dataset == "permuted-mnist"
            else lambda t: ", ".join(map(str, t)))
    if len(orders) == 1:
        return [f"T{k + 1} ({name(t)})" for k, t in enumerate(orders.pop())], ""
    by_seed = {r["seed"]: r["tasks"] for r in recs if "tasks" in r}
    return [f"T{k + 1}" for k in range(n)], ("Tk: the k-th task learnt; each seed's order: " + "; ".join(
        f"seed {s}: " + " ".join("(" + name(t) + ")" for t in order) for s, order in sorted(by_seed.items()))
        + ".\n\n" if by_seed else "")


def write_long_csv(path, recs, rows_of, digits):
    """One row per method, seed and stage, of the rows rows_of(record) gives."""
    cols = [c for c in rows_of(recs[0])[0] if c != "stage"]
    lines = [",".join(["method", "seed", "stage", *cols])]
    lines += [",".join([r["method"], str(r["seed"]), row["stage"]] + [f"{row.get(c, np.nan):.{digits}f}" for c in cols])
              for r in recs for row in rows_of(r)]
    runner.write_text(path, "\n".join(lines) + "\n")


def others(run_dir, asked):
    """One line naming the jobs a run folder holds besides those asked for ('' when none)."""
    seeds = defaultdict(list)
    for method, seed in jobs_in(run_dir):
        if (method, seed) not in asked:
            seeds[method].append(str(seed))
    return "" if not seeds else ("\nNot in this table (not asked for), the run folder also holds: " + "; ".join(
        f"{m} seed{'s' * (len(s) > 1)} {', '.join(s)}" for m, s in seeds.items())
        + " (the run folder's summary.md tabulates every job).\n")


def tables(run_dir):
    """Write results.csv, stable_rank.csv, capacity.csv, summary.csv and summary.md from every job file of the
    folder (what the folder holds, whichever command ran it); returns the summary's rows."""
    recs = read_jobs(run_dir)
    scored = with_nme(recs)
    # results.csv: the method's stages, then SRC's synthetic diagnostic (not a stage: no metric reads it)
    write_long_csv(os.path.join(run_dir, "results.csv"), scored, lambda r: r["rows"] + r.get("synthetic", []), 2)
    nets = [r for r in recs if r["stable_rank"]]   # the methods with a network (not NCM, SLDA)
    if nets:
        write_long_csv(os.path.join(run_dir, "stable_rank.csv"), nets, lambda r: r["stable_rank"], 4)
    if nets and all(r.get("capacity") for r in nets):
        write_long_csv(os.path.join(run_dir, "capacity.csv"), nets, capacity_rows, 4)
    summary, text, markdown = summarise(recs, run_dir)
    runner.write_text(os.path.join(run_dir, "summary.csv"), text)
    runner.write_text(os.path.join(run_dir, "summary.md"), markdown)
    return summary


def asked_table(run_dir, asked):
    """summary.md's table of the jobs asked for ([(method, seed)]), and one line naming what else the folder
    holds: what a command prints (its files stay the whole folder's)."""
    return summarise(read_jobs(run_dir, asked), run_dir)[2] + others(run_dir, asked)


def with_nme(recs):
    """The records, each method's seeds in order, iCaRL's nearest-mean-of-exemplars accuracy a classifier of its
    own: a row "METHOD (NME)" after the method's."""
    nme = [dict(r, method=f"{r['method']} (NME)", rows=r["nme"], synthetic=[]) for r in recs if r.get("nme")]
    order = list(dict.fromkeys(m for r in recs for m in (r["method"], f"{r['method']} (NME)")))
    return sorted(recs + nme, key=lambda r: (order.index(r["method"]), r["seed"]))


def summarise(recs, run_dir):
    """The summary of job records: its rows, summary.csv's text and summary.md's."""
    scored = with_nme(recs)
    cols = tasks(recs[0])
    keys = cols + ["all", "task_il", "acc", "bwt", "forgetting", "seconds"]
    summary = []
    for method in dict.fromkeys(r["method"] for r in scored):
        group = [r for r in scored if r["method"] == method]
        # (task_il: nan in job files made before it was recorded)
        values = {c: [r["rows"][-1].get(c, np.nan) for r in group] for c in cols + ["all", "task_il"]}
        metrics = [analysis.cl_metrics([(row["stage"], [row[c] for c in cols]) for row in r["rows"][:-1]],
                                       [r["rows"][-1][c] for c in cols]) for r in group]
        values.update({m: [x[m] for x in metrics] for m in ("acc", "bwt", "forgetting")})
        values["seconds"] = [r["time"]["total"] for r in group]
        summary.append(dict(method=method, seeds=[r["seed"] for r in group], finals=values["all"],
                            diverged=sum("diverged" in r for r in group),
                            **{k: analysis.mean_std(v) for k, v in values.items()}))
    fmt = lambda v: analysis.text(*v)
    text = "method,n,seeds,diverged," + ",".join(f"{k}_mean,{k}_std" for k in keys) + "\n"
    for row in summary:
        text += (f"{row['method']},{len(row['seeds'])},{' '.join(map(str, row['seeds']))},{row['diverged']},"
                 + ",".join(f"{row[k][0]:.3f},{row[k][1]:.3f}" for k in keys) + "\n")
    with io.StringIO() as f:
        names, orders = task_names(recs, len(cols), run_field(run_dir, "dataset"))
        domain = run_field(run_dir, "scenario") == "domain"
        f.write("Mean ± sample standard deviation (ddof 1) over the n seeds; task-IL: each image classified among its "
                "own task's outputs only (the task label given"
                + ("; in domain-IL a task's outputs are the whole shared head, so it equals the final" if domain else "")
                + "); ACC, BWT and forgetting as in analysis.cl_metrics.\n\n" + orders)
        f.write(f"| method | n | final, {'every task' if domain else 'all classes'} (%) | " + " | ".join(names)
                + " | task-IL | ACC | BWT | forgetting | s per job | finals per seed |\n" + "|---" * (len(keys) + 3) + "|\n")
        for row in summary:
            name = row["method"] + (f" ({row['diverged']} diverged)" if row["diverged"] else "")
            f.write(f"| {name} | {len(row['seeds'])} | **{fmt(row['all'])}** | "
                    + " | ".join(fmt(row[c]) for c in cols) + " | "
                    + " | ".join(fmt(row[k]) for k in ("task_il", "acc", "bwt", "forgetting", "seconds")) + " | "
                    + ", ".join(f"{v:.1f}" for v in row["finals"]) + " |\n")
        for method in dict.fromkeys(r["method"] for r in recs if "diverged" in r):
            f.write(f"\n{method}: the network's weights stopped being finite (diverged), scored as they are: "
                    + ", ".join(f"seed {r['seed']} at {r['diverged']}" for r in recs
                                if r["method"] == method and "diverged" in r) + ".\n")
        for method in dict.fromkeys(r["method"] for r in recs if "sleep_reads" in r):
            r = next(r for r in recs if r["method"] == method)
            f.write(f"\n{method}: each sleep reads {r['sleep_reads']}.\n")
        for method in dict.fromkeys(r["method"] for r in recs if "kept_bytes" in r):
            r = next(r for r in recs if r["method"] == method)
            f.write(f"\n{method}: kept between tasks besides the weights: {r['kept_what']}, {r['kept_bytes']:,} bytes.\n")
        for method in dict.fromkeys(r["method"] for r in recs if "exemplars" in r):
            r = next(r for r in recs if r["method"] == method)
            f.write(f"\n{method}: its memory ends with {sum(r['exemplars'].values())} exemplar images "
                    f"({r['exemplar_bytes']:,} bytes); NME: the nearest-mean-of-exemplars classifier.\n")
        return summary, text, f.getvalue()


def capacity_rows(rec):
    """One row per stage: layer_L_task_T (components for 90 % of the variance) and layer_L_overlap (the mean
    overlap of the subspaces of every pair of tasks)."""
    rows = []
    for entry in rec["capacity"]:
        row = dict(stage=entry["stage"])
        for l, layer in enumerate(entry["layers"]):
            row.update({f"layer_{l + 1}_task_{t + 1}": d for t, d in enumerate(layer["dims"])})
            m = np.array(layer["overlap"], dtype=np.float64)
            row[f"layer_{l + 1}_overlap"] = float(np.nanmean(m[~np.eye(len(m), dtype=bool)])) if len(m) > 1 else np.nan
        rows.append(row)
    return rows


def read_table(path, skip=()):
    """{method: {stage: [row of floats per seed]}} and the value columns (but `skip`), from a long-format CSV."""
    with open(path) as f:
        rows = list(csv.DictReader(f))
    if not rows:
        fail(f"{path} is empty: run python visualize.py RUN_DIR to rebuild the tables", "visualize.py")
    cols = [c for c in rows[0] if c not in ("method", "seed", "stage", *skip)]
    table = defaultdict(lambda: defaultdict(list))
    for r in rows:
        if r["stage"] != "final":  # a copy of the method's last stage
            table[r["method"]][r["stage"]].append([float(r[c]) for c in cols])
    return {method: dict(stages) for method, stages in table.items()}, cols   # plain: visualize's processes get a copy


# ---------------------------------------------------------------- what the studies read
def finals(run_dir):
    """{method: (mean, std, n, diverged)} of the final accuracy in a run folder's summary.csv (empty if no job has
    finished). A run stopped part way has job files newer than its summary: the summary is made again first."""
    path = os.path.join(run_dir, "summary.csv")
    jobs = [runner.job_path(run_dir, *j) + ".json" for j in jobs_in(run_dir)]
    if jobs and (not os.path.exists(path) or max(map(os.path.getmtime, jobs)) > os.path.getmtime(path)):
        tables(run_dir)
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        return {r["method"]: (float(r["all_mean"]), float(r["all_std"]), int(r["n"]), int(r.get("diverged") or 0))
                for r in csv.DictReader(f)}


def paired(run_dir, first, second, nme=False):
    """second's final accuracy minus first's, seed by seed, in a run folder (a seed gives both the same initial
    weights, task order and random streams): (mean, sample std, n), or None without two such seeds.
    nme: iCaRL's nearest-mean-of-exemplars accuracy instead of the network's."""
    held = set(jobs_in(run_dir))
    pairs = [(job(run_dir, first, s), job(run_dir, second, s)) for m, s in sorted(held) if m == first and (second, s) in held]
    final = lambda rec: rec["nme" if nme else "rows"][-1]["all"]
    diffs = [final(b) - final(a) for a, b in pairs if a and b]
    return (float(np.mean(diffs)), float(np.std(diffs, ddof=1)), len(diffs)) if len(diffs) > 1 else None


def stages(run_dir, method):
    """{stage: {column: (mean, sample std, n)}} of one method in a run folder (its results.csv): the accuracy on
    each task and on all after every stage; {} when the folder has none."""
    path = os.path.join(run_dir, "results.csv")
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
