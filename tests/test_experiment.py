"""End to end: the experiment script, visualize.py and tune.py as a user runs them, on a --quick budget."""
import argparse
import csv
import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np
import pytest
import torch

import config
import constants
import data
import methods
import results

pytestmark = pytest.mark.slow   # runs the scripts: minutes (python -m pytest -m "not slow" leaves them out)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STAGES = {
    "sequential": ["init"] + [f"train_{k}" for k in range(1, 6)] + ["final"],
    "src": ["init"] + [s for k in range(1, 6) for s in (f"train_{k}", f"sleep_{k}")] + ["final"],
    "merging": ["init"] + [f"train_{k}" for k in range(1, 6)] + ["merged", "final"],
    "parallel": ["init", "train_all", "final"],
}


# a --quick run made smaller still, for the tests of a run's bookkeeping (its jobs, folders, tables), not of its numbers
SMALL = ["--n-tasks", "2", "--hidden", "20", "20"]
# a --quick row of the sweeps stopped midway: five tasks, each job seconds on a 20-20 network
NARROW = ["--quick", "--hidden", "20", "20"]


def run(*args, check=True):
    return checked(subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=900), check)


def checked(proc, check=True):
    if check and proc.returncode:
        raise AssertionError(proc.stdout + proc.stderr)
    return proc


def read_csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


# the tests that read quick_run (conftest.py: the methods of STAGES, seed 0) go to one worker (pytest-xdist,
# --dist loadgroup), which builds it once
shares_quick_run = pytest.mark.xdist_group("quick_run")


@shares_quick_run
def test_quick_run_writes_results_and_config_in_its_folder_only(quick_run):
    out, run_dir, stdout, (before, after) = quick_run
    assert before == after, "the run changed files of the repository"
    rows = read_csv(os.path.join(run_dir, "results.csv"))
    assert list(rows[0]) == ["method", "seed", "stage", "task_1", "task_2", "task_3", "task_4", "task_5", "all", "task_il"]
    for method, stages in STAGES.items():
        mine = [r for r in rows if r["method"] == method and not r["stage"].startswith("synthetic_")]
        assert [r["stage"] for r in mine] == stages and {r["seed"] for r in mine} == {"0"}
        assert all(0 <= float(r[c]) <= 100 for r in mine for c in r if c.startswith("task_") or c == "all")
        assert mine[-1] == dict(mine[-2], stage="final")
        # knowing the task never makes a choice between two of its outputs worse than among all ten
        assert all(float(r["task_il"]) >= float(r["all"]) for r in mine if r["stage"] != "init")
    # a trained task is learned well above chance, even on the quick budget; methods share their first stages
    # SRC's synthetic diagnostic follows its stages, one row per task
    assert [r["stage"] for r in rows if r["stage"].startswith("synthetic_")] == [f"synthetic_{k}" for k in range(1, 6)]
    first = {m: next(r for r in rows if r["method"] == m and r["stage"] == "train_1") for m in ("sequential", "src")}
    assert float(first["sequential"]["task_1"]) > 80
    assert dict(first["src"], method="") == dict(first["sequential"], method="")
    ranks = read_csv(os.path.join(run_dir, "stable_rank.csv"))
    assert len(ranks) == len(rows) - len(STAGES) - 5 and all(float(r["layer_1"]) >= 1 for r in ranks)
    with open(os.path.join(run_dir, "config.json")) as f:
        config = json.load(f)
    assert config["lr"] == 0.1 and config["quick"] is True and config["n_per_task"] == 500
    assert config["inc"] == 0.032064 and config["beta"] == [14.548273, 44.560317, 38.046326]
    assert "seeds" not in config and {"torch", "numpy", "commit", "device", "MKL_CBWR"} <= set(config["versions"])
    jobs = {m: json.load(open(os.path.join(run_dir, "jobs", f"{m}-seed0.json"))) for m in STAGES}
    assert all(job["time"]["total"] > 0 and job["versions"]["torch"] for job in jobs.values())
    # only SRC sleeps: five sleeps, its constants recorded whole
    assert [len(job["sleep"]) for job in jobs.values()] == [5 if m == "src" else 0 for m in jobs]
    assert jobs["src"]["sleep_constants"]["inc"] == 0.032064 and jobs["src"]["sleep_constants"]["steps"] == 1000
    assert "sleep_constants" not in jobs["sequential"]
    summary = open(os.path.join(run_dir, "summary.md")).read()
    assert "| src | 1 |" in summary
    # the original sleep reads every image seen: at the last sleep, all 3000 of --quick's, a byte per pixel
    assert "src: each sleep reads every training image of the tasks seen.\n" in summary
    assert "src: kept between tasks besides the weights: what the sleep reads: every training image of the " \
           f"tasks seen, {3000 * 784:,} bytes." in summary
    assert "sequential: kept between tasks besides the weights: nothing, 0 bytes." in summary
    # capacity: one row per stage, a task's components never more than its probe images (20 per class here)
    capacity = read_csv(os.path.join(run_dir, "capacity.csv"))
    assert len(capacity) == len(ranks) and all(1 <= float(r[f"layer_{l}_task_{t}"]) <= 40 for r in capacity
                                                for l in (1, 2) for t in range(1, 6))
    assert all(0 <= float(r["layer_1_overlap"]) <= 1 for r in capacity)
    assert not os.path.exists(os.path.join(run_dir, "png"))   # --no-figures (the test of visualize.py draws them)
    log = open(os.path.join(run_dir, "run.log")).read()
    assert "src seed 0: final" in log and "4 of 4 jobs to run" in log and "| src | 1 |" in stdout


def test_the_regularised_methods_train_every_task_and_share_sequentials_first_stage(tmp_path, in_process):
    # EWC and SI in the script, beside sequential (a 20-20 network: their stages and records, not their numbers)
    proc = in_process("mnist_exp.py", "--quick", "--hidden", "20", "20", "--seeds", "0", "--methods", "sequential,ewc,si",
                      "--out", str(tmp_path), "--no-figures", "--quiet")
    assert proc.returncode == 0, proc.stderr
    (run_dir,) = glob.glob(str(tmp_path / "mnist-original-original-quick-*"))
    rows = read_csv(os.path.join(run_dir, "results.csv"))
    stages = ["init"] + [f"train_{k}" for k in range(1, 6)] + ["final"]
    for method in ("ewc", "si"):
        mine = [r for r in rows if r["method"] == method]
        assert [r["stage"] for r in mine] == stages and {r["seed"] for r in mine} == {"0"}
        assert mine[-1] == dict(mine[-2], stage="final")
        assert all(float(r["task_il"]) >= float(r["all"]) for r in mine if r["stage"] != "init")
        job = json.load(open(os.path.join(run_dir, "jobs", f"{method}-seed0.json")))
        assert job["time"]["total"] > 0 and job["sleep"] == [] and "sleep_constants" not in job
    # EWC takes task 1 from sequential; SI trains it again, to the same numbers
    first = {m: next(r for r in rows if r["method"] == m and r["stage"] == "train_1") for m in ("sequential", "ewc", "si")}
    assert dict(first["ewc"], method="") == dict(first["sequential"], method="") == dict(first["si"], method="")


@shares_quick_run
def test_sleep_input_fires_at_the_protocol_rate(quick_run):
    # The input spikes per step of each sleep match, within a few percent, what the mean image of the
    # sleep data gives by hand: the average over window positions of sum min(1, 2 dt rate p).
    _, run_dir, _, _ = quick_run
    with open(os.path.join(run_dir, "jobs", "src-seed0.json")) as f:
        sleeps = json.load(f)["sleep"]
    assert [s["steps"] for s in sleeps] == [1000, 1500, 2000, 2500, 3000]
    assert all(len(s["alpha"]) == 3 and min(s["alpha"]) > 0 for s in sleeps)
    train_x, train_y = (t[:3000] for t in data.load("mnist")[:2])
    for k, s in enumerate(sleeps, start=1):
        mean = train_x[torch.isin(train_y, torch.arange(2 * k))].double().mean(0).numpy().reshape(28, 28)
        prob = np.minimum(1, 2 * 0.001 * 239.515363 * mean)
        expected = np.mean([prob[r:r + 11, c:c + 11].sum() for r in range(18) for c in range(18)])
        assert abs(s["spikes_per_step"][0] - expected) < 0.1 * expected, (k, s["spikes_per_step"][0], expected)


@shares_quick_run
def test_rerun_skips_finished_jobs_and_keeps_the_config(quick_run, in_process):
    out, run_dir, _, _ = quick_run
    before = open(os.path.join(run_dir, "results.csv")).read()
    config = open(os.path.join(run_dir, "config.json")).read()
    proc = in_process("mnist_exp.py", "--quick", "--seeds", "0", "--out", str(out), "--no-figures")
    assert proc.returncode == 0, proc.stderr
    assert "0 of 4 jobs to run" in proc.stdout    # the default four methods, all finished
    assert open(os.path.join(run_dir, "results.csv")).read() == before
    assert open(os.path.join(run_dir, "config.json")).read() == config


@shares_quick_run
def test_same_seed_same_numbers_and_quiet_still_reports(quick_run, tmp_path, in_process):
    # src alone here: it trains task 1 itself, which quick_run's src took from sequential (shared stages are the same)
    _, run_dir, _, _ = quick_run   # (quick_run's jobs ran in a process of their own; these in this one)
    proc = in_process("mnist_exp.py", "--quick", "--seeds", "0", "--methods", "src", "--out", str(tmp_path),
                      "--no-figures", "--quiet")
    assert proc.returncode == 0, proc.stderr
    (again,) = glob.glob(str(tmp_path / "mnist-original-original-quick-*"))
    assert os.path.basename(again) == os.path.basename(run_dir)
    mine = [r for r in read_csv(os.path.join(run_dir, "results.csv")) if r["method"] == "src"]
    assert read_csv(os.path.join(again, "results.csv")) == mine
    assert f"run folder {again}" in proc.stdout and "| src | 1 |" in proc.stdout and "%|" not in proc.stderr


@shares_quick_run
def test_visualize_rebuilds_tables_and_figures_from_the_run_folder(quick_run, tmp_path, in_process, git_status):
    # (the quick run's figures: the run itself drew none, --no-figures)
    _, run_dir, _, _ = quick_run
    summary = open(os.path.join(run_dir, "summary.md")).read()
    os.remove(os.path.join(run_dir, "summary.md"))
    before = git_status()
    proc = run("visualize.py", run_dir, "--png-dir", str(tmp_path / "png"))
    assert git_status() == before, "the figures changed files of the repository"
    assert open(os.path.join(run_dir, "summary.md")).read() == summary
    sleeping = [m for m in STAGES if methods.METHODS[m].sleep]   # what each of their sleeps did
    drawn = sorted(["accuracy.png", "stable_rank.png", "capacity.png"] + [f"activations_{m}.png" for m in STAGES]
                   + [f"sleep_{a}_{m}.png" for m in sleeping for a in ("confusion", "weights", "firing", "reactivation")])
    assert sorted(os.listdir(tmp_path / "png")) == drawn
    assert all(os.path.getsize(tmp_path / "png" / name) > 10000 for name in drawn)
    assert "accuracy.png" in proc.stdout
    bad = in_process("visualize.py", str(tmp_path / "nothing"), "--png-dir", str(tmp_path / "nothing" / "png"))
    assert bad.returncode == 2 and "is not a run folder" in bad.stderr and bad.stderr.count("\n") == 1
    os.makedirs(tmp_path / "empty" / "jobs")
    bad = in_process("visualize.py", str(tmp_path / "empty"), "--png-dir", str(tmp_path / "empty" / "png"))
    assert bad.returncode == 2 and "holds no finished job" in bad.stderr and bad.stderr.count("\n") == 1
    assert not (tmp_path / "nothing").exists()


def fake_job(run_dir, method, seed, rows):
    """A job file with the given accuracy rows (stage, [task accuracies]) over two tasks."""
    os.makedirs(os.path.join(run_dir, "jobs"), exist_ok=True)
    recs = [dict(stage=s, task_1=a[0], task_2=a[1], all=sum(a) / 2) for s, a in rows]
    rec = dict(method=method, seed=seed, rows=recs + [dict(recs[-1], stage="final")],
               stable_rank=[dict(stage=s, layer_1=1.0) for s, _ in rows], time=dict(total=1.0))
    with open(os.path.join(run_dir, "jobs", f"{method}-seed{seed}.json"), "w") as f:
        json.dump(rec, f)


def test_summary_reports_the_sample_std_and_the_stated_metrics(tmp_path):
    finals = {0: [60, 90], 1: [40, 80], 2: [70, 94]}
    for seed, final in finals.items():
        fake_job(tmp_path, "src", seed, [("init", [0, 0]), ("train_1", [99, 0]), ("sleep_1", [93, 5]),
                                         ("train_2", [40, 97]), ("sleep_2", final)])
    results.tables(str(tmp_path))
    (row,) = read_csv(tmp_path / "summary.csv")
    overall = [sum(f) / 2 for f in finals.values()]
    assert row["n"] == "3" and float(row["all_mean"]) == pytest.approx(np.mean(overall), abs=1e-3)
    assert float(row["all_std"]) == pytest.approx(np.std(overall, ddof=1), abs=1e-3)
    bwt = [f[0] - 99 for f in finals.values()]               # against task 1 before its sleep
    assert float(row["bwt_mean"]) == pytest.approx(np.mean(bwt), abs=1e-3)
    assert float(row["forgetting_std"]) == pytest.approx(np.std(bwt, ddof=1), abs=1e-3)
    assert "| src | 3 | **" + f"{np.mean(overall):.1f} ± {np.std(overall, ddof=1):.1f}**" in open(tmp_path / "summary.md").read()


@pytest.mark.parametrize("name, given, message", [
    ("train-images-idx3-ubyte", "MNIST/raw", "is inside the dataset's folder; give the folder that holds MNIST/raw/"),
    ("t10k-labels-idx1-ubyte", "", "t10k-labels-idx1-ubyte in"),
])
def test_data_problems_are_one_line_errors(tmp_path, in_process, name, given, message):
    # a slip (--data-dir at the raw files) and a corrupt file, each with a file of the wrong content
    (tmp_path / "MNIST" / "raw").mkdir(parents=True)
    (tmp_path / "MNIST" / "raw" / name).write_bytes(b"not mnist")
    proc = in_process("mnist_exp.py", "--quick", "--data-dir", str(tmp_path / given), "--out", str(tmp_path / "runs"))
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def children(pid):
    """Process ids whose parent is pid, still alive (zombies excluded), from /proc."""
    found = []
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            fields = open(stat).read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(stat.split("/")[2]))
    return found


def alive(pid):
    try:
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
def test_stopping_a_run_stops_its_workers(tmp_path, how):
    proc = subprocess.Popen([sys.executable, "mnist_exp.py", "--quick", "--sleep-steps", "100000", "--seeds", "21", "22",
                             "--workers", "2", "--methods", "src", "--out", str(tmp_path), "--no-figures", "--quiet"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline, workers = time.time() + 60, []
    while time.time() < deadline and len(workers) < 2:
        time.sleep(0.2)
        workers = children(proc.pid)
    assert len(workers) == 2, "the two workers did not start"
    time.sleep(2)
    proc.send_signal(getattr(signal, how))
    proc.wait(timeout=30)
    deadline = time.time() + 20
    while time.time() < deadline and any(alive(w) for w in workers):
        time.sleep(0.2)
    assert not any(alive(w) for w in workers)
    if how == "SIGTERM":   # quiet and stopped by another process: the line goes to run.log (a sweep says it)
        (log,) = glob.glob(str(tmp_path / "*" / "run.log"))
        assert proc.returncode == 130 and "run the same command again to resume" in open(log).read()
        assert "resume" not in proc.stdout.read()


def test_the_script_runs_cell_by_cell_in_a_kernel(tmp_path):
    # Executed as a notebook, as Jupyter or VS Code's interactive window runs it, with the Config cell edited as
    # a user would, on the lines that define the values: quick on, a sleep constant, a training field, the
    # methods and the run folder. Every cell must run, the explore cells too, and the jobs record the edits.
    import jupytext
    import nbclient
    nb = jupytext.read(os.path.join(ROOT, "mnist_exp.py"))
    (cell,) = [c for c in nb.cells if "cfg = config.Config(" in c.source]
    edits = {"    quick=False,": "    quick=True,", "    inc=None,": "    inc=0.05,", "    epochs=None,": "    epochs=3,",
             '    methods=("sequential", "src", "merging", "parallel"),': '    methods=("sequential", "src"),',
             '    out="runs",': f"    out={str(tmp_path)!r},", "    hidden=None, ": "    hidden=(20, 20), ",
             " n_tasks=0,": " n_tasks=2,"}
    for old, new in edits.items():
        assert cell.source.count(old) == 1, old
        cell.source = cell.source.replace(old, new)
    nbclient.NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": ROOT}}).execute()
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    # the explore cells' example trial (twice the edited potentiation) may break the network: then the chain cell
    # says where, instead of printing stale numbers as final
    assert "after task 1:" in text and "after sleep 1:" in text
    assert "final:" in text or re.search(r"diverged at (train|sleep)_\d \(weights not finite\)", text), text[-500:]
    assert "yours: quick=True, n_tasks=2, hidden=(20, 20), epochs=3, inc=0.05" in text
    (run_dir,) = glob.glob(str(tmp_path / "mnist-original-original-quick-*"))
    assert [r["method"] for r in read_csv(os.path.join(run_dir, "summary.csv"))] == ["sequential", "src"]
    recorded = json.load(open(os.path.join(run_dir, "config.json")))
    assert (recorded["inc"], recorded["epochs"], recorded["quick"], recorded["n_per_task"], recorded["n_tasks"]) == \
        (0.05, 3, True, 500, 2)
    job = json.load(open(os.path.join(run_dir, "jobs", "src-seed0.json")))
    assert job["sleep_constants"]["inc"] == 0.05 and job["sleep_constants"]["rate"] == 239.515363
    assert os.path.exists(os.path.join(run_dir, "png", "accuracy.png"))


def file_hashes(folder):
    return {p: open(p, "rb").read() for p in glob.glob(os.path.join(folder, "*"))}


def test_tune_smoke_writes_only_its_folder_and_saves_a_preset_only_when_named(tmp_path, in_process):
    # (in this process: every study script runs as a process in test_results.py's test of --help)
    presets = file_hashes(os.path.join(ROOT, "presets"))
    cmd = ["studies/tune.py", "--quick", *SMALL, "--trials", "2", "--batch", "2", "--tune-seeds", "100", "--out", str(tmp_path)]
    proc = checked(in_process(*cmd))
    (best,) = glob.glob(str(tmp_path / "tune-src-mnist-*" / "best.json"))
    result = json.load(open(best))
    # the searched constants, and the variant's fields the command gave (SMALL's)
    assert set(result["constants"]) == {"rate", "inc", "dec", "beta", "alpha_scale", "sleep_input", "n_tasks", "hidden"}
    assert result["tuning"]["trials"] == 2 and result["tuning"]["seeds"] == [100] and 0 < result["tuning"]["mean_final"] <= 100
    assert "best of 2 complete trials (0 pruned)" in in_process(*cmd).stdout   # the study is stored: nothing left to do
    assert file_hashes(os.path.join(ROOT, "presets")) == presets and "saved as preset" not in proc.stdout
    refused = in_process(*cmd, "--save-preset", "smoke")
    assert refused.returncode == 2 and "no --quick run saves one" in refused.stderr
    assert in_process("studies/tune.py", "--tune-seeds", "3").returncode == 2
    # the same small budget without --quick may save, into the folder it is given
    small = ["--train-limit", "3000", "--n-per-task", "450", "--epochs", "1", "--sleep-steps", "500",
             "--sleep-steps-increment", "100", "--probe-per-class", "20", "--validation", "30", "--hidden", "20", "20"]
    saved = in_process("studies/tune.py", "--trials", "1", "--batch", "1", "--tune-seeds", "100", "--out", str(tmp_path),
                       *small, "--save-preset", "smoke", "--preset-dir", str(tmp_path / "presets"))
    assert saved.returncode == 0, saved.stderr
    preset = json.load(open(tmp_path / "presets" / "smoke.json"))["mnist"]
    assert len(preset["constants"]["beta"]) == 3 and preset["tuning"]["trials"] == 1
    # the preset carries the variant's fields that were given (epochs 1, the widths), not the budget (sizes, validation)
    assert preset["constants"]["epochs"] == 1 and preset["constants"]["hidden"] == [20, 20]
    assert not {"train_limit", "validation", "matmul"} & set(preset["constants"])


def test_the_own_loop_example_sleeps_a_users_sequential_and_the_sleeps_bring_old_tasks_back(in_process):
    finals = {}
    for sleep in (True, False):   # (the script as a process once; without the sleeps in this process)
        proc = run("docs/own_loop.py", "--limit", "3000") if sleep else in_process("docs/own_loop.py", "--limit", "3000",
                                                                                  "--no-sleep")
        lines = [l for l in proc.stdout.splitlines() if l.startswith("after task")]
        assert proc.returncode == 0 and len(lines) == 5, proc.stderr
        finals[sleep] = float(lines[-1].split("all classes ")[1].split(" %")[0])
    assert finals[False] < 25 and finals[True] > finals[False] + 10   # sequential forgets; the sleeps recover some


def test_a_baseline_search_starts_from_the_protocol_then_every_decade_and_saves_a_runnable_preset(tmp_path, in_process):
    import optuna
    small = ["--train-limit", "3000", "--n-per-task", "450", "--epochs", "1", "--probe-per-class", "20", "--validation", "30"]
    checked(in_process("studies/tune.py", "--method", "ewc", "--fixed-training", "--trials", "3", "--tune-seeds", "100",
                       "--study", "e", "--out", str(tmp_path), *small, "--save-preset", "ewc-smoke", "--preset-dir",
                       str(tmp_path / "presets")))
    trials = optuna.load_study(study_name="e", storage=f"sqlite:///{tmp_path / 'tune-e' / 'study.db'}").trials
    done = [t.params["ewc_lambda"] for t in trials if t.state.name == "COMPLETE"]
    assert done == [10.0, 1.0, 100.0]   # the protocol's own, then every other decade from 1 (the rest wait)
    other = in_process("studies/tune.py", "--method", "ewc", "--fixed-training", "--trials", "3", "--tune-seeds", "101",
                       "--study", "e", "--out", str(tmp_path), *small)   # other seeds never resume into the study
    assert other.returncode == 2 and "study e was made with other settings" in other.stderr
    preset = json.load(open(tmp_path / "presets" / "ewc-smoke.json"))["mnist"]
    assert preset["constants"]["ewc_lambda"] in (1.0, 10.0) and preset["constants"]["epochs"] == 1
    # the joint search: the method's options and its training, the temperature only for logits
    checked(in_process("studies/tune.py", "--method", "lwf", "--trials", "3", "--tune-seeds", "100", "--study", "l",
                       "--out", str(tmp_path), *small))
    trials = optuna.load_study(study_name="l", storage=f"sqlite:///{tmp_path / 'tune-l' / 'study.db'}").trials
    assert len(trials) == 3 and all({"lwf_lambda", "lwf_outputs", "lwf_schedule", "lr", "hidden", "bias"} <= set(t.params) for t in trials)
    assert all(("lwf_temperature" in t.params) == (t.params["output"] == "linear-ce") for t in trials)


def test_tune_prunes_exactly_the_candidates_below_the_percentile_of_the_complete_ones(tmp_path):
    import optuna   # a requirement (requirements.txt): its absence is a failure, not a skip
    import tune   # (in this process: the search's logic; the script's own process is the smoke test's)
    # (100 images a task: the pruning is checked, not the scores)
    tune.main(["--quick", *SMALL, "--n-per-task", "100", "--trials", "12", "--batch", "4", "--tune-seeds", "100", "101",
               "102", "--prune", "50", "--study", "p", "--out", str(tmp_path), "--quiet"])
    trials = optuna.load_study(study_name="p", storage=f"sqlite:///{tmp_path / 'tune-p' / 'study.db'}").trials
    assert len(trials) == 12 and all(t.state.name == "COMPLETE" for t in trials[:4])   # too few to compare with
    for t in trials:   # checkpoints: the mean final after seeds 1 and 2 (none after the last)
        assert sorted(t.intermediate_values) in ([[1, 2]] if t.state.name == "COMPLETE" else [[1], [1, 2]])
    assert any(t.state.name == "PRUNED" for t in trials)
    for batch in (trials[4:8], trials[8:]):   # scored against the trials complete before it
        before = [t for t in trials[:batch[0].number] if t.state.name == "COMPLETE"]
        for t in batch:
            passed = [t.intermediate_values[s] >= np.percentile([f.intermediate_values[s] for f in before], 50)
                      for s in sorted(t.intermediate_values)]
            assert passed == ([True] * 2 if t.state.name == "COMPLETE" else [True] * (len(passed) - 1) + [False])


def test_bridge_table_marks_a_factor_that_moves_the_mean_by_more_than_two_standard_errors(tmp_path, in_process):
    # Fake summaries for the original protocol and two of its rows, in a runs/ folder under tmp_path.
    def fake(options, mean, std, n=5):
        folder = tmp_path / "runs" / config.run_name(config.resolve(config.DEFAULTS, options))
        folder.mkdir(parents=True)
        (folder / "summary.csv").write_text(f"method,n,all_mean,all_std\nsrc,{n},{mean},{std}\n")
    fake([], 45.0, 6.1)
    fake(["--sleep-input", "replica"], 60.0, 3.0)                       # +15, 2 SE = 2 sqrt(6.1^2/5 + 3^2/5) = 6.1
    fake(["--sleep-steps", "400", "--sleep-steps-increment", "133"], 47.0, 4.0)   # +2 < 2 SE = 6.5
    proc = in_process("studies/bridge.py", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "runs" / "bridge"   # beside the rows' run folders
    table = {line.split(" | ")[0][2:]: line.split(" | ") for line in (out / "bridge.md").read_text().splitlines()[2:]}
    row = next(v for k, v in table.items() if k.startswith("original with the replica's sleep input"))
    assert row[1:5] == ["60.0 ± 3.0 (n=5)", "+15.0", f"{2 * np.sqrt(6.1 ** 2 / 5 + 9 / 5):.1f}", "**yes**"]
    row = next(v for k, v in table.items() if k.startswith("original with the replica's sleep length"))
    assert row[2:5] == ["+2.0", f"{2 * np.sqrt(6.1 ** 2 / 5 + 16 / 5):.1f}", "no"]
    assert table["replica protocol"][1] == "not run" and (out / "bridge.png").stat().st_size > 5000
    # what each row's sleep reads and keeps: the replica's masked current-task input with fixed alpha keeps nothing
    assert table["original protocol"][-2] == f"every training image of the tasks seen; {60000 * 784:,}"
    assert table["replica protocol"][-2] == "task k's training images; 0"


def test_replay_sweep_table_reads_each_fractions_run_folder(tmp_path, in_process):
    # Fake summaries for three fractions in a runs/ folder under tmp_path; the others are "not run". At 10 % the
    # sweep reads the folder of the script's own constants (--preset replay-10).
    import replay
    assert replay.options("0.1") == ["--replay", "0.1", "--preset", "replay-10"]
    for fraction, seq, src in (("0", (19.3, 0.0), (45.0, 6.1)), ("0.05", (68.8, 2.9), (78.5, 1.7)),
                               ("0.1", (86.5, 0.4), (80.0, 2.0))):
        folder = tmp_path / "runs" / config.run_name(config.resolve(config.DEFAULTS, replay.options(fraction)))
        folder.mkdir(parents=True)
        (folder / "summary.csv").write_text("method,n,all_mean,all_std\n"
                                            f"sequential,5,{seq[0]},{seq[1]}\nsrc,5,{src[0]},{src[1]}\n")
    proc = in_process("studies/replay.py", "--png-dir", "out", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    table = {line.split(" | ")[0][2:]: line.split(" | ") for line in (tmp_path / "runs" / "replay" / "replay.md").read_text().splitlines()[2:]}
    assert table["5 %"][1:] == ["68.8 ± 2.9 (n=5)", "78.5 ± 1.7 (n=5)", "+9.7 |"]
    assert table["0 %"][3] == "+25.7 |" and table["10 %"][3] == "-6.5 |" and table["25 %"][1] == "not run"
    assert (tmp_path / "out" / "replay.png").stat().st_size > 5000
    bad = in_process("studies/replay.py", "--fractions", "2", cwd=tmp_path)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "--replay must be a fraction" in bad.stderr
    # another dataset's table and figure get its own name: the MNIST figure in the same --png-dir stays
    fashion = in_process("studies/replay.py", "--dataset", "fashion-mnist", "--fractions", "0", "--png-dir", "out", cwd=tmp_path)
    assert fashion.returncode == 0, fashion.stderr
    assert "| 0 % | not run | not run |" in (tmp_path / "runs" / "replay_fashion" / "replay_fashion.md").read_text()
    assert sorted(p.name for p in (tmp_path / "out").glob("*.png")) == ["replay.png", "replay_fashion.png"]


def test_cross_replay_nominal_rows_run_src_alone_and_take_sequential_from_the_255_step_row(tmp_path, monkeypatch, capsys):
    import replay
    import sweep
    monkeypatch.chdir(tmp_path)
    faithful = replay.options("0.01", "mnist-fashion")
    nominal = replay.options("0.01", "mnist-fashion", nominal=True)
    assert nominal == faithful + ["--sleep-steps", "4171", "--sleep-steps-increment", "0"]
    resolve = lambda options, methods: config.resolve(config.DEFAULTS, [*options, "--methods", methods])
    cfg = resolve(nominal, "src")
    assert cfg.sleep_steps + cfg.sleep_steps_increment == 4171 and cfg.sleep_after == (2,)   # T_2, the one sleep
    assert resolve(faithful, "sequential,src").sleep_steps == 255
    for options, names, text in ((faithful, "sequential,src", "sequential,5,82.6,0.4\nsrc,5,82.6,0.4\n"),
                                 (nominal, "src", "src,5,85.0,1.0\n")):
        folder = tmp_path / "runs" / config.run_name(resolve(options, names))
        folder.mkdir(parents=True)
        (folder / "summary.csv").write_text("method,n,all_mean,all_std\n" + text)
    args = argparse.Namespace(dataset="mnist-fashion", nominal_lengths=True, fractions=["0.01"])
    rows = replay.rows(args)
    assert [r.methods for r in rows] == ["src"]
    done = [(r, sweep.finished(r)) for r in rows]
    assert sweep.sleep_table(replay.with_baseline(done), "f")[2] == "| 1 % | 82.6 ± 0.4 (n=5) | 85.0 ± 1.0 (n=5) | +2.4 |"
    with pytest.raises((SystemExit, config.ConfigError)) as refused:
        replay.rows(argparse.Namespace(dataset="fashion-mnist", nominal_lengths=True, fractions=None))
    assert "--nominal-lengths needs --dataset mnist-fashion" in capsys.readouterr().err + str(refused.value)


def test_sensitivity_rows_change_one_constant_and_the_table_gives_each_constants_range(tmp_path, monkeypatch):
    import sensitivity
    import sweep
    b = config.PRESETS["original"][1]["mnist"]["beta"]
    assert sensitivity.options("beta_2", 2.0) == ["--validation", "1000", "--beta", f"{b[0]:.6g}", f"{2 * b[1]:.6g}", f"{b[2]:.6g}"]
    assert sensitivity.options("inc", 1.0) == ["--validation", "1000"]   # x1: the authors' own, one folder
    cfg = config.resolve(config.DEFAULTS, [*sensitivity.options("alpha_scale", 0.5), "--methods", "src"])
    assert cfg.alpha_scale == pytest.approx(config.PRESETS["original"][1]["mnist"]["alpha_scale"] / 2, rel=1e-5)
    assert cfg.rate == config.PRESETS["original"][1]["mnist"]["rate"] and cfg.validation == 1000
    monkeypatch.chdir(tmp_path)
    rows = sensitivity.rows(argparse.Namespace(factors=[0.5, 2.0]))
    assert len(rows) == 21 and {r.methods for r in rows} == {"src"}
    for row, mean in ((rows[0], 40.0), (rows[1], 45.0), (rows[2], 30.0)):   # rate x0.5, x1, x2
        folder = tmp_path / "runs" / os.path.basename(sweep.folder(row))
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "summary.csv").write_text(f"method,n,all_mean,all_std\nsrc,5,{mean},1.0\n")
    lines = sensitivity.table([(r, sweep.finished(r)) for r in rows])
    assert lines[2] == "| rate | 239.515 | 40.0 ± 1.0 (n=5) | 45.0 ± 1.0 (n=5) | 30.0 ± 1.0 (n=5) | 15.0 |"
    assert lines[3].startswith("| inc | 0.032064 | not run | 45.0 ± 1.0 (n=5) | not run |")   # the shared x1 row


def test_ctrl_c_stops_a_sweep_in_one_line_and_its_table_shows_the_jobs_it_kept(tmp_path):
    # A sweep of one --quick row on a narrow network, twenty seeds (about a second each: the stop must land before
    # they are all done): Ctrl-C (SIGINT to the sweep, as a terminal sends it) once the first job is written. One line, no traceback; the row's table then counts the jobs that were kept.
    script = tmp_path / "one_row.py"
    script.write_text(f"""import sys; sys.path[:0] = [{ROOT!r}, {os.path.join(ROOT, 'studies')!r}]
import sweep
row = sweep.Row("quick", {NARROW!r}, "sequential", out={str(tmp_path / 'runs')!r})
sweep.run_rows([row], [str(s) for s in range(20)], 1, "one_row.py")
print(sweep.finished(row))
""")
    proc = subprocess.Popen([sys.executable, str(script)], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while not glob.glob(str(tmp_path / "runs" / "*" / "jobs" / "sequential-seed*.json")) and time.time() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    kept = len(glob.glob(str(tmp_path / "runs" / "*" / "jobs" / "sequential-seed*.json")))
    assert proc.returncode == 130 and 1 <= kept < 20, (out, err)
    assert err == f"one_row.py: stopped; {kept} finished jobs kept; run the same command to resume\n"
    import sweep
    got = sweep.finished(sweep.Row("quick", NARROW, "sequential", out=str(tmp_path / "runs")))
    assert got["sequential"][2] == kept   # the stopped row's summary is made from the jobs it kept


def test_two_identical_commands_share_the_jobs_and_compute_each_once(tmp_path, in_process):
    # Started together into a new folder: both exit 0, each job is computed by one of them (run.log has one
    # line per job), and both print the whole table.
    cmd = [sys.executable, "mnist_exp.py", "--quick", *SMALL, "--seeds", "4", "5", "--methods", "sequential,src",
           "--out", str(tmp_path), "--no-figures", "--quiet"]
    procs = [subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    (run_dir,) = glob.glob(str(tmp_path / "mnist-original-original-quick-*"))
    log = open(os.path.join(run_dir, "run.log")).read()
    for job in ("sequential seed 4", "sequential seed 5", "src seed 4", "src seed 5"):
        assert log.count(job + ": final") == 1, log
    assert all("| src | 2 |" in out for out, _ in outs)
    # a damaged job file is computed again, with a one-line notice; the others are kept
    open(os.path.join(run_dir, "jobs", "src-seed5.json"), "w").write('{"method": "src", "ro')
    proc = in_process(*cmd[1:])   # (one job: in this process, no start-up to pay)
    assert "src-seed5.json or .npz is damaged (JSONDecodeError); computing it again" in proc.stdout
    assert open(os.path.join(run_dir, "run.log")).read().count("src seed 5: final") == 2
    assert "1 of 4 jobs to run" in proc.stdout or "0 of 4 jobs to run" in proc.stdout
    # one that parses but lacks what the tables read: visualize.py says so in one line, the experiment recomputes it
    open(os.path.join(run_dir, "jobs", "src-seed5.json"), "w").write('{"method": "src", "seed": 5, "rows": [{"stage": "x"}]}')
    shown = in_process("visualize.py", run_dir)
    assert shown.returncode == 2 and len(shown.stderr.strip().splitlines()) == 1, shown.stderr
    assert "src-seed5.json is damaged (no stable_rank, time)" in shown.stderr
    proc = in_process(*cmd[1:])
    assert "src-seed5.json or .npz is damaged (no stable_rank, time); computing it again" in proc.stdout
    # a garbage .npz: the figures' one-line error, not a traceback
    open(os.path.join(run_dir, "jobs", "src-seed4.npz"), "wb").write(b"not a zip file")
    shown = in_process("visualize.py", run_dir)
    assert shown.returncode == 2 and "src-seed4.npz is damaged (ValueError)" in shown.stderr, shown.stderr
    assert len(shown.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("args, message", [
    (["--validation", "99999"], "--validation 99999 must leave training images of every class"),
    (["--train-limit", "10"], "--n-per-task 500: task 1 has only"),
    (["--n-per-task", "100000"], "--n-per-task 100000: task 1 has only"),
    (["--test-limit", "5"], "--probe-per-class 20: class 0 has only"),
])
def test_sizes_the_data_cannot_give_are_one_line_errors(tmp_path, in_process, args, message):
    proc = in_process("mnist_exp.py", "--quick", "--methods", "sequential", "--out", str(tmp_path), *args)
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert os.listdir(tmp_path) == []   # refused before the run folder is made


def nobody_can_run_the_checkout():
    """As root: whether user 65534 (nobody) can read this checkout, its Python and its packages (a checkout in a
    0700 home cannot be read by another user: then the test below cannot run as one)."""
    if os.geteuid() != 0:
        return True
    if not shutil.which("setpriv"):
        return False
    probe = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c",
                            "import torch, numpy, matplotlib"], cwd=ROOT, capture_output=True, timeout=120)
    return probe.returncode == 0 and os.access(ROOT, os.R_OK) and subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "test", "-r", os.path.join(ROOT, "mnist_exp.py")]
    ).returncode == 0


# python -c AS_SCRIPTS '[[SCRIPT, ARG, ...], ...]': runs each command's script as __main__ under its argv; its last line
# of output is [[exit code, stderr], ...]
AS_SCRIPTS = """import contextlib, io, json, runpy, sys
said = []
for argv in json.loads(sys.argv[1]):
    sys.argv, err, code = argv, io.StringIO(), 0
    try:
        with contextlib.redirect_stderr(err):
            runpy.run_path(argv[0], run_name="__main__")
    except SystemExit as stop:
        code = 0 if stop.code is None else stop.code
    said.append((code, err.getvalue()))
print(json.dumps(said))
"""


def test_folders_that_cannot_be_written_are_one_line_errors():
    if not nobody_can_run_the_checkout():
        pytest.skip("needs a user other than root who can read the checkout and its packages")
    base = tempfile.mkdtemp()   # root's pytest folders are closed to other users
    try:
        os.chmod(base, 0o777)
        locked = os.path.join(base, "locked")
        os.mkdir(locked, 0o555)
        os.chmod(locked, 0o555)
        open(os.path.join(base, "a-file"), "w").close()
        as_user = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] if os.geteuid() == 0 else []
        env = dict(os.environ, HOME=base, MPLCONFIGDIR=os.path.join(base, "mpl"))
        cases = (("--out", locked, locked), ("--out", os.path.join(base, "a-file"), None),
                 ("--png-dir", locked, os.path.join(base, "runs")))
        commands = [["mnist_exp.py", "--quick", "--methods", "sequential", "--out", out or folder] +
                    ([option, folder] if option != "--out" else []) for option, folder, out in cases]
        # the three commands in one process of that user (one start-up), each as `python mnist_exp.py ...` runs it
        proc = subprocess.run([*as_user, sys.executable, "-c", AS_SCRIPTS, json.dumps(commands)], cwd=ROOT,
                              capture_output=True, text=True, timeout=300, env=env)
        assert proc.returncode == 0, proc.stderr
        for (option, folder, _), (code, stderr) in zip(cases, json.loads(proc.stdout.splitlines()[-1]), strict=True):
            assert code == 2 and f"{option} {folder}: cannot write there" in stderr, stderr
            assert len(stderr.strip().splitlines()) == 1, stderr
    finally:
        shutil.rmtree(base)


@pytest.mark.parametrize("args", [
    ["visualize.py", "/no/such/run"], ["studies/bench_sleep.py", "--steps", "0"], ["studies/bench_sleep.py", "--junk"],
    ["studies/bridge.py", "--workers", "abc", "--run"], ["studies/replay.py", "--workers", "abc", "--run"],
    ["studies/tune.py", "--quick", "--storage", "junk://x", "--trials", "1"], ["studies/tune.py", "--trials", "0"],
])
def test_the_study_scripts_refuse_bad_input_in_one_line(args, tmp_path, in_process):
    out = ["--out", str(tmp_path / "out")] if args[0] == "studies/tune.py" else []
    proc = in_process(*args, *out)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith(f"{os.path.basename(args[0])}: error: "), line
    assert not (tmp_path / "out").exists()   # a refused study leaves no folder


def test_workers_finish_a_run_whose_sleeping_jobs_are_done(tmp_path, in_process):
    # Only sequential's job is left; the workers must accept the command's own --inc (it acts on src's jobs).
    common = ["mnist_exp.py", "--quick", *SMALL, "--inc", "0.05", "--seeds", "7", "--out", str(tmp_path), "--no-figures",
              "--quiet"]
    assert in_process(*common, "--methods", "src").returncode == 0
    proc = checked(in_process(*common, "--methods", "sequential,src", "--workers", "2"))   # (its workers: processes)
    assert "1 of 2 jobs to run" in proc.stdout and "| sequential | 1 |" in proc.stdout and "| src | 1 |" in proc.stdout


def test_reduced_data_sweep_reads_its_rows_run_folders(tmp_path, in_process):
    # One task of all ten digits, each epoch count with its script's constants; the training-set rows are
    # separate run folders (--score-on train).
    import reduced_data as reduced
    opts = reduced.options(20, "train")
    cfg = config.resolve(config.DEFAULTS, opts)
    assert (cfg.classes_per_task, cfg.lr, cfg.epochs, cfg.sleep_steps, cfg.inc, cfg.score_on) == (10, 0.01, 20, 20000, 0.089164, "train")
    folder = tmp_path / "elsewhere" / config.run_name(cfg)   # --out holds the rows' run folders, and the table
    folder.mkdir(parents=True)
    (folder / "summary.csv").write_text("method,n,all_mean,all_std\nsequential,5,60.0,1.0\nsrc,5,70.5,2.0\n")
    proc = in_process("studies/reduced_data.py", "--out", str(tmp_path / "elsewhere"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "elsewhere" / "reduced_data"
    table = {line.split(" | ")[0][2:]: line.split(" | ") for line in (out / "reduced_data.md").read_text().splitlines()[2:]}
    assert table["20 epochs, train accuracy"][1:4] == ["60.0 ± 1.0 (n=5)", "70.5 ± 2.0 (n=5)", "+10.5"]
    assert table["10 epochs, test accuracy"][1] == "not run" and len(table) == 9
    assert (out / "reduced_data.png").stat().st_size > 5000 and not (tmp_path / "runs").exists()


def fake_folder(root, options, methods, summary=None, jobs=None, results=None):
    """A run folder under root/runs for mnist_exp.py's options: summary {method: (mean, std, n)}, jobs
    {(method, seed): (final, nme final)}, results: results.csv's text."""
    cfg = config.resolve(config.DEFAULTS, [*options, "--methods", methods])
    folder = root / "runs" / config.run_name(cfg)
    (folder / "jobs").mkdir(parents=True)
    for (method, seed), (final, nme) in (jobs or {}).items():
        (folder / "jobs" / f"{method}-seed{seed}.json").write_text(json.dumps(dict(
            method=method, seed=seed, rows=[dict(stage="final", task_1=final, all=final)], nme=[dict(stage="final", all=nme)],
            stable_rank=[], time=dict(total=1.0))))
    if summary:   # written after the jobs, as a finished run writes it
        (folder / "summary.csv").write_text("method,n,all_mean,all_std\n" + "".join(
            f"{m},{n},{mean},{std}\n" for m, (mean, std, n) in summary.items()))
    if results:
        (folder / "results.csv").write_text(results)


def test_icarl_epoch_sweep_pairs_seeds_and_reads_the_epochs_saved_off_the_curve(tmp_path, monkeypatch):
    import icarl_epochs
    import sweep
    cfg = config.resolve(config.DEFAULTS, [*icarl_epochs.options("1000", "5"), "--methods", icarl_epochs.METHODS])
    assert (cfg.memory, cfg.epochs, cfg.task_order, cfg.preset, cfg.exemplars, cfg.distillation) == \
        (1000, 5, "random", "icarl-large", "herding", False)
    assert icarl_epochs.epochs_needed([(1, 40.0), (2, 50.0), (5, 80.0)], 65.0) == 3.5    # half way from 2 to 5
    assert icarl_epochs.epochs_needed([(1, 40.0), (2, 50.0)], 30.0) == 1
    assert icarl_epochs.epochs_needed([(1, 40.0), (2, 50.0)], 60.0) is None
    monkeypatch.chdir(tmp_path)
    for e, (alone, slept) in (("1", (40.0, 55.0)), ("2", (50.0, 70.0)), ("5", (80.0, 82.0))):
        fake_folder(tmp_path, icarl_epochs.options("100", e), icarl_epochs.METHODS,
                    summary={"icarl": (alone, 1.0, 3), "icarl-src": (slept, 1.0, 3), "icarl (NME)": (alone + 5, 1, 3),
                             "icarl-src (NME)": (slept + 5, 1, 3)},
                    jobs={("icarl", 0): (alone, 0), ("icarl", 1): (alone + 2, 0), ("icarl-src", 0): (slept, 0),
                          ("icarl-src", 1): (slept + 6, 0), ("icarl-src", 2): (99, 0)})   # seed 2: no pair
    args = argparse.Namespace(memory=["100"], epochs=["1", "2", "5"], dataset="mnist")
    results = [(row, sweep.finished(row)) for row in icarl_epochs.rows(args)]
    lines = icarl_epochs.table(results)
    first = lines[2].split(" | ")
    # paired over the seeds both finished: differences 15 and 19 -> 17 ± 2.8
    assert first[1:5] == ["1", "40.0 ± 1.0 (n=3)", "55.0 ± 1.0 (n=3)", f"+17.0 ± {np.std([15, 19], ddof=1):.1f}"]
    assert sweep.paired(results[0][0], "icarl", "icarl-src", nme=True)[0] == 0.0
    saved = {tuple(l.split(" | ")[1:3]): l.split(" | ")[4:6] for l in lines if l.startswith("| 100 | ")}
    # with sleep at 1 epoch (55 %): iCaRL alone reaches 55 at 2 + 5/30 * 3 = 2.5 epochs; at 2 (70 %): at 2 + 20/30 * 3 = 4.0
    assert saved[("argmax", "1")] == ["2.5", "+1.5 |"] and saved[("argmax", "2")] == ["4.0", "+2.0 |"]
    assert saved[("argmax", "5")] == ["> 5", " |"]
    assert icarl_epochs.figure(results).axes
    # a row whose iCaRL + sleep is still running: no paired difference from the job files it has so far
    fake_folder(tmp_path, icarl_epochs.options("200", "1"), icarl_epochs.METHODS, summary={"icarl": (30.0, 1.0, 2)},
                jobs={("icarl", 0): (30, 0), ("icarl", 1): (31, 0), ("icarl-src", 0): (40, 0), ("icarl-src", 1): (42, 0)})
    row = icarl_epochs.rows(argparse.Namespace(memory=["200"], epochs=["1"], dataset="mnist"))[0]
    line = icarl_epochs.table([(row, sweep.finished(row))])[2].split(" | ")
    assert line[2:5] == ["30.0 ± 1.0 (n=2)", "not run", ""]


def test_task2_length_rows_are_two_tasks_and_the_table_reads_each_stage(tmp_path, monkeypatch):
    import task2_length
    cfg = config.resolve(config.DEFAULTS, [*task2_length.options("fashion-mnist", "15"), "--methods", "sequential,src"])
    assert (cfg.n_tasks, cfg.task_epochs, cfg.dataset, cfg.preset, cfg.sleep_steps, cfg.sleep.length(2)) == \
        (2, (2, 15), "fashion-mnist", "original", 15000, 20000)
    assert cfg.rate == constants.ORIGINAL["fashion-mnist"]["rate"]
    monkeypatch.chdir(tmp_path)
    rows = "".join(f"{m},{s},{stage},{t1 + s},{t2},{(t1 + s + t2) / 2}\n" for s in (0, 1)
                   for m, stage, t1, t2 in (("sequential", "train_2", 0.0, 99.0), ("src", "train_2", 10.0, 98.0),
                                            ("src", "sleep_2", 80.0, 60.0)))
    fake_folder(tmp_path, task2_length.options("mnist", "5"), "sequential,src",
                results="method,seed,stage,task_1,task_2,all\n" + rows)
    args = argparse.Namespace(datasets=["mnist"], epochs=["5", "10"])
    lines = task2_length.table([(row, {}) for row in task2_length.rows(args)])
    cells = lines[2].split(" | ")
    assert cells[1:10] == ["5", "0.5 ± 0.7", "99.0 ± 0.0", "10.5 ± 0.7", "98.0 ± 0.0", "80.5 ± 0.7", "60.0 ± 0.0",
                           "49.8 ± 0.4", "70.2 ± 0.4"]   # no sleep overall: (0 + 99) / 2 and (1 + 99) / 2
    assert lines[2].endswith("| 2 |") and lines[3].endswith("| not run |")


def test_fashion_rehearsal_and_icarl_take_their_scripts_constants():
    import replay
    assert replay.options("0.1") == ["--replay", "0.1", "--preset", "replay-10"] and replay.options("0.25") == ["--replay", "0.25"]
    want = {"0": 239.515363, "0.01": 239.515363, "0.025": 142.445655, "0.05": 21.0, "0.1": 37.141606, "0.5": 37.141606}
    for fraction, rate in want.items():
        cfg = config.resolve(config.DEFAULTS, replay.options(fraction, "fashion-mnist"))
        assert (cfg.dataset, cfg.rate, cfg.replay) == ("fashion-mnist", rate, float(fraction))
    for memory, rate in (("50", 142.945655), ("500", 42.162268), ("1000", 20.0), ("20000", 20.0)):
        cfg = config.resolve(config.DEFAULTS, ["--dataset", "fashion-mnist", "--output", "linear-ce", "--methods",
                                               "icarl,icarl-src", "--memory", memory])
        assert (cfg.rate, cfg.lr, cfg.dropout, cfg.alpha_softmax) == (rate, 0.065, 0.2, True)
    # cross-modal: the script's constants by fraction (by equality, the rest the last), one sleep after task 2
    for fraction, rate in (("0", 226.894481), ("0.01", 36.472339), ("0.05", 131.962075), ("0.25", 37.722339)):
        cfg = config.resolve(config.DEFAULTS, [*replay.options(fraction, "mnist-fashion"), "--methods", "sequential,src"])
        assert (cfg.rate, cfg.sleep_after, cfg.sleep.length(2), cfg.sleep_data, cfg.n_per_task) == (rate, (2,), 255, "first", 0)
    import task2_length
    cfg = config.resolve(config.DEFAULTS, [*task2_length.options("mnist-fashion", "3"), "--methods", "sequential,src"])
    assert (cfg.task_epochs, cfg.rate, cfg.sleep_after, len(cfg.task_epochs)) == ((2, 3), 226.894481, (), 2)
    # iCaRL alone trains as the script does too (the same preset, whether or not iCaRL + sleep runs beside it)
    alone = config.resolve(config.DEFAULTS, ["--dataset", "fashion-mnist", "--output", "linear-ce", "--methods", "icarl",
                                             "--memory", "100"])
    assert (alone.preset, alone.lr, alone.dropout) == ("icarl-medium", 0.065, 0.2)
