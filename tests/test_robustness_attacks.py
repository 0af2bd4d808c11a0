"""studies/robustness.py's attacks (DeepFool, JSMA, Carlini-Wagner from the attack library): each on a network
small enough to follow by hand, their refusals, and a small run that writes what they measure."""
import glob
import json
import math
import os

import pytest
import torch

import config
import models
import robustness


@pytest.fixture(autouse=True)
def shell(monkeypatch):
    monkeypatch.setattr(config, "INTERACTIVE", False)   # refusals exit as from a shell


def linear(W2, n):
    """n inputs, n hidden ReLUs copying them (W1 = I), outputs W2 h: on images in [0, 1] every hidden unit is
    on, so the outputs are z = 0.8 W2 x (dropout 0.2 in evaluation), linear in x."""
    W1 = torch.eye(n)
    return models.Net([W1, W2], [torch.zeros_like(W1), torch.zeros_like(W2)])


def test_deepfool_moves_a_linear_network_to_its_boundary_by_the_known_distance_times_their_overshoot():
    """z = 0.8 x: at x = (0.6, 0.2), class 0, f = z_1 - z_0 = -0.32 and w = grad f = 0.8 (-1, 1), so the
    boundary is |f| / |w| = 0.32 / (0.8 sqrt 2) = 0.2 sqrt 2 away, along w: at (0.4, 0.4). Their step times
    1.05 ends at (0.39, 0.41), class 1."""
    net, x, y = linear(torch.eye(2), 2), torch.tensor([[0.6, 0.2]]), torch.tensor([0])
    adv = robustness.adversaries(net, "deepfool", x, y, 0.2)
    assert torch.allclose(adv, torch.tensor([[0.39, 0.41]]), atol=1e-6)
    assert models.predict(net, adv, 0.2).item() == 1
    got = robustness.attack_scores(net, x, y, adv)
    assert got["success"] == 100 and got["accuracy"] == 0 and got["median_l0"] == 2
    assert abs(got["median_l2"] - 1.05 * 0.2 * math.sqrt(2)) < 1e-6


def test_jsma_raises_the_two_most_salient_pixels_of_the_second_class_until_it_wins():
    """z = 0.8 (x_0, x_1 + x_2 / 2) (x_3 unused): at x = (0.5, 0.1, 0.1, 0), class 0 and the second class 1.
    Class 1's gradient is 0.8 (0, 1, 0.5, 0): pixels 1 and 2 rise by theta = 0.1 a step; after k steps
    z_1 / 0.8 = 0.15 (1 + k) against 0.5: k = 3 flips it, at (0.5, 0.4, 0.4, 0): 2 pixels, L2 0.3 sqrt 2."""
    W2 = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.5, 0.0]])
    net, x, y = linear(W2, 4), torch.tensor([[0.5, 0.1, 0.1, 0.0]]), torch.tensor([0])
    adv = robustness.adversaries(net, "jsma", x, y, 0.2)
    assert torch.allclose(adv, torch.tensor([[0.5, 0.4, 0.4, 0.0]]), atol=1e-6)
    got = robustness.attack_scores(net, x, y, adv)
    assert got["success"] == 100 and got["median_l0"] == 2 and abs(got["median_l2"] - 0.3 * math.sqrt(2)) < 1e-6


def test_carlini_wagner_flips_a_linear_network_near_the_smallest_distance():
    """The same network as DeepFool's: no image of another class is closer than 0.2 sqrt 2 (the boundary);
    CW's L2 search finds one a little past it (its last step overshoots; the search keeps the closest)."""
    net, x, y = linear(torch.eye(2), 2), torch.tensor([[0.6, 0.2]]), torch.tensor([0])
    got = robustness.attack_scores(net, x, y, robustness.adversaries(net, "cw", x, y, 0.2))
    assert got["success"] == 100 and 0.2 * math.sqrt(2) <= got["median_l2"] <= 1.1 * 0.2 * math.sqrt(2)


def test_attack_scores_count_only_the_images_the_network_had_right():
    """Three images: right and flipped (L2 0.5), right and kept, wrong from the start: success 1 of 2, accuracy
    1 of 3, the median over the one flipped."""
    net = linear(torch.eye(2), 2)
    x = torch.tensor([[0.6, 0.2], [0.9, 0.1], [0.2, 0.6]])
    y = torch.tensor([0, 0, 0])
    adv = torch.tensor([[0.3, 0.6], [0.8, 0.2], [0.2, 0.6]])
    got = robustness.attack_scores(net, x, y, adv)
    assert got == dict(accuracy=pytest.approx(100 / 3), success=50.0, median_l2=pytest.approx(0.5), median_l0=2.0)


def test_the_attacks_sleep_is_their_second_constant_vector():
    c = robustness.sleep_constants(robustness.SLEEP_ATTACKS)
    assert (c.rate, c.steps, c.alpha_scale, c.input) == (455.364521, 3365, 34.65787, "images")
    assert robustness.SLEEP_ATTACKS not in robustness.METHODS   # not a default method: the grids keep theirs


def test_an_attack_without_the_library_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(robustness, "attack_library", lambda: config.fail("no library", "robustness.py"))
    with pytest.raises(SystemExit) as stop:
        robustness.main(["--run", "--distortions", "cw", "--out", str(tmp_path / "out")])
    assert stop.value.code == 2 and capsys.readouterr().err == "robustness.py: error: no library\n"
    assert not os.path.exists(tmp_path / "out")


TINY = dict(n_train=200, n_test=100, n_finetune=50, steps=100, n_attack=10, n_finetune_attack=20)
ARGS = ["--quick", "--seeds", "0", "1", "--distortions", "deepfool", "jsma",
        "--methods", "control", "sleep-attacks", "finetune"]


def test_a_small_run_writes_what_the_attacks_measure_and_a_rerun_skips_finished_jobs(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(robustness, "QUICK", TINY)
    monkeypatch.setattr(robustness, "SIZES", (784, 64, 64, 10))
    robustness.main(["--run", *ARGS, "--out", str(tmp_path)])
    folder = tmp_path / "robustness_quick"
    assert len(glob.glob(str(folder / "attacks" / "seed*_*.json"))) == 6
    assert not os.path.exists(folder / "robustness.md")        # no grid asked: the grids' table is left alone
    rec = json.load(open(folder / "attacks" / "seed1_control.json"))
    assert rec["n_attack"] == 10 and rec["attacks"] == {k: robustness.ATTACKS[k] for k in ("deepfool", "jsma")}
    for s in rec["scores"].values():
        assert set(s) == {"clean", "accuracy", "success", "median_l2", "median_l0"} and s["clean"] > 0
    assert rec["scores"]["deepfool"]["success"] == 100             # DeepFool flips every image it had right
    assert rec["scores"]["deepfool"]["median_l0"] == 784 and rec["scores"]["jsma"]["median_l0"] < 784 / 2
    table = (folder / "robustness_attacks.md").read_text()
    assert "| sleep-attacks − control (± 2 SE) |" in table and "jsma (theta 0.1, gamma 0.6378)" in table
    assert table.count("| 2 |") == 2 * 5                          # 3 methods and 2 differences per attack, 2 seeds
    monkeypatch.setattr(robustness, "attack_job", lambda *a: pytest.fail("a finished job ran again"))
    capsys.readouterr()
    robustness.main(["--run", *ARGS, "--out", str(tmp_path)])
    assert "== seed" not in capsys.readouterr().out and (folder / "robustness_attacks.md").read_text() == table
