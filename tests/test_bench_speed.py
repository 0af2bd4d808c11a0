"""The speed benchmark's floor: its operation counts by hand and against the products a run makes; the script
on a --quick budget (no timing is checked)."""
import re

import pytest
import torch

import bench_speed
import config
import data
import methods
import models
import runner
import src


def test_operations_per_image_by_hand():
    # 4-8-2: forward 2 (4 * 8 + 8 * 2) = 96; a training step adds the weight gradients (96) and the error sent
    # down to the hidden layer, 2 * 8 * 2 = 32 (none to the input)
    assert bench_speed.forward_flops((4, 8, 2)) == 96
    assert bench_speed.train_flops((4, 8, 2)) == 96 + 96 + 32
    # with biases the weights read one more input: 2 (5 * 8 + 9 * 2) = 116; the error goes down through the
    # weights without their bias column
    assert bench_speed.train_flops((4, 8, 2), bias=True) == 116 + 116 + 32
    # the paper network: 2 392 800 weights, 1 452 000 of them above the first layer
    assert bench_speed.train_flops((784, 1200, 1200, 10)) == 4 * 2_392_800 + 2 * 1_452_000 == 12_475_200


def test_the_default_methods_passes_by_hand():
    # two tasks of one class; class 0 has 3 training images, class 1 has 2; 2 per task trained on, 2 epochs;
    # 4 evaluation images
    cfg = config.resolve(config.DEFAULTS, ["--hidden", "8", "--classes-per-task", "1", "--n-per-task", "2",
                                           "--beta", "1", "1", "--plasticity", "1", "1", "--device", "cpu"])
    ctx = data.Tasks(scenario="class", n_classes=2, outputs=2, split=((0,), (1,)), tasks=((0,), (1,)), sizes=(4, 8, 2),
                     device="cpu", engine="numba", dtype=torch.float32, train_x=None,
                     train_y=torch.tensor([0, 1, 0, 0, 1]), eval_chunks=None, eval_y=torch.zeros(4), probes=0)
    rows = bench_speed.passes(cfg, ctx)
    total = lambda method, part: sum(r[5] for r in rows if r[0] == method and r[3] == part)
    forward, step = 96, 224
    # sequential: init, train_1 and train_2 (2 images x 2 epochs each), each evaluated
    assert total("sequential", "training") == 2 * 4 * step and total("sequential", "evaluation") == 3 * 4 * forward
    # src: train_1 is sequential's; sleep 1's factors read task 1's 3 images, sleep 2's all 5; each sleep is
    # evaluated with its synthetic network
    assert total("src", "training") == 4 * step and total("src", "evaluation") == 5 * 4 * forward
    assert total("src", "scale factors") == (3 + 5) * forward
    assert total("src", "sleep steps") == 0 and sum(r[4] for r in rows if r[3] == "sleep steps") == 15000 + 20000
    # merging: task 2 again from the initial weights, then the merged network
    assert total("merging", "training") == 4 * step and total("merging", "evaluation") == 2 * 4 * forward
    # parallel: every training image of both tasks, 2 epochs; init is shared
    assert total("parallel", "training") == 5 * 2 * step and total("parallel", "evaluation") == 4 * forward
    assert sum(r[5] for r in rows) == 5824 + 4224 + 768


@pytest.mark.slow
def test_the_count_is_what_a_quick_run_computes(monkeypatch):
    # every image through models.forward (training, evaluation, scale factors) and every backward of sgd_step,
    # counted while the four methods run on a small network, against the count from the shapes
    cfg = config.resolve(config.DEFAULTS, ["--quick", "--n-tasks", "2", "--hidden", "16", "16", "--device", "cpu"])
    ctx = runner.checked_data(cfg)
    done = {m: 0 for m in cfg.methods}
    now = [None]
    forward, backward = models.forward, models.sgd_step

    def counted_forward(net, x, *args, **kw):
        done[now[0]] += len(x) * bench_speed.forward_flops(ctx.sizes)
        return forward(net, x, *args, **kw)

    def counted_step(net, x, *args, **kw):
        done[now[0]] += len(x) * (bench_speed.train_flops(ctx.sizes) - bench_speed.forward_flops(ctx.sizes))
        return backward(net, x, *args, **kw)

    monkeypatch.setattr(models, "forward", counted_forward)
    monkeypatch.setattr(src, "forward", counted_forward)
    monkeypatch.setattr(models, "sgd_step", counted_step)
    shared = {}
    for method in cfg.methods:
        now[0] = method
        methods.run_method(method, 0, cfg, ctx, shared)
    rows = bench_speed.passes(cfg, ctx)
    assert done == {m: sum(r[5] for r in rows if r[0] == m) for m in cfg.methods}


@pytest.mark.slow
def test_the_script_prints_the_floor_and_the_ratio(tmp_path, in_process):
    def bench(*args):   # (in this process: the script runs as a process in test_results.py's test of --help)
        proc = in_process("studies/bench_speed.py", *args)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc.stdout

    out = str(tmp_path / "bench.md")
    text = bench("--quick", "--no-run", "--out", out)
    assert "GFLOP/s" in text and "| **floor** |" in text and "Run / floor: not measured (--no-run)" in text
    with open(out) as f:
        assert f.read() == text
    text = bench("--quick", "--time", "20", "--out", out)
    ratio, seconds, floor = re.search(r"Run / floor: \*\*([\d.]+)\*\* \(([\d.]+) s wall.*floor ([\d.]+) s\)", text).groups()
    assert seconds == "20.0" and abs(float(ratio) - 20 / float(floor)) < 0.01 + 0.01 * float(ratio)
    # mnist_exp.py's options, after -- too, change the count: one method, its five tasks and evaluations
    text = bench("--quick", "--no-run", "--out", out, "--", "--methods", "sequential")
    assert "| sequential |" in text and "| src |" not in text and "(6 passes over 1,000 images)" in text
