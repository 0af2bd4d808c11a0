"""The GPU path: one placement decision, the torch engine without per-step waits, its float32 raster, and both
engines on a GPU where there is one. Without CUDA the GPU's code runs on the CPU (masked plasticity, the
float32 draws) and the decision is checked with torch.cuda.is_available patched."""
import pytest
import torch

import config
import methods
import src
from config import DEFAULTS, ConfigError, resolve
from models import Net

INC, DEC = 0.03, 0.004
ARGS = ([1.3, 1.7, 2.1], [0.5, 0.6, 0.4])
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (run where one is lent)")


class Masked(src.TorchEngine):
    """The torch engine as it runs on a GPU (plasticity on every row, kept where its neuron fired), here on the CPU."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.masked = True


def random_case(seed, sizes=(12, 9, 7, 4), steps=300, p=0.3, batch=None, dtype=torch.float64, bias=False):
    gen = torch.Generator().manual_seed(seed)
    shape = () if batch is None else (batch,)
    W = [((torch.rand(*shape, o, i + bias, generator=gen, dtype=torch.float64) - 0.35) * 0.6).to(dtype)
         for i, o in zip(sizes[:-1], sizes[1:])]
    return W, torch.rand(*shape, steps, sizes[0], generator=gen) < p


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("case", [dict(), dict(batch=3, max_spikes=800), dict(bias="current"), dict(bias="unit", batch=2),
                                  dict(factor="logistic")])
def test_masked_plasticity_gives_the_numbers_of_the_rows_that_fired(dtype, case, monkeypatch):
    case = dict(case)
    W, spikes = random_case(3, batch=case.pop("batch", None), dtype=dtype, bias="bias" in case)
    rows, counts = src.sleep_on_spikes(W, spikes, *ARGS, inc=INC, dec=DEC, engine="torch", **case)
    monkeypatch.setitem(src.ENGINES, "torch", Masked)
    masked, masked_counts = src.sleep_on_spikes(W, spikes, *ARGS, inc=INC, dec=DEC, engine="torch", **case)
    assert sum(c.sum().item() for c in counts[1:]) > 300                 # plenty of plasticity
    assert all(torch.equal(a, b) for a, b in zip(counts, masked_counts))
    # the same weights but for the last bit of an exp (torch's vectorised loop and its scalar tail may round one
    # differently, and which elements fall in the tail depends on the tensor's size)
    tol = 1e-15 if dtype == torch.float64 else 2.5e-7
    assert all(torch.allclose(a, b, rtol=0, atol=tol) for a, b in zip(rows, masked))
    assert all((a - w).abs().max() > 1e-3 for a, w in zip(rows, W))


@pytest.mark.parametrize("engine", ["torch", "masked"])
def test_a_non_finite_weight_found_at_the_chunks_end_is_named_by_its_step_and_network(engine, monkeypatch):
    if engine == "masked":
        monkeypatch.setitem(src.ENGINES, "torch", Masked)
    # Network 1's weight near the float32 limit overflows at its first spike, step 3 of the second chunk (step 5).
    W = [torch.tensor([[[2.0, -1.0]], [[2.0, -3e38]]]), torch.tensor([[[1.0]], [[1.0]]])]
    spikes = torch.tensor([[0, 0], [0, 0], [0, 0], [0, 0], [1, 0], [1, 0]]).expand(2, 6, 2)
    with pytest.raises(FloatingPointError, match=r"layer 1 at step 5 \(network 1\)"):
        src.sleep_on_spikes(W, iter([spikes[:, :2], spikes[:, 2:]]), [1.0, 1.0], [1.0, 1.0], inc=0.0, dec=1e38,
                            engine="torch")


def test_the_float32_raster_has_the_windows_and_rate_of_the_float64_one():
    image = torch.zeros(28, 28)
    image[:, 14:] = 0.25
    gen = torch.Generator().manual_seed(0)
    s = src.input_spikes(image.flatten(), 4000, gen, rate=100.0, dt=0.001, mask_size=5, dtype=torch.float32)
    assert s.dtype == torch.bool and s.shape == (4000, 784)
    s = s.reshape(-1, 28, 28)
    assert not s[:, :, :14].any()                                         # a zero pixel never fires
    rows, cols = s.any(2).sum(1), s.any(1).sum(1)
    assert rows.max() <= 5 and cols.max() <= 5                            # one 5 x 5 window per step
    # a pixel of value 0.25 fires with probability 2 dt rate p = 0.05 when its window covers it (25 pixels, half of
    # the windows' corners on the right half): about 4000 * 25 * 0.05 / 2 = 2500 spikes
    assert 2100 < s.sum().item() < 2900
    batch = src.input_spikes(image.flatten(), 50, torch.Generator().manual_seed(0), rate=[100.0, 400.0], dt=0.001,
                             mask_size=5, dtype=torch.float32)
    assert batch.shape == (2, 50, 784) and (batch[1] >= batch[0]).all()  # the same draws: a higher rate adds spikes


def test_placement_is_one_decision(monkeypatch):
    assert src.placement("cpu", "auto") == (torch.device("cpu"), "numba")
    assert src.placement("cpu", "torch") == (torch.device("cpu"), "torch")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert src.placement() == (torch.device("cpu"), "numba")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert src.placement() == (torch.device("cuda"), "torch")
    assert src.placement("auto", "numba") == (torch.device("cuda"), "numba")   # trains on the GPU, sleeps on the CPU
    assert src.placement("cuda:1", "auto") == (torch.device("cuda", 1), "torch")
    assert src.placement(torch.device("cpu"), "auto")[1] == "numba"             # as sleep_on_spikes asks it


def test_prepare_carries_the_decision():
    cfg = resolve(DEFAULTS, ["--quick", "--device", "cpu", "--engine", "torch", "--n-tasks", "1"])
    ctx = methods.prepare(cfg)
    assert (ctx.device, ctx.engine) == (torch.device("cpu"), "torch") and ctx.train_x.device.type == "cpu"


def problems(*argv):
    try:
        resolve(DEFAULTS, list(argv))
    except ConfigError as err:
        return str(err)
    return ""


def test_check_reads_the_same_decision(monkeypatch):
    monkeypatch.setattr(config, "INTERACTIVE", True)   # errors as exceptions
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert problems("--device", "cuda", "--engine", "numba") == ""                 # train on the GPU, sleep in numba
    assert problems("--device", "cuda", "--engine", "numba", "--sleep-exp", "fast") == ""
    for argv in (["--device", "cuda"], ["--sleep-exp", "fast"], ["--device", "auto", "--engine", "torch"]):
        assert "--sleep-exp fast is the numba engine's" in problems(*argv, "--sleep-exp", "fast"), argv
    assert "this machine has 2 CUDA device(s)" in problems("--device", "cuda:2")
    assert "--device must be cpu, cuda, cuda:N or auto" in problems("--device", "cuda:x")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert problems("--sleep-exp", "fast") == ""                                   # auto: numba on the CPU
    assert "no CUDA device that torch can use" in problems("--device", "cuda", "--engine", "numba")


@cuda
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_both_engines_on_the_gpu_give_the_cpus_spikes(dtype):
    W, spikes = random_case(4, batch=2, dtype=dtype)
    ref, ref_counts = src.sleep_on_spikes(W, spikes, *ARGS, inc=INC, dec=DEC, engine="torch")
    tol = 1e-12 if dtype == torch.float64 else 2e-6
    for engine in ("torch", "numba"):   # numba: the weights visit the CPU and come back
        new, counts = src.sleep_on_spikes([w.cuda() for w in W], spikes.cuda(), *ARGS, inc=INC, dec=DEC, engine=engine)
        assert all(w.device.type == "cuda" and w.dtype == dtype for w in new)
        assert all(torch.equal(a, b) for a, b in zip(counts, ref_counts)), engine
        assert all(torch.allclose(a.cpu(), b, rtol=0, atol=tol) for a, b in zip(new, ref)), engine


@cuda
def test_a_sleep_phase_on_the_gpu_in_either_engine():
    gen = torch.Generator().manual_seed(0)
    net = Net([torch.rand(20, 784, generator=gen) - 0.3, torch.rand(10, 20, generator=gen) - 0.3],
              [torch.zeros(20, 784), torch.zeros(10, 20)])
    x = torch.rand(50, 784, generator=gen)
    alpha = tuple(src.scale_factors(net, x, 0.25, 1.0))   # fixed, and the mean image given: the same on either device
    c = src.Sleep(rate=239.5, inc=INC, dec=DEC, beta=[0.5, 0.5], alpha_scale=1.0, alpha=alpha, plasticity=(1, 1))
    sleep = lambda net, engine: src.sleep(net, None, 700, torch.Generator().manual_seed(1), c, dropout=0.25,
                                          images=x.mean(0).to(net.W[0].device), engine=engine)
    on_cpu, cpu_info = sleep(net, "numba")
    gpu_net = net.with_weights([w.cuda() for w in net.W], [v.cuda() for v in net.vW])
    numba, info = sleep(gpu_net, "numba")   # the CPU's raster and kernel: the CPU's sleep, to the bit
    assert all(w.device.type == "cuda" for w in numba.W)
    assert info["spikes"] == cpu_info["spikes"] and all(torch.equal(a.cpu(), b) for a, b in zip(numba.W, on_cpu.W))
    on_gpu, info = sleep(gpu_net, "torch")   # its own float32 raster drawn there: other draws, the same rate
    assert all(w.device.type == "cuda" for w in on_gpu.W) and sum(info["spikes"][1]) > 0
    assert abs(sum(info["spikes"][0]) - sum(cpu_info["spikes"][0])) < 0.1 * sum(cpu_info["spikes"][0])
    assert not torch.equal(on_gpu.W[0].cpu(), net.W[0])
