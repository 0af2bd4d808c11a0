import copy
import json
import os

import pytest
import torch

import data
import own_networks
import src


def test_a_preset_on_one_hidden_layer_keeps_its_first_and_its_output_threshold():
    three = own_networks.preset("original", 3)
    two = own_networks.preset("original", 2)
    assert three.beta == (14.548273, 44.560317, 38.046326)
    assert two.beta == (14.548273, 38.046326) and two.plasticity == (1.0, 1.0) and two.rate == three.rate


def test_paired_is_each_seed_s_difference_from_no_sleep():
    recs = [dict(sleep="none", seed=0, accuracy=20.0), dict(sleep="none", seed=1, accuracy=30.0),
            dict(sleep="calibrated", seed=0, accuracy=50.0), dict(sleep="calibrated", seed=1, accuracy=56.0),
            dict(sleep="calibrated", seed=2, accuracy=99.0)]   # (seed 2 has no partner)
    (mean, sd, n, below), text = own_networks.paired(recs, "calibrated")
    assert (mean, n, below) == (28.0, 2, []) and sd == pytest.approx(2 ** 0.5 * 2) and text == "+28.0 ± 4.0"
    assert own_networks.paired(recs[:3], "calibrated") is None


@pytest.mark.slow
def test_a_tiny_study_writes_its_jobs_and_no_sleep_is_the_plain_loop(tmp_path, monkeypatch, in_process):
    # two tasks of one-hidden on a slice of MNIST: sleeps of 5 000 and 35 000 steps
    monkeypatch.setattr(own_networks, "TASKS", [(0, 1), (2, 3)])
    own_networks.study(["one-hidden"], ["none", "calibrated"], [0], str(tmp_path), limit=3000, quiet=True)
    folder = tmp_path / "own_networks_limit3000" / "one-hidden"   # a smoke test's own folder
    none, calibrated = (json.loads((folder / f"{s}-0.json").read_text()) for s in ("none", "calibrated"))
    setting = own_networks.Setting("one-hidden", 3000)
    labels = data.load("mnist")[1][:3000]
    assert len(setting.val_y) == sum(int((labels == c).sum()) // 5 for c in range(10))   # a fifth held out
    net = setting.model(0)
    for k in (1, 2):
        net = setting.train_task(net, k, 0)
    assert none["accuracy"] == setting.accuracy(net, setting.test_x, setting.test_y) and none["sleeps"] == []
    assert [s["steps"] for s in calibrated["sleeps"]] == [5000, 35000]
    assert calibrated["sleeps"][0]["rates"][0] == pytest.approx(src.INPUT_RATE, rel=0.15)   # the calibrated input
    assert calibrated["constants"]["inc"] == pytest.approx(src.INC * src.G_WIDTH)
    assert calibrated["config"]["reads"] == "task" and calibrated["config"]["spec"]["hidden"] == [256]
    (folder / "none-0.json").write_text("{")   # a damaged job file: one line naming it
    done = in_process("studies/own_networks.py", "--networks", "one-hidden", "--out", str(tmp_path), "--limit", "3000")
    assert done.returncode == 2 and "none-0.json cannot be read" in done.stderr and done.stderr.count("\n") == 1
    os.remove(folder / "none-0.json")
    done = in_process("studies/own_networks.py", "--networks", "one-hidden", "--out", str(tmp_path), "--limit", "3000")
    assert done.returncode == 0 and "| one-hidden |  | " in done.stdout and "(n=1)" in done.stdout
    assert not (tmp_path / "own_networks").exists()   # the whole study's folder is not touched


def test_a_task_trains_the_same_network_whatever_ran_before_it():
    # dropout's masks come from torch's global generator: train_task seeds it, so a job does not depend on the jobs
    # run before it in the process (a resumed study gives what an uninterrupted one gives)
    setting = own_networks.Setting("project", 2000)
    first = setting.train_task(setting.model(0), 1, 0)
    once = setting.train_task(copy.deepcopy(first), 2, 0)
    torch.rand(1000)   # anything else that draws from the global generator in between
    again = setting.train_task(copy.deepcopy(first), 2, 0)
    assert all(torch.equal(a, b) for a, b in zip(once.parameters(), again.parameters()))


def test_report_seeds_are_not_tuning_seeds(in_process, tmp_path):
    done = in_process("studies/own_networks.py", "--seeds", "100", "--out", str(tmp_path))
    assert done.returncode == 2 and "--seeds" in done.stderr and not os.listdir(tmp_path)
