"""Run folders and the processes that fill them.

A run folder (runs/<name>/, named by config.run_name) holds config.json, one job file per (method, seed)
(jobs/METHOD-seedS.json and .npz), run.log, and the tables and figures rebuilt from the job files. Every
process started with the same command claims the jobs it computes: a job is computed by the process that
holds the lock on jobs/METHOD-seedS.lock (released by the system when that process ends, however it ends),
and never when its job file exists. So a run can be split across processes, or across machines that share
the folder (a cluster's array job), by starting the same command on each; --workers N starts N here.

    python runner.py RUN_DIR --methods src --seeds 0 1    # a worker: claims and runs jobs of a run folder

Every file is written to a temporary name and renamed: a failed write leaves no partial file.
"""
import codepath  # noqa: F401  (first: the pinned code paths and threads, before numpy and torch load)
import contextlib
import fcntl
import json
import os
import platform
import re
import signal
import subprocess
import sys
import threading
import time

import numba
import numpy as np
import torch

import config
import data
from methods import prepare, run_method


# ---------------------------------------------------------------- files
def write_atomic(path, write, what="--out"):
    """write(tmp) writes the file under a temporary name in the same folder, then it is renamed to path.
    A failure removes the temporary file and ends with one line naming the file."""
    folder, base = os.path.split(path)
    stem, ext = os.path.splitext(base)
    tmp = os.path.join(folder, f".{stem}.{os.getpid()}.tmp{ext}")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException as err:   # a full disk, or a stop (Ctrl-C, SIGTERM) in the middle of the write
        if os.path.exists(tmp):
            os.remove(tmp)
        if not isinstance(err, OSError):
            raise
        config.fail(f"cannot write {path} ({err.strerror or err}): free some space or choose another {what}")


def write_text(path, text, what="--out"):
    def write(tmp):
        with open(tmp, "w") as f:
            f.write(text)
    write_atomic(path, write, what)


def writable(folder, what):
    """Make the folder (if need be) and check that files can be written in it; else one line, exit 2."""
    try:
        os.makedirs(folder, exist_ok=True)
        probe = os.path.join(folder, f".write-test-{os.getpid()}")
        open(probe, "w").close()
        os.remove(probe)
    except OSError as err:
        config.fail(f"{what} {folder}: cannot write there ({err.strerror or err}); choose another folder")


def log(run_dir, message, echo=True):
    """A line in the run folder's run.log (always) and on stdout (when echo)."""
    try:
        with open(os.path.join(run_dir, "run.log"), "a") as f:
            f.write(time.strftime("%Y-%m-%d %H:%M:%S ") + message + "\n")
    except OSError as err:
        config.fail(f"cannot write {os.path.join(run_dir, 'run.log')} ({err.strerror}); free some space")
    if echo:
        print(message, flush=True)


def versions(device):
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=config.ROOT, capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=config.ROOT,
                               capture_output=True, text=True).stdout.strip()
    except OSError:
        commit, dirty = "", ""
    return dict(python=platform.python_version(), torch=torch.__version__, numpy=np.__version__, numba=numba.__version__,
                commit=commit + ("-dirty" if dirty else ""), threads=torch.get_num_threads(), **codepath.describe(),
                device=torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine())


# ---------------------------------------------------------------- jobs
def job_path(run_dir, method, seed):
    """A job's files without their ending (.json, .npz, .lock): the one place their name is made (JOB reads it)."""
    return os.path.join(run_dir, "jobs", f"{method}-seed{seed}")


JOB = re.compile(r"(.+)-seed(\d+)\.json")              # a job file's name: (method, seed)
STAGE = re.compile(r"init|train_(\d+|all)|sleep_\d+|merged|final")
SLEEP_ANALYSES = ("task", "confusion_before", "confusion_after", "class_accuracy_change", "weights", "spikes",
                  "reactivation", "correlation_before", "correlation_after")   # sleep_analysis.analyse's keys


def number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)   # (JSON's true is not a number here)


def stages_problem(rows, what, named):
    """'' when rows is a list of {stage, column: number}, each with the columns of the first and a stage of its own
    that named(stage) allows; else what is wrong."""
    if not isinstance(rows, list) or not all(isinstance(r, dict) and isinstance(r.get("stage"), str) for r in rows):
        return f"{what}: not a list of stages"
    stages = [r["stage"] for r in rows]
    odd = [s for s in stages if not named(s)] + [s for s in set(stages) if stages.count(s) > 1]
    if odd:
        return f"{what}: a stage {odd[0]!r} that is not one"
    if not all(r.keys() == rows[0].keys() for r in rows):
        return f"{what}: columns that differ between stages"
    if not all(number(v) for r in rows for k, v in r.items() if k != "stage"):
        return f"{what}: a value that is not a number"
    return ""


def record_problem(rec, method=None, seed=None):
    """'' when a job's record holds what its readers read, else what is wrong, in a few words: its method and seed
    (those its file's name gives), its times, every stage's accuracy on each task and on all (numbers, the last
    stage "final"), and its analyses of those stages (stable ranks, capacity, SRC's synthetic networks, iCaRL's
    nearest-mean accuracy, the sleeps' analyses, whose contents are not checked)."""
    if not isinstance(rec, dict):
        return f"a JSON {type(rec).__name__}, not a job's record"
    missing = [k for k in ("method", "seed", "rows", "stable_rank", "time") if k not in rec]
    if missing:
        return "no " + ", ".join(missing)
    if not isinstance(rec["method"], str) or type(rec["seed"]) is not int:
        return "a method that is not a name or a seed that is not a whole number"
    if method is not None and (rec["method"], rec["seed"]) != (method, seed):
        return f"the record of {rec['method']} seed {rec['seed']}"
    if not isinstance(rec["time"], dict) or not all(map(number, rec["time"].values())) or "total" not in rec["time"]:
        return "no total time, or a time that is not a number"
    problem = stages_problem(rec["rows"], "rows", STAGE.fullmatch)
    if problem:
        return problem
    rows = rec["rows"]
    stages, columns = [r["stage"] for r in rows], list(rows[0]) if rows else []
    tasks = [c for c in columns if c.startswith("task_") and c[5:].isdigit()]
    if not rows or stages[-1] != "final" or "all" not in columns or tasks != [f"task_{k + 1}" for k in range(len(tasks))] \
            or not tasks or len(rec.get("tasks", tasks)) != len(tasks):
        return "rows without the accuracy on each task and on all, or without a last stage 'final'"
    earlier = set(stages[:-1])
    for key, named in (("stable_rank", earlier.__contains__), ("nme", set(stages).__contains__),
                       ("synthetic", lambda s: s.startswith("synthetic_") and "sleep" + s[9:] in earlier)):
        problem = stages_problem(rec.get(key, []), key, named)
        if problem:
            return problem
    capacity = rec.get("capacity", [])
    if rec["stable_rank"] and [r["stage"] for r in rec["stable_rank"]] != stages[:-1] or not isinstance(capacity, list) \
            or capacity and [c.get("stage") if isinstance(c, dict) else None for c in capacity] != stages[:-1]:
        return "stable ranks or capacity not of the stages of its rows"
    if not all(isinstance(layer, dict) and {"dims", "overlap"} <= layer.keys() for c in capacity
               for layer in (c.get("layers") if isinstance(c.get("layers"), list) else [None])):
        return "capacity without each layer's dims and overlap"
    sleeps, slept = rec.get("analysis", []), rec.get("sleep", [])
    if not isinstance(sleeps, list) or not isinstance(slept, list) or not all(
            isinstance(a, dict) and a.keys() >= set(SLEEP_ANALYSES) and f"sleep_{a['task']}" in earlier for a in sleeps) \
            or not all(isinstance(s, dict) and {"task", "steps"} <= s.keys() for s in slept):
        return "sleeps' analyses without their keys, or of a sleep its rows do not have"
    if rec.get("diverged", "final") not in stages or not all(number(rec.get(k, 0)) for k in ("kept_bytes", "exemplar_bytes")) \
            or not all(map(number, rec.get("exemplars", {}).values())):
        return "a diverged stage it does not have, or kept bytes or exemplars that are not numbers"
    return ""


def read_job(run_dir, method, seed):
    """A job's record, checked (record_problem): (record, ''), or (None, what is wrong with its file), or (None, '')
    when it has none (not finished)."""
    path = job_path(run_dir, method, seed) + ".json"
    if not os.path.exists(path):
        return None, ""
    try:
        with open(path) as f:
            rec = json.load(f)
    except (OSError, ValueError) as err:   # a truncated or empty file, or not text
        return None, type(err).__name__
    problem = record_problem(rec, method, seed)
    return (None, problem) if problem else (rec, "")


def job_done(run_dir, method, seed, notice=True):
    """Whether the job's files are there and whole (a damaged one, with a one-line notice, is not: computing
    it again replaces its files)."""
    rec, problem = read_job(run_dir, method, seed)
    if rec is not None:
        try:
            with np.load(job_path(run_dir, method, seed) + ".npz") as z:
                z["labels"]
        except Exception as err:   # BadZipFile, KeyError, EOFError, ...
            problem = type(err).__name__
    if problem and notice:
        print(f"{job_path(run_dir, method, seed)}.json or .npz is damaged ({problem}); computing it again", flush=True)
    return rec is not None and not problem


def claim(run_dir, method, seed, wait=False):
    """The lock of a job (an open file), or None when another process holds it. wait: until it is free."""
    path = job_path(run_dir, method, seed) + ".lock"
    try:
        fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
    except OSError as err:   # a folder or an unreadable file where the lock goes
        config.fail(f"{path} cannot be used as the job's lock ({err.strerror}): delete it and run the command again")
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        return fd
    except BlockingIOError:
        os.close(fd)
        return None


def save_job(run_dir, rec, maps, labels):
    """The .npz, then the .json: a present .json is a finished job."""
    path = job_path(run_dir, rec["method"], rec["seed"])
    with np.errstate(over="ignore"):   # a saturated layer's values beyond float16's range are stored as inf
        arrays = {f"{stage}/layer_{l + 1}": m.astype(np.float16) for stage, ms in maps.items() for l, m in enumerate(ms)}
    write_atomic(path + ".npz", lambda tmp: np.savez_compressed(tmp, labels=labels, **arrays))
    write_text(path + ".json", json.dumps(rec, indent=1))


def work(jobs, cfg, run_dir, ctx=None):
    """Run the jobs this process can claim, then wait for those others hold and run any whose holder
    stopped without finishing it. Methods of one seed share the stages they have in common.
    ctx: the data (methods.prepare), when the caller has it already."""
    shared = {}
    for wait in (False, True):
        later = []
        for method, seed in jobs:
            if job_done(run_dir, method, seed, notice=False):
                continue
            lock = claim(run_dir, method, seed, wait)
            if lock is None:
                later.append((method, seed))
                continue
            try:
                if not job_done(run_dir, method, seed, notice=False):   # not finished by another meanwhile
                    if ctx is None:
                        ctx = checked_data(cfg)
                    t = time.perf_counter()
                    rec, maps = run_method(method, seed, cfg, ctx, shared.setdefault(seed, {}), progress=not cfg.quiet)
                    rec["time"]["total"] = time.perf_counter() - t
                    rec["versions"] = versions(ctx.device)
                    save_job(run_dir, rec, maps, ctx.eval_y[:ctx.probes].cpu().numpy())
                    log(run_dir, f"{method:>10} seed {seed}: final {rec['rows'][-1]['all']:.2f} %  "
                        + "  ".join(f"{k} {v:.1f}s" for k, v in rec["time"].items()), echo=not cfg.quiet)
            finally:
                os.close(lock)
        jobs = later


def die_with_parent():
    """In a worker, before it starts (Linux): be sent SIGTERM when the parent dies, however it dies."""
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)   # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def spawn(cfg, run_dir, workers):
    """`workers` processes here, each claiming jobs of the run folder, sharing the cores."""
    threads = str(max(1, codepath.CORES // workers))
    env = dict(os.environ, OMP_NUM_THREADS=threads, NUMBA_NUM_THREADS=threads)
    # the command's methods and seeds, not only those left to do: a worker's config must check as the command's did
    cmd = [sys.executable, os.path.join(config.ROOT, "runner.py"), run_dir, "--methods", ",".join(cfg.methods),
           "--seeds", *map(str, cfg.seeds),
           "--device", cfg.device, "--engine", cfg.engine, "--data-dir", cfg.data_dir, "--quiet"]
    procs = [subprocess.Popen(cmd, env=env, preexec_fn=die_with_parent if sys.platform == "linux" else None)
             for _ in range(workers)]
    try:
        for p in procs:
            p.wait()
    finally:   # (stopped: the workers stop too, and are awaited)
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            p.wait()
    if any(p.returncode for p in procs):
        config.fail(f"a worker failed (exit code {max(p.returncode for p in procs)}); see its message above and "
                    f"{os.path.join(run_dir, 'run.log')}")


def checked_data(cfg):
    """The data of a config (methods.prepare), checked against the sizes the config asks for."""
    try:
        ctx = prepare(cfg)
    except data.DataError as err:
        config.fail(str(err))
    config.check_data(cfg, ctx)
    return ctx


def folder(cfg):
    """The run folder of a config: OUT/NAME (config.run_name)."""
    return os.path.join(cfg.out, config.run_name(cfg))


def open_folder(cfg):
    """The run folder of a config, made and checked, with its config.json (written once: it names the folder),
    and the data, checked before the folder is made (a run refused for its sizes leaves no folder)."""
    writable(cfg.out, "--out")
    if cfg.figures and cfg.png_dir:
        writable(cfg.png_dir, "--png-dir")
    try:   # fetched and checked once, before any job starts
        data.ensure_files(cfg.dataset, cfg.data_dir)
    except data.DataError as err:
        config.fail(str(err))
    except OSError as err:
        config.fail(f"--data-dir {cfg.data_dir}: {err.strerror or err}; point it at a folder you can write")
    ctx = checked_data(cfg)
    run_dir = folder(cfg)
    writable(os.path.join(run_dir, "jobs"), "--out")
    path = os.path.join(run_dir, "config.json")
    record = json.dumps(dict(config.science(cfg), versions=versions(torch.device("cpu"))), indent=1)
    if not os.path.exists(path):
        write_text(path, record)
    elif {**config.science(config.DEFAULTS), **config.read_config(path, "run folder's config")} != config.science(cfg):
        # (a field added since the folder was made is at its default there, as in the folder's name)
        config.fail(f"{path} does not match its folder's name: delete the folder or choose another --out")
    return run_dir, ctx


def run(cfg):
    """Every (method, seed) job of the config that the run folder does not hold yet; returns the run folder."""
    run_dir, ctx = open_folder(cfg)
    jobs = [(m, s) for s in cfg.seeds for m in cfg.methods]
    todo = [j for j in jobs if cfg.force or not job_done(run_dir, *j)]
    if cfg.force:   # computed again: their files go first, each under its claim (a job another process is
        for job in todo:   # computing is left to it)
            lock = claim(run_dir, *job)
            if lock is not None:
                for ext in (".json", ".npz"):
                    with contextlib.suppress(FileNotFoundError):
                        os.remove(job_path(run_dir, *job) + ext)
                os.close(lock)
    log(run_dir, f"run folder {run_dir}: {len(todo)} of {len(jobs)} jobs to run ({config.describe(cfg)})")
    handle = threading.current_thread() is threading.main_thread() and not config.INTERACTIVE
    previous = signal.signal(signal.SIGTERM, interrupt) if handle else None
    t = time.perf_counter()
    try:
        if todo:
            # --workers N, but no more than the jobs to run and the cores: more would only wait for each other
            workers = min(cfg.workers, len(todo), codepath.CORES)
            work(todo, cfg, run_dir, ctx) if workers == 1 else spawn(cfg, run_dir, workers)
    except KeyboardInterrupt as stop:
        if config.INTERACTIVE:
            raise
        # (a quiet run stopped by another process's signal, as a sweep stops its rows, is reported by that
        # process: here the line goes to run.log alone)
        log(run_dir, "stopped; the finished jobs are kept: run the same command again to resume",
            echo=not (cfg.quiet and stop.args))
        raise SystemExit(130)
    finally:
        if handle:
            signal.signal(signal.SIGTERM, previous)
    if todo:
        log(run_dir, f"{len(todo)} jobs in {time.perf_counter() - t:.1f} s")
    return run_dir


def interrupt(signum, frame):
    """A signal handler: SIGTERM stops as Ctrl-C does."""
    raise KeyboardInterrupt(f"signal {signum}")


# ---------------------------------------------------------------- a worker
if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1].startswith("-"):
        config.fail("usage: python runner.py RUN_DIR [options of mnist_exp.py that say how to run]", "runner.py")
    run_dir = sys.argv[1].rstrip("/")
    cfg = config.resolve(config.DEFAULTS, ["--config", os.path.join(run_dir, "config.json"), *sys.argv[2:]], "runner.py")
    if config.run_name(cfg) != os.path.basename(run_dir):
        config.fail(f"{run_dir}/config.json does not match the folder's name: delete the folder", "runner.py")
    signal.signal(signal.SIGTERM, interrupt)
    try:
        work([(m, s) for s in cfg.seeds for m in cfg.methods], cfg, run_dir)
    except KeyboardInterrupt:
        raise SystemExit(130)
