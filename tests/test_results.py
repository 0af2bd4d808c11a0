"""Reading run folders (results.py): jobs checked when read, the table of the jobs asked for, a sweep's rows ending
with it however it stops, and every study script either running or saying it is a library."""
import csv
import glob
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import config
import results
import runner

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SLEEP_KEYS = dict.fromkeys(runner.SLEEP_ANALYSES[1:], [])


def record(method="src", seed=0, final=60.0):
    """A job's record as run_method writes it (two tasks, a sleep after each), with made-up numbers."""
    stages = ["init", "train_1", "sleep_1", "train_2", "sleep_2"]
    rows = [dict(stage=s, task_1=90.0, task_2=10.0 * k, all=50.0, task_il=95.0) for k, s in enumerate(stages)]
    return dict(method=method, seed=seed, tasks=[[0, 1], [2, 3]],
                rows=rows + [dict(rows[-1], stage="final", all=final)],
                stable_rank=[dict(stage=s, layer_1=3.0, layer_2=2.0) for s in stages],
                capacity=[dict(stage=s, layers=[dict(dims=[3, 4], overlap=[[1.0, 0.2], [0.2, 1.0]])]) for s in stages],
                synthetic=[dict(stage=f"synthetic_{k}", task_1=50.0, task_2=5.0, all=30.0, task_il=60.0) for k in (1, 2)],
                nme=[], analysis=[dict(task=k, **SLEEP_KEYS) for k in (1, 2)],
                sleep=[dict(task=k, steps=100) for k in (1, 2)], time=dict(train=1.0, sleep=1.0, eval=0.5, total=2.5),
                kept_bytes=0, kept_what="nothing")


def write_job(run_dir, rec):
    os.makedirs(os.path.join(run_dir, "jobs"), exist_ok=True)
    path = runner.job_path(run_dir, rec["method"], rec["seed"])
    with open(path + ".json", "w") as f:
        json.dump(rec, f)
    np.savez(path + ".npz", labels=np.zeros(3))


def broken(change):
    rec = record()
    change(rec)
    return rec


# (what was changed, the record, the words of the problem)
NOT_JOBS = [
    ("a stage renamed", broken(lambda r: r["rows"][2].update(stage="nap_1")), "rows: a stage 'nap_1' that is not one"),
    ("a synthetic network of a sleep it has not", broken(lambda r: r["synthetic"][0].update(stage="synthetic_3")),
     "synthetic: a stage 'synthetic_3' that is not one"),
    ("an accuracy as a string", broken(lambda r: r["rows"][1].update(all="50.0")), "rows: a value that is not a number"),
    ("an accuracy null", broken(lambda r: r["rows"][-1].update(task_2=None)), "rows: a value that is not a number"),
    ("a seed as a string", broken(lambda r: r.update(seed="0")), "a method that is not a name or a seed that is not a whole number"),
    ("the total time null", broken(lambda r: r["time"].update(total=None)), "no total time, or a time that is not a number"),
    ("the stable ranks missing", broken(lambda r: r.pop("stable_rank")), "no stable_rank"),
    ("a stable rank's stage missing", broken(lambda r: r["stable_rank"].pop(2)), "stable ranks or capacity not of the stages of its rows"),
    ("a sleep's analyses without their keys", broken(lambda r: r["analysis"][1].pop("weights")),
     "sleeps' analyses without their keys, or of a sleep its rows do not have"),
    ("no last stage final", broken(lambda r: r["rows"].pop()), "rows without the accuracy on each task and on all, or without a last stage 'final'"),
    ("a task's column missing", broken(lambda r: r["rows"][3].pop("task_2")), "rows: columns that differ between stages"),
    ("a list, not a record", [1, 2], "a JSON list, not a job's record"),
]


def test_a_record_as_run_method_writes_it_is_a_job():
    assert runner.record_problem(record(), "src", 0) == ""
    assert runner.record_problem(record(), "src", 1) == "the record of src seed 0"   # another job's file


@pytest.mark.parametrize("what, rec, problem", NOT_JOBS, ids=[c[0] for c in NOT_JOBS])
def test_a_json_that_is_not_a_job_is_not_taken_for_finished(tmp_path, capsys, what, rec, problem):
    # the experiment computes it again, with a one-line notice; the tables name it in one line (exit 2)
    write_job(str(tmp_path), dict(record(seed=1)))
    os.makedirs(tmp_path / "jobs", exist_ok=True)
    with open(runner.job_path(str(tmp_path), "src", 0) + ".json", "w") as f:
        json.dump(rec, f)
    assert runner.record_problem(rec, "src", 0) == problem
    assert not runner.job_done(str(tmp_path), "src", 0)
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and f"src-seed0.json or .npz is damaged ({problem}); computing it again" in out
    assert runner.job_done(str(tmp_path), "src", 1)
    with pytest.raises(SystemExit) as stop:
        results.tables(str(tmp_path))
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.count("\n") == 1 and f"src-seed0.json is damaged ({problem}): delete it" in err
    assert not (tmp_path / "summary.md").exists()


def test_jobs_whose_stages_differ_between_seeds_are_named_in_one_line(tmp_path, capsys):
    # each job well formed on its own, but seed 1 has no second sleep: the tables and figures could not stack them
    write_job(str(tmp_path), record(seed=0))
    short = record(seed=1)
    for key in ("rows", "stable_rank", "capacity"):
        short[key] = [r for r in short[key] if r["stage"] != "sleep_2"]
    short["synthetic"], short["analysis"], short["sleep"] = short["synthetic"][:1], short["analysis"][:1], short["sleep"][:1]
    assert runner.record_problem(short, "src", 1) == ""
    write_job(str(tmp_path), short)
    with pytest.raises(SystemExit):
        results.read_jobs(str(tmp_path))
    assert "src-seed1.json is damaged (its stages or tasks differ from those of src seed 0)" in capsys.readouterr().err


def test_the_job_files_name_is_read_as_it_is_written(tmp_path):
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    for name in ("src-seed3.json", "src-seed3.npz", "src-seed3.lock", ".src-seed3.4242.tmp.json", "icarl-src-seed12.json",
                 "notes.json", "src-seedx.json"):
        (jobs / name).write_text("")
    assert results.jobs_in(str(tmp_path)) == [("icarl-src", 12), ("src", 3)]
    assert runner.job_path(str(tmp_path), "icarl-src", 12) + ".json" == str(jobs / "icarl-src-seed12.json")


def test_the_table_is_the_jobs_asked_for_and_names_the_others_apart(tmp_path):
    for method, seed, final in (("src", 0, 60.0), ("src", 1, 70.0), ("sequential", 0, 20.0), ("src", 2, 80.0)):
        write_job(str(tmp_path), record(method, seed, final))
    text = results.asked_table(str(tmp_path), [("src", 0), ("src", 2)])   # what mnist_exp.py prints
    assert "| src | 2 | **70.0 ± 14.1** |" in text and "| sequential |" not in text
    assert text.count("also holds") == 1 and "the run folder also holds: sequential seed 0; src seed 1 (" in text
    assert not (tmp_path / "summary.md").exists()   # printing writes nothing
    every = results.tables(str(tmp_path))   # the folder's files: every job, and no such line
    assert [(r["method"], len(r["seeds"])) for r in every] == [("sequential", 1), ("src", 3)]
    assert "also holds" not in (tmp_path / "summary.md").read_text()
    assert {r["seed"] for r in csv.DictReader(open(tmp_path / "results.csv"))} == {"0", "1", "2"}


@pytest.mark.parametrize("argv", [["--seeds", "0", "--seeds", "1"], ["--seeds=0", "--seeds", "1"],
                                  ["--methods", "src", "--hidden", "10", "--methods", "sequential"]])
def test_a_repeated_list_option_is_refused_in_one_line(argv, capsys):
    option = argv[0].split("=")[0] if argv[0].startswith("--seeds") else "--methods"
    with pytest.raises(SystemExit) as stop:
        config.resolve(config.DEFAULTS, argv, "mnist_exp.py")
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.count("\n") == 1
    assert err.startswith(f"mnist_exp.py: error: {option} is given more than once")
    assert config.resolve(config.DEFAULTS, ["--seeds", "0", "1", "--lr", "0.1", "--lr", "0.2"]).seeds == (0, 1)


# ---------------------------------------------------------------- the scripts (minutes)
NARROW = ["--quick", "--hidden", "20", "20"]   # a --quick row: five tasks, each job seconds on a 20-20 network


def row_processes(tmp_path):
    """The processes whose command line names tmp_path (a row's mnist_exp.py and its workers)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().decode(errors="replace")
            with open(f"/proc/{pid}/stat") as f:
                zombie = f.read().rsplit(")", 1)[1].split()[0] == "Z"
        except OSError:
            continue
        if str(tmp_path) in cmd and "one_row.py" not in cmd and not zombie:
            found.append(int(pid))
    return found


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "kill -9"])
def test_every_way_a_sweep_stops_ends_its_rows_processes(tmp_path, how):
    # a sweep of one --quick row on a narrow network, twenty seeds (each job takes about a second: the stop
    # must land before they are all done), two workers: stopped once its first job is written
    script = tmp_path / "one_row.py"
    script.write_text(f"""import sys; sys.path[:0] = [{ROOT!r}, {os.path.join(ROOT, 'studies')!r}]
import sweep
row = sweep.Row("quick", {NARROW!r}, "sequential", out={str(tmp_path / 'runs')!r})
sweep.run_rows([row], [str(s) for s in range(20)], 2, "one_row.py")
""")
    proc = subprocess.Popen([sys.executable, str(script)], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.time() + 300
    while not glob.glob(str(tmp_path / "runs" / "*" / "jobs" / "sequential-seed*.json")) and time.time() < deadline:
        time.sleep(0.2)
    assert row_processes(tmp_path)   # the row's mnist_exp.py (and its workers)
    proc.send_signal(how)
    out, err = proc.communicate(timeout=120)
    kept = len(glob.glob(str(tmp_path / "runs" / "*" / "jobs" / "sequential-seed*.json")))
    if how == signal.SIGTERM:   # forwarded and awaited: nothing of the row is left when the sweep has ended
        assert proc.returncode == 130 and err == f"one_row.py: stopped; {kept} finished jobs kept; run the same command to resume\n"
        assert row_processes(tmp_path) == []
    else:   # the system tells the row its parent died
        assert proc.returncode == -signal.SIGKILL
        while row_processes(tmp_path) and time.time() < deadline:
            time.sleep(0.2)
        assert row_processes(tmp_path) == []
    assert 1 <= kept < 20


STUDIES = sorted(os.path.basename(p) for p in glob.glob(os.path.join(ROOT, "studies", "*.py")))

# Every study's `--help` in one interpreter of its own (one start-up, not one per study), each as `python
# studies/NAME.py --help` starts it: its folder first on the import path, the root not, and the studies' first
# import run afresh. What one interpreter cannot show: the project's modules an earlier study loaded stay loaded
# (unloading torch's or numba's users crashes the interpreter; that a study imports project.py before them is
# test_architecture's), and a warning Python shows once per process shows for the first study only.
HELP_EVERY_STUDY = """
import contextlib, io, json, os, runpy, sys, traceback
root, out = os.getcwd(), {}
studies, path = os.path.join(root, "studies"), [p for p in sys.path if p not in ("", root)]
for name in sys.argv[1:]:
    sys.argv, sys.path[:] = [os.path.join("studies", name), "--help"], [studies, *path]
    sys.modules.pop("project", None)
    stdout, stderr, code = io.StringIO(), io.StringIO(), 0
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        try:
            runpy.run_path(os.path.join(studies, name), run_name="__main__")
        except SystemExit as stop:
            code = stop.code if isinstance(stop.code, int) else 0 if stop.code is None else 1
        except Exception:
            code = 1
            traceback.print_exc()
    out[name] = [code, stdout.getvalue(), stderr.getvalue()]
    os.chdir(root)
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def every_study_help():
    proc = subprocess.run([sys.executable, "-c", HELP_EVERY_STUDY, *STUDIES], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.splitlines()[-1])


@pytest.mark.slow
@pytest.mark.xdist_group("study_help")
@pytest.mark.parametrize("name", STUDIES)
def test_every_study_file_runs_from_the_root_or_says_it_is_a_library(name, every_study_help):
    code, stdout, stderr = every_study_help[name]
    if code == 0:
        assert stdout.startswith("usage:") and stderr == "", stderr
    else:
        assert code == 2 and stdout == "", stdout
        assert stderr.startswith(f"{name}: error: a library, not a study") and stderr.count("\n") == 1, stderr


@pytest.mark.slow
def test_the_printed_table_is_the_command_s_and_a_bad_job_file_is_computed_again(tmp_path, in_process):
    # (two tasks of a 20-20 network: the tables and job files are what is checked, not the numbers)
    cmd = ["mnist_exp.py", "--quick", "--n-tasks", "2", "--hidden", "20", "20", "--methods", "sequential",
           "--out", str(tmp_path), "--no-figures", "--quiet"]
    done = in_process(*cmd, "--seeds", "0", "1")   # (in this process: the script's process is test_experiment's quick_run)
    assert done.returncode == 0, done.stderr
    (run_dir,) = glob.glob(str(tmp_path / "mnist-original-original-quick-*"))
    one = in_process(*cmd, "--seeds", "0")
    assert "| sequential | 1 |" in one.stdout and "the run folder also holds: sequential seed 1 (" in one.stdout
    path = runner.job_path(run_dir, "sequential", 1) + ".json"
    rec = json.load(open(path))
    rec["rows"][1]["stage"] = "train_one"   # valid JSON, not a job
    json.dump(rec, open(path, "w"))
    shown = in_process("visualize.py", run_dir)
    assert shown.returncode == 2 and shown.stderr.count("\n") == 1, shown.stderr
    assert "sequential-seed1.json is damaged (rows: a stage 'train_one' that is not one)" in shown.stderr
    assert not os.path.exists(os.path.join(run_dir, "png"))   # nothing written
    again = in_process(*cmd, "--seeds", "0", "1")
    assert again.returncode == 0 and "| sequential | 2 |" in again.stdout, again.stderr
    assert "sequential-seed1.json or .npz is damaged (rows: a stage 'train_one' that is not one); computing it again" \
        in again.stdout
    assert json.load(open(path))["rows"][1]["stage"] == "train_1"
