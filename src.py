"""Sleep Replay Consolidation (SRC): the spiking sleep phase of Tadros et al., Nat. Commun. 13, 7742 (2022).

After a task is learned, the ReLU network is run as a network of
integrate-and-fire neurons with the same weights: Poisson spikes drawn from
the mean training image (seen through a small moving window) drive it, and a
local rule changes the weights of every neuron that fires. The defaults follow
the authors' MATLAB (sleep/sleepnn_old.m, utils/normalize_nn_data.m,
utils/create_masked_input.m); PROTOCOL.md states the protocol step by step.

Read top-down:
- `Sleep`: every constant of a sleep schedule, checked once when made;
- `sleep`: one sleep phase (scale factors, input, simulation);
- `sleep_model`, `calibrate`: a user's nn.Sequential slept, and the constants set from the network itself;
- `scale_factors`: the data-based factors alpha of each layer;
- `input_spikes`: the masked Poisson input, from a torch.Generator (`image_spikes`: the robustness
  scripts' input, one whole training image per step; `sampled_input_spikes`: the earlier Python replica's);
- `sleep_on_spikes`: the deterministic core, a spike raster in, new weights out, run by one of two
  engines that compute the same thing: `TorchEngine`, the literal per-step loop (batched, any device:
  the GPU engine, and the reference the tests use), and `NumbaEngine`, an event-driven CPU kernel that
  touches only the weight columns of the inputs that spiked and the rows of the neurons that fired
  (weights on a GPU come to the CPU for it); `placement` says which runs where.
"""
import copy
import dataclasses
import math
import warnings
from dataclasses import dataclass

import codepath  # noqa: F401  (before torch and numba: the pinned code paths and threads)
import numba
import numpy as np
import torch
from tqdm.auto import tqdm

from models import Net, forward

# numba's own thread pool, not OpenMP: its OpenMP layer would share (and reset) torch's thread settings.
numba.config.THREADING_LAYER = "workqueue"

G_WIDTH = 0.001  # width of the plasticity sigmoid g(w), from sleepnn_old.m


def g(w, factor="original"):
    """The weight factor of the plasticity rule. "original" (sleepnn_old.m): g(w) = 2 (1 - 1 / (1 + exp(-w / 0.001)))
    = 2 sigmoid(-w / 0.001), ~2 for w < 0 and ~0 for w > 0.01, a soft bound; "logistic" (the earlier Python
    replica): sigmoid(w), ~0.5 near 0, no bound."""
    return 2 * torch.sigmoid(-w / G_WIDTH) if factor == "original" else torch.sigmoid(w)


# ---------------------------------------------------------------- the sleep's constants

CONSTANTS = {   # what each numeric constant may be: (words for the error message, test on a float64 array)
    "rate": ("> 0", lambda a: a > 0),
    "inc": (">= 0", lambda a: a >= 0),
    "dec": (">= 0", lambda a: a >= 0),
    "beta": (">= 0", lambda a: a >= 0),   # 0: the layer fires whenever its membrane is >= 0 (run_sleep_with_replay.m at 10 %)
    "alpha_scale": ("> 0", lambda a: a > 0),
    "alpha": ("> 0", lambda a: a > 0),
    "dt": ("> 0", lambda a: a > 0),
    "decay": ("in [0, 1]", lambda a: (a >= 0) & (a <= 1)),
    "mask_size": ("a whole number >= 1", lambda a: (a >= 1) & (a == np.round(a))),
    "steps": ("a whole number >= 1", lambda a: (a >= 1) & (a == np.round(a))),
    "steps_increment": ("a whole number >= 0", lambda a: (a >= 0) & (a == np.round(a))),
    "samples": ("a whole number >= 1", lambda a: (a >= 1) & (a == np.round(a))),
    "mask_fraction": ("in (0, 1]", lambda a: (a > 0) & (a <= 1)),
    "plasticity": (">= 0", lambda a: a >= 0),
}
CHOICES = dict(input=("mean", "class-means", "replica", "images"), data=("seen", "current", "current+means", "first"),
               factor=("original", "logistic"), bias=("ignore", "current", "unit"), exp=("exact", "fast"))


def check_constants(**values):
    """Raise ValueError naming the first constant that is not allowed (CONSTANTS says what is)."""
    for name, value in values.items():
        words, ok = CONSTANTS[name]
        a = np.asarray(value.cpu() if torch.is_tensor(value) else value, dtype=np.float64)
        if a.size == 0 or not np.isfinite(a).all() or not ok(a).all():
            raise ValueError(f"{name} must be {words}; got {np.array2string(a, separator=', ') if a.ndim else value}")


@dataclass(frozen=True)
class Sleep:
    """Every constant of one sleep schedule, checked once when made (ValueError naming the field).
    The defaults are the protocol's (PROTOCOL.md) except the five the authors searched, which have none."""
    rate: float                      # a pixel of value p fires with probability 2 dt rate p per step
    inc: float                       # potentiation: W += inc g(W) where pre and post fired
    dec: float                       # depression: W -= dec g(W) where post fired and pre did not
    beta: tuple                      # threshold multiplier of each layer
    alpha_scale: float               # scale of the data-based factors alpha
    alpha: tuple = None              # fixed scale factors, one per layer, instead of the data-based ones
    alpha_softmax: bool = False      # the output layer's factor sees softmax probabilities (iCaRL's script)
    steps: int = 15000               # length of the first sleep
    steps_increment: int = 5000      # extra steps per later task: T_k = steps + (k - 1) steps_increment
    dt: float = 0.001                # simulation time step (s)
    decay: float = 0.999             # membrane decay per step
    mask_size: int = 11              # side of the square window of the rate map shown each step
    input: str = "mean"              # rate map: "mean" image, "class-means" (one class's per step), "replica" or
                                     # "images" (one training image per step, whole, in order: image_spikes)
    data: str = "seen"               # what it reads: "seen", "current", "current+means" or "first" (methods.sleep_task)
    samples: int = 10                # input "replica": images averaged per step
    mask_fraction: float = 0.25      # input "replica": fraction of pixels each step's mask keeps
    plasticity: tuple = None         # multiplier of inc and dec per layer (0 freezes a layer); default 1 per beta
    factor: str = "original"         # g(w): "original" 2 sigmoid(-w / 0.001) or "logistic" sigmoid(w)
    bias: str = "ignore"             # networks with biases: "ignore", "current" or "unit" (see sleep)
    exp: str = "exact"               # the numba engine's exp: "exact" or "fast" (see sleep_on_spikes)

    def __post_init__(self):
        if self.plasticity is None:
            object.__setattr__(self, "plasticity", (1.0,) * len(np.atleast_1d(self.beta)))
        for name in ("beta", "plasticity") + (("alpha",) if self.alpha is not None else ()):
            object.__setattr__(self, name, tuple(float(v) for v in np.atleast_1d(getattr(self, name))))
        check_constants(**{k: getattr(self, k) for k in CONSTANTS if getattr(self, k) is not None})
        for name, choices in CHOICES.items():
            if getattr(self, name) not in choices:
                raise ValueError(f"{name} must be one of {', '.join(choices)}; got {getattr(self, name)!r}")
        if self.input == "images" and self.data == "current+means":
            raise ValueError("input images shows raw training images, one per step; data current+means keeps only "
                             "a mean image per class")
        for name in ("plasticity",) + (("alpha",) if self.alpha is not None else ()):
            if len(getattr(self, name)) != len(self.beta):
                raise ValueError(f"{name} needs one value per layer, as beta ({len(self.beta)}); "
                                 f"got {len(getattr(self, name))}")

    def length(self, k):
        """Steps of the sleep after task k."""
        return self.steps + (k - 1) * self.steps_increment


SEARCHED = ("rate", "inc", "dec", "beta", "alpha_scale")   # may differ between the networks of one batched sleep


# ---------------------------------------------------------------- the sleep phase

def sleep(nets, sleep_x, steps, generator, constants, *, dropout, images=None, sample=None, max_spikes=None,
          engine="auto", chunk=5000, progress=False, window=0, watch=None):
    """One SRC sleep phase of `steps` steps with sleep data `sleep_x`; returns (slept copy of the network, info).

    constants: a Sleep. nets: one Net, or a list of B Nets slept at once by the batched engine (then
    returns two lists), with one Sleep or a list of B of them that differ only in SEARCHED.
    All networks see the same window positions and draws (one generator).
    sleep_x: the images the scale factors are computed on (the protocol: every training image seen).
    images: the rate maps shown through the window (see input_spikes); default the mean image of sleep_x.
    With constants.input "images": the images shown whole, one per step in their order (image_spikes);
    default sleep_x itself.
    sample: (pool, n, keep) replaces the window input by the earlier Python replica's: each step, the mean
    of n images drawn from pool, times a mask keeping each pixel with probability keep (sampled_input_spikes).
    With fixed constants.alpha, sleep_x is not read.
    constants.bias, for networks with biases (not in the original): "ignore" (the spiking network has none,
    and they come out unchanged), "current" (alpha_l b_l is added to the membranes every step; unchanged
    by plasticity) or "unit" (the weights of an input unit that fires every step: the same current, and
    plasticity potentiates them whenever their neuron fires).
    info: the scale factors alpha, the spike counts of every neuron and whether the network stopped at
    max_spikes (see sleep_on_spikes). window N > 0 (an analysis, not the protocol: the spikes are the same):
    also info["window_counts"], each layer's counts per window of N steps ([windows, neurons]), and with
    watch(net) (one network) info["watched"], [(step, watch(the network so far))] at the end of every window.
    The momentum buffers are carried over unchanged, as in the original.
    """
    batch = list(nets) if isinstance(nets, (list, tuple)) else [nets]
    each = list(constants) if isinstance(constants, (list, tuple)) else [constants] * len(batch)
    c = each[0]
    if len(each) != len(batch) or any(dataclasses.replace(e, **{k: getattr(c, k) for k in SEARCHED}) != c for e in each):
        raise ValueError(f"a batched sleep needs one Sleep per network ({len(batch)}) that differ only in {', '.join(SEARCHED)}")
    check_constants(steps=steps)
    rate = np.array([e.rate for e in each])
    if c.alpha is None:
        if sleep_x is None or len(sleep_x) == 0:
            raise ValueError("sleep needs sleep data (the training images of the tasks seen so far); got none")
        alpha = [scale_factors(net, sleep_x, dropout, e.alpha_scale, c.alpha_softmax) for net, e in zip(batch, each)]
    else:
        alpha = [list(c.alpha)] * len(batch)
    device = batch[0].W[0].device
    engine = placement(device, engine)[1]
    # The raster is drawn where its engine runs. The torch engine on a GPU: there, in float32, from a generator there
    # seeded by one draw of this one (other draws than the CPU's, the same statistics; no copy per chunk).
    # Otherwise on the CPU in float64, as MATLAB's double rate map (the CPU's numbers, and the numba engine's).
    on_gpu = engine == "torch" and device.type != "cpu"
    draw = dict(device=device, dtype=torch.float32) if on_gpu else dict(device=torch.device("cpu"), dtype=torch.float64)
    if on_gpu:
        generator = torch.Generator(device).manual_seed(int(torch.randint(2 ** 62, (), generator=generator)))
    if c.input == "images":   # make(s, n): the raster of steps s..s+n-1
        shown = sleep_x if images is None else images
        if shown is None:
            raise ValueError("the sleep input 'images' shows one image per step; got no images")
        make = lambda s, n: image_spikes(shown, s, n, generator, rate=rate, dt=c.dt, **draw)
    elif sample is None:
        images = sleep_x.mean(0) if images is None else images
        make = lambda s, n: input_spikes(images, n, generator, rate=rate, dt=c.dt, mask_size=c.mask_size, **draw)
    else:
        pool, n_images, keep = sample
        make = lambda s, n: sampled_input_spikes(pool, n, generator, rate=rate, dt=c.dt, n_images=n_images, keep=keep,
                                                 **draw)
    biased = batch[0].bias
    spiking = [net.weights_only() if biased and c.bias == "ignore" else net.W for net in batch]
    W = [torch.stack(ws) for ws in zip(*spiking)]                                          # [B, out, in (+ 1)]
    chunks = (make(s, min(chunk, steps - s)) for s in range(0, steps, chunk))
    windows, watched = [], []

    def on_window(step, counts, weights):
        windows.append(counts)
        if watch is not None:
            Wb = weights()
            watched.append((step, watch(batch[0].with_weights(restore(batch[0], [w[0] for w in Wb], c.bias), batch[0].vW))))

    W, counts = sleep_on_spikes(W, chunks, alpha, [e.beta for e in each], inc=[e.inc for e in each],
                                dec=[e.dec for e in each], decay=c.decay, plasticity=c.plasticity, factor=c.factor,
                                bias=c.bias if biased and c.bias != "ignore" else None, max_spikes=max_spikes, exp=c.exp,
                                engine=engine, progress=progress, total_steps=steps, window=window,
                                on_window=on_window if window else None)
    fired = sum(n.sum(1) for n in counts[1:])
    slept, infos = [], []
    for b, net in enumerate(batch):
        slept.append(net.with_weights(restore(net, [w[b].clone() for w in W], c.bias), [v.clone() for v in net.vW]))
        infos.append(dict(alpha=alpha[b], spikes=[n[b].tolist() for n in counts],
                          stopped=max_spikes is not None and fired[b].item() > max_spikes))
        if window:
            infos[-1]["window_counts"] = [torch.stack([w[l][b] for w in windows]) for l in range(len(counts))]
            infos[-1]["watched"] = watched
    return (slept, infos) if isinstance(nets, (list, tuple)) else (slept[0], infos[0])


def sleep_model(model, images, constants, *, task, seed, engine="auto", progress=True):
    """Sleep your own PyTorch network: a torch.nn.Sequential of nn.Flatten, nn.Linear (all with biases or none),
    nn.ReLU and nn.Dropout (read as the evaluation-mode network), ending in a Linear (logits) or a ReLU. Returns
    (a slept copy of the model, info); the model itself is left as it was.

    images: the sleep data, a tensor (or numpy array) [n, ...] of pixels in [0, 1] as the model takes them. The
    sleep reads these images and nothing else: the scale factors alpha come from their activations through the
    model, the input spikes from their mean image (which must be square; with constants.input "images", from
    the images themselves, one per step in their order). What to pass is yours: the presets'
    own runs read every training image seen so far ("original", --sleep-data seen) or the last task's only
    ("beyond-weights-only", --sleep-data current); a preset's Sleep.data says which, and is not read here.
    constants: a Sleep (a preset's: config.preset_sleep("beyond-weights-only")), or "auto": calibrate(model,
    images, seed=seed), the constants set from this network and these images at this call (see calibrate; in
    a loop of tasks, calibrate once at the first sleep and pass that Sleep to every sleep: docs/usage.md).
    task, seed (required): the sleep lasts constants.length(task) steps and draws its input from
    torch.Generator().manual_seed(seed): give each sleep its own seed, or every sleep sees the same input.
    progress: a progress bar of the sleep's steps (False: quiet).
    info: "alpha", the scale factor of each Linear layer; "spikes", the spike count of every neuron, one list
    per layer starting with the inputs (info["spikes"][0] has one count per pixel, then one list per Linear
    layer, the output last); "stopped", False (no spike budget here).
    A layer that never fired is a warning naming it (the sleep changed nothing there or above: its threshold
    is too high for this network; "auto" sets it). Float16 and bfloat16 models sleep in float32 and come back
    in their dtype. Anything but those modules, or a bad argument, is a one-line ValueError that names it.
    This is src.sleep on the same weights: the sequential is read as a Net (models.py) and the slept weights
    written back."""
    net, c = as_net(model), constants
    for name, value, low in (("task", task, 1), ("seed", seed, 0)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < low:
            raise ValueError(f"{name} must be a whole number >= {low}; got {value!r}")
    x = sleep_images(images, net)
    if isinstance(c, str) and c == "auto":
        c = calibrate(net, x, seed=seed)
    elif isinstance(c, str):   # the sleep knows no presets: config builds a preset's Sleep
        raise ValueError(f"constants must be a src.Sleep or 'auto': for the preset {c!r} pass config.preset_sleep({c!r})")
    if not isinstance(c, Sleep):
        raise ValueError(f"constants must be a src.Sleep or 'auto'; got {type(c).__name__}")
    if c.input not in ("mean", "images"):
        raise ValueError(f"sleep_model shows the mean of `images` or the images; constants.input {c.input!r} needs "
                         "labels or a pool (use src.sleep, or methods.sleep_task)")
    if len(c.beta) != len(net.W):
        raise ValueError(f"the constants have {len(c.beta)} thresholds (beta) and the model {len(net.W)} Linear layers")
    slept, info = sleep(net, x, c.length(task), torch.Generator().manual_seed(seed), c, dropout=0.0, engine=engine,
                        progress=progress)
    for l, n in enumerate(info["spikes"][1:], start=1):
        if not any(n):
            warnings.warn(f"Linear layer {l} of the model never fired during the sleep (threshold beta {c.beta[l - 1]:g} "
                          "is too high for this network): the sleep changed nothing there or above; "
                          "constants='auto' calibrates the thresholds", stacklevel=2)
            break
    return into_model(model, slept), info


def into_model(model, net):
    """A copy of the Sequential `model` holding net's weights (as_net's inverse), in the model's dtype."""
    out = copy.deepcopy(model)
    with torch.no_grad():
        for layer, w in zip([m for m in out if isinstance(m, torch.nn.Linear)], net.W):
            layer.weight.copy_(w[:, :layer.in_features])
            if layer.bias is not None:
                layer.bias.copy_(w[:, -1])
    return out


def sleep_images(images, net):
    """The sleep's images as net's inputs, [n, n_in] in its dtype and device; a ValueError naming `images` for a
    set that is empty, of another size than the network's input, or of values outside [0, 1] (pixels)."""
    if not torch.is_tensor(images):
        try:
            images = torch.as_tensor(np.asarray(images))
        except (TypeError, ValueError, RuntimeError):
            raise ValueError(f"images must be a tensor or an array of pixels; got {type(images).__name__}") from None
    n_in = net.W[0].shape[1] - int(net.bias)
    if images.ndim == 0 or images.numel() == 0:
        raise ValueError(f"images is empty (shape {tuple(images.shape)}): the sleep needs training images")
    x = images.reshape(len(images), -1)
    if x.shape[1] != n_in:
        raise ValueError(f"images must have {n_in} values per image, as the model's first Linear layer takes; "
                         f"got {x.shape[1]} (shape {tuple(images.shape)})")
    x = x.to(net.W[0].device, net.W[0].dtype)
    low, high = x.min().item(), x.max().item()
    if not (0 <= low and high <= 1):   # also NaN
        raise ValueError(f"images must be pixels in [0, 1] (the input spikes fire with probability proportional "
                         f"to them); got values from {low:g} to {high:g}: divide by 255 or undo the normalisation")
    return x


def as_net(model):
    """A Net (models.py) with the weights of a Sequential of Flatten, Linear, ReLU and Dropout (ValueError naming
    any other module, or a layout a Net cannot be: a Linear not followed by a ReLU before the next one, mixed biases;
    and a layer's non-finite weights). Float16 and bfloat16 weights are read as float32."""
    if not isinstance(model, torch.nn.Sequential):
        raise ValueError(f"sleep_model sleeps a torch.nn.Sequential; got {type(model).__name__}")
    kinds = (torch.nn.Flatten, torch.nn.Linear, torch.nn.ReLU, torch.nn.Dropout)
    for i, m in enumerate(model):
        if not isinstance(m, kinds) or (isinstance(m, torch.nn.Flatten) and i > 0):
            raise ValueError(f"sleep_model cannot sleep module {i} of the model, {m!r}: it takes nn.Flatten (first), "
                             "nn.Linear, nn.ReLU and nn.Dropout only")
    layers = [m for m in model if not isinstance(m, (torch.nn.Flatten, torch.nn.Dropout))]
    linear = [m for m in layers if isinstance(m, torch.nn.Linear)]
    pattern = "".join("L" if isinstance(m, torch.nn.Linear) else "R" for m in layers)
    if not linear or pattern.rstrip("R") != "LR" * (len(linear) - 1) + "L" or len(pattern) - len(pattern.rstrip("R")) > 1:
        raise ValueError(f"sleep_model needs Linear layers each followed by one ReLU, but the last (a ReLU or none); "
                         f"got {' '.join(type(m).__name__ for m in layers)}")
    if len({m.bias is None for m in linear}) > 1:
        raise ValueError("sleep_model needs every Linear layer with a bias or none with one")
    bias = linear[0].bias is not None
    W = [torch.cat([m.weight, m.bias[:, None]], 1).detach().clone() if bias else m.weight.detach().clone() for m in linear]
    for l, w in enumerate(W, start=1):
        if not torch.isfinite(w).all():
            raise ValueError(f"the model's Linear layer {l} has non-finite weights (NaN or inf): did training diverge?")
    if W[0].dtype in (torch.float16, torch.bfloat16):   # the engines compute in float32 or float64
        W = [w.float() for w in W]
    return Net(W, [torch.zeros_like(w) for w in W], output="relu" if pattern.endswith("R") else "linear",
               inverted=True, bias=bias)


# ---------------------------------------------------------------- calibration

CALIBRATION_STEPS = 2000   # the measuring sleep: two membrane time constants (decay 0.999: 1000 steps)
# calibrate's default targets: what the constants of --preset beyond-weights-only amount to on the project's
# network after task 1 (tuning seed 100, validation split; python studies/calibration.py; docs/usage.md#calibrated-constants)
HIDDEN_FIRING = 0.014   # spikes per neuron per step of each hidden layer (there 0.0148 and 0.0138)
OUTPUT_FIRING = 0.025   # of the output layer (there 0.0249)
INPUT_RATE = 0.025      # spikes per pixel per step of the input (there 0.0246: rate 364 on task 1's mean image)
INC, DEC = 5.8, 10.9    # inc and dec / G_WIDTH, the width of g (there 0.0058 and 0.0109)
SCHEDULE = dict(steps=5000, steps_increment=30000)   # beyond-weights-only's: T_k = 5000 + 30000 (k - 1)


def calibrate(model, images, *, firing=None, input_rate=INPUT_RATE, inc=INC, dec=DEC, seed=0, dropout=0.0,
              steps=CALIBRATION_STEPS, **fields):
    """A Sleep whose constants that depend on the network's scale are set from the network and the sleep's images,
    so that what remains are dimensionless targets (their defaults above: what --preset beyond-weights-only's
    constants amount to on the project's network; docs/usage.md#calibrated-constants).

    model: an nn.Sequential (as sleep_model takes) or a Net (models.py; dropout: its rate, as src.sleep's).
    images: the sleep's images, pixels in [0, 1] (as sleep_model's): the scale factors alpha are their
    data-based ones, with alpha_scale 1 (each beta is then in units of its layer's scale factor), and the
    input is their mean image.
    - firing: each Linear layer's firing rate, in (0, 1): spikes per neuron per step in a sleep of `steps`
      steps without plasticity (the first steps of the real sleep, before the weights move). Each layer's
      threshold beta is searched, layer by layer from the input, until the layer fires at it (within 1 %).
      One rate for every layer, or one per layer; default HIDDEN_FIRING for each hidden layer and
      OUTPUT_FIRING for the last.
    - input_rate: the input's expected spikes per pixel per step, in (0, 1): sets `rate` from the mean
      image's intensity (a pixel p fires with probability 2 dt rate p while the mask_size window covers it).
    - inc, dec: the plasticity's steps as ratios > 0 to G_WIDTH, the width of g(w) (Sleep.inc = inc G_WIDTH):
      g acts on weights below about 5 G_WIDTH whatever the network's scale, so its width, not the weights'
      scale, is the rule's. (Relative to the weights' root mean square instead, the defaults depress a
      network with PyTorch's initialisation, rms 0.02, three times as hard as the project's, rms 0.006: task 1
      fell to 0 % after the first sleep in docs/own_loop.py's loop; docs/usage.md#calibrated-constants.)
    seed: the measuring sleep's input (the real sleep draws its own); fields: any other Sleep field (steps,
    steps_increment, decay, mask_size, bias, ...; the schedule by default SCHEDULE, beyond-weights-only's).
    A target out of its range is a ValueError naming it; a layer that cannot fire within 10 % of its target is a
    warning naming it and its rate, and gets the threshold nearest the target (the lowest tried, 1e-6, where it
    cannot fire as often: most of its neurons driven below rest by the sleep's input).
    The cost: one pass of the images through the network, and about 40 runs of each layer alone on the
    layer below's spikes (no plasticity: a second or so for the project's network on one core)."""
    net = model if isinstance(model, Net) else as_net(model)
    x, L = sleep_images(images, net), len(net.W)
    f = np.atleast_1d(np.asarray((HIDDEN_FIRING,) * (L - 1) + (OUTPUT_FIRING,) if firing is None else firing,
                                 dtype=np.float64))
    if f.ndim != 1 or len(f) not in (1, L):
        raise ValueError(f"firing needs one target, or one per Linear layer ({L}); got {firing}")
    firing = tuple(np.broadcast_to(f, (L,)).tolist())
    targets = dict(firing=firing, input_rate=input_rate, inc=inc, dec=dec)
    for name, value in targets.items():   # rates in (0, 1); inc and dec ratios > 0
        a, rate = np.asarray(value, dtype=np.float64), name in ("firing", "input_rate")
        if not (np.isfinite(a).all() and (a > 0).all() and (a < 1 if rate else a > 0).all()):
            raise ValueError(f"{name} must be {'a rate in (0, 1)' if rate else 'a ratio > 0'}; got {value}")
    c = Sleep(**dict(dict(SCHEDULE, rate=1.0, inc=targets["inc"] * G_WIDTH, dec=targets["dec"] * G_WIDTH, beta=(1.0,) * L,
                          alpha_scale=1.0), **fields))
    mean = x.mean(0)
    c = dataclasses.replace(c, rate=input_rate_for(mean, targets["input_rate"], c.dt, c.mask_size))
    alpha = tuple(scale_factors(net, x, dropout, c.alpha_scale, c.alpha_softmax))
    W = net.W if net.bias and c.bias != "ignore" else net.weights_only()   # as src.sleep: a bias is an input always on
    s = input_spikes(mean, steps, torch.Generator().manual_seed(seed), rate=c.rate, dt=c.dt, mask_size=c.mask_size)
    beta = ()
    for l, w in enumerate(W):
        s = s.to(w.device, w.dtype)
        s = torch.cat([s, s.new_ones(len(s), 1)], 1) if w.shape[1] > s.shape[1] else s
        b, s, rate = threshold_for(alpha[l] * s @ w.T, firing[l], c.decay)
        if not 0.9 * firing[l] <= rate <= 1.1 * firing[l]:   # out of reach, or too few neurons for a finer rate
            warnings.warn(f"calibrate: Linear layer {l + 1} fires at {rate:.3g} spikes per neuron per step at its nearest "
                          f"threshold ({b:.3g}), not at its firing target {firing[l]:g}", stacklevel=2)
        beta += (b,)
    return dataclasses.replace(c, beta=beta)


def firing_rates(model, images, constants, *, steps=CALIBRATION_STEPS, seed=0, dropout=0.0, engine="auto"):
    """The spikes per neuron per step of the input and of each Linear layer (a list, inputs first) in a sleep of
    `steps` steps with `constants` and no plasticity (the weights fixed): the rates calibrate sets."""
    net = model if isinstance(model, Net) else as_net(model)
    c = dataclasses.replace(constants, plasticity=(0.0,) * len(constants.beta))
    _, info = sleep(net, sleep_images(images, net), steps, torch.Generator().manual_seed(seed), c, dropout=dropout,
                    engine=engine)
    return [sum(n) / (len(n) * steps) for n in info["spikes"]]


def input_rate_for(image, target, dt, mask_size):
    """The rate at which the masked input (input_spikes) of this rate map fires `target` spikes per pixel per step,
    in expectation: pixel i fires with probability min(1, 2 dt rate p_i) while the window covers it."""
    side = math.isqrt(image.numel())
    if side * side != image.numel() or not 1 <= mask_size <= side:
        raise ValueError(f"the masked input needs square images and 1 <= mask_size <= their side; got "
                         f"{image.numel()} pixels and mask_size {mask_size}")
    p = image.reshape(side, side).double().cpu()
    positions = side - mask_size + 1   # how many window positions cover each pixel, per axis
    cover = torch.tensor([min(i, positions - 1) - max(0, i - mask_size + 1) + 1 for i in range(side)], dtype=torch.float64)
    cover = torch.outer(cover, cover) / positions ** 2
    expected = lambda rate: (cover * (2 * dt * rate * p).clamp(max=1)).mean().item()
    if expected(1e12) <= target:
        raise ValueError(f"input_rate {target} is more than these images can fire ({expected(1e12):.3g} spikes per "
                         "pixel per step with every covered pixel firing)")
    lo, hi = 1e-6, 1e12
    while hi / lo > 1 + 1e-9:   # expected(rate) increases with rate
        mid = math.sqrt(lo * hi)
        lo, hi = (mid, hi) if expected(mid) < target else (lo, mid)
    return hi


def threshold_for(impulse, target, decay, candidates=8, rounds=8, tolerance=0.01):
    """The threshold at which a layer driven by `impulse` ([T, n]: alpha_l W_l s_{l-1} at each step) fires `target`
    spikes per neuron per step without plasticity, its spikes [T, n] and its rate there: `rounds` rounds of
    `candidates` thresholds, log-spaced across the bracket (1e-6 to 1e6) and run at once, until one is within
    `tolerance` (relative), or the nearest."""
    lo, hi = 1e-6, 1e6
    for _ in range(rounds):
        betas = np.geomspace(lo, hi, candidates)
        spikes = integrate(impulse, torch.as_tensor(betas, dtype=impulse.dtype, device=impulse.device), decay)
        rates = spikes.flatten(1).double().mean(1).cpu().numpy()   # decreasing with the threshold
        close = int(np.argmin(np.abs(rates - target)))
        if abs(rates[close] - target) <= tolerance * target or rates[0] < target or rates[-1] > target:
            break   # (out of reach: the nearest end of the bracket)
        k = int(np.argmax(rates < target))   # the first candidate below the target: it lies between k - 1 and k
        lo, hi = float(betas[k - 1]), float(betas[k])
    return float(betas[close]), spikes[close], float(rates[close])


def integrate(impulse, beta, decay):
    """The spikes [K, T, n] of a layer without plasticity at K thresholds beta: each step v = decay v + impulse_t,
    the neurons with v >= beta fire and are reset to 0 (sleep_on_spikes's step, the weights fixed: a layer then
    depends on the layer below only through its spikes, so each is run alone for all candidates at once)."""
    v = impulse.new_zeros(len(beta), impulse.shape[1])
    out = torch.empty(len(beta), *impulse.shape, dtype=torch.bool, device=impulse.device)
    decay, beta = torch.tensor(decay, dtype=impulse.dtype, device=impulse.device), beta[:, None]
    for t in range(len(impulse)):
        v = decay * v + impulse[t]
        out[:, t] = fired = v >= beta
        v = v.masked_fill(fired, 0)
    return out


def restore(net, W, bias):
    """The slept weights W of net, with its biases as they were unless the sleep made them plastic ("unit")."""
    if net.bias and bias != "unit":
        return [torch.cat([w[:, :w0.shape[1] - 1], w0[:, -1:]], 1) for w, w0 in zip(W, net.W)]
    return W


# ---------------------------------------------------------------- scale factors

@torch.no_grad()
def scale_factors(net, x, dropout, alpha_scale, softmax=False, chunk=5000):
    """Data-based weight/threshold balancing (Diehl et al. 2015), as normalize_nn_data.m.

    s_l = max(0, max W_l, max a_l) with a_l the evaluation-mode activations of
    the sleep data (W_l without its biases, if any; softmax: the output layer's a_L
    are the softmax probabilities of its logits, as the MATLAB computes them for
    its softmax networks, run_icarl_mnist.m); applied_l = s_l / applied_{l-1} (applied_0 = 1);
    alpha_l = alpha_scale / applied_l. The weights themselves are not rescaled.
    """
    if len(x) == 0:
        raise ValueError("scale factors need sleep data: got no images")
    a_max = [0.0] * len(net.W)
    for xb in x.split(chunk):
        acts = forward(net, xb, dropout)
        if softmax:
            acts[-1] = torch.softmax(acts[-1], 1)
        for l, a in enumerate(acts):
            a_max[l] = max(a_max[l], a.max().item())
    alpha, applied = [], 1.0
    for l, (w, am) in enumerate(zip(net.weights_only(), a_max)):
        if not torch.isfinite(w).all():
            raise ValueError(f"layer {l + 1} has non-finite weights: did training diverge?")
        s = max(0.0, w.max().item(), am)
        if not s > 0:
            raise ValueError(f"layer {l + 1} has no positive weight and no positive activation on the sleep "
                             "data, so its scale factor is undefined (is the network trained?)")
        applied = s / applied
        alpha.append(alpha_scale / applied)
    return alpha


# ---------------------------------------------------------------- input

def input_spikes(images, steps, generator, *, rate, dt, mask_size, device="cpu", dtype=torch.float64):
    """[steps, n_pixels] bool: each step keeps one random mask_size x mask_size window of the rate map
    (corner uniform over the side - mask_size + 1 positions per axis) and fires each of its pixels, of
    value p, when u / (2 dt rate) <= p, u uniform in (0, 1]: probability 2 dt rate p.
    images: the rate map [n_pixels] (the protocol: the mean image), or several [n_images, n_pixels], one
    of which, drawn uniformly, is shown at each step.
    With a sequence of B rates: [B, steps, n_pixels], the same windows and draws u for every rate.
    Drawn on `device` (the generator's) in `dtype`; the default, float64 on the CPU, as MATLAB's double rate map."""
    images = images.reshape(-1, images.shape[-1]).to(device, dtype)
    side = math.isqrt(images.shape[1])
    if side * side != images.shape[1] or not 1 <= mask_size <= side:
        raise ValueError(f"the masked input needs square images and 1 <= mask_size <= their side; got "
                         f"{images.shape[1]} pixels and mask_size {mask_size}")
    rates = torch.as_tensor(rate, dtype=dtype, device=device).reshape(-1, 1, 1, 1)
    offsets = torch.arange(mask_size, device=device)
    corner = torch.randint(side - mask_size + 1, (steps, 2), generator=generator, device=device)
    which = torch.randint(len(images), (steps, 1, 1), generator=generator, device=device) if len(images) > 1 else 0
    rows = (corner[:, 0:1] + offsets)[:, :, None]
    cols = (corner[:, 1:2] + offsets)[:, None, :]
    p = images.reshape(-1, side, side)[which, rows, cols]
    out = torch.zeros(len(rates), steps, side * side, dtype=torch.bool, device=device)
    window = (rows * side + cols).reshape(1, steps, -1)   # each step's pixels, as indices into the image
    out.scatter_(2, window.expand(len(rates), -1, -1), fires(p, rates, dt, generator).reshape(len(rates), steps, -1))
    return out[0] if torch.as_tensor(rate).ndim == 0 else out


def sampled_input_spikes(pool, steps, generator, *, rate, dt, n_images, keep, device="cpu", dtype=torch.float64):
    """The earlier Python replica's input, [steps, n_pixels] bool (or [B, steps, n_pixels] for B rates):
    each step's rate map is the mean of n_images images drawn from pool (with replacement) times a mask
    that keeps each pixel with probability keep; a pixel of value p then fires with probability 2 dt rate p,
    as in input_spikes (and drawn, as there, on `device` in `dtype`)."""
    pool = pool.reshape(len(pool), -1).to(device, dtype)
    if len(pool) == 0 or n_images < 1 or not 0 < keep <= 1:
        raise ValueError(f"the sampled input needs images, n_images >= 1 and keep in (0, 1]; got {len(pool)} "
                         f"images, {n_images}, {keep}")
    rates = torch.as_tensor(rate, dtype=dtype, device=device).reshape(-1, 1, 1)
    which = torch.randint(len(pool), (steps, n_images), generator=generator, device=device)
    p = sum(pool[which[:, i]] for i in range(n_images)) / n_images                 # [steps, n_pixels]
    p = p * (torch.rand(p.shape, generator=generator, dtype=dtype, device=device) < keep)
    out = fires(p, rates, dt, generator)
    return out[0] if torch.as_tensor(rate).ndim == 0 else out


def image_spikes(images, start, steps, generator, *, rate, dt, device="cpu", dtype=torch.float64):
    """The robustness scripts' input (Tadros et al., ICLR 2020: sleepnn_old.m fed train_x(1:numiterations)),
    [steps, n_pixels] bool (or [B, steps, n_pixels] for B rates): step t of the sleep, t = start, ...,
    start + steps - 1, shows image t of `images` [n_images, n_pixels] whole (no window, no mask), each pixel
    of value p firing with probability 2 dt rate p, as in input_spikes. Their sleeps are shorter than their
    training sets (27 105 and 3 365 steps on 50 000 or 60 000 images) and MATLAB would stop with an index
    error past the last image; here step t shows image t mod n_images: the images again, in the same order.
    Drawn, as input_spikes, on `device` in `dtype`."""
    if len(images) == 0:
        raise ValueError("the image input needs images; got none")
    rates = torch.as_tensor(rate, dtype=dtype, device=device).reshape(-1, 1, 1)
    which = torch.arange(start, start + steps, device=images.device) % len(images)
    out = fires(images.reshape(len(images), -1)[which].to(device, dtype), rates, dt, generator)
    return out[0] if torch.as_tensor(rate).ndim == 0 else out


def fires(p, rates, dt, generator):
    """Which pixels of the rate maps p fire: those with u / (2 dt rate) <= p, u = 1 - rand, uniform in (0, 1]
    like MATLAB's rand (a pixel of value 0 never fires); rates [B, 1, ...]: one draw u for all B rates."""
    u = 1 - torch.rand(p.shape, generator=generator, dtype=p.dtype, device=p.device)
    return u * (1 / (dt * rates)) / 2 <= p


# ---------------------------------------------------------------- the core

def _as_batch(value, B, L, name, dtype):
    """A per-network parameter as a [B, L] (or [B] for L=None) array; scalars and per-layer lists broadcast."""
    a = np.asarray(value.cpu() if torch.is_tensor(value) else value, dtype=np.float64)
    shape = (B,) if L is None else (B, L)
    try:
        # C order whatever the broadcast: the kernel compiles once per layout, and one layout is one compile
        return np.ascontiguousarray(np.broadcast_to(a, shape).astype(dtype))
    except ValueError:
        raise ValueError(f"{name} must be a scalar, {'' if L is None else f'{L} per-layer values, '}or one "
                         f"value per network ({shape}); got shape {a.shape}") from None


def _check_weights(weights, extra):
    """extra: 1 when the last column of each matrix is a bias (an input of its own), else 0."""
    if not weights or any(not torch.is_tensor(w) for w in weights):
        raise ValueError("weights must be a non-empty list of tensors [out, in] (or [B, out, in])")
    nd = weights[0].ndim
    if nd not in (2, 3) or any(w.ndim != nd for w in weights) or weights[0].shape[-1] <= extra:
        raise ValueError(f"weights must all be [out, in] or all [B, out, in]; got shapes {[tuple(w.shape) for w in weights]}")
    for l in range(1, len(weights)):
        if weights[l].shape[-1] != weights[l - 1].shape[-2] + extra or weights[l].shape[:-2] != weights[0].shape[:-2]:
            raise ValueError(f"layer {l + 1} takes {weights[l].shape[-1] - extra} inputs but layer {l} has "
                             f"{weights[l - 1].shape[-2]} units (shapes {[tuple(w.shape) for w in weights]})")
    for l, w in enumerate(weights):
        if not w.is_floating_point() or not torch.isfinite(w).all():
            raise ValueError(f"layer {l + 1}'s weights must be finite floating-point numbers")


def sleep_on_spikes(weights, input_spikes, alpha, beta, *, inc, dec, decay=0.999, plasticity=1.0, factor="original",
                    bias=None, max_spikes=None, engine="auto", progress=False, total_steps=None, exp="exact",
                    window=0, on_window=None):
    """Run the spiking sleep on a given input raster; the deterministic core of SRC.

    weights: list of [out, in] float tensors (or [B, out, in] for B independent networks).
    input_spikes: [T, n_in] 0/1 tensor (or [B, T, n_in]), or an iterable of such chunks, consumed in order
    (total_steps: their number of steps, for the progress bar).
    alpha, beta: per-layer scale factors and threshold multipliers (or [B, L]); inc, dec: scalars (or [B]).
    Each step, for each layer l in order (layer l sees the spikes layer l-1 fired in this step):
        v_l = decay v_l + alpha_l W_l s_{l-1}
        s_l = v_l >= beta_l
        for each neuron that fired: W += inc g(W) where the input fired, W -= dec g(W) where it did not
        v_l = 0 where s_l
    plasticity: multiplier of inc and dec in each layer (scalar or one per layer; 0 freezes a layer's
    weights, for ablations; 1 is the protocol).
    factor: g's form, "original" (the protocol) or "logistic" (see g).
    bias: None (the protocol), or the last column of each weight matrix is a bias b_l, the weight of an extra
    input that fires every step: alpha_l b_l joins every step's impulse; with "unit" plasticity treats it as
    any input that fired (b += inc g(b) when the neuron fires), with "current" it stays as it is.
    exp: "exact" (the reference: the math library's exp, weight by weight) or "fast" (numba engine only: a
    polynomial exp over each neuron's incoming weights at once, in SIMD, accurate to about 3e-10 relative:
    about float32's last unit, coarser than float64's; a long sleep's spikes may come to differ, so it is
    for searches and variants, not the protocol).
    max_spikes: a network whose neurons (all layers but the input) have fired more than this many spikes
    stops at the next step, its weights as they are (a cost bound for searches; None: no bound).
    window, on_window: every `window` steps (and after the last), on_window(step, counts, weights) is called
    with the spike counts of that window (as the returned counts) and a function giving the weights so far
    (an analysis: firing over time, the accuracy during sleep); 0 (the default): the chunks run whole.
    Returns (new weights, spike counts): the inputs are left untouched; counts[l] holds the spikes of each
    neuron of layer l (counts[0] the inputs), shaped [n] (or [B, n]).
    """
    if bias not in (None, "current", "unit"):
        raise ValueError(f"bias must be None, 'current' or 'unit'; got {bias!r}")
    extra = int(bias is not None)
    _check_weights(weights, extra)
    batched, device = weights[0].ndim == 3, weights[0].device
    engine = placement(device, engine)[1]
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {sorted(ENGINES)} or 'auto'; got {engine!r}")
    # the numba kernel runs on the CPU: weights on a GPU go there for the sleep and come back (megabytes, once)
    W = [(w if batched else w[None]).to("cpu" if engine == "numba" else device, copy=True) for w in weights]
    B, L = W[0].shape[0], len(W)
    alpha, beta = _as_batch(alpha, B, L, "alpha", np.float64), _as_batch(beta, B, L, "beta", np.float64)
    inc, dec = _as_batch(inc, B, None, "inc", np.float64), _as_batch(dec, B, None, "dec", np.float64)
    plasticity = _as_batch(plasticity, 1, L, "plasticity", np.float64)[0]
    check_constants(alpha=alpha, beta=beta, inc=inc, dec=dec, plasticity=plasticity, decay=decay)
    for name, value in dict(factor=factor, exp=exp).items():
        if value not in CHOICES[name]:
            raise ValueError(f"{name} must be one of {', '.join(CHOICES[name])}; got {value!r}")
    if exp == "fast" and factor == "logistic":
        raise ValueError("exp 'fast' is the original g's (2 / (1 + exp(w / width))); the logistic g keeps its exact exp")
    if window and on_window is None:
        raise ValueError("window needs on_window, the function called at the end of every window")
    run = ENGINES[engine](W, alpha, beta, inc[:, None] * plasticity, dec[:, None] * plasticity, decay=decay,
                          factor=factor, bias=bias, budget=-1 if max_spikes is None else int(max_spikes), exp=exp)
    sizes = [W[0].shape[2] - extra] + [w.shape[1] for w in W]
    counts = [torch.zeros(B, n, dtype=torch.int64) for n in sizes]
    chunks = [input_spikes] if torch.is_tensor(input_spikes) else input_spikes
    total = input_spikes.shape[-2] if torch.is_tensor(input_spikes) else total_steps
    bar = tqdm(total=total, desc="sleep", unit="step", unit_scale=True, disable=not progress, leave=False)
    t0, since = 0, [torch.zeros_like(c) for c in counts]   # since: the counts of the window under way
    weights_so_far = lambda: [(w if batched else w[0]).to(device, copy=True) for w in run.weights()]   # a copy: it goes on
    for spikes in chunks:
        spikes = spikes if batched else spikes[None]
        if spikes.ndim != 3 or spikes.shape[0] != B or spikes.shape[2] != sizes[0]:
            raise ValueError(f"input_spikes must be [T, {sizes[0]}]" + (f" per network, [{B}, T, {sizes[0]}]" if batched else "")
                             + f" to match the weights; got {tuple(spikes.shape) if batched else tuple(spikes.shape[1:])}")
        if spikes.dtype != torch.bool:
            if not ((spikes == 0) | (spikes == 1)).all():
                raise ValueError("input_spikes must hold only 0 and 1 (or be a bool tensor)")
            spikes = spikes != 0
        for piece in _windows(spikes, t0, window):
            layer_counts, failure = run.steps(piece, t0)
            if failure is not None:
                b, t, l = failure
                raise FloatingPointError(f"sleep produced a non-finite weight in layer {l + 1} at step {t + 1}"
                                         + (f" (network {b})" if batched else "") + "; lower inc/dec or alpha_scale")
            for l, c in enumerate(layer_counts):
                counts[l] += c
                since[l] += c
            t0 += piece.shape[1]
            bar.update(piece.shape[1])
            if window and t0 % window == 0:
                on_window(t0, since if batched else [c[0] for c in since], weights_so_far)
                since = [torch.zeros_like(c) for c in counts]
    if window and t0 % window:   # the last, shorter window
        on_window(t0, since if batched else [c[0] for c in since], weights_so_far)
    bar.close()
    W = [w.to(device) for w in run.weights()]
    if not batched:
        W, counts = [w[0] for w in W], [c[0] for c in counts]
    return W, counts


def _windows(spikes, t0, window):
    """The chunk [B, T, n] cut where a window of `window` steps ends (whole when window is 0); t0: its first step."""
    if not window:
        yield spikes
        return
    start = 0
    while start < spikes.shape[1]:
        n = min(spikes.shape[1] - start, window - (t0 + start) % window)
        yield spikes[:, start:start + n]
        start += n


class TorchEngine:
    """The literal loop: every step, a dense matrix-vector product per layer; batched, on any device.
    steps() returns the spike counts of the chunk and, on a non-finite weight, (network, step, layer).
    Within a chunk nothing waits for the device: the spikes stay on it, and the weights are checked once at
    the chunk's end (a weight that is not finite stays so: g(inf) = 0, g(-inf) = 2); a chunk that broke one
    is run again from its start, checked every step, to name the step."""

    def __init__(self, W, alpha, thr, inc, dec, *, decay, factor, bias, budget, exp):
        if exp != "exact":
            raise ValueError("the fast exp is the numba engine's (torch's own exp is vectorised); use engine='numba'")
        as_t = lambda a: torch.as_tensor(a, dtype=W[0].dtype, device=W[0].device)
        self.W, self.alpha, self.thr, self.inc, self.dec = W, as_t(alpha), as_t(thr), as_t(inc), as_t(dec)
        self.decay, self.budget, self.factor, self.bias = decay, budget, factor, bias
        self.v = [w.new_zeros(w.shape[:2]) for w in W]
        self.spent = torch.zeros(W[0].shape[0], dtype=torch.int64, device=W[0].device)
        # Plasticity on a GPU: on every row, kept where its neuron fired (asking which fired would make the host
        # wait every step); on the CPU, where asking costs nothing, on the rows that fired alone (far less work).
        # The same spikes either way, and weights equal but for the last bit of an exp (tests/test_gpu_path.py).
        self.masked = W[0].device.type != "cpu"

    def steps(self, spikes, t0):
        spikes = spikes.to(self.W[0].device)
        start = [w.clone() for w in self.W], [v.clone() for v in self.v], self.spent.clone()
        counts, _ = self._steps(spikes, t0, check=False)
        if torch.stack([torch.isfinite(w).all() for w in self.W]).all():   # the chunk's one wait
            return [c.cpu() for c in counts], None
        self.W[:], self.v[:], self.spent = start
        return None, self._steps(spikes, t0, check=True)[1]

    def _steps(self, spikes, t0, check):
        W, v = self.W, self.v
        counts = [spikes.sum(1)] + [torch.zeros(w.shape[:2], dtype=torch.int64, device=w.device) for w in W]
        for t in range(spikes.shape[1]):
            pre = spikes[:, t].to(W[0].dtype)                                   # [B, n_in]
            active = (self.spent <= self.budget)[:, None] if self.budget >= 0 else True
            for l in range(len(W)):
                if self.bias:   # the bias's input fires every step
                    pre = torch.cat([pre, pre.new_ones(len(pre), 1)], 1)
                v[l] = self.decay * v[l] + self.alpha[:, l, None] * torch.bmm(W[l], pre[:, :, None])[:, :, 0]
                post = (v[l] >= self.thr[:, l, None]) & active                  # [B, n_out]
                W[l] = self.plasticity(W[l], pre, post, l)
                if check and not torch.isfinite(W[l]).all():
                    return None, (int((~torch.isfinite(W[l])).flatten(1).any(1).nonzero()[0]), t0 + t, l)
                v[l] = v[l].masked_fill(post, 0)
                counts[l + 1] += post
                self.spent += post.sum(1)
                pre = post.to(W[0].dtype)
        return counts, None

    def plasticity(self, w, pre, post, l):
        """w after one step of plasticity in layer l: W += inc g(W) where pre and post fired, W -= dec g(W) where
        post fired and pre did not."""
        if self.masked:
            rows, pre, inc, dec = w, pre[:, None, :], self.inc[:, l, None, None], self.dec[:, l, None, None]
        else:
            b, j = post.nonzero(as_tuple=True)
            rows, pre, inc, dec = w[b, j], pre[b], self.inc[b, l, None], self.dec[b, l, None]   # into the neurons that fired
        new = rows + torch.where(pre > 0, inc, -dec) * g(rows, self.factor)
        if self.bias == "current":
            new[..., -1] = rows[..., -1]
        if self.masked:
            return torch.where(post[:, :, None], new, w)
        w[b, j] = new
        return w

    def weights(self):
        return self.W


class NumbaEngine:
    """Event-driven CPU engine: the impulse of a step adds the weight rows of the inputs that fired, and
    plasticity touches only the neurons that fired; the networks of a batch run in parallel. The weights
    are held transposed ([in, out], every layer flattened into one row per network) so that the impulse
    of one input spike is a contiguous row."""

    def __init__(self, W, alpha, thr, inc, dec, *, decay, factor, bias, budget, exp):
        dtype = np.float32 if W[0].dtype == torch.float32 else np.float64
        self.torch_dtype, B = W[0].dtype, W[0].shape[0]
        self.extra = int(bias is not None)   # the bias row of each layer's WT: an input that fires every step
        self.sizes = np.array([W[0].shape[2] - self.extra] + [w.shape[1] for w in W], dtype=np.int64)
        self.w_off = np.concatenate([[0], np.cumsum((self.sizes[:-1] + self.extra) * self.sizes[1:])]).astype(np.int64)
        self.n_off = np.concatenate([[0], np.cumsum(self.sizes[1:])]).astype(np.int64)
        self.WT = torch.cat([w.transpose(1, 2).reshape(B, -1) for w in W], dim=1).numpy()
        self.v = np.zeros((B, self.n_off[-1]), dtype)
        self.spent = np.zeros(B, np.int64)
        self.args = (alpha.astype(dtype), thr.astype(dtype), inc.astype(dtype), dec.astype(dtype),
                     np.array([decay, G_WIDTH, 1, 2, 0], dtype), factor == "logistic", self.extra, bias == "unit", budget, exp == "fast")

    def steps(self, spikes, t0):
        B, T, n_in = spikes.shape
        bt, i = np.divmod(np.flatnonzero(spikes.cpu().numpy()), n_in)   # each spike's b T + t and input, in order
        # the inputs that fire at step t of network b are i[ptr[b T + t]:ptr[b T + t + 1]]
        ptr = np.concatenate([[0], np.cumsum(np.bincount(bt, minlength=B * T))])
        input_counts = torch.from_numpy(np.bincount(bt // T * n_in + i, minlength=B * n_in).reshape(B, n_in))
        counts = np.zeros_like(self.v, dtype=np.int64)
        failure = np.full((B, 2), -1, np.int64)
        _numba_kernel(self.WT, self.sizes, self.w_off, self.n_off, self.v, ptr, i, t0, *self.args,
                      self.spent, counts, failure)
        bad = np.nonzero(failure[:, 0] >= 0)[0]
        if len(bad):
            return None, (int(bad[0]), int(failure[bad[0], 0]), int(failure[bad[0], 1]))
        n_off = self.n_off
        return [input_counts] + [torch.from_numpy(counts[:, n_off[l]:n_off[l + 1]]) for l in range(len(n_off) - 1)], None

    def weights(self):
        sizes, w_off, B = self.sizes, self.w_off, self.WT.shape[0]
        return [torch.from_numpy(self.WT[:, w_off[l]:w_off[l + 1]].reshape(B, sizes[l] + self.extra, sizes[l + 1])
                                 .transpose(0, 2, 1).copy()).to(self.torch_dtype) for l in range(len(sizes) - 1)]


ENGINES = {"torch": TorchEngine, "numba": NumbaEngine}


def placement(device="auto", engine="auto"):
    """Where a run computes, decided here alone: (the torch.device that trains and evaluates, the sleep's engine).
    device: "auto" (CUDA where torch finds it, else the CPU), "cpu", "cuda", "cuda:N" or a torch.device;
    engine: "auto" (numba on the CPU, torch on a GPU), "numba" or "torch". The numba engine with a GPU
    trains there and sleeps on the CPU (sleep_on_spikes moves the weights there and back)."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    return device, engine if engine != "auto" else "numba" if device.type == "cpu" else "torch"


# ---------------------------------------------------------------- the fast kernel

@numba.njit(cache=True, parallel=True)
def _numba_kernel(WT, sizes, w_off, n_off, v, ptr, idx, t0, alpha, thr, inc, dec, consts,
                  logistic, extra, bias_plastic, budget, fast_exp, spent, counts, failure):
    """NumbaEngine's steps: WT[b] holds every layer's weights transposed ([in (+ extra), out], flattened from
    w_off[l]; with extra = 1 the last row is the bias, an input that fires every step, plastic if
    bias_plastic); v and counts are flattened per neuron from n_off[l]."""
    # The scalars come in one array of the weights' dtype (consts): passed as Python floats, numba would type
    # them float64 and promote every float32 product with them, so float32 sleeps would round differently from
    # the torch engine's; in the array they keep the weights' dtype.
    decay, width, one, two, zero = consts[0], consts[1], consts[2], consts[3], consts[4]
    B, L, T = WT.shape[0], sizes.shape[0] - 1, (ptr.shape[0] - 1) // WT.shape[0]
    widest = sizes.max()
    for b in numba.prange(B):
        pre = np.empty(widest, dtype=np.int64)     # indices of the neurons of the layer below that fired
        post = np.empty(widest, dtype=np.int64)
        fired = np.zeros(widest + 1, dtype=np.bool_)   # the same, as a mask over the layer below (and its bias)
        impulse = np.empty(widest, dtype=WT.dtype)
        column = np.empty(widest + 1, dtype=WT.dtype)   # one neuron's incoming weights, while plasticity runs
        step = np.empty(widest + 1, dtype=WT.dtype)     # each input's +inc or -dec at this step
        poly = np.empty(widest + 1, dtype=np.float64)   # fast_exp: p(r) and the bits of 2^n of each weight
        two_n = np.empty(widest + 1, dtype=np.int64)
        two_n_float = two_n.view(np.float64)
        rounded = np.empty(widest + 1, dtype=WT.dtype)
        for t in range(T):
            if failure[b, 0] >= 0 or (budget >= 0 and spent[b] > budget):
                break
            lo, hi = ptr[b * T + t], ptr[b * T + t + 1]
            n_pre = hi - lo
            pre[:n_pre] = idx[lo:hi]
            for l in range(L):
                n_in, n_out = sizes[l], sizes[l + 1]
                w = WT[b, w_off[l]:w_off[l + 1]].reshape((n_in + extra, n_out))
                vl = v[b, n_off[l]:n_off[l] + n_out]
                if n_pre == 0 and extra == 0 and thr[b, l] > zero:
                    for j in range(n_out):                 # no input: the membranes only decay, none can fire
                        vl[j] = decay * vl[j]              # (all were below a positive threshold after the
                    continue                               # last step) and the layer above gets no input either
                if extra:
                    impulse[:n_out] = w[n_in]              # the bias's input fired
                else:
                    impulse[:n_out] = zero
                for k in range(n_pre):
                    row = w[pre[k]]
                    for j in range(n_out):
                        impulse[j] += row[j]
                a = alpha[b, l]
                for j in range(n_out):                     # branch-free (SIMD)
                    vl[j] = decay * vl[j] + a * impulse[j]
                n_post = 0
                for j in range(n_out):
                    if vl[j] >= thr[b, l]:
                        post[n_post] = j
                        n_post += 1
                for k in range(n_pre):
                    fired[pre[k]] = True
                fired[n_in] = True                         # read only as the bias's input (i < n_in + extra)
                n_plastic = n_in + (extra if bias_plastic else 0)
                if n_post:                                 # each input's step: +inc if it fired, -dec if not
                    for i in range(n_plastic):             # (w - dec g equals w + (-dec) g exactly)
                        step[i] = inc[b, l] if fired[i] else -dec[b, l]
                for k in range(n_post):
                    j = post[k]
                    broken = False
                    for i in range(n_plastic):             # the column: strided reads, gathered once
                        column[i] = w[i, j]
                    if fast_exp:                           # e = exp(-|w| / width) for the whole column at
                        for i in range(n_plastic):         # once (SIMD): exp(x) = 2^n p(r), x = n ln 2 + r,
                            x = max(-abs(np.float64(column[i]) / np.float64(width)), -700.0)   # |r| <= ln 2 / 2
                            n = np.floor(x * 1.4426950408889634 + 0.5)
                            r = (x - n * 0.6931471803691238) - n * 1.9082149292705877e-10
                            poly[i] = 1 + r * (1 + r * (0.5 + r * (1 / 6 + r * (1 / 24 + r * (1 / 120 + r * (
                                1 / 720 + r * (1 / 5040 + r / 40320)))))))
                            two_n[i] = (np.int64(n) + 1023) << 52   # the bits of the float64 2^n
                        for i in range(n_plastic):
                            rounded[i] = poly[i] * two_n_float[i]   # to the weights' precision, as np.exp's
                            e = rounded[i]
                            gw = (two * e if column[i] > zero else two) / (one + e)
                            column[i] = column[i] + step[i] * gw
                    else:
                        for i in range(n_plastic):         # branch-free on a contiguous buffer
                            wi = column[i]
                            if logistic:                       # g(w) = 1 / (1 + exp(-w)), without overflow
                                if wi >= zero:
                                    gw = one / (one + np.exp(-wi))
                                else:
                                    e = np.exp(wi)
                                    gw = e / (one + e)
                            else:                          # g(w) = 2 / (1 + exp(w / width)), without overflow:
                                z = wi / width             # 2 e / (1 + e) for w > 0, 2 / (1 + e) otherwise, with
                                e = np.exp(-abs(z))        # e = exp(-|z|); written without a branch on the sign
                                gw = (two * e if z > zero else two) / (one + e)   # (half the weights: unpredictable)
                            column[i] = wi + step[i] * gw
                    for i in range(n_plastic):
                        w[i, j] = column[i]
                        broken = broken or not np.isfinite(column[i])
                    if broken:
                        failure[b, 0], failure[b, 1] = t0 + t, l
                    vl[j] = zero
                    counts[b, n_off[l] + j] += 1
                    spent[b] += 1
                for k in range(n_pre):
                    fired[pre[k]] = False
                fired[n_in] = False
                pre[:n_post] = post[:n_post]
                n_pre = n_post
