"""src.sleep_model as a user calls it: required task and seed, what it reads and returns, and bad input in one line."""
import dataclasses

import pytest
import torch

import config
import src

C = src.Sleep(rate=239.5, inc=0.03, dec=0.003, beta=(0.5, 0.5), alpha_scale=2.0, steps=300)


def toy():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 40, bias=False), torch.nn.ReLU(),
                                torch.nn.Linear(40, 10, bias=False))
    return model, torch.rand(50, 1, 28, 28) * (torch.rand(1, 1, 28, 28) < 0.4)


def weights(model):
    return [m.weight for m in model if isinstance(m, torch.nn.Linear)]


def test_a_sleep_with_two_thresholds_has_plasticity_for_two_layers():
    assert C.plasticity == (1.0, 1.0) and src.Sleep(rate=1.0, inc=0.0, dec=0.0, beta=0.5, alpha_scale=1.0).plasticity == (1.0,)
    assert dataclasses.replace(C, plasticity=(0.0, 1.0)).plasticity == (0.0, 1.0)


def test_task_and_seed_are_required_and_info_starts_with_the_inputs():
    model, x = toy()
    with pytest.raises(TypeError, match="task"):
        src.sleep_model(model, x, C)
    slept, info = src.sleep_model(model, x, C, task=1, seed=0, progress=False)
    assert [len(n) for n in info["spikes"]] == [784, 40, 10] and len(info["alpha"]) == 2 and info["stopped"] is False
    assert sum(info["spikes"][1]) > 0 and sum(info["spikes"][2]) > 0
    other, _ = src.sleep_model(model, x, C, task=1, seed=1, progress=False)   # another seed, another input
    assert not torch.equal(weights(other)[0], weights(slept)[0])
    longer, info2 = src.sleep_model(model, x, dataclasses.replace(C, steps_increment=200), task=2, seed=0, progress=False)
    assert sum(info2["spikes"][0]) > sum(info["spikes"][0])   # task 2 sleeps 500 steps, task 1 300


def test_images_as_a_numpy_array_sleep_as_the_same_tensor():
    model, x = toy()
    want, _ = src.sleep_model(model, x, C, task=1, seed=0, progress=False)
    got, _ = src.sleep_model(model, x.numpy(), C, task=1, seed=0, progress=False)
    assert all(torch.equal(a, b) for a, b in zip(weights(want), weights(got)))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_models_sleep_in_float32_and_come_back_in_their_dtype(dtype):
    model, x = toy()
    half = model.to(dtype)
    want, _ = src.sleep_model(half.float(), x, C, task=1, seed=0, progress=False)   # the same weights, in float32
    got, _ = src.sleep_model(half.to(dtype), x, C, task=1, seed=0, progress=False)
    assert all(w.dtype == dtype for w in weights(got))
    assert all(torch.equal(a.to(dtype), b) for a, b in zip(weights(want), weights(got)))
    assert any(not torch.equal(a, b) for a, b in zip(weights(got), weights(half.to(dtype))))


@pytest.mark.parametrize("change, message", [
    (dict(images=torch.zeros(0, 784)), "images is empty"),
    (dict(images=torch.rand(5, 401)), "images must have 784 values per image, as the model's first Linear layer takes; got 401"),
    (dict(images=torch.rand(5, 784) * 255), "images must be pixels in \\[0, 1\\]"),
    (dict(images=(torch.rand(5, 784) - 0.1307) / 0.3081), "images must be pixels in \\[0, 1\\]"),
    (dict(images="pixels"), "images must be a tensor or an array of pixels"),
    (dict(seed=None), "seed must be a whole number >= 0; got None"),
    (dict(task=0), "task must be a whole number >= 1; got 0"),
    (dict(task=1.5), "task must be a whole number >= 1; got 1.5"),
    (dict(constants="original"), "constants must be a src.Sleep or 'auto': for the preset 'original' pass config.preset_sleep"),
])
def test_bad_input_is_one_line_naming_the_argument(change, message):
    model, x = toy()
    args = dict(images=x, constants=C, task=1, seed=0)
    args.update(change)
    with pytest.raises(ValueError, match=message) as err:
        src.sleep_model(model, args.pop("images"), args.pop("constants"), progress=False, **args)
    assert "\n" not in str(err.value)


def test_nan_weights_are_refused_naming_the_layer():
    model, x = toy()
    with torch.no_grad():
        model[3].weight[0, 0] = float("nan")
    with pytest.raises(ValueError, match="Linear layer 2 has non-finite weights"):
        src.sleep_model(model, x, C, task=1, seed=0, progress=False)


def test_a_layer_that_never_fires_is_a_warning_naming_it():
    model, x = toy()
    with pytest.warns(UserWarning, match="Linear layer 2 of the model never fired during the sleep") as caught:
        slept, info = src.sleep_model(model, x, dataclasses.replace(C, beta=(0.5, 1e9)), task=1, seed=0, progress=False)
    assert len(caught) == 1 and sum(info["spikes"][1]) > 0 and sum(info["spikes"][2]) == 0
    assert not torch.equal(weights(slept)[0], weights(model)[0])   # the layer below still slept


def test_the_unknown_preset_message_lists_only_presets_with_sleep_constants():
    with pytest.raises(ValueError) as err:
        config.preset_sleep("nope")
    listed = str(err.value).split("choose from ")[1].rstrip(")").split(", ")
    assert "original" in listed and "beyond-weights-only" in listed and "lwf" not in listed
    assert all(config.preset_sleep(name).rate > 0 for name in listed)
