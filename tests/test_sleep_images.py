"""The sleep input 'images' (the ICLR 2020 robustness scripts'): step t shows training image t whole, as Poisson
rates; both engines against a literal loop; what the sleep reads and keeps; its one refusal."""
import dataclasses
import math

import numpy as np
import pytest
import torch

import config
import data
import methods
import src
from models import Net
from test_src import DEC, INC, literal_sleep

RATE, DT = 239.515363, 0.001


def test_step_t_shows_image_t_whole_and_starts_again_after_the_last():
    # 0/1 images at a saturating rate (u / (2 dt rate) = u / 2 <= 0.5 < 1): every pixel of value 1 fires, none
    # of value 0, so each step's raster is exactly its image: no window, no mask, the images in order from `start`.
    images = (torch.rand(4, 30, generator=torch.Generator().manual_seed(0)) < 0.5).float()
    s = src.image_spikes(images, 3, 11, torch.Generator().manual_seed(1), rate=1000.0, dt=DT)
    assert s.shape == (11, 30) and s.dtype == torch.bool
    assert torch.equal(s, images[[3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1]].bool())
    both = src.image_spikes(images, 3, 11, torch.Generator().manual_seed(1), rate=[1000.0, 1000.0], dt=DT)
    assert both.shape == (2, 11, 30) and torch.equal(both[0], s) and torch.equal(both[1], s)


def test_each_image_fires_with_probability_2_dt_rate_p():
    # Images of constant value 0.2 and 0.8, alternating: the even steps fire at 2 dt rate 0.2, the odd at
    # 2 dt rate 0.8 (a factor 2 in the rate, or the images out of order, is far outside 4 SE).
    images = torch.cat([torch.full((1, 784), 0.2), torch.full((1, 784), 0.8)])
    s = src.image_spikes(images, 0, 2000, torch.Generator().manual_seed(2), rate=RATE, dt=DT).double()
    for parity, p in ((0, 0.2), (1, 0.8)):
        prob, shown = 2 * DT * RATE * p, s[parity::2].numel()
        assert abs(s[parity::2].mean().item() - prob) < 4 * math.sqrt(prob * (1 - prob) / shown)


def literal_image_raster(pool, steps, seed, rate, dt):
    """sleepnn_old.m's input, transcribed step by step: step t draws one number per pixel and fires those with
    rand * (1 / (dt rate)) / 2 <= image t (rand in (0, 1] as MATLAB's: 1 - torch's)."""
    gen = torch.Generator().manual_seed(seed)
    raster = []
    for t in range(steps):
        u = 1 - torch.rand(pool.shape[1], generator=gen, dtype=torch.float64).numpy()
        raster.append(u * (1 / (dt * rate)) / 2 <= pool[t % len(pool)].double().numpy())
    return np.array(raster)


@pytest.mark.parametrize("engine", ["torch", "numba"])
def test_both_engines_sleep_on_the_images_as_a_literal_loop(engine):
    # 200 steps on 7 images (so they come round again), drawn in chunks of 64 (so each chunk starts mid-way):
    # the spikes and weights of the literal loop, which draws step by step from the same generator.
    gen = torch.Generator().manual_seed(5)
    sizes = (16, 9, 7, 4)
    W = [(torch.rand(o, i, generator=gen, dtype=torch.float64) - 0.35) * 0.6 for i, o in zip(sizes[:-1], sizes[1:])]
    pool = torch.rand(7, 16, generator=gen)
    alpha, beta = (1.3, 1.7, 2.1), (0.5, 0.6, 0.4)
    c = src.Sleep(rate=300.0, inc=INC, dec=DEC, beta=beta, alpha_scale=1.0, alpha=alpha, input="images")
    net = Net(W, [torch.zeros_like(w) for w in W])
    slept, info = src.sleep(net, None, 200, torch.Generator().manual_seed(9), c, dropout=0.0, images=pool,
                            engine=engine, chunk=64)
    ref_W, ref_counts = literal_sleep([w.numpy() for w in W], literal_image_raster(pool, 200, 9, 300.0, DT),
                                      alpha, beta, INC, DEC)
    assert sum(sum(n) for n in info["spikes"][1:]) > 100                # the case has plenty of plasticity
    assert [list(n) for n in info["spikes"][1:]] == [n.tolist() for n in ref_counts]
    for w, rw, w0 in zip(slept.W, ref_W, W):
        np.testing.assert_allclose(w.numpy(), rw, rtol=0, atol=1e-12)
        assert (w - w0).abs().max() > 1e-3


@pytest.fixture(scope="module")
def small():
    cfg = config.resolve(config.DEFAULTS, ["--quick", "--device", "cpu", "--sleep-steps", "300",
                                           "--sleep-steps-increment", "100", "--sleep-input", "images"])
    return cfg, methods.prepare(cfg)


def test_the_sleep_shows_the_data_policys_images_in_their_order(small, monkeypatch):
    # 'seen': the scale factors read every image of tasks 1..k, the input shows the first T_k of them in
    # dataset order; 'current': task k's own n_per_task images, the first T_k of them.
    cfg, ctx = small
    got = {}
    monkeypatch.setattr(src, "sleep", lambda nets, sleep_x, steps, generator, c, **kw: got.update(x=sleep_x, steps=steps, **kw))
    net = methods.initial_net(0, cfg, ctx)
    seen = data.task_indices(ctx.train_y, ctx.tasks[0] + ctx.tasks[1])
    methods.sleep_task(net, 2, 0, cfg, ctx)
    assert got["steps"] == 400 and len(seen) > 400 and got["sample"] is None
    assert torch.equal(got["images"], ctx.train_x[seen[:400]]) and torch.equal(got["x"], ctx.train_x[seen])
    own = data.task_indices(ctx.train_y, ctx.tasks[1], cfg.n_per_task)
    methods.sleep_task(net, 2, 0, config.resolve(dataclasses.replace(cfg, sleep_data="current")), ctx)
    assert torch.equal(got["images"], ctx.train_x[own[:400]]) and torch.equal(got["x"], ctx.train_x[own])


def test_what_the_image_input_keeps(small):
    # At the last sleep (T_5 = 300 + 4 x 100 = 700 steps): with data-based alpha every image seen (the scale
    # factors read them all), with fixed alpha only the 700 images it shows; 'current' keeps nothing.
    cfg, ctx = small
    keeps = lambda **kw: methods.sleep_keeps(config.resolve(dataclasses.replace(cfg, **kw)), ctx)
    assert keeps() == ("every training image of the tasks seen", len(ctx.train_y) * 784)
    assert keeps(alpha=(1.0, 1.0, 1.0)) == ("the first 700 training images of the tasks seen", 700 * 784)
    assert keeps(sleep_data="current") == ("task k's training images", 0)


def test_the_image_input_refuses_kept_means_only(capsys):
    with pytest.raises(SystemExit) as info:
        config.resolve(config.DEFAULTS, ["--sleep-input", "images", "--sleep-data", "current+means"])
    err = capsys.readouterr().err
    assert info.value.code == 2 and err.count("\n") == 1
    assert err.endswith("error: --sleep-input images shows raw training images, one per step; data current+means "
                        "keeps only a mean image per class\n")


def test_sleep_model_shows_its_images_one_per_step():
    # src.sleep_model with the input 'images': the slept Linear weights are the literal loop's on those images.
    gen = torch.Generator().manual_seed(6)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 9, bias=False), torch.nn.ReLU(),
                                torch.nn.Linear(9, 4, bias=False)).double()
    with torch.no_grad():
        for layer in (model[1], model[3]):
            layer.weight.copy_((torch.rand(layer.weight.shape, generator=gen, dtype=torch.float64) - 0.35) * 0.6)
    pool = torch.rand(5, 4, 4, generator=gen, dtype=torch.float64)
    c = src.Sleep(rate=300.0, inc=INC, dec=DEC, beta=(0.5, 0.6), alpha_scale=1.0, alpha=(1.3, 1.7), input="images",
                  plasticity=(1.0, 1.0), steps=150)
    slept, _ = src.sleep_model(model, pool, c, task=1, seed=3, progress=False)
    ref_W, _ = literal_sleep([model[1].weight.detach().numpy(), model[3].weight.detach().numpy()],
                             literal_image_raster(pool.reshape(5, -1), 150, 3, 300.0, DT), (1.3, 1.7), (0.5, 0.6), INC, DEC)
    for layer, rw, w0 in zip((slept[1], slept[3]), ref_W, (model[1], model[3])):
        np.testing.assert_allclose(layer.weight.detach().numpy(), rw, rtol=0, atol=1e-12)
        assert (layer.weight - w0.weight).abs().max() > 1e-3
