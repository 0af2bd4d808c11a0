"""End to end: the experiment script and visualize.py as a user runs them, on a --quick budget."""
import csv
import glob
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STAGES = {
    "sequential": ["init"] + [f"train_{k}" for k in range(1, 6)] + ["final"],
    "src": ["init"] + [s for k in range(1, 6) for s in (f"train_{k}", f"sleep_{k}")] + ["final"],
    "merging": ["init"] + [f"train_{k}" for k in range(1, 6)] + ["merged", "final"],
    "parallel": ["init", "train_all", "final"],
    "ewc": ["init"] + [f"train_{k}" for k in range(1, 6)] + ["final"],
    "si": ["init"] + [f"train_{k}" for k in range(1, 6)] + ["final"],
}


def run(*args, check=True):
    proc = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=900)
    if check and proc.returncode:
        raise AssertionError(proc.stdout + proc.stderr)
    return proc


def read_csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    proc = run("mnist_exp.py", "--quick", "--seeds", "3", "--methods", ",".join(STAGES), "--out", str(out),
               "--png-dir", str(out / "png"))
    (run_dir,) = glob.glob(str(out / "mnist-original-quick-*"))
    return out, run_dir, proc.stdout


def test_quick_run_writes_results_config_and_figures(quick_run):
    out, run_dir, stdout = quick_run
    rows = read_csv(os.path.join(run_dir, "results.csv"))
    assert list(rows[0]) == ["method", "seed", "stage", "task_1", "task_2", "task_3", "task_4", "task_5", "all"]
    for method, stages in STAGES.items():
        mine = [r for r in rows if r["method"] == method]
        assert [r["stage"] for r in mine] == stages and {r["seed"] for r in mine} == {"3"}
        assert all(0 <= float(r[c]) <= 100 for r in mine for c in r if c.startswith("task_") or c == "all")
        assert mine[-1] == dict(mine[-2], stage="final")
    # a trained task is learned well above chance, even on the quick budget; methods share their first stages
    first = {m: next(r for r in rows if r["method"] == m and r["stage"] == "train_1") for m in ("sequential", "src", "ewc")}
    assert float(first["sequential"]["task_1"]) > 80
    assert dict(first["src"], method="") == dict(first["sequential"], method="") == dict(first["ewc"], method="")
    ranks = read_csv(os.path.join(run_dir, "stable_rank.csv"))
    assert len(ranks) == len(rows) - len(STAGES) and all(float(r["layer_1"]) >= 1 for r in ranks)
    with open(os.path.join(run_dir, "config.json")) as f:
        config = json.load(f)
    assert config["lr"] == 0.1 and config["seeds"] == [3] and config["quick"] is True
    assert config["inc"] == 0.032064 and config["beta"] == [14.548273, 44.560317, 38.046326]
    assert {"torch", "numpy", "commit", "device"} <= set(config["versions"])
    for method in STAGES:
        with open(os.path.join(run_dir, "jobs", f"{method}-seed3.json")) as f:
            job = json.load(f)
        assert job["time"]["total"] > 0 and job["versions"]["torch"]
    assert len(job["sleep"]) == 0 and "| src | 1 |" in open(os.path.join(run_dir, "summary.md")).read()
    for name in ["accuracy.png", "stable_rank.png"] + [f"activations_{m}.png" for m in STAGES]:
        assert os.path.getsize(out / "png" / name) > 10000, name


def test_sleep_records_scale_factors_and_activity(quick_run):
    _, run_dir, _ = quick_run
    with open(os.path.join(run_dir, "jobs", "src-seed3.json")) as f:
        sleeps = json.load(f)["sleep"]
    assert [s["steps"] for s in sleeps] == [1000, 1500, 2000, 2500, 3000]
    assert all(len(s["alpha"]) == 3 and min(s["alpha"]) > 0 for s in sleeps)
    assert all(5 < s["spikes_per_step"][0] < 30 for s in sleeps)   # the 11 x 11 window fires ~12 inputs per step


def test_rerun_skips_finished_jobs_and_tolerates_kernel_arguments(quick_run):
    out, run_dir, _ = quick_run
    before = open(os.path.join(run_dir, "results.csv")).read()
    # as an interactive window runs it: ipykernel loaded, its own arguments on the command line
    code = ("import runpy, sys, types; sys.modules['ipykernel'] = types.ModuleType('ipykernel'); "
            f"sys.argv = ['mnist_exp.py', '-f', 'kernel-1.json', '--quick', '--seeds', '3', '--out', {str(out)!r}, "
            "'--no-figures']; runpy.run_path('mnist_exp.py', run_name='__main__')")
    proc = run("-c", code)
    assert "0 of 4 jobs to run" in proc.stdout    # the default four methods, all finished
    assert open(os.path.join(run_dir, "results.csv")).read() == before


def test_same_seed_same_numbers(quick_run, tmp_path):
    _, run_dir, _ = quick_run
    run("mnist_exp.py", "--quick", "--seeds", "3", "--methods", "src,sequential", "--out", str(tmp_path), "--no-figures", "--quiet")
    (again,) = glob.glob(str(tmp_path / "mnist-original-quick-*"))
    assert os.path.basename(again) == os.path.basename(run_dir)
    mine = [r for r in read_csv(os.path.join(run_dir, "results.csv")) if r["method"] in ("src", "sequential")]
    assert read_csv(os.path.join(again, "results.csv")) == mine


def test_visualize_rebuilds_figures_from_the_run_folder(quick_run, tmp_path):
    _, run_dir, _ = quick_run
    run("visualize.py", run_dir, "--png-dir", str(tmp_path))
    assert sorted(os.listdir(tmp_path)) == sorted(["accuracy.png", "stable_rank.png"] + [f"activations_{m}.png" for m in STAGES])


@pytest.mark.parametrize("args, message", [
    (["--lr", "-1"], "lr must be > 0"),
    (["--methods", "src,ewc9"], "unknown method 'ewc9'"),
    (["--beta", "1", "2"], "beta needs one positive value per layer"),
    (["--plasticity", "1,0"], "plasticity needs one value >= 0 per layer"),
    (["--dropout", "1.5"], "dropout must be in [0, 1)"),
    (["--bogus"], "unrecognized arguments: --bogus"),
    (["--preset", "nope"], "no sleep preset 'nope'"),
])
def test_bad_configuration_is_a_clear_error(args, message):
    proc = run("mnist_exp.py", *args, check=False)
    assert proc.returncode != 0 and message in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_tune_smoke_saves_a_preset_and_resumes(tmp_path):
    cmd = ["tune.py", "--quick", "--trials", "2", "--batch", "2", "--tune-seeds", "100", "--storage",
           f"sqlite:///{tmp_path}/t.db", "--preset-dir", str(tmp_path), "--preset", "smoke"]
    run(*cmd)
    with open(tmp_path / "smoke.json") as f:
        preset = json.load(f)["mnist"]
    assert set(preset["constants"]) == {"rate", "inc", "dec", "beta", "alpha_scale", "sleep_input"}
    assert len(preset["constants"]["beta"]) == 3 and preset["constants"]["sleep_input"] == "mean"
    assert preset["tuning"]["trials"] == 2 and preset["tuning"]["seeds"] == [100]
    assert 0 < preset["tuning"]["mean_final"] <= 100
    again = run(*cmd)                                  # the study is stored: nothing left to do
    assert "best of 2 trials" in again.stdout
