"""The search (studies/tune.py), in-process: its refusals, its batches on a toy objective, a stopped study
resumed, and the schedule it tunes against the one mnist_exp.py runs."""
import json

import optuna
import pytest

import config
import methods
import models
import runner
import sleep_search
import tune

# two tasks of a --quick run on a 20-20 network, one seed
TINY = ["--quick", "--n-tasks", "2", "--hidden", "20", "20", "--tune-seeds", "100", "--quiet"]


@pytest.mark.parametrize("argv, option", [
    (["--tune-seeds", str(2 ** 32)], "--tune-seeds"), (["--tune-seeds", "100", "3"], "--tune-seeds"),
    (["--decades", "inf"], "--decades"), (["--decades", "400"], "--decades"), (["--decades", "nan"], "--decades"),
    (["--start", "lwf"], "--start"),   # a preset of LwF's training: no sleep constants
    (["--start", "icarl-large", "--dataset", "fashion-mnist"], "--start"),   # beta_3 0: no log-uniform range around it
    (["--methods", "sequential"], "--methods"), (["--method", "ewc", "--one-by-one"], "--batch, --one-by-one"),
])
def test_bad_options_are_one_line_and_write_nothing(argv, option, tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        tune.main([*argv, "--out", str(tmp_path / "out")])
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert stop.value.code == 2 and line.startswith(f"tune.py: error: {option}"), line
    assert not (tmp_path / "out").exists()


def toy(candidates, seed):
    """A toy objective: the closer rate is to 1, the better (no network)."""
    return [-abs(c["rate"] - 1.0) * (1 + seed % 3) for c in candidates]


def toy_search(study, trials, batch=4, finals=toy):
    space = {"rate": ("log", (0.01, 100.0)), "inc": ("log", (0.01, 100.0))}
    sleep_search.run_trials(study, lambda t: tune.suggest(t, space, None), finals, [100, 101], trials, batch, 0,
                            lambda seed: optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False), quiet=True)


def test_a_batch_never_overshoots_the_trials_asked():
    for trials, batch, held in ((1, 4, 1), (6, 4, 6), (3, 1, 3)):
        study = optuna.create_study(direction="maximize")
        toy_search(study, trials, batch)
        assert len(study.trials) == held and all(t.state.name == "COMPLETE" for t in study.trials)


def trials_of(study):
    return [(t.number, t.state.name, t.params, t.value) for t in study.trials]


def test_a_search_stopped_at_any_batch_draws_what_an_uninterrupted_one_draws(tmp_path):
    # a toy objective (the real one: the test below); 5 batches of 4, stopped in the first and in the fourth,
    # each time by a new process's worth of state (a new study object on the same storage)
    whole = optuna.create_study(direction="maximize", storage=f"sqlite:///{tmp_path / 'a.db'}", study_name="s")
    toy_search(whole, 20)
    storage, calls = f"sqlite:///{tmp_path / 'b.db'}", [0]

    def stops_at(n):
        def finals(candidates, seed):
            calls[0] += 1
            if calls[0] == n:
                raise KeyboardInterrupt
            return toy(candidates, seed)
        return finals

    for n in (1, 7):   # two seeds a batch: the 1st call is batch 1's; then (batch 1 again) the 7th is batch 4's
        calls[0] = 0
        with pytest.raises(KeyboardInterrupt):
            toy_search(optuna.create_study(direction="maximize", storage=storage, study_name="s", load_if_exists=True),
                       20, finals=stops_at(n))
    stopped = optuna.load_study(study_name="s", storage=storage)
    assert [t.number for t in stopped.trials if t.state.name == "RUNNING"] == [12, 13, 14, 15]
    toy_search(stopped, 20)
    assert trials_of(stopped) == trials_of(whole) and len(whole.trials) == 20


@pytest.mark.slow
def test_a_stopped_study_resumes_to_the_uninterrupted_result(tmp_path, monkeypatch, capsys):
    # two batches of 4 candidates on two tasks; one run stopped by Ctrl-C while its first batch (the
    # authors' constants first) is in flight, resumed and stopped again in the second, then resumed to the end
    argv = [*TINY, "--trials", "8", "--batch", "4", "--study", "s"]
    tune.main([*argv, "--out", str(tmp_path / "whole")])
    real, calls = sleep_search.sleep_finals, [0]

    def stopped_at(n):
        def sleep_finals(*args, **kw):
            calls[0] += 1
            if calls[0] == n:
                raise KeyboardInterrupt
            return real(*args, **kw)
        return sleep_finals

    out = ["--out", str(tmp_path / "stopped")]
    for n in (1, 2):
        calls[0] = 0
        monkeypatch.setattr(sleep_search, "sleep_finals", stopped_at(n))
        capsys.readouterr()
        with pytest.raises(SystemExit) as stop:
            tune.main([*argv, *out])
        (line,) = capsys.readouterr().err.strip().splitlines()   # one line, no traceback
        assert stop.value.code == 130 and line.startswith("tune.py: stopped;"), line
    monkeypatch.setattr(sleep_search, "sleep_finals", real)
    tune.main([*argv, *out])
    load = lambda folder: optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / folder / 'tune-s' / 'study.db'}")
    whole, resumed = load("whole"), load("stopped")
    assert trials_of(resumed) == trials_of(whole) and len(whole.trials) == 8
    assert whole.trials[0].params["rate"] == 239.515363   # the authors' constants: evaluated, not lost
    best = lambda folder: json.load(open(tmp_path / folder / "tune-s" / "best.json"))
    assert best("stopped")["params"] == best("whole")["params"]
    assert best("stopped")["tuning"]["mean_final"] == best("whole")["tuning"]["mean_final"]


@pytest.mark.slow
@pytest.mark.parametrize("method", ["src", "lwf-src"])
def test_a_batch_trained_as_one_stack_scores_as_its_one_by_one_twin(method, tmp_path, monkeypatch):
    # four candidates on two tuning seeds and three tasks, their training stacked (the default) and one by one;
    # lwf-src: each network's own earlier outputs distilled
    argv = ["--method", method, "--quick", "--n-tasks", "3", "--hidden", "20", "20", "--tune-seeds", "100", "101",
            "--quiet", "--trials", "4", "--study", "s"]
    stacks, stack = [], models.stack
    monkeypatch.setattr(models, "stack", lambda nets: stacks.append(len(nets)) or stack(nets))
    tune.main([*argv, "--out", str(tmp_path / "stacked")])
    assert stacks and min(stacks) >= 2   # (trained as stacks of several candidates)
    made = len(stacks)
    tune.main([*argv, "--one-by-one", "--out", str(tmp_path / "alone")])
    assert len(stacks) == made   # (one by one: no stack)
    load = lambda folder: optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / folder / 'tune-s' / 'study.db'}")
    stacked, alone = load("stacked"), load("alone")
    assert trials_of(stacked) == trials_of(alone) and len(stacked.trials) == 4
    assert [t.intermediate_values for t in stacked.trials] == [t.intermediate_values for t in alone.trials]
    assert len({t.value for t in stacked.trials}) > 1   # candidates that differ


def test_the_schedule_says_which_task_trains_and_after_which_a_sleep_runs():
    cfg = config.resolve(config.DEFAULTS, ["--sleep-after", "2", "4"])
    steps = lambda method: methods.schedule(methods.METHODS[method], cfg, 5)
    assert steps("src") == steps("icarl-src") == [(1, False), (2, True), (3, False), (4, True), (5, False)]
    assert steps("sequential") == [(k, False) for k in range(1, 6)]
    assert steps("control") == [(5, False)] and steps("parallel") == [(0, False)]   # the last task alone; all at once
    assert methods.schedule(methods.METHODS["src"], config.DEFAULTS, 3) == [(1, True), (2, True), (3, True)]


@pytest.mark.slow
def test_sleep_after_2_tunes_what_mnist_exp_runs(monkeypatch):
    args, cfg, _ = tune.parse(["--quick", "--n-tasks", "3", "--hidden", "20", "20", "--sleep-after", "2", "--tune-seeds", "100"])
    ctx = runner.checked_data(cfg)
    assert methods.schedule(methods.METHODS["src"], cfg, 3) == [(1, False), (2, True), (3, False)]
    slept, sleep_task = [], methods.sleep_task
    monkeypatch.setattr(methods, "sleep_task", lambda nets, k, *a, **kw: slept.append(k) or sleep_task(nets, k, *a, **kw))
    args.trials = 1   # the first candidate: the authors' constants
    _, study = tune.src_search(args, cfg, ctx, optuna.create_study(direction="maximize"))
    assert study.trials[0].params == tune.centre(args, cfg)
    tuned = study.trials[0].value
    assert slept == [2]   # (the search used to sleep after every task)
    rec, _ = methods.run_method("src", 100, cfg, ctx, shared={}, analyses=False)
    assert slept == [2, 2] and [r["stage"] for r in rec["rows"]] == ["init", "train_1", "train_2", "sleep_2", "train_3", "final"]
    assert tuned == rec["rows"][-1]["all"] and 10 < tuned < 100
