"""studies/robustness.py: the FGSM of the attack library against the authors' formula on a network small enough
to check by hand, the blur and the noise on toy images, each refusal, and a small run that writes the table and
the figures, resumes and stops cleanly."""
import glob
import json
import math
import os
import sys

import pytest
import torch

import config
import models
import robustness


@pytest.fixture(autouse=True)
def shell(monkeypatch):
    monkeypatch.setattr(config, "INTERACTIVE", False)   # refusals exit as from a shell


def toy():
    """3 inputs, 2 hidden ReLUs, 2 ReLU outputs. At x = (0.5, 0.25, 0.0625), label 1: hidden (0.21875, 0.25),
    times 0.8 (dropout 0.2 in evaluation); outputs z = 0.8 (0.21875, -0.15625), so a = (0.175, 0) and their
    error signal a - y = (0.175, -1) (the output ReLU's derivative left out, as nnbp_adversary). Back through
    W2: 0.8 (1.175, -0.25); through W1: 0.8 (1.05, -1.425, 0.4125): signs (+, -, +). The gradient of the true
    squared error would zero the second output's signal (z_2 < 0) and give 0.8 * 0.175 * W1[0], signs (+, -, -)."""
    W1 = torch.tensor([[1.0, -1.0, -0.5], [0.5, 1.0, -4.0]])
    W2 = torch.tensor([[1.0, 0.0], [-1.0, 0.25]])
    return models.Net([W1, W2], [torch.zeros_like(W1), torch.zeros_like(W2)])


def test_the_library_fgsm_is_the_authors_formula_on_a_hand_checked_network():
    net, x, y = toy(), torch.tensor([[0.5, 0.25, 0.0625]]), torch.tensor([1])
    assert torch.equal(robustness.fgsm_signs(net, x, y, 0.2), torch.tensor([[1.0, -1.0, 1.0]]))
    # x + eps sign, clipped to [0, 1]: at eps 0.25 nothing clips; at 0.75 two pixels do
    assert torch.equal(robustness.fgsm(net, x, y, 0.25, 0.2), torch.tensor([[0.75, 0.0, 0.3125]]))
    assert torch.equal(robustness.fgsm(net, x, y, 0.75, 0.2), torch.tensor([[1.0, 0.0, 0.8125]]))
    assert torch.equal(robustness.fgsm(net, x, y, 0.0, 0.2), x)
    # one step per pixel (the fine-tuning images), a zero step among them (rand's draws include 0; ART refuses it)
    signs = robustness.fgsm_signs(net, x, y, 0.2)
    eps = torch.tensor([[0.25, 0.0, 0.5]])
    assert torch.equal(robustness.perturbed(x, signs, eps), torch.tensor([[0.75, 0.25, 0.5625]]))
    assert torch.equal(robustness.perturbed(x, signs, 0.25), robustness.fgsm(net, x, y, 0.25, 0.2))


def test_fgsm_of_the_intended_distillation_follows_the_softmax_error_signal():
    """At T = 1 their error signal is softmax(z) - y. With W2's second row (-1, 0.5): hidden 0.8 (0.21875, 0.25),
    z = 0.8 (0.21875, -0.09375), label 1: the signal is (p_0, p_1 - 1) = p_0 (1, -1) with p_0 = 1 - p_1 > 0;
    through W2: p_0 (2, -0.5); through W1: p_0 (2 - 0.25, -2 - 0.5, -1 + 2) = p_0 (1.75, -2.5, 1), times 0.8."""
    net = toy()
    net = models.Net([net.W[0], torch.tensor([[1.0, 0.0], [-1.0, 0.5]])], net.vW, output="linear")
    x, y = torch.tensor([[0.5, 0.25, 0.0625]]), torch.tensor([1])
    assert torch.equal(robustness.fgsm_signs(net, x, y, 0.2), torch.tensor([[1.0, -1.0, 1.0]]))
    assert torch.equal(robustness.fgsm(net, x, y, 0.5, 0.2), torch.tensor([[1.0, 0.0, 0.5625]]))


def test_blur_is_imgaussfilt_on_hand_computed_images():
    e = math.exp(-2)                        # sigma 0.5: kernel 2 ceil(1) + 1 = 3 wide, (e^-2, 1, e^-2) / (1 + 2 e^-2)
    dot = torch.zeros(1, 25)
    dot[0, 12] = 1                          # the centre of a 5 x 5 image
    out = robustness.blur(dot, 0.5).reshape(5, 5)
    k = torch.tensor([e, 1, e]) / (1 + 2 * e)
    assert torch.allclose(out[1:4, 1:4], torch.outer(k, k), atol=1e-7)
    assert out[0].abs().max() == 0 and out[:, 0].abs().max() == 0   # nothing reaches two pixels away
    edge = torch.zeros(5, 5)
    edge[:, 0] = 1                          # the left column: its padding repeats it
    out = robustness.blur(edge.reshape(1, 25), 0.5).reshape(5, 5)
    assert torch.allclose(out[:, 0], torch.full((5,), (1 + e) / (1 + 2 * e)), atol=1e-7)
    assert torch.allclose(out[:, 1], torch.full((5,), e / (1 + 2 * e)), atol=1e-7)
    assert out[:, 2:].abs().max() == 0
    flat = torch.full((1, 25), 0.3)         # sigma 1.5: 7 taps on a 5-wide image, all edge replicas: unchanged
    assert torch.allclose(robustness.blur(flat, 1.5), flat, atol=1e-7)
    assert torch.allclose(robustness.blur(dot, 0.0001), dot)          # their first grid point: no blur


def test_noise_is_a_variance_clipped_to_the_unit_interval():
    x = torch.tensor([[0.0, 0.5, 1.0, 0.25]])
    assert torch.equal(robustness.noise(x, 0.0, torch.Generator().manual_seed(0)), x)
    drawn = torch.randn(x.shape, generator=torch.Generator().manual_seed(3))
    got = robustness.noise(x, 0.25, torch.Generator().manual_seed(3))          # std 0.5
    assert torch.allclose(got, (x + 0.5 * drawn).clamp(0, 1))
    assert got.min() >= 0 and got.max() <= 1
    assert not torch.equal(got, x + 0.5 * drawn)                               # (this draw clips a pixel)


@pytest.mark.parametrize("argv, words", [
    (["--distortions", "boundary"], "--distortions boundary: their boundary is not done here"),
    (["--distortions", "rotate"], "unknown distortion or attack 'rotate'"),
    (["--distortions", "deepfool", "spsa"], "unknown distortion or attack 'spsa'"),   # after an attack that is done
    (["--eps", "0.1", "-0.1"], "--eps values must be in [0, 1]; got -0.1"),
    (["--eps", "1.5"], "--eps values must be in [0, 1]; got 1.5"),
    (["--variances", "1.2"], "--variances values must be in [0, 1]; got 1.2"),
    (["--variances", "-0.1"], "--variances values must be in [0, 1]; got -0.1"),
    (["--sigmas", "0"], "--sigmas values must be > 0; got 0"),
    (["--sigmas", "-1"], "--sigmas values must be > 0; got -1"),
    (["--methods", "dreams"], "--methods: invalid choice: 'dreams'"),
])
def test_bad_input_is_one_line_exit_2_and_nothing_written(argv, words, tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        robustness.main(["--run", "--out", str(tmp_path / "out"), *argv])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.count("\n") == 1 and words in err and err.startswith("robustness.py: error:")
    assert not os.path.exists(tmp_path / "out")


def test_a_missing_attack_library_is_one_line(tmp_path, capsys, monkeypatch):
    for name in [m for m in sys.modules if m == "art" or m.startswith("art.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "art", None)   # import art: ImportError
    with pytest.raises(SystemExit) as stop:
        robustness.main(["--run", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.count("\n") == 1 and "pip install adversarial-robustness-toolbox==" in err
    assert not os.path.exists(tmp_path / "out")
    robustness.main(["--distortions", "blur", "--out", str(tmp_path / "out")])   # blur alone needs no library


TINY = dict(n_train=200, n_test=100, n_finetune=50, steps=100)   # and hidden layers of 64 (below)
ARGS = ["--quick", "--seeds", "0", "1", "--sigmas", "1", "--variances", "0.5", "--eps", "0", "0.1"]


def test_a_small_run_writes_the_table_and_figures_and_a_rerun_skips_finished_jobs(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(robustness, "QUICK", TINY)
    monkeypatch.setattr(robustness, "SIZES", (784, 64, 64, 10))
    robustness.main(["--run", *ARGS, "--out", str(tmp_path)])
    folder = tmp_path / "robustness_quick"
    jobs = sorted(glob.glob(str(folder / "seed*_*.json")))
    assert len(jobs) == 2 * len(robustness.METHODS)
    rec = json.load(open(folder / "seed1_sleep.json"))
    assert rec["grids"] == {"blur": [1.0], "noise": [0.5], "fgsm": [0.0, 0.1]} and len(rec["curves"]["fgsm"]) == 2
    assert rec["fgsm_vs_art"] <= 1e-6 and rec["curves"]["fgsm"][0] == rec["clean"]   # eps 0: the clean images
    table = (folder / "robustness.md").read_text()
    assert "| distill-intended | " in table and "sleep − control (± 2 SE)" in table and "(n=2)" in table
    assert "| sleep-beyond-weights-only − control (± 2 SE) |" in table and "- sleep-original: above control beyond" in table
    assert all(os.path.getsize(folder / f"robustness_{k}.png") > 1000 for k in ("blur", "noise", "fgsm"))
    # a rerun computes nothing: every job is finished
    monkeypatch.setattr(robustness, "job", lambda *a: pytest.fail("a finished job ran again"))
    capsys.readouterr()
    robustness.main(["--run", *ARGS, "--out", str(tmp_path)])
    assert "== seed" not in capsys.readouterr().out
    assert (folder / "robustness.md").read_text() == table


def test_ctrl_c_stops_with_one_line_and_keeps_finished_jobs(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(robustness, "QUICK", TINY)
    calls = []

    def job(seed, method, *rest):
        calls.append(method)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return dict(seed=seed, method=method, clean=50.0, grids=rest[-2], curves={k: [50.0] * len(v) for k, v in rest[-2].items()})

    monkeypatch.setattr(robustness, "job", job)
    with pytest.raises(SystemExit) as stop:
        robustness.main(["--run", *ARGS, "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert stop.value.code == 130 and err == "robustness.py: stopped; 1 finished jobs kept; run the same command to resume\n"
    assert [os.path.basename(p) for p in glob.glob(str(tmp_path / "robustness_quick" / "*.json"))] == ["seed0_control.json"]


def test_their_constant_vectors_map_position_by_position_onto_the_sleep():
    import constants
    import src
    for name, x in constants.ROBUSTNESS_VECTORS.items():
        c = src.Sleep(**constants.ROBUSTNESS[name])
        assert (c.rate, c.inc, c.dec, c.beta, c.alpha_scale, c.steps) == (x[0], x[1], x[2], tuple(x[3:6]), x[6], x[7])
        assert c.input == "images" and c.steps_increment == 0 and (c.dt, c.decay) == (0.001, 0.999)
    assert constants.ROBUSTNESS["blurtuned"]["steps"] == 27105 and constants.ROBUSTNESS["attacks"]["steps"] == 3365
    assert robustness.FULL["steps"] is None and robustness.sleep_constants("sleep").steps == 27105   # the full run: their length
    for name, steps in (("original", 15000), ("beyond-weights-only", 5000)):   # the class-IL presets' sleeps: their first
        c = robustness.sleep_constants(f"sleep-{name}")
        assert c.input == "mean" and c.steps == steps and c == config.preset_sleep(name)


def test_the_verdict_counts_levels_beyond_two_standard_errors_on_hand_computed_pairs():
    # sleep - control on three seeds at three levels: +2, +3, +4 (mean 3, sd 1, 2 SE 1.15: above);
    # -1, 0, +1 (mean 0: neither); -5, -6, -7 (mean -6: below)
    recs = [dict(method="control", seed=s, grids={"noise": [0.0, 0.5, 0.9]}, curves={"noise": [50.0, 50.0, 50.0]})
            for s in range(3)]
    recs += [dict(method="sleep", seed=s, grids={"noise": [0.0, 0.5, 0.9]}, curves={"noise": [52.0 + s, 49.0 + s, 45.0 - s]})
             for s in range(3)]
    diff = robustness.paired(recs, "noise", [0.0, 0.5, 0.9])
    assert [round(m, 6) for _, (m, _, _) in diff] == [3.0, 0.0, -6.0]
    assert abs(diff[0][1][1] - 2 / 3 ** 0.5) < 1e-9 and diff[0][1][2] == 3
    assert robustness.verdict(diff) == "above control beyond 2 SE at 1 of 3 levels, below at 1"
    assert robustness.paired(recs, "noise", [0.0, 0.5, 0.9], "finetune") == []   # no finetune records
