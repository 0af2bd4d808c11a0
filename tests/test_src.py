"""The sleep: hand-checked steps, scale factors, input statistics, engines against a literal loop, bad input."""
import dataclasses
import math

import numpy as np
import pytest
import torch

import src
from models import Net

ENGINES = ["torch", "numba"]
INC, DEC = 0.03, 0.004


def g_np(w):
    with np.errstate(over="ignore"):  # exp(-w / 0.001) is inf for w < -0.71: g = 2, as in MATLAB
        return 2 * (1 - 1 / (1 + np.exp(-w / w.dtype.type(0.001))))


def literal_sleep(weights, spikes, alpha, beta, inc, dec, decay=0.999, threshold=1.0, dtype=np.float64):
    """PROTOCOL.md's spiking step, transcribed line by line with numpy, in the given precision."""
    W = [np.array(w, dtype=dtype) for w in weights]
    v = [np.zeros(w.shape[0], dtype=dtype) for w in W]
    alpha, beta, inc, dec = (np.asarray(a, dtype=dtype) for a in (alpha, beta, inc, dec))
    counts = [np.zeros(w.shape[0], dtype=int) for w in W]
    for s in np.asarray(spikes, dtype=dtype):
        pre = s
        for l in range(len(W)):
            impulse = alpha[l] * W[l] @ pre
            v[l] = decay * v[l] + impulse
            post = (v[l] >= threshold * beta[l]).astype(dtype)
            for j in np.flatnonzero(post):
                for i in range(W[l].shape[1]):
                    if pre[i]:
                        W[l][j, i] += inc * g_np(W[l][j, i])
                    else:
                        W[l][j, i] -= dec * g_np(W[l][j, i])
            v[l][post == 1] = 0
            counts[l] += post.astype(int)
            pre = post
    return W, counts


def random_case(seed, sizes=(12, 9, 7, 4), steps=200, p=0.3, batch=None):
    gen = torch.Generator().manual_seed(seed)
    shape = () if batch is None else (batch,)
    W = [(torch.rand(*shape, o, i, generator=gen, dtype=torch.float64) - 0.35) * 0.6 for i, o in zip(sizes[:-1], sizes[1:])]
    spikes = torch.rand(*shape, steps, sizes[0], generator=gen) < p
    return W, spikes


@pytest.mark.parametrize("engine", ENGINES)
def test_one_step_by_hand(engine):
    # 3 inputs -> 2 neurons; inputs 0 and 1 fire. Neuron 0: impulse 2 (0.6 + 0.0005) = 1.201 >= 1, fires.
    # Neuron 1: impulse 2 (0.3 + 0.1) = 0.8 < 1, silent: its weights stay.
    W = [torch.tensor([[0.6, 0.0005, -0.2], [0.3, 0.1, 0.5]], dtype=torch.float64)]
    new, counts = src.sleep_on_spikes(W, torch.tensor([[1, 1, 0]]), alpha=[2.0], beta=[1.0], inc=INC, dec=DEC, engine=engine)
    w = new[0].numpy()
    assert w[0, 0] == 0.6                                                  # g(0.6) ~ 1e-261: no change
    np.testing.assert_allclose(w[0, 1] - 0.0005, INC * 2 / (1 + math.exp(0.5)), rtol=1e-12)   # pre fired: up
    np.testing.assert_allclose(w[0, 2] + 0.2, -DEC * 2 / (1 + math.exp(-200)), rtol=1e-12)    # pre silent: down ~2 dec
    assert w[1].tolist() == [0.3, 0.1, 0.5]
    assert counts[0].tolist() == [1, 1, 0] and counts[1].tolist() == [1, 0]
    assert W[0][0, 1] == 0.0005                                            # the input weights are left untouched


@pytest.mark.parametrize("engine", ENGINES)
def test_decay_accumulation_and_reset(engine):
    # One neuron, impulse 0.6 per step, threshold 1: v = 0.6, then 0.6 * 0.5 + 0.6 = 0.9, then 1.05 -> fires
    # at step 3 and resets to 0, so steps 4-5 repeat 0.6, 0.9 and it fires next at step 6.
    W = [torch.tensor([[0.6]], dtype=torch.float64)]
    for T, fired in [(2, 0), (3, 1), (5, 1), (6, 2)]:
        _, counts = src.sleep_on_spikes(W, torch.ones(T, 1), alpha=[1.0], beta=[1.0], inc=0.0, dec=0.0,
                                        decay=0.5, engine=engine)
        assert counts[1].item() == fired, (T, counts)


@pytest.mark.parametrize("engine", ENGINES)
def test_spikes_cross_all_layers_in_one_step(engine):
    # A single input spike drives a chain of three layers to fire within the same step.
    W = [torch.tensor([[2.0]], dtype=torch.float64)] * 3
    _, counts = src.sleep_on_spikes(W, torch.tensor([[1]]), alpha=[1.0, 1.0, 1.0], beta=[1.5, 1.5, 1.5],
                                    inc=0.0, dec=0.0, engine=engine)
    assert [c.item() for c in counts] == [1, 1, 1, 1]


def test_g_is_the_original_sigmoid_without_overflow():
    w = torch.tensor([-1e6, -1.0, -0.001, 0.0, 0.001, 1.0, 1e6], dtype=torch.float64)
    np.testing.assert_allclose(src.g(w).numpy(), g_np(w.numpy()), rtol=1e-12, atol=1e-300)
    assert src.g(torch.tensor(0.0)).item() == 1.0
    assert torch.isfinite(src.g(torch.tensor([-3e38, 3e38]))).all()


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_engines_match_a_literal_loop(engine, dtype, seed):
    # the reference runs in the engine's precision: float32 is compared with a float32 transcription
    W, spikes = random_case(seed)
    alpha, beta = [1.3, 1.7, 2.1], [0.5, 0.6, 0.4]
    np_dtype = np.float64 if dtype == torch.float64 else np.float32
    ref_W, ref_counts = literal_sleep([w.to(dtype).numpy() for w in W], spikes.numpy(), alpha, beta, INC, DEC, dtype=np_dtype)
    new, counts = src.sleep_on_spikes([w.to(dtype) for w in W], spikes, alpha, beta, inc=INC, dec=DEC, engine=engine)
    assert sum(c.sum().item() for c in counts[1:]) > 100                # the case has plenty of plasticity
    for c, rc in zip(counts[1:], ref_counts):                           # the same spikes
        assert c.tolist() == rc.tolist()
    tol = 1e-12 if dtype == torch.float64 else 2e-6                     # float32: a few units in the last place
    for w, rw, w0 in zip(new, ref_W, W):
        assert w.dtype == dtype and rw.dtype == np_dtype
        np.testing.assert_allclose(w.double().numpy(), rw, rtol=0, atol=tol)
        assert (w.double() - w0).abs().max() > 1e-3                     # and the weights did change


@pytest.mark.parametrize("engine", ENGINES)
def test_plasticity_scales_or_freezes_each_layer(engine):
    W, spikes = random_case(6, steps=300)
    args = ([1.3, 1.7, 2.1], [0.5, 0.6, 0.4])
    full, cf = src.sleep_on_spikes(W, spikes, *args, inc=INC, dec=DEC, engine=engine)
    # Spikes flow forward only, so freezing the last layer leaves the layers below exactly as in the full run.
    frozen, cz = src.sleep_on_spikes(W, spikes, *args, inc=INC, dec=DEC, plasticity=[1, 1, 0], engine=engine)
    assert all(torch.equal(a, b) for a, b in zip(full[:2], frozen[:2]))
    assert [c.tolist() for c in cf[:3]] == [c.tolist() for c in cz[:3]]
    assert torch.equal(frozen[2], W[2]) and not torch.equal(full[2], W[2])
    # A per-layer factor is the same as multiplying inc and dec.
    doubled, _ = src.sleep_on_spikes(W, spikes, *args, inc=INC, dec=DEC, plasticity=2.0, engine=engine)
    ref, _ = src.sleep_on_spikes(W, spikes, *args, inc=2 * INC, dec=2 * DEC, engine=engine)
    assert all(torch.equal(a, b) for a, b in zip(doubled, ref))
    with pytest.raises(ValueError, match="plasticity must be >= 0"):
        src.sleep_on_spikes(W, spikes, *args, inc=INC, dec=DEC, plasticity=[1, -1, 1], engine=engine)


@pytest.mark.parametrize("engine", ENGINES)
def test_batched_networks_are_independent(engine):
    W, spikes = random_case(4, batch=3)
    alpha = np.array([[1.3, 1.7, 2.1], [1.0, 2.0, 1.5], [2.0, 1.2, 1.1]])
    inc = np.array([0.03, 0.01, 0.05])
    new, counts = src.sleep_on_spikes(W, spikes, alpha, [0.5, 0.6, 0.4], inc=inc, dec=DEC, engine=engine)
    for b in range(3):
        one, c1 = src.sleep_on_spikes([w[b] for w in W], spikes[b], alpha[b], [0.5, 0.6, 0.4], inc=inc[b], dec=DEC,
                                      engine=engine)
        for w, w1 in zip(new, one):
            np.testing.assert_allclose(w[b].numpy(), w1.numpy(), rtol=0, atol=1e-14)
        assert [c[b].tolist() for c in counts] == [c.tolist() for c in c1]


def test_chunked_input_equals_one_raster():
    W, spikes = random_case(5, steps=300)
    args = ([1.3, 1.7, 2.1], [0.5, 0.6, 0.4])
    whole, cw = src.sleep_on_spikes(W, spikes, *args, inc=INC, dec=DEC)
    parts, cp = src.sleep_on_spikes(W, iter([spikes[:70], spikes[70:71], spikes[71:]]), *args, inc=INC, dec=DEC)
    assert all(torch.equal(a, b) for a, b in zip(whole, parts))
    assert all(torch.equal(a, b) for a, b in zip(cw, cp))


@pytest.mark.parametrize("engine", ["numba", "torch"])
def test_windows_see_every_step_once_and_change_nothing(engine):
    W, spikes = random_case(5, steps=300)
    args = ([1.3, 1.7, 2.1], [0.5, 0.6, 0.4])
    whole, cw = src.sleep_on_spikes(W, spikes, *args, inc=INC, dec=DEC, engine=engine)
    seen = []
    on = lambda step, counts, weights: seen.append((step, [c.clone() for c in counts], weights()))
    parts, cp = src.sleep_on_spikes(W, iter([spikes[:70], spikes[70:]]), *args, inc=INC, dec=DEC, engine=engine,
                                    window=64, on_window=on)
    assert all(torch.equal(a, b) for a, b in zip(whole, parts)) and all(torch.equal(a, b) for a, b in zip(cw, cp))
    assert [s for s, _, _ in seen] == [64, 128, 192, 256, 300]            # the last window is shorter
    for l in range(len(cw)):   # the windows' counts add up to the sleep's
        assert torch.equal(sum(c[l] for _, c, _ in seen), cw[l])
    assert all(torch.equal(a, b) for a, b in zip(seen[-1][2], whole))     # the weights at the end of the last window
    first, _ = src.sleep_on_spikes(W, spikes[:64], *args, inc=INC, dec=DEC, engine=engine)
    assert all(torch.allclose(a, b, rtol=0, atol=1e-12) for a, b in zip(seen[0][2], first))


def toy_net():
    W = [torch.tensor([[1.0, -1.0], [0.5, 2.0]]), torch.tensor([[0.5, 0.25], [-1.0, 1.0]]), torch.tensor([[2.0, 0.5]])]
    return Net(W, [torch.zeros_like(w) for w in W])


def test_scale_factors_by_hand():
    x = torch.tensor([[1.0, 0.0], [0.5, 1.0]])
    # Evaluation mode, dropout 0.2 (hidden layers times 0.8):
    #   h1 = 0.8 relu(W1 x) = [0.8, 0.4], [0, 1.8]     max W1 = 2    -> s1 = 2
    #   h2 = 0.8 relu(W2 h1) = [0.4, 0], [0.36, 1.44]  max W2 = 1    -> s2 = 1.44
    #   out = relu(W3 h2) = [0.8], [1.44]              max W3 = 2    -> s3 = 2
    A = 10.0
    alpha = src.scale_factors(toy_net(), x, dropout=0.2, alpha_scale=A)
    np.testing.assert_allclose(alpha, [A / 2, A * 2 / 1.44, A * 1.44 / (2 * 2)], rtol=1e-6)
    # Without dropout the activations are larger: h1 max 2.25, h2 max 2.25, out max 2.25, all above the weights.
    alpha = src.scale_factors(toy_net(), x, dropout=0.0, alpha_scale=A)
    np.testing.assert_allclose(alpha, [A / 2.25, A, A / 2.25], rtol=1e-6)


def test_scale_factors_reject_a_dead_layer():
    net = toy_net()
    net.W[2] = -net.W[2].abs()
    with pytest.raises(ValueError, match="layer 3"):
        src.scale_factors(net, torch.ones(3, 2), 0.25, 1.0)


def test_input_window_and_rate():
    gen = torch.Generator().manual_seed(0)
    # A saturating rate makes every pixel of the window fire: each step is exactly one 11 x 11 square.
    s = src.input_spikes(torch.ones(784), 3000, gen, rate=1000.0, dt=0.001, mask_size=11).reshape(-1, 28, 28)
    assert (s.sum((1, 2)) == 121).all()
    rows, cols = s.any(2).float().argmax(1), s.any(1).float().argmax(1)
    assert (s.any(2).sum(1) == 11).all() and (s.any(1).sum(1) == 11).all()
    assert rows.min() == 0 and rows.max() == 17 and cols.min() == 0 and cols.max() == 17
    assert len(set(rows.tolist())) == 18
    # A pixel of value p fires with probability 2 dt rate p.
    s = src.input_spikes(torch.full((784,), 0.5), 20000, gen, rate=239.515363, dt=0.001, mask_size=11)
    p, shown = 2 * 0.001 * 239.515363 * 0.5, 20000 * 121
    assert abs(s.sum().item() / shown - p) < 4 * math.sqrt(p * (1 - p) / shown)


def expected_input_spikes(image, rate, dt, mask_size):
    """Mean input spikes per step, by hand: the average over all window positions of the sum, over the
    window, of each pixel's firing probability min(1, 2 dt rate p)."""
    side = math.isqrt(image.numel())
    prob = np.minimum(1.0, 2 * dt * rate * image.double().numpy().reshape(side, side))
    n = side - mask_size + 1
    return np.mean([prob[r:r + mask_size, c:c + mask_size].sum() for r in range(n) for c in range(n)])


def test_input_spikes_per_step_match_the_rate_map():
    # A factor-2 error in the rate (or a window one pixel too small) is far outside the tolerance.
    image = torch.rand(784, generator=torch.Generator().manual_seed(3)) ** 3
    s = src.input_spikes(image, 20000, torch.Generator().manual_seed(4), rate=239.515363, dt=0.001, mask_size=11)
    per_step = s.sum(1).double()
    expected = expected_input_spikes(image, 239.515363, 0.001, 11)
    assert abs(per_step.mean().item() - expected) < 4 * per_step.std().item() / math.sqrt(len(per_step))
    assert abs(per_step.mean().item() - expected) < 0.03 * expected


def test_draws_lie_in_0_1_so_zero_pixels_never_fire(monkeypatch):
    # The spike test is u / (2 dt rate) <= p with u = 1 - rand in (0, 1], like MATLAB's rand. Forcing
    # rand to return 0 (u = 1, its edge) must leave pixels of value 0 silent and fire those at or above
    # 1 / (2 dt rate) = 0.5; a draw u = rand would fire the zeros (0 <= 0) and none of the others.
    monkeypatch.setattr(torch, "rand", lambda *shape, generator=None, dtype=None, device=None:
                        torch.zeros(*shape, dtype=dtype, device=device))
    image = torch.zeros(28, 28)
    image[:, 14:] = 0.5
    s = src.input_spikes(image.flatten(), 200, torch.Generator().manual_seed(0), rate=1000.0, dt=0.001,
                         mask_size=11).reshape(-1, 28, 28)
    assert not s[:, :, :14].any() and s[:, :, 14:].any()


def test_sleep_phase_is_reproducible_and_keeps_momentum():
    gen = torch.Generator().manual_seed(0)
    net = Net([torch.rand(20, 784, generator=gen) - 0.3, torch.rand(10, 20, generator=gen) - 0.3],
              [torch.full((20, 784), 0.5), torch.full((10, 20), 0.5)])
    x = torch.rand(50, 784, generator=gen)
    c0 = src.Sleep(rate=239.5, inc=INC, dec=DEC, beta=[0.5, 0.5], alpha_scale=1.0, plasticity=(1, 1))
    a, info = src.sleep(net, x, 500, torch.Generator().manual_seed(1), c0, dropout=0.25)
    b, _ = src.sleep(net, x, 500, torch.Generator().manual_seed(1), c0, dropout=0.25)
    c, _ = src.sleep(net, x, 500, torch.Generator().manual_seed(2), c0, dropout=0.25)
    assert all(torch.equal(u, v) for u, v in zip(a.W, b.W))
    assert not all(torch.equal(u, v) for u, v in zip(a.W, c.W))
    assert not torch.equal(a.W[0], net.W[0]) and sum(info["spikes"][1]) > 0
    assert all(torch.equal(v, w) and v is not w for v, w in zip(a.vW, net.vW))
    assert len(info["alpha"]) == 2 and len(info["spikes"]) == 3


def test_bad_input_is_refused_clearly():
    W, spikes = random_case(0)
    a, b = [1.0, 1.0, 1.0], [0.5, 0.5, 0.5]
    with pytest.raises(ValueError, match="input_spikes must be"):
        src.sleep_on_spikes(W, spikes[:, :5], a, b, inc=INC, dec=DEC)
    with pytest.raises(ValueError, match="only 0 and 1"):
        src.sleep_on_spikes(W, spikes.double() * 2, a, b, inc=INC, dec=DEC)
    with pytest.raises(ValueError, match="layer 2 takes"):
        src.sleep_on_spikes([W[0], W[2]], spikes, a[:2], b[:2], inc=INC, dec=DEC)
    with pytest.raises(ValueError, match="inc must be >= 0"):
        src.sleep_on_spikes(W, spikes, a, b, inc=-0.1, dec=DEC)
    with pytest.raises(ValueError, match="beta must be >= 0"):
        src.sleep_on_spikes(W, spikes, a, [0.5, float("nan"), 0.5], inc=INC, dec=DEC)
    with pytest.raises(ValueError, match="alpha must be a scalar"):
        src.sleep_on_spikes(W, spikes, [1.0, 1.0], b, inc=INC, dec=DEC)
    with pytest.raises(ValueError, match="finite"):
        src.sleep_on_spikes([w * float("inf") for w in W], spikes, a, b, inc=INC, dec=DEC)
    with pytest.raises(ValueError, match="sleep data"):
        src.sleep(Net(W, W), torch.zeros(0, 12), 10, torch.Generator(),
                  src.Sleep(rate=1.0, inc=INC, dec=DEC, beta=b, alpha_scale=1.0, mask_size=3), dropout=0.25)


@pytest.mark.parametrize("engine", ENGINES)
def test_non_finite_weights_stop_the_sleep(engine):
    # A weight near the float32 limit, depressed by a huge dec, overflows to -inf at the first spike (step 2).
    W = [torch.tensor([[2.0, -3e38]]), torch.tensor([[1.0]])]
    spikes = torch.tensor([[0, 0], [1, 0], [1, 0]])
    with pytest.raises(FloatingPointError, match="layer 1 at step 2"):
        src.sleep_on_spikes(W, spikes, [1.0, 1.0], [1.0, 1.0], inc=0.0, dec=1e38, engine=engine)


def test_batched_sleep_phase_equals_one_network_at_a_time():
    gen = torch.Generator().manual_seed(0)
    nets = [Net([torch.rand(20, 784, generator=gen) - 0.3, torch.rand(10, 20, generator=gen) - 0.3],
                [torch.zeros(20, 784), torch.zeros(10, 20)]) for _ in range(2)]
    x = torch.rand(50, 784, generator=gen)
    own = [src.Sleep(rate=239.5, inc=INC, dec=DEC, beta=(0.5, 0.5), alpha_scale=1.0, plasticity=(1, 1)),
           src.Sleep(rate=400.0, inc=0.05, dec=0.002, beta=(0.7, 0.4), alpha_scale=2.0, plasticity=(1, 1))]
    both, infos = src.sleep(nets, x, 700, torch.Generator().manual_seed(1), own, dropout=0.25)
    for b, net in enumerate(nets):
        one, info = src.sleep(net, x, 700, torch.Generator().manual_seed(1), own[b], dropout=0.25)
        assert all(torch.equal(u, v) for u, v in zip(both[b].W, one.W))
        assert infos[b]["spikes"] == info["spikes"] and infos[b]["alpha"] == info["alpha"]
    assert not torch.equal(both[0].W[0], both[1].W[0])


@pytest.mark.parametrize("engine", ENGINES)
def test_spike_budget_stops_a_network_where_a_shorter_raster_would(engine):
    W, spikes = random_case(6, steps=300)
    args = ([1.3, 1.7, 2.1], [0.5, 0.6, 0.4])
    full, counts = src.sleep_on_spikes(W, spikes, *args, inc=INC, dec=DEC, engine=engine)
    budget = sum(c.sum().item() for c in counts[1:]) // 3
    stopped, sc = src.sleep_on_spikes(W, spikes, *args, inc=INC, dec=DEC, max_spikes=budget, engine=engine)
    fired = sum(c.sum().item() for c in sc[1:])
    assert fired > budget and fired < budget + 20
    # the network stopped after the first step at which it had fired more than the budget
    for T in range(1, 301):
        prefix, pc = src.sleep_on_spikes(W, spikes[:T], *args, inc=INC, dec=DEC, engine=engine)
        if sum(c.sum().item() for c in pc[1:]) > budget:
            break
    assert all(torch.equal(a, b) for a, b in zip(stopped, prefix))
    assert [c.tolist() for c in sc[1:]] == [c.tolist() for c in pc[1:]]


@pytest.mark.parametrize("engine", ENGINES)
def test_logistic_factor_by_hand(engine):
    # The replica's rule: W += inc sigmoid(W) where pre fired, W -= dec sigmoid(W) where it did not.
    # Neuron 0 fires (impulse 2 (0.6 + 0.1) = 1.4); neuron 1 does not (2 (0.2 + 0.1) = 0.6).
    W = [torch.tensor([[0.6, 0.1, -0.4], [0.2, 0.1, 3.0]], dtype=torch.float64)]
    new, counts = src.sleep_on_spikes(W, torch.tensor([[1, 1, 0]]), [2.0], [1.0], inc=INC, dec=DEC,
                                      factor="logistic", engine=engine)
    sig = lambda w: 1 / (1 + math.exp(-w))
    np.testing.assert_allclose(new[0][0].numpy(), [0.6 + INC * sig(0.6), 0.1 + INC * sig(0.1), -0.4 - DEC * sig(-0.4)],
                               rtol=1e-13)
    assert new[0][1].tolist() == [0.2, 0.1, 3.0] and counts[1].tolist() == [1, 0]
    # unlike g, no soft bound: a large positive weight still grows by about inc
    big, _ = src.sleep_on_spikes([torch.tensor([[5.0]], dtype=torch.float64)], torch.tensor([[1]]), [1.0], [1.0],
                                 inc=INC, dec=DEC, factor="logistic", engine=engine)
    assert big[0].item() == pytest.approx(5 + INC * sig(5.0), rel=1e-14)
    with pytest.raises(ValueError, match="factor must be one of original, logistic"):
        src.sleep_on_spikes(W, torch.tensor([[1, 1, 0]]), [2.0], [1.0], inc=INC, dec=DEC, factor="tanh", engine=engine)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_engines_agree_with_the_logistic_factor(dtype):
    W, spikes = random_case(7, steps=300)
    W = [w.to(dtype) for w in W]
    (wa, ca), (wb, cb) = [src.sleep_on_spikes(W, spikes, [1.3, 1.7, 2.1], [0.5, 0.6, 0.4], inc=INC, dec=DEC,
                                              factor="logistic", engine=e) for e in ENGINES]
    assert [c.tolist() for c in ca] == [c.tolist() for c in cb] and sum(c.sum().item() for c in ca[1:]) > 50
    for a, b in zip(wa, wb):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=0, atol=1e-12 if dtype == torch.float64 else 2e-6)


def test_sampled_input_fires_with_probability_keep_times_2_dt_rate_mean():
    # Pool: images of constant value 0.2 and 0.8; each step the rate map is the mean of 4 drawn images
    # times a mask keeping 30 % of the pixels, so a pixel fires with probability 0.3 * 2 dt rate * 0.5 on average.
    pool = torch.cat([torch.full((5, 784), 0.2), torch.full((5, 784), 0.8)])
    s = src.sampled_input_spikes(pool, 4000, torch.Generator().manual_seed(0), rate=239.515363, dt=0.001,
                                 n_images=4, keep=0.3)
    p = 0.3 * 2 * 0.001 * 239.515363 * 0.5
    shown = s.numel()
    assert s.shape == (4000, 784) and abs(s.float().mean().item() - p) < 4 * math.sqrt(p * (1 - p) / shown)
    # the mean of the drawn images, not one image: with n_images 1 the per-step spike counts spread more
    one = src.sampled_input_spikes(pool, 4000, torch.Generator().manual_seed(0), rate=239.515363, dt=0.001,
                                   n_images=1, keep=0.3)
    assert one.sum(1).float().std() > 1.5 * s.sum(1).float().std()
    with pytest.raises(ValueError, match="keep in"):
        src.sampled_input_spikes(pool, 10, torch.Generator(), rate=1.0, dt=0.001, n_images=1, keep=0.0)


def test_fixed_alpha_reads_no_data():
    gen = torch.Generator().manual_seed(0)
    net = Net([torch.rand(20, 784, generator=gen) - 0.3, torch.rand(10, 20, generator=gen) - 0.3],
              [torch.zeros(20, 784), torch.zeros(10, 20)])
    pool = torch.rand(30, 784, generator=gen)
    c = dict(rate=239.5, inc=INC, dec=DEC, beta=[0.5, 0.5], alpha_scale=1.0, plasticity=(1, 1), factor="logistic")
    slept, info = src.sleep(net, None, 300, torch.Generator().manual_seed(1), src.Sleep(**c, alpha=(2.0, 3.0)),
                            dropout=0.25, sample=(pool, 10, 0.25))
    assert info["alpha"] == [2.0, 3.0] and sum(info["spikes"][1]) > 0 and not torch.equal(slept.W[0], net.W[0])
    with pytest.raises(ValueError, match="alpha must be > 0"):
        src.Sleep(**c, alpha=(2.0, -1.0))


@pytest.mark.parametrize("engine", ENGINES)
def test_each_bias_treatment_by_hand(engine):
    # 2 inputs -> 1 neuron, weights (1.2, -0.3), bias 0.5; input 0 fires at step 1, then nothing for 3 steps;
    # alpha 1, threshold 1, decay 0.999, g(w) = sigmoid(w), inc 0.1, dec 0.05.
    s = lambda w: 1 / (1 + math.exp(-w))
    spikes = torch.tensor([[1, 0], [0, 0], [0, 0], [0, 0]])
    run = lambda W, bias: src.sleep_on_spikes([torch.tensor([W], dtype=torch.float64)], spikes, [1.0], [1.0], inc=0.1,
                                              dec=0.05, factor="logistic", bias=bias, engine=engine)
    up, down = lambda w: w + 0.1 * s(w), lambda w: w - 0.05 * s(w)
    # ignored (the spiking network has no bias): 1.2 fires at step 1 only
    new, counts = run([1.2, -0.3], None)
    np.testing.assert_allclose(new[0][0].numpy(), [up(1.2), down(-0.3)], rtol=1e-12)
    assert counts[1].tolist() == [1]
    # a constant current: membrane 1.7 fires at step 1; then 0.5, 0.9995, 1.4985 fires at step 4 with no input
    new, counts = run([1.2, -0.3, 0.5], "current")
    np.testing.assert_allclose(new[0][0].numpy(), [down(up(1.2)), down(down(-0.3)), 0.5], rtol=1e-12)
    assert counts[1].tolist() == [2]
    # an always-firing unit: step 1 also potentiates the bias to b1 = 0.5 + 0.1 s(0.5) = 0.5622; the membrane
    # then reaches b1 (step 2) and 1.999 b1 = 1.124 >= 1 (step 3), where the bias grows again; step 4: b2 < 1
    b1 = up(0.5)
    assert b1 < 1 <= 1.999 * b1 and up(b1) < 1
    new, counts = run([1.2, -0.3, 0.5], "unit")
    np.testing.assert_allclose(new[0][0].numpy(), [down(up(1.2)), down(down(-0.3)), up(b1)], rtol=1e-12)
    assert counts[1].tolist() == [2]


def test_a_sleep_that_ignores_biases_returns_them_unchanged():
    gen = torch.Generator().manual_seed(0)
    W = [torch.rand(20, 785, generator=gen) - 0.3, torch.rand(10, 21, generator=gen) - 0.3]
    net = Net(W, [torch.zeros_like(w) for w in W], bias=True)
    plain = Net([w[:, :-1].clone() for w in W], [torch.zeros_like(w[:, :-1]) for w in W])
    x = torch.rand(50, 784, generator=gen)
    # fixed scale factors: data-based ones would see the biases in the activations
    c = src.Sleep(rate=239.5, inc=INC, dec=DEC, beta=[0.5, 0.5], alpha_scale=2.0, alpha=(2.0, 3.0), plasticity=(1, 1))
    slept, info = src.sleep(net, x, 300, torch.Generator().manual_seed(1), c, dropout=0.25)
    reference, ref_info = src.sleep(plain, x, 300, torch.Generator().manual_seed(1), c, dropout=0.25)
    assert sum(info["spikes"][1]) > 0 and info["spikes"] == ref_info["spikes"]
    for w, w0, r in zip(slept.W, W, reference.W):
        assert torch.equal(w[:, -1], w0[:, -1]) and torch.equal(w[:, :-1], r)
    with pytest.raises(ValueError, match="bias must be one of ignore, current, unit"):
        dataclasses.replace(c, bias="scaled")


@pytest.mark.parametrize("engine", ENGINES)
def test_a_zero_threshold_fires_without_input(engine):
    # beta 0 (the authors' output layer at 10 % rehearsal): a membrane at 0 is at threshold, so the output neuron
    # fires at every step though nothing reaches it; its inputs never fire, so each step depresses both weights:
    # g(0.5) ~ 1e-217 leaves 0.5, g(w < -0.5) = 2 takes 2 dec per step from -0.5.
    W = [torch.tensor([[0.2, 0.1], [0.1, 0.2]], dtype=torch.float64), torch.tensor([[0.5, -0.5]], dtype=torch.float64)]
    new, counts = src.sleep_on_spikes(W, torch.zeros(3, 2), [1.0, 1.0], [1.0, 0.0], inc=INC, dec=0.01, engine=engine)
    assert counts[1].tolist() == [0, 0] and counts[2].tolist() == [3]
    np.testing.assert_allclose(new[1].numpy(), [[0.5, -0.5 - 3 * 2 * 0.01]], rtol=1e-12)
    assert torch.equal(new[0], W[0])




def test_sleep_constants_are_checked_once_when_made():
    c = src.Sleep(rate=239.5, inc=INC, dec=DEC, beta=[0.5, 0.6, 0.4], alpha_scale=2.0, steps=100, steps_increment=30)
    assert c.beta == (0.5, 0.6, 0.4) and [c.length(k) for k in (1, 2, 5)] == [100, 130, 220]
    for change, message in [(dict(inc=-1.0), "inc must be >= 0; got -1.0"), (dict(rate=0.0), "rate must be > 0"),
                            (dict(steps=2.5), "steps must be a whole number >= 1"), (dict(input="noise"), "input must be one of"),
                            (dict(plasticity=(1.0, 1.0)), "plasticity needs one value per layer, as beta \\(3\\); got 2"),
                            (dict(alpha=(1.0,)), "alpha needs one value per layer"), (dict(mask_fraction=1.5), "mask_fraction must be in")]:
        with pytest.raises(ValueError, match=message):
            dataclasses.replace(c, **change)
    with pytest.raises(ValueError, match="differ only in rate, inc, dec, beta, alpha_scale"):
        net = Net([torch.ones(2, 4), torch.ones(2, 2), torch.ones(1, 2)], [torch.zeros(2, 4), torch.zeros(2, 2), torch.zeros(1, 2)])
        src.sleep([net, net], torch.ones(3, 4), 10, torch.Generator(), [c, dataclasses.replace(c, decay=0.5)], dropout=0.0)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fast_exp_differs_from_the_reference_only_in_rounding(dtype, seed):
    # The numba engine's polynomial exp (exp="fast") against the literal loop, in the engine's precision:
    # the same spikes, and weights within float32's rounding (float64: the polynomial's own 3e-10 relative).
    W, spikes = random_case(seed)
    alpha, beta = [1.3, 1.7, 2.1], [0.5, 0.6, 0.4]
    np_dtype = np.float64 if dtype == torch.float64 else np.float32
    ref_W, ref_counts = literal_sleep([w.to(dtype).numpy() for w in W], spikes.numpy(), alpha, beta, INC, DEC, dtype=np_dtype)
    new, counts = src.sleep_on_spikes([w.to(dtype) for w in W], spikes, alpha, beta, inc=INC, dec=DEC, engine="numba",
                                      exp="fast")
    assert [c.tolist() for c in counts[1:]] == [c.tolist() for c in ref_counts]
    tol = 1e-10 if dtype == torch.float64 else 2e-6
    for w, rw in zip(new, ref_W):
        np.testing.assert_allclose(w.double().numpy(), rw, rtol=0, atol=tol)
    # g over the whole range, underflow included: weights from -1 to 1 (|w| / 0.001 up to 1000)
    w = torch.linspace(-1, 1, 2001, dtype=dtype)[None]
    w[0, 0] = 5.0                                                      # the neuron fires: a strong input that fired
    every_other = (torch.arange(2001) % 2 == 0)[None]
    (exact,), c_exact = src.sleep_on_spikes([w], every_other, [1.0], [0.0], inc=INC, dec=DEC, engine="numba")
    (fast,), c_fast = src.sleep_on_spikes([w], every_other, [1.0], [0.0], inc=INC, dec=DEC, engine="numba", exp="fast")
    assert c_exact[1].item() == c_fast[1].item() == 1 and (exact != w).sum() > 1000
    np.testing.assert_allclose(fast.double().numpy(), exact.double().numpy(), rtol=0, atol=tol)
    with pytest.raises(ValueError, match="numba engine"):
        src.sleep_on_spikes(W, spikes, alpha, beta, inc=INC, dec=DEC, engine="torch", exp="fast")
    with pytest.raises(ValueError, match="logistic g keeps its exact exp"):
        src.sleep_on_spikes(W, spikes, alpha, beta, inc=INC, dec=DEC, engine="numba", exp="fast", factor="logistic")
    with pytest.raises(ValueError, match="exp must be"):
        src.sleep_on_spikes(W, spikes, alpha, beta, inc=INC, dec=DEC, engine="numba", exp="quick")
