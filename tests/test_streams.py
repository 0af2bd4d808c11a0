"""The seed's random streams: one per phase and task, each from methods.generator."""
from types import SimpleNamespace

import torch

import config
import methods
import models


def test_every_phase_and_task_draws_its_own_stream():
    for seed in (0, 1, 2 ** 32 - 1):
        drawn = {(phase, k): methods.generator(seed, phase, k).initial_seed() for phase in methods.PHASES
                 for k in range(11)}
        assert len(set(drawn.values())) == len(drawn) == 11 * len(methods.PHASES)
    # the one that was built by hand: merging's own initialisation of copy k was task k's rehearsal stream
    assert methods.generator(0, "init", 2).initial_seed() != methods.generator(0, "replay", 2).initial_seed()
    # every method's initial weights are the seed's own stream, as every documented run drew them
    assert methods.generator(5, "init", 1).initial_seed() == 5


def test_initial_weights_come_from_the_init_stream_copy_by_copy():
    cfg, ctx = config.DEFAULTS, SimpleNamespace(sizes=(784, 20, 10), dtype=torch.float32, device="cpu")
    made = lambda gen: models.init_net(ctx.sizes, cfg.init_scale, gen, init=cfg.init)
    first, second = methods.initial_net(3, cfg, ctx), methods.initial_net(3, cfg, ctx, copy=2)
    assert all(torch.equal(a, b) for a, b in zip(first.W, made(torch.Generator().manual_seed(3)).W))
    assert all(torch.equal(a, b) for a, b in zip(second.W, made(methods.generator(3, "init", 2)).W))
    assert not torch.equal(first.W[0], second.W[0])
