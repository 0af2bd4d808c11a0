import glob
import os
import runpy
import subprocess
import sys
import warnings
from types import SimpleNamespace

import pytest

_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [_root, os.path.join(_root, "studies")]   # the library and the studies, as the scripts import them

_THREADS = ("OMP_NUM_THREADS", "NUMBA_NUM_THREADS")
_given = {name for name in _THREADS if name in os.environ}   # the caller's own: kept
import codepath  # noqa: E402  (the runs' code paths and threads, before any test module loads torch)


def pytest_configure(config):
    """Under pytest-xdist the test processes share the cores: each gets its share of threads, as runner.py gives
    its workers (the scripts the tests start inherit it). Set here, in the process that starts them, before it
    does: they inherit its environment, where codepath has just set every core for one process (two test
    processes of two threads each on two cores spin-wait for each other's threads: several times slower)."""
    workers = len(getattr(config.option, "tx", None) or ())   # pytest-xdist's -n, resolved
    if workers and "PYTEST_XDIST_WORKER" not in os.environ:
        for name in set(_THREADS) - _given:
            os.environ[name] = str(max(1, codepath.CORES // workers))
        compile_the_sleep_kernel()


def compile_the_sleep_kernel():
    """In a fresh checkout, the numba kernel compiled once, here, before the test processes start: each would
    otherwise compile it at its first sleep, the scripts they launch too (tens of seconds of the cores each),
    until one has written numba's cache. Its signatures: float32 and float64 weights."""
    source = os.path.join(_root, "src.py")
    tag = f"py{sys.version_info.major}{sys.version_info.minor}"
    cached = glob.glob(os.path.join(_root, "__pycache__", f"src._numba_kernel-*.{tag}.nbi"))
    if any(os.path.getmtime(index) >= os.path.getmtime(source) for index in cached):
        return
    try:
        import torch
        import src
        spikes = torch.zeros(3, 4)
        spikes[:, 0] = 1
        for dtype in (torch.float32, torch.float64):
            src.sleep_on_spikes([torch.ones(2, 4, dtype=dtype), torch.ones(2, 2, dtype=dtype)], spikes.to(dtype),
                                [1.0, 1.0], [0.5, 0.5], inc=0.01, dec=0.001, engine="numba")
    except Exception as err:   # the tests that sleep say what is wrong, each in its own words
        warnings.warn(f"the sleep kernel was not compiled ahead of the tests ({type(err).__name__}: {err})")


@pytest.fixture
def in_process(monkeypatch, capsys):
    """in_process(PATH, *args, cwd=the root): `python PATH ARGS` run from cwd, in this process: the script's __main__
    code under that sys.argv, without the seconds a fresh interpreter spends importing torch and the rest (for
    a refusal, most of its time). Returns its exit code, stdout and stderr as subprocess.run names them."""
    import config   # (here: after the threads above are set)
    monkeypatch.setattr(config, "INTERACTIVE", False)   # as from a shell (the test process may hold ipykernel)
    def run(path, *args, cwd=_root):
        monkeypatch.setattr(sys, "argv", [path, *args])
        before, code = os.getcwd(), 0
        capsys.readouterr()   # this run's output only
        try:
            os.chdir(cwd)
            runpy.run_path(os.path.join(_root, path), run_name="__main__")
        except SystemExit as stop:
            code = 0 if stop.code is None else stop.code
        finally:
            os.chdir(before)
        out, err = capsys.readouterr()
        return SimpleNamespace(returncode=code, stdout=out, stderr=err)
    return run


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config, items):
    """--dist loadgroup: a test marked xdist_group(NAME) gets "@NAME" on its id, which sends the group to one worker.
    pytest-xdist 3.8 writes it where pytest 9 no longer reads an id (its groups were silently spread over the
    workers, each building the fixtures they share): written here where pytest reads it."""
    try:
        from _pytest.nodeid import coerce_node_id
    except ImportError:   # an older pytest, whose ids pytest-xdist still writes
        return
    if not getattr(config.option, "loadgroup", False):
        return
    for item in items:
        names = sorted({str(m.args[0] if m.args else m.kwargs.get("name", "default")) for m in item.iter_markers("xdist_group")})
        if names and "@" not in item.nodeid:
            item._id = coerce_node_id(f"{item.nodeid}@{'_'.join(names)}")


def git_status():
    proc = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=_root, capture_output=True, text=True)
    return proc.stdout if proc.returncode == 0 else None


@pytest.fixture(name="git_status")
def git_status_now():
    """git_status(): the checkout's changed and untracked files (None outside a git checkout)."""
    return git_status


@pytest.fixture(scope="session")
def quick_run(tmp_path_factory):
    """`python mnist_exp.py --quick`, seed 0 (the manifest's smoke entry), as a process of its own, made once: (its
    --out, its run folder, its stdout, (git status before, after)). Without its figures: test_experiment's test of
    visualize.py draws them, once. The tests that read it are marked xdist_group("quick_run"), so that one worker
    (--dist loadgroup) builds it."""
    out = tmp_path_factory.mktemp("runs")
    before = git_status()
    proc = subprocess.run([sys.executable, "mnist_exp.py", "--quick", "--seeds", "0", "--out", str(out), "--no-figures"],
                          cwd=_root, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (run_dir,) = glob.glob(str(out / "mnist-original-original-quick-*"))
    return out, run_dir, proc.stdout, (before, git_status())
