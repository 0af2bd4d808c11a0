"""The one loop, in process, on a tiny config: what each step reads and carries over."""
import dataclasses

import pytest
import torch

import data
import methods
import models
import mnist_exp


@pytest.fixture(scope="module")
def small():
    cfg = mnist_exp.parse_config(["--quick", "--device", "cpu", "--sleep-steps", "300", "--sleep-steps-increment", "100"])
    return cfg, methods.prepare(cfg)


def test_momentum_carries_from_task_to_task_and_across_sleep(small, monkeypatch):
    # Record the momentum buffers as each training starts and ends: task k + 1 must start from those
    # task k ended with (the sleep in between keeps them), not from zeros.
    cfg, ctx = small
    seen, train = [], models.train

    def spy(net, *args, **kwargs):
        start = [v.clone() for v in net.vW]
        out = train(net, *args, **kwargs)
        seen.append((start, [v.clone() for v in net.vW]))
        return out

    monkeypatch.setattr(models, "train", spy)
    methods.run_method("src", 5, cfg, ctx, shared={})
    assert len(seen) == len(ctx.tasks)
    assert all((v == 0).all() for v in seen[0][0])
    for (_, end), (start, _) in zip(seen, seen[1:]):
        assert all(torch.equal(a, b) for a, b in zip(end, start)) and any(a.abs().sum() > 0 for a in start)


def test_sleep_reads_every_seen_training_image(small, monkeypatch):
    # Not only the n_per_task images each task trained on: all training images of the tasks seen so far.
    cfg, ctx = small
    got = {}
    monkeypatch.setattr(methods.src, "sleep", lambda nets, sleep_x, steps, generator, **kw: got.update(x=sleep_x, steps=steps))
    net = methods.initial_net(0, cfg, ctx)
    methods.sleep_task(net, 2, 0, cfg, ctx)
    seen = torch.isin(ctx.train_y, torch.tensor([0, 1, 2, 3]))
    assert len(got["x"]) == seen.sum().item() > 2 * cfg.n_per_task
    assert torch.equal(got["x"], ctx.train_x[seen])
    assert got["steps"] == cfg.sleep_steps + cfg.sleep_steps_increment


def test_shared_stages_are_declared_and_identical(small):
    cfg, ctx = small
    shared = {}
    seq, _ = methods.run_method("sequential", 2, cfg, ctx, shared)
    assert set(shared) == {"init", "train_1"}
    si, _ = methods.run_method("si", 2, cfg, ctx, shared)          # SI declares only init: it retrains task 1
    assert seq["rows"][1] == si["rows"][1] and si["time"]["train"] > 0
    merging, _ = methods.run_method("merging", 2, cfg, ctx, shared)
    assert [r["stage"] for r in merging["rows"]][-2:] == ["merged", "final"]
    # a stage taken from another method is the same as computing it again
    alone, _ = methods.run_method("merging", 2, cfg, ctx, {})
    assert alone["rows"] == merging["rows"]


def test_sizes_come_from_the_data(small):
    cfg, ctx = small
    assert ctx.sizes == (ctx.train_x.shape[1], 1200, 1200, data.DATASETS["mnist"]["classes"]) == (784, 1200, 1200, 10)
    three = dataclasses.replace(cfg, hidden=(30, 20, 10))
    assert methods.prepare(three).sizes == (784, 30, 20, 10, 10)
