"""The sleep's search from one's own loop (sleep_search.search_sleep), on a toy: a 144-16-16-4 network trained
with plain PyTorch on two tasks of synthetic 12 x 12 images, sleeps of a few hundred steps. Its scores are a
plain run's, its default centre the calibrated constants, its bad arguments one line each, and a stopped
search resumes to the uninterrupted one's trials; docs/own_search.py runs on a slice."""
import dataclasses
import os
import re
import subprocess
import sys
import time

import optuna
import pytest
import torch

import sleep_search
import src

TASKS = [(0, 1), (2, 3)]


def toy_data():
    """Four classes of 12 x 12 images in [0, 1] (a prototype each, plus noise): 60 training and 20 validation
    images per class."""
    g = torch.Generator().manual_seed(0)
    prototypes = torch.rand(4, 144, generator=g) ** 3
    y = torch.arange(4).repeat_interleave(80)
    x = (prototypes[y] + 0.2 * torch.rand(len(y), 144, generator=g)).clamp(0, 1)
    train = torch.cat([torch.arange(c * 80, c * 80 + 60) for c in range(4)])
    val = torch.cat([torch.arange(c * 80 + 60, c * 80 + 80) for c in range(4)])
    return x[train], y[train], x[val], y[val]


TRAIN_X, TRAIN_Y, VAL_X, VAL_Y = toy_data()


def model(seed):
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return torch.nn.Sequential(torch.nn.Linear(144, 16), torch.nn.ReLU(), torch.nn.Linear(16, 16), torch.nn.ReLU(),
                                   torch.nn.Linear(16, 4))


def mine(k):
    return torch.isin(TRAIN_Y, torch.tensor(TASKS[k - 1]))


def train_task(net, k, seed):
    """Plain SGD, cross-entropy, shuffled from (seed, k): the same network for the same arguments."""
    optimiser = torch.optim.SGD(net.parameters(), lr=0.2)
    x, y = TRAIN_X[mine(k)], TRAIN_Y[mine(k)]
    g = torch.Generator().manual_seed(1000 * seed + k)
    for _ in range(2):
        for batch in torch.randperm(len(x), generator=g).split(30):
            optimiser.zero_grad()
            torch.nn.functional.cross_entropy(net(x[batch]), y[batch]).backward()
            optimiser.step()
    return net


def score(net, seed):
    with torch.no_grad():
        return 100 * (net(VAL_X).argmax(1) == VAL_Y).float().mean().item()


def images(k):
    return TRAIN_X[mine(k)]


# the toy's constants: calibrated on seed 100's network after task 1, with sleeps of 300 and 400 steps
START = dataclasses.replace(src.calibrate(train_task(model(100), 1, 100), images(1), seed=100, steps=500),
                            steps=300, steps_increment=100)
TOY = dict(model=model, images=images, start=START, seeds=[100], max_spikes_per_step=1e6, quiet=True)


def plain_run(constants, seed):
    """The loop with a sleep after each task, as one writes it: src.sleep_model, then the validation score."""
    net = model(seed)
    for k in range(1, len(TASKS) + 1):
        net = train_task(net, k, seed)
        net, _ = src.sleep_model(net, images(k), constants, task=k, seed=sleep_search.sleep_seed(seed, k), progress=False)
    return score(net, seed)


def test_candidates_stopped_early_keep_their_scores_and_are_trained_no_further(monkeypatch):
    # plain values: a network is a number, training adds 10, a sleep adds its constant and stops at 2 or more;
    # the second candidate stops at the first sleep, the first at the second: training never gets an empty list
    monkeypatch.setattr(sleep_search, "broken", lambda net: False)
    trained = []
    train = lambda nets, k: trained.append(list(nets)) or [n + 10 for n in nets]
    sleep = lambda nets, k, each: ([n + c for n, c in zip(nets, each)], [dict(stopped=c >= 2 or k == 2) for c in each])
    finals = sleep_search.sleep_finals([1, 2], 0, [(1, True), (2, True), (3, True)], train, sleep, score=lambda n: n)
    assert finals == [12, 2] and trained == [[1]]


@pytest.mark.filterwarnings("ignore:Linear layer 2 of the model never fired")   # (a candidate's high threshold)
def test_the_search_scores_each_candidate_as_a_plain_run_of_its_constants():
    # three candidates slept together: the start first, two drawn 0.5 decades around it
    best, study = sleep_search.search_sleep(train_task, score, 2, trials=3, batch=3, decades=0.5, **TOY)
    assert study.trials[0].params == sleep_search.centre(START)
    values = [t.value for t in study.trials]
    assert values == [plain_run(sleep_search.constants_of(START, t.params), 100) for t in study.trials]
    assert len(set(values)) > 1   # the candidates differ (a sleep that changed nothing would pass the line above)
    assert best == sleep_search.constants_of(START, study.best_trial.params) and study.best_value == max(values)
    no_sleep = score(train_task(train_task(model(100), 1, 100), 2, 100), 100)
    assert values[0] != no_sleep


def test_the_default_centre_is_the_calibrated_constants_of_the_first_seeds_network():
    _, study = sleep_search.search_sleep(train_task, score, 1, model=model, images=images, seeds=[101], trials=1, quiet=True)
    calibrated = src.calibrate(train_task(model(101), 1, 101), images(1), seed=101)
    assert study.trials[0].params == sleep_search.centre(calibrated)


@pytest.mark.parametrize("change, name", [
    (dict(train_task=None), "train_task"), (dict(score="accuracy"), "score"), (dict(n_tasks=0), "n_tasks"),
    (dict(n_tasks=2.0), "n_tasks"), (dict(images=None), "images"), (dict(sleep=lambda *a: a), "images"),
    (dict(start="original"), "start"), (dict(start=dataclasses.replace(START, inc=0.0)), "start"),
    (dict(start=dataclasses.replace(START, beta=(1.0, 1.0), plasticity=(1.0, 1.0))), "start"),
    (dict(seeds=[]), "seeds"), (dict(seeds=[100, 100]), "seeds"), (dict(seeds=100), "seeds"), (dict(seeds=[-1]), "seeds"),
    (dict(trials=0), "trials"), (dict(batch=1.5), "batch"), (dict(decades=0), "decades"), (dict(decades=11), "decades"),
    (dict(prune=100), "prune"), (dict(max_spikes_per_step=0), "max_spikes_per_step"), (dict(sleep_after=[3]), "sleep_after"),
    (dict(storage=5), "storage"), (dict(study=""), "study"), (dict(storage="junk://x"), "storage"),
    (dict(stale_after=0), "stale_after"), (dict(train_together=[]), "train_together"),
])
def test_a_bad_argument_is_one_line_naming_it(change, name):
    kw = dict(dict(train_task=train_task, score=score, n_tasks=2, trials=1, **TOY), **change)
    with pytest.raises(ValueError) as err:
        sleep_search.search_sleep(**kw)
    assert str(err.value).startswith(name) and "\n" not in str(err.value), str(err.value)


def test_a_stopped_search_resumes_to_the_uninterrupted_search(tmp_path, monkeypatch):
    # two batches of two candidates; stopped in the second, then run again by the same call
    search = lambda storage, **kw: sleep_search.search_sleep(train_task, score, 2, trials=4, batch=2, decades=0.5,
                                                             storage=storage, **dict(TOY, **kw))
    best, whole = search(tmp_path / "whole.db")
    real, calls = sleep_search.sleep_finals, [0]

    def stops_at_the_second(*args, **kw):
        calls[0] += 1
        if calls[0] == 2:
            raise KeyboardInterrupt
        return real(*args, **kw)

    monkeypatch.setattr(sleep_search, "sleep_finals", stops_at_the_second)
    with pytest.raises(KeyboardInterrupt):
        search(tmp_path / "stopped.db")
    monkeypatch.setattr(sleep_search, "sleep_finals", real)
    assert len(optuna.load_study(study_name="search_sleep", storage=f"sqlite:///{tmp_path / 'stopped.db'}").trials) == 4   # 2 done, 2 left
    resumed_best, resumed = search(tmp_path / "stopped.db")
    trials_of = lambda study: [(t.number, t.state.name, t.params, t.value) for t in study.trials]
    assert trials_of(resumed) == trials_of(whole) and len(whole.trials) == 4 and resumed_best == best
    with pytest.raises(ValueError, match="^study search_sleep was made with other settings"):
        search(tmp_path / "stopped.db", seeds=[101])


@pytest.mark.slow
def test_the_own_search_example_tunes_a_users_network_end_to_end():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.run([sys.executable, "docs/own_search.py", "--limit", "6000", "--trials", "2", "--batch", "2"],
                          cwd=root, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    search, report = [l for l in proc.stdout.splitlines() if l.startswith(("search:", "seed 0"))]
    calibrated, best = (float(v) for v in re.findall(r"([\d.]+) %", search))
    assert search.startswith("search: 2 candidates") and best >= calibrated
    assert len(re.findall(r"([\d.]+) %", report)) == 3


def test_a_trial_left_running_by_a_killed_search_is_abandoned_and_one_stopped_by_ctrl_c_is_kept():
    study = optuna.create_study(direction="maximize")
    study.ask()   # a trial whose process was killed
    stopped = study.ask()
    stopped.set_user_attr("stopped", True)
    sleep_search.abandon_stale(study, 3600)   # both began just now: neither is stale yet
    assert [t.state.name for t in study.trials] == ["RUNNING", "RUNNING"]
    time.sleep(0.05)
    sleep_search.abandon_stale(study, 0.01)
    assert [t.state.name for t in study.trials] == ["FAIL", "RUNNING"]
