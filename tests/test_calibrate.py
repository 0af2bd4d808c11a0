"""src.calibrate: the constants set from the network and the sleep's images meet their targets on toy networks."""
import dataclasses
import warnings

import numpy as np
import pytest
import torch

import src

TARGETS = dict(firing=(0.02, 0.01, 0.005), input_rate=0.01, inc=0.5, dec=0.05)


def toy(bias=False, seed=0):
    """A 784-64-32-10 network with PyTorch's initialisation, and 200 sparse images in [0, 1]."""
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 64, bias=bias), torch.nn.ReLU(),
                                torch.nn.Linear(64, 32, bias=bias), torch.nn.ReLU(), torch.nn.Linear(32, 10, bias=bias))
    return model, torch.rand(200, 784) * (torch.rand(784) < 0.3)


@pytest.mark.parametrize("bias", [False, True])
def test_each_layer_fires_at_its_target(bias):
    model, x = toy(bias)
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # no layer off its target
        c = src.calibrate(model, x, seed=3, **TARGETS)
    rates = src.firing_rates(model, x, c, seed=3)   # the calibration's own input: within its 1 % stop (and rounding)
    assert all(abs(r - t) <= 0.02 * t for r, t in zip(rates[1:], TARGETS["firing"])), rates
    assert abs(rates[0] - TARGETS["input_rate"]) <= 0.05 * TARGETS["input_rate"], rates   # its expectation, drawn
    other = src.firing_rates(model, x, c, seed=4)   # another draw of the input: within 15 %
    assert all(abs(r - t) <= 0.15 * t for r, t in zip(other[1:], TARGETS["firing"])), other
    assert c.alpha_scale == 1.0 and c.plasticity == (1.0, 1.0, 1.0)
    # a threshold a tenth lower than calibrated: the layer fires more than its tolerance allows
    lower = src.firing_rates(model, x, dataclasses.replace(c, beta=(c.beta[0] * 0.9,) + c.beta[1:]), seed=3)
    assert lower[1] > 1.05 * TARGETS["firing"][0]


def test_inc_and_dec_follow_g_s_width_the_thresholds_the_weights_and_the_rate_the_images_intensity():
    model, x = toy()
    c = src.calibrate(model, x, seed=3, **TARGETS)
    assert c.inc == pytest.approx(0.5 * src.G_WIDTH, rel=1e-12) and c.dec == pytest.approx(0.05 * src.G_WIDTH, rel=1e-12)
    with torch.no_grad():   # weights ten times larger: the same inc and dec, and the layers still at their targets
        for m in model:
            if isinstance(m, torch.nn.Linear):
                m.weight.mul_(10)
    big = src.calibrate(model, x, seed=3, **TARGETS)
    assert (big.inc, big.dec) == (c.inc, c.dec)
    rates = src.firing_rates(model, x, big, seed=3)
    assert np.allclose(rates[1:], TARGETS["firing"], rtol=0.02), rates
    dim = src.calibrate(model, x / 2, seed=3, **TARGETS)   # half the intensity: twice the rate (none saturates)
    assert dim.rate == pytest.approx(2 * big.rate, rel=1e-6)


def test_a_calibrated_sleep_is_a_sleep_that_sleep_model_runs():
    model, x = toy()
    c = src.calibrate(model, x, seed=3, steps=500)
    assert isinstance(c, src.Sleep) and len(c.beta) == 3 and (c.steps, c.steps_increment) == (5000, 30000)
    assert dataclasses.replace(c) == c   # every constant passes Sleep's checks
    short = src.calibrate(model, x, seed=3, steps=500, **dict(TARGETS, firing=0.01), steps_increment=100)
    assert short.steps_increment == 100
    slept, info = src.sleep_model(model, x, dataclasses.replace(short, steps=400), task=1, seed=0, progress=False)
    assert all(sum(n) > 0 for n in info["spikes"]) and len(info["spikes"][0]) == 784
    assert any(not torch.equal(a, b) for a, b in zip(slept.parameters(), model.parameters()))
    auto, info = src.sleep_model(model, x, "auto", task=1, seed=0, progress=False)   # calibrate, then sleep
    assert all(sum(n) > 0 for n in info["spikes"]) and sum(info["spikes"][0]) > 0


@pytest.mark.parametrize("targets, named", [(dict(firing=0.0), "firing"), (dict(firing=(0.01, 1.0, 0.01)), "firing"),
                                            (dict(input_rate=1.5), "input_rate"), (dict(inc=0.0), "inc"), (dict(inc=float("inf")), "inc"),
                                            (dict(dec=-0.1), "dec"), (dict(input_rate=float("nan")), "input_rate")])
def test_a_target_outside_its_range_is_refused_in_one_line(targets, named):
    # the rates are fractions of the steps, in (0, 1); inc and dec ratios to g's width, > 0 (the authors' inc: 32)
    model, x = toy()
    with pytest.raises(ValueError) as err:
        src.calibrate(model, x, **dict(TARGETS, **targets))
    assert str(err.value).startswith(f"{named} must be") and "\n" not in str(err.value)
    with pytest.raises(ValueError, match="firing needs one target, or one per Linear layer \\(3\\); got"):
        src.calibrate(model, x, **dict(TARGETS, firing=(0.01, 0.01)))


def test_a_layer_that_cannot_reach_its_target_is_named_and_gets_the_nearest_threshold():
    model, x = toy()
    # at the lowest threshold the output units whose input is mostly negative still never fire
    with pytest.warns(UserWarning, match="calibrate: Linear layer 3 fires at 0.[0-9]+ spikes per neuron per step at its "
                                         "nearest threshold \\(1e-06\\), not at its firing target 0.99"):
        c = src.calibrate(model, x, **dict(TARGETS, firing=(0.02, 0.01, 0.99)))
    assert c.beta[2] == 1e-6 and src.firing_rates(model, x, c, seed=0)[3] < 0.9
    with torch.no_grad():
        model[3].weight.clamp_(max=0)   # layer 2 has no positive weight: it never fires, whatever its threshold
    with pytest.raises(ValueError, match="layer 2 has no positive weight"):
        src.calibrate(model, x, **TARGETS)
