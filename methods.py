"""The continual-learning methods and the one loop that runs them, from a seed's initial weights.

A method is a declaration (`Method`): what it does around plain training of task after task, which of
its stages are the same as other methods' (computed once per seed), and what it reads and keeps between
tasks; the Config fields it owns and the values they take, what else it needs of a config, the scenarios
it runs and its search (config.check refuses what they rule out; studies/tune.py searches it). Adding a
method is its row here, its step in the loop, and its fields in config.Config (and the Config cell of
mnist_exp.py). `run_method` is the only loop; `train_task`, `sleep_task` and `evaluate` are its steps, and the
experiment's interactive cells call them directly.
"""
import dataclasses
import time
from dataclasses import dataclass, field

import numpy as np
import torch

import analysis
import baselines
import data
import icarl
import models
import sleep_analysis
import src


# ---------------------------------------------------------------- what a method declares
# A rule an option's value keeps (each value of a list): (what it must be, the test of one value)
def number(x):
    return f"{x:g}".replace("e+", "e")


def at_least(low):
    return f">= {number(low)}", lambda v: v >= low


def above(low):
    return f"> {number(low)}", lambda v: v > low


def at_most(high):
    return f"<= {number(high)}", lambda v: v <= high


def within(low, high):
    return f"in [{number(low)}, {number(high)}]", lambda v: low <= v <= high


def whole(low):
    return f"a whole number >= {low}", lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= low


def one_of(*choices):
    return f"one of {', '.join(choices)}", lambda v: v in choices


def named(methods):
    return "--methods " + " or ".join(methods)


@dataclass(frozen=True)
class Options:
    """Config fields that act only with a method that declares them (config.check refuses them otherwise):
    rules: {field: the rules its value keeps}; who(methods): the words that name those methods; also:
    {field: (test of the config, words)}, a further setting the field acts only with."""
    rules: dict
    who: object = named
    also: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Method:
    restart: bool = False      # each task trains a fresh copy of the initial weights
    last_only: bool = False    # only the last task is learnt (the cross-modal script's control)
    merge: bool = False        # the copies are averaged element-wise at the end
    joint: bool = False        # one training on all tasks at once
    sleep: bool = False        # SRC's sleep after each task
    penalty: str = ""          # "ewc" or "si": a quadratic pull towards the weights after the previous tasks
    distill: bool = False      # LwF: the network before each task teaches its outputs (--lwf-outputs) on the task's images
    exemplars: bool = False    # iCaRL: a memory of training images joins each task and classifies by nearest mean
    sleep_constants: str = ""  # "icarl": its default preset is the iCaRL script's for the memory (config.default_preset)
    statistics: str = ""       # "ncm", "slda" (no network) or "analytic" (a ridge head on frozen features): statistics
                               # of each task's images, read once (baselines.py)
    shared: tuple = ("init",)  # stages that are the same for every method declaring them: computed once per seed
    options: tuple = ()        # Options: the Config fields it owns
    needs: tuple = ()          # (test of the config, words formatted with its fields): what it needs, else refused
    scenarios: tuple = ("class", "domain", "cross-modal")   # the learning scenarios it runs (scenario(cfg))
    why: str = ""              # why it runs in no other scenario (its refusal says it)
    search: dict = field(default_factory=dict)   # studies/tune.py's search: {field: (kind, range or choices)}


# src.Sleep's fields and the Config fields they come from: the sleep's options
SLEEP_FIELDS = dict(rate="rate", inc="inc", dec="dec", beta="beta", alpha_scale="alpha_scale", alpha="alpha",
                    alpha_softmax="alpha_softmax", steps="sleep_steps", steps_increment="sleep_steps_increment",
                    dt="dt", decay="decay", mask_size="mask_size", input="sleep_input", data="sleep_data",
                    samples="sleep_samples", mask_fraction="sleep_mask_fraction", plasticity="plasticity",
                    factor="plasticity_factor", bias="sleep_bias", exp="sleep_exp")
# (src.Sleep checks the constants; --sleep-after's task numbers: config.check)
SLEEP = Options(dict(dict.fromkeys(SLEEP_FIELDS.values(), ()), sleep_after=(), sleep_window=(whole(0),)),
                who=lambda methods: f"a method that sleeps ({', '.join(methods)})")
# studies/tune.py's CMA-ES: log-uniform, --decades either side of the start constants
SLEEP_SEARCH = dict.fromkeys(("rate", "inc", "dec", "beta"), ("log", "--decades"))
LWF = Options(dict(lwf_lambda=(at_least(0),), lwf_temperature=(above(0),), lwf_outputs=(one_of("earlier", "all"),),
                   lwf_schedule=(one_of("constant", "growing"),), lwf_lambdas=(at_least(0),)),
              also=dict(lwf_temperature=(lambda cfg: cfg.output == "linear-ce", "--output linear-ce")))
ICARL = Options(dict(memory=(whole(0),), exemplars=(one_of("herding", "random"),), distillation=()),
                who=lambda methods: f"an iCaRL method ({named(methods)})")
ICARL_NEEDS = (
    (lambda cfg: isinstance(cfg.memory, int) and 10 <= cfg.memory <= 20000,
     "--memory, a whole number of exemplars from 10 to 20000; got {memory}"),
    (lambda cfg: cfg.n_per_task != 0, "--n-per-task >= 1 (its minibatches are padded with the task's next images)"),
    (lambda cfg: cfg.output == "linear-ce",
     "--output linear-ce (iCaRL, as the authors run it, trains a softmax output)"))
# EWC's and SI's strengths: the searches span the class-incremental range up to 1e9 (there the earlier tasks'
# weights are frozen in place); 1e12 leaves three decades above it, and far larger ones overflow training
STRENGTH = (at_least(0), at_most(1e12))
EVERY = ("class", "domain", "cross-modal")   # also the pair of datasets (--dataset mnist-fashion)
# iCaRL on a shared head (domain-IL, the cross-modal pair): its memory is shared out among the classes as they
# arrive (round(K / classes seen) each) and its nearest-mean classifier chooses a class, not an output
CLASS_ONLY = dict(scenarios=("class",), why="iCaRL is class-incremental: its memory is shared out among classes as "
                                           "they arrive and its nearest-mean classifier chooses a class, not a shared "
                                           "head's output")

METHODS = {   # in the order of the tables: lower bound, baselines, SRC, upper bound (what each keeps between
    # tasks is measured by kept_between_tasks and recorded in every job)
    "sequential": Method(shared=("init", "train_1"), scenarios=EVERY),
    # learns only the last task, from the initial weights (the cross-modal control)
    "control": Method(last_only=True, scenarios=EVERY),
    "ewc": Method(penalty="ewc", shared=("init", "train_1"), options=(Options(dict(ewc_lambda=STRENGTH)),),
                  search=dict(ewc_lambda=("log", (1.0, 1e9)))),
    # SI integrates its path already while training task 1, so that stage is its own
    "si": Method(penalty="si", options=(Options(dict(si_c=STRENGTH, si_xi=(above(0),))),),
                 search=dict(si_c=("log", (1e-2, 1e9)))),
    "lwf": Method(distill=True, shared=("init", "train_1"), options=(LWF,),
                  search=dict(lwf_lambda=("log", (0.01, 100.0)), lwf_schedule=("choice", ("constant", "growing")),
                              lwf_outputs=("choice", ("earlier", "all")), lwf_temperature=("log", (0.5, 8.0)))),
    "lwf-src": Method(distill=True, sleep=True, shared=("init", "train_1"), options=(LWF, SLEEP), search=SLEEP_SEARCH),
    "merging": Method(restart=True, merge=True, shared=("init", "train_1"), scenarios=EVERY,
                      options=(Options(dict(merge_init=(one_of("shared", "own"),))),)),
    "src": Method(sleep=True, shared=("init", "train_1"), options=(SLEEP,), scenarios=EVERY, search=SLEEP_SEARCH),
    "icarl": Method(exemplars=True, shared=("init", "train_1"), options=(ICARL,), needs=ICARL_NEEDS, **CLASS_ONLY),
    "icarl-src": Method(exemplars=True, sleep=True, sleep_constants="icarl", shared=("init", "train_1"),
                        options=(ICARL, SLEEP), needs=ICARL_NEEDS, **CLASS_ONLY),
    "ncm": Method(statistics="ncm", shared=()),
    "slda": Method(statistics="slda", shared=(), options=(Options(dict(slda_shrinkage=(within(0, 1),))),)),
    # a ridge head on task 1's frozen features
    "analytic": Method(statistics="analytic", shared=("init", "train_1"),
                       options=(Options(dict(analytic_ridge=(above(0),))),)),
    "parallel": Method(joint=True, scenarios=EVERY),
}

# ---------------------------------------------------------------- data and initial weights
def scenario(cfg):
    """The learning scenario of a config (Method.scenarios, data.Tasks): 'class', class-incremental; 'domain',
    domain-incremental (--scenario domain: split datasets on one head of classes_per_task outputs; permuted MNIST);
    'cross-modal', the pair of datasets (--dataset mnist-fashion) learnt as two tasks on one shared head."""
    return "cross-modal" if "parts" in data.DATASETS[cfg.dataset] else cfg.scenario


def split_of(cfg):
    """(tasks, classes per task) of a config's split: a permuted task holds the ten digits."""
    spec = data.DATASETS[cfg.dataset]
    if "base" in spec:
        return cfg.tasks, spec["classes"]
    return spec["classes"] // cfg.classes_per_task, cfg.classes_per_task


def prepare(cfg):
    """The scenario's tasks and data (data.Tasks), on the device: train and evaluation images in [0, 1], flattened.
    The evaluation images are the test set, or with cfg.validation the held-out training images. The device and
    the engine are src.placement's, decided once here and carried in the Tasks. Permuted MNIST's images are its
    one set (data.Permuted), their permutations the seed's (seeded)."""
    device, engine = src.placement(cfg.device, cfg.engine)
    train_x, train_y, test_x, test_y = data.load(cfg.dataset, cfg.data_dir)
    spec, (n_tasks, per_task) = data.DATASETS[cfg.dataset], split_of(cfg)
    n_classes = n_tasks * per_task if "base" in spec else spec["classes"]
    # the outputs: one per class (class-IL), a shared head of a task's size (domain-IL), or the pair's 10
    outputs = per_task if scenario(cfg) == "domain" else spec.get("outputs", n_classes)
    dtype = getattr(torch, cfg.dtype)
    keep = data.first_images(train_y, cfg.train_limit, cfg.dataset)   # (of a pair: the first n of each dataset)
    train_x, train_y = train_x[keep], train_y[keep]
    keep = data.first_images(test_y, cfg.test_limit, cfg.dataset)
    test_x, test_y = test_x[keep], test_y[keep]
    if cfg.score_on == "train":   # the accuracy on the training images (all of them, not only those trained on)
        test_x, test_y = train_x, train_y
    if cfg.validation:   # tuning: the held-out training images replace the test set, which is not read at all
        held = data.holdout_mask(train_y, cfg.validation)
        test_x, test_y = train_x[held], train_y[held]
        train_x, train_y = train_x[~held], train_y[~held]
    train_x, test_x = train_x.to(device, dtype), test_x.to(device, dtype)
    if "base" in spec:   # every task's images are the one set, permuted when read
        train_x, test_x = data.Permuted(train_x), data.Permuted(test_x)
        train_y, test_y = (data.permuted_labels(y, n_tasks, per_task) for y in (train_y, test_y))
    probe = analysis.probe_indices(test_y, cfg.probe_per_class, n_classes)
    rest = np.setdiff1d(np.arange(len(test_y)), probe)
    # evaluation data: the probe images (for the activation maps) first, then the rest of the test set
    if "base" in spec:
        eval_chunks = data.Chunks(test_x, [torch.as_tensor(probe)] + list(torch.as_tensor(rest).split(2000)))
    else:
        eval_chunks = [test_x[probe]] + list(test_x[rest].split(2000))
    split = data.class_tasks(n_classes, per_task)
    return data.Tasks(scenario=scenario(cfg), n_classes=n_classes, outputs=outputs, split=split,
                      tasks=split[:cfg.n_tasks or None], sizes=(train_x.shape[1], *cfg.hidden, outputs), device=device,
                      engine=engine, dtype=dtype, train_x=train_x, train_y=train_y.to(device), eval_chunks=eval_chunks,
                      eval_y=torch.cat([test_y[probe], test_y[rest]]).to(device), probes=len(probe))


def task_order(seed, cfg, n):
    """The order in which the n tasks are learnt: as numbered, or with cfg.task_order 'random' a permutation
    drawn from the seed alone (the iCaRL script's randperm per trial), so every method and every setting of a
    seed learns the same order."""
    if cfg.task_order == "fixed":
        return list(range(n))
    return torch.randperm(n, generator=generator(seed, "order", 0)).tolist()


def seeded(ctx, seed, cfg):
    """The data of one seed: ctx with its tasks in the seed's order (task_order), the first cfg.n_tasks of
    them. Each task keeps its digits, so records and tables name a task by them (rec["tasks"]); a permuted task
    (digits 10 t ... 10 t + 9) gets its pixel permutation, drawn from the seed alone."""
    order = [ctx.split[i] for i in task_order(seed, cfg, len(ctx.split))]
    seeds = dict(tasks=tuple(order[:cfg.n_tasks or None]))
    if isinstance(ctx.train_x, data.Permuted):   # each task's permutation, from the seed (the first: none)
        perms = data.permutations(len(ctx.split), ctx.train_x.shape[1], generator(seed, "permute", 0)).to(ctx.device)
        test = ctx.eval_chunks.images
        seeds.update(train_x=data.Permuted(ctx.train_x.images, perms),
                     eval_chunks=data.Chunks(data.Permuted(test.images, perms), ctx.eval_chunks.index))
    return dataclasses.replace(ctx, **seeds)


def epochs_of(k, cfg):
    """Passes over task k's training set (k = 0, joint training: cfg.epochs)."""
    return cfg.task_epochs[k - 1] if cfg.task_epochs and k else cfg.epochs


def initial_net(seed, cfg, ctx, copy=1):
    """The seed's initial weights (cfg.init), the same for every method. copy k > 1: the initial weights of
    merging's k-th copy when each copy has its own (merge_init "own"), from the seed's stream for copy k."""
    return models.init_net(ctx.sizes, cfg.init_scale, generator(seed, "init", copy), ctx.dtype, ctx.device, init=cfg.init,
                           output=cfg.output.split("-")[0], inverted=cfg.inverted_dropout, bias=cfg.bias)


# the phases that draw random numbers, each its own stream (a phase's place in this list is its stream: new
# phases go at the end); dreams and interleave are studies/weights_only.py's leads: a dream's image inversion
# before task k's sleep, the sleeps interleaved with training (numbered in the order they run); permute:
# permuted MNIST's pixel permutations; distort: studies/robustness.py's noise and fine-tuning images
PHASES = ("train", "sleep", "replay", "exemplars", "nme", "order", "init", "dreams", "interleave", "permute", "distort")


def generator(seed, phase, k, device="cpu"):
    """The seed's random stream for one phase (PHASES: training, sleep, the choice of replayed images, the
    initial weights, ...) of task k (k = 0: joint training; init: merging's copy k).
    Every method draws the same numbers in the same phase (common random numbers), so methods differ
    only in what they do: sequential and SRC train task 1 identically, and their difference is the sleep."""
    if (phase, k) == ("init", 1):   # every method's initial weights: the seed itself
        return torch.Generator(device=device).manual_seed(seed)
    state = np.random.SeedSequence([seed, PHASES.index(phase), k]).generate_state(1)[0]
    return torch.Generator(device=device).manual_seed(int(state))


# ---------------------------------------------------------------- the steps of the loop
@torch.no_grad()
def evaluate(net, cfg, ctx, analyses=True):
    """What the experiment records of a network: accuracy on each task and on all test images (the argmax over
    every output: class-incremental, or domain-incremental's shared head), and task_il, the accuracy when each image is classified among its own task's
    outputs only (task-incremental: the same outputs, the task label given); with
    analyses, the confusion matrix, the stable rank of each layer, the activations of the probe images (the first chunk of
    the test pass) and the capacity each task uses in each layer, measured on them (analysis.capacity)."""
    probe_acts = models.forward(net, ctx.eval_chunks[0], cfg.dropout)
    out = torch.cat([probe_acts[-1]] + [models.forward(net, xb, cfg.dropout)[-1] for xb in ctx.eval_chunks[1:]])
    pred = out.argmax(1)
    target = ctx.output(ctx.eval_y)
    per_task, overall = models.accuracy(pred, ctx.eval_y, ctx.tasks, target)
    accuracy = dict(**{f"task_{k + 1}": a for k, a in enumerate(per_task)}, all=overall,
                    task_il=models.task_il(out, ctx.eval_y, ctx.tasks, target, ctx.task_outputs))
    if not analyses:
        return dict(accuracy=accuracy)
    acts = [a.cpu().numpy() for a in probe_acts]
    return dict(accuracy=accuracy, confusion=sleep_analysis.confusion(pred.cpu(), ctx.eval_y.cpu(), ctx.n_classes, ctx.outputs),
                stable_rank={f"layer_{l + 1}": analysis.stable_rank(w) for l, w in enumerate(net.weights_only())},
                acts=acts, capacity=analysis.capacity(acts, ctx.eval_y[:len(acts[0])].cpu().numpy(), ctx.tasks))


def training_set(k, seed, cfg, ctx):
    """Indices of the images task k trains on: its first n_per_task (k = 0: every training image). With
    rehearsal (cfg.replay = F > 0, MNIST/run_sleep_with_replay.m), task k >= 2 also gets a random F of all
    training images of tasks 1..k-1, rounded to hundreds (half away from zero, as MATLAB's round(x, -2))."""
    if k == 0:
        return data.task_indices(ctx.train_y, sum(ctx.tasks, ()))
    idx = data.task_indices(ctx.train_y, ctx.tasks[k - 1], cfg.n_per_task or None)
    if cfg.replay == 0 or k == 1:
        return idx
    old = data.task_indices(ctx.train_y, sum(ctx.tasks[:k - 1], ()))
    n = min(len(old), int(np.floor(len(old) * cfg.replay / 100 + 0.5)) * 100)
    order = torch.randperm(len(old), generator=generator(seed, "replay", k)).to(old.device)
    return torch.cat([idx, old[order[:n]]])


def train_task(start, k, seed, cfg, ctx, penalty=None, path=None, memory=None, progress=False, desc="train",
               distill=False):
    """A copy of `start` trained on task k (k = 0: all tasks at once), with the seed's stream for task k.
    The copy starts from `start`'s momentum buffers: they carry over from task to task, as in the original
    (keep_momentum False: zero, as a fresh torch optimiser per task).
    memory: iCaRL's exemplars (images, target rows) join the task's images; as the MATLAB, the set is then
    padded to a whole number of minibatches with the task's next images, from its n_per_task-th on.
    distill (LwF, k >= 2): `start`'s evaluation-mode outputs on the training images are soft targets for the
    outputs of the classes of tasks 1..k-1 (cfg.lwf_outputs "earlier") or for every output ("all"), with
    strength lwf_strength(k, cfg) and temperature cfg.lwf_temperature."""
    net = start.clone()
    if not cfg.keep_momentum:
        net.vW = [torch.zeros_like(v) for v in net.vW]
    idx = training_set(k, seed, cfg, ctx)
    x, y = ctx.images(idx), ctx.output(ctx.train_y[idx])   # the output each image trains towards
    if memory is not None:
        short = -(len(idx) + len(memory[0])) % cfg.batch_size
        pad = data.task_indices(ctx.train_y, ctx.tasks[k - 1], cfg.n_per_task + short)[cfg.n_per_task - 1:][:short]
        one_hot = lambda labels: torch.nn.functional.one_hot(labels, ctx.outputs).to(x.dtype)
        x = torch.cat([x, memory[0], ctx.train_x[pad]])
        y = torch.cat([one_hot(y), memory[1], one_hot(ctx.output(ctx.train_y[pad]))])
    soft = None
    if distill and k >= 2:
        taught = torch.isin(torch.arange(ctx.outputs, device=x.device),   # (domain-IL: the shared head's)
                            torch.tensor(ctx.task_outputs(sum(ctx.tasks[:k - 1], ())), device=x.device))
        if cfg.lwf_outputs == "all":   # the new task's outputs too, towards the old network's (near zero)
            taught[:] = True
        with torch.no_grad():
            old = torch.cat([models.forward(start, xb, cfg.dropout)[-1] for xb in x.split(2000)], -2)
        soft = (old, taught, lwf_strength(k, cfg), cfg.lwf_temperature)
    models.train(net, x, y, epochs=epochs_of(k, cfg), batch_size=cfg.batch_size, lr=cfg.lr,
                 momentum=cfg.momentum, dropout=cfg.dropout, n_classes=ctx.outputs,
                 generator=generator(seed, "train", k, ctx.device), penalty=penalty, path=path, distill=soft,
                 progress=progress, desc=desc)
    return net


def lwf_strength(k, cfg):
    """LwF's distillation strength while training task k (k >= 2): cfg.lwf_lambda ("constant"), or growing with
    the task, cfg.lwf_lambda (k - 1)^2 / k ("growing": 0.5, 1.33, 2.25, 3.2 for tasks 2-5 at 1, the per-task
    strengths of Avalanche's split-MNIST example), or the k-th of cfg.lwf_lambdas when those are given."""
    if cfg.lwf_lambdas:
        return cfg.lwf_lambdas[k - 1]
    return cfg.lwf_lambda * ((k - 1) ** 2 / k if cfg.lwf_schedule == "growing" else 1.0)


def sleep_reads(k, cfg, ctx):
    """Which training images sleep k reads (indices into ctx.train_x), by cfg.sleep's data and input: the one
    policy of sleep_task, sleep_keeps and the speed benchmark's count. The data:
    - 'seen' (the original): every training image of tasks 1..k (not only the n_per_task each task trained
      on), for the scale factors and for the input's mean image (or one mean image per class seen);
    - 'current': only the n_per_task images task k trained on, for both: nothing is kept between tasks;
    - 'current+means': those for the scale factors; for the input, the mean image of every class seen, each
      kept from the images its task trained on (a summary of classes x pixels numbers and one count per class);
    - 'first': every training image of the first task, for both, after every task (the cross-modal script's:
      MNIST's images only).
    Returns (scale, means, shown), each None when not read: the images the scale factors and the plain mean
    input are computed on (fixed alpha reads none, unless the input is their mean); those whose class means
    make the input (input 'class-means', or data 'current+means'); those the input draws image by image: the
    input 'replica' samples from task k's own whatever the data, the input 'images' shows the first T_k of
    the data's images in their order (all of them, again from the first, when T_k is longer: src.image_spikes)."""
    c = cfg.sleep
    trained_on = lambda j: data.task_indices(ctx.train_y, ctx.tasks[j - 1], cfg.n_per_task or None)
    if c.data == "seen":
        pool = data.task_indices(ctx.train_y, sum(ctx.tasks[:k], ()))
    elif c.data == "first":
        pool = data.task_indices(ctx.train_y, ctx.tasks[0])
    else:
        pool = torch.cat([trained_on(j) for j in (range(1, k + 1) if c.data == "current+means" else [k])])
    scale = None if c.alpha is not None and (c.input != "mean" or c.data == "current+means") else \
        trained_on(k) if c.data == "current+means" else pool
    means = pool if c.input != "replica" and (c.input == "class-means" or c.data == "current+means") else None
    shown = trained_on(k) if c.input == "replica" else pool[:c.length(k)] if c.input == "images" else None
    return scale, means, shown


def sleep_task(nets, k, seed, cfg, ctx, progress=False, constants=None, max_spikes=None, window=0, watch=None):
    """SRC's sleep after task k with cfg.sleep (or constants: one src.Sleep per network), for one network or
    a list of them (slept together by the batched engine), on the images sleep_reads names. window, watch:
    src.sleep's (the spikes per window of steps, a function of the network at the end of each window)."""
    c = cfg.sleep
    if c is None:   # dataclasses.replace(cfg, ...) drops it: the config must go through config.resolve again
        raise ValueError("cfg.sleep is not set: pass the config through config.resolve (with a method that sleeps)")
    scale, means, shown = sleep_reads(k, cfg, ctx)
    images = ctx.train_x[shown] if c.input == "images" else None
    if means is not None:
        labels = ctx.train_y[means]
        classes = labels.unique().tolist()
        images = torch.stack([ctx.train_x[means[labels == j]].mean(0) for j in classes])
        if c.input == "mean":   # the mean of the kept images: class means weighted by their counts
            counts = torch.tensor([(labels == j).sum().item() for j in classes], dtype=images.dtype, device=images.device)
            images = counts @ images / counts.sum()
    return src.sleep(nets, None if scale is None else ctx.images(scale), c.length(k), generator(seed, "sleep", k),
                     c if constants is None else constants, dropout=cfg.dropout, images=images,
                     sample=(ctx.train_x[shown], c.samples, c.mask_fraction) if c.input == "replica" else None,
                     max_spikes=max_spikes, engine=ctx.engine, progress=progress, window=window, watch=watch)


def sleep_keeps(cfg, ctx):
    """What SRC's sleep reads (sleep_reads), and how many bytes it must keep between tasks besides the weights,
    at the last sleep (float32 numbers at 4 bytes; raw images at one byte per pixel, as the datasets store them)."""
    pixels, c = ctx.train_x.shape[1], cfg.sleep
    scale, means, shown = sleep_reads(len(ctx.tasks), cfg, ctx)
    if c.data == "current+means" and means is not None:
        return "task k's training images and a kept mean image per class", ctx.n_classes * (pixels + 1) * 4
    read = scale if scale is not None else means if means is not None else shown if c.input == "images" else None
    if c.data in ("seen", "first") and read is not None:   # raw images beyond task k's own
        some = f"the first {len(read)} training images" if read is shown else "every training image"
        return f"{some} of " + dict(seen="the tasks seen", first="the first task")[c.data], image_bytes(read, ctx)
    return "task k's training images", 0


def image_bytes(idx, ctx):
    """Bytes of the raw training images idx names, at a byte per pixel; of permuted tasks, each image once and
    each task's permutation (a 16-bit pixel index per pixel)."""
    pixels = ctx.train_x.shape[1]
    if isinstance(ctx.train_x, data.Permuted):
        n = len(ctx.train_x.images)
        return len(torch.unique(idx % n)) * pixels + len(torch.unique(idx // n)) * 2 * pixels
    return len(idx) * pixels


def kept_between_tasks(spec, rec, net, cfg, ctx):
    """Bytes a network method carries from one task to the next besides the network itself, at the last task,
    and what they are (raw images at a byte per pixel, numbers at their own size)."""
    weights = sum(w.numel() * w.element_size() for w in net.W)
    if spec.joint:
        return image_bytes(training_set(0, 0, cfg, ctx), ctx), "every training image (it trains on all tasks at once)"
    if spec.penalty:
        return 2 * weights, "the weights after the last task and one importance per weight"
    if spec.merge:
        return (len(ctx.tasks) - 1) * weights, "a trained copy of the network for each earlier task"
    images = {}   # raw images, in nested sets (exemplars, earlier tasks', every one seen): the largest is kept
    if spec.exemplars:
        images["the exemplar images"] = rec["exemplar_bytes"]
    if cfg.replay:
        earlier = data.task_indices(ctx.train_y, sum(ctx.tasks[:-1], ()))
        images["every earlier task's training images (rehearsal draws from them)"] = image_bytes(earlier, ctx)
    statistics = {}
    if spec.sleep and rec["sleep_keeps_bytes"]:
        (statistics if cfg.sleep.data == "current+means" else images)[
            "what the sleep reads: " + rec["sleep_reads"]] = rec["sleep_keeps_bytes"]
    largest = dict([max(images.items(), key=lambda kv: kv[1])]) if images else {}
    kept = {**largest, **statistics}
    teacher = " (LwF's teacher, the network after task k - 1, is held while task k trains, then dropped)" \
        if spec.distill else ""
    return sum(kept.values()), (" and ".join(kept) or "nothing") + teacher


# ---------------------------------------------------------------- iCaRL's memory
def memory_set(exemplars, net, gen, cfg, ctx):
    """The kept exemplars as a training set before the next task: their images and target rows, one-hot,
    or with cfg.distillation the previous network's softmax outputs (training-mode dropout, as the MATLAB)."""
    idx = torch.cat([torch.as_tensor(i, device=ctx.train_x.device) for i in exemplars.values()])
    x = ctx.train_x[idx]
    if cfg.distillation:
        return x, torch.softmax(models.forward(net, x, cfg.dropout, gen)[-1], 1)
    return x, torch.nn.functional.one_hot(ctx.output(ctx.train_y[idx]), ctx.outputs).to(x.dtype)


def update_exemplars(exemplars, net, k, gen, cfg, ctx):
    """After training task k: choose the exemplars of its classes from all their training images (herding or
    random, cfg.exemplars) and cut the earlier classes' sets to the new size per class."""
    m = icarl.per_class(cfg.memory, k, cfg.classes_per_task)
    for c in exemplars:
        exemplars[c] = exemplars[c][:m]
    for c in ctx.tasks[k - 1]:
        pool = data.task_indices(ctx.train_y, (c,))
        exemplars[c] = pool[icarl.choose(net, ctx.train_x[pool], m, cfg.exemplars, cfg.dropout, gen)].tolist()


@torch.no_grad()
def nme_accuracy(net, exemplars, gen, cfg, ctx):
    """Accuracy of the nearest-mean-of-exemplars classifier over the classes kept (models.accuracy's keys)."""
    means = {c: icarl.features(net, ctx.train_x[i], cfg.dropout, gen).mean(0) for c, i in exemplars.items()}
    phi = torch.cat([icarl.features(net, xb, cfg.dropout) for xb in ctx.eval_chunks])
    pred = icarl.nme_predict(phi, means)
    per_task, overall = models.accuracy(pred, ctx.eval_y, ctx.tasks)
    scores = phi.new_full((len(phi), ctx.n_classes), -torch.inf)   # minus the distance to each kept class's mean
    scores[:, list(means)] = -torch.cdist(phi, torch.stack(list(means.values())).to(phi))
    return dict(**{f"task_{k + 1}": a for k, a in enumerate(per_task)}, all=overall,
                task_il=models.task_il(scores, ctx.eval_y, ctx.tasks))


# ---------------------------------------------------------------- the one loop
def schedule(spec, cfg, n_tasks):
    """The loop's steps for a method (its Method) over n tasks: (task trained, whether a sleep follows it),
    task 0 being one training on all tasks at once. run_method, the speed benchmark's count and the sleep's
    search (studies/tune.py) all follow it."""
    tasks = [0] if spec.joint else [n_tasks] if spec.last_only else range(1, n_tasks + 1)
    return [(k, spec.sleep and (not cfg.sleep_after or k in cfg.sleep_after)) for k in tasks]


def recorded_sleep(net, k, seed, cfg, ctx, rec, progress=False):
    """Sleep k of one network (sleep_task), with its record appended to rec["sleep"] (length, seconds, scale
    factors, spikes per step; with --sleep-window the firing and the accuracy during it); returns the slept
    network and the sleep's info. The evaluations during the sleep count as evaluation time, not the sleep's."""
    t, watching = time.perf_counter(), [0.0]

    def watch(n):
        t0 = time.perf_counter()
        out = evaluate(n, cfg, ctx, analyses=False)["accuracy"]["all"]
        watching[0] += time.perf_counter() - t0
        return out

    net, info = sleep_task(net, k, seed, cfg, ctx, progress=progress, window=cfg.sleep_window,
                           watch=watch if cfg.sleep_window else None)
    rec["time"]["eval"] += watching[0]
    rec["time"]["sleep"] -= watching[0]   # (run_method adds the whole call to the sleep's time)
    steps = cfg.sleep.length(k)
    rec["sleep"].append(dict(task=k, steps=steps, seconds=time.perf_counter() - t - watching[0], alpha=info["alpha"],
                             spikes_per_step=[sum(c) / steps for c in info["spikes"]]))
    if cfg.sleep_window:   # the firing of each layer per window, and the accuracy during the sleep
        rec["sleep"][-1].update(window=cfg.sleep_window, window_spikes=[c.sum(1).tolist() for c in info["window_counts"]],
                                accuracy_during=[dict(step=s, all=a) for s, a in info["watched"]])
    return net, info


def run_method(method, seed, cfg, ctx, shared, progress=False, analyses=True):
    """Train (and sleep) one method from the seed's initial weights; returns its record and PCA maps.
    analyses False (a search): every stage's accuracy only, no stable ranks, capacity, sleep analyses or maps.
    The record's rows are the method's stages; SRC also records, in rec["synthetic"], the accuracy of the
    "synthetic" network of each task k: the weights before training task k plus the change of sleep k;
    iCaRL also records, in rec["nme"], the nearest-mean-of-exemplars accuracy of its stages.

    shared: {stage: (net, evaluation)} of this seed and config. A stage that the method declares shared
    (Method.shared) is taken from there when another method has computed it, and put there otherwise;
    the random streams make a recomputation identical.
    """
    spec, ctx = METHODS[method], seeded(ctx, seed, cfg)
    rec = dict(method=method, seed=seed, tasks=[list(t) for t in ctx.tasks], rows=[], stable_rank=[], capacity=[], sleep=[],
               synthetic=[], nme=[], analysis=[], time=dict(train=0.0, sleep=0.0, eval=0.0))
    if spec.statistics:
        return run_statistics(spec, rec, seed, cfg, ctx, shared), {}
    if spec.sleep:
        rec["sleep_reads"], rec["sleep_keeps_bytes"] = sleep_keeps(cfg, ctx)
        rec["sleep_constants"] = dataclasses.asdict(cfg.sleep)
    acts, confusions, infos = {}, {}, {}

    def reach(stage, make, phase):
        """The network after `stage`, made by make() unless shared; its evaluation is recorded."""
        if stage in spec.shared and stage in shared:
            net, entry = shared[stage]
            net = net.clone()
        else:
            t = time.perf_counter()
            net = make()
            rec["time"][phase] += time.perf_counter() - t
            t = time.perf_counter()
            entry = evaluate(net, cfg, ctx, analyses)
            rec["time"]["eval"] += time.perf_counter() - t
            if stage in spec.shared:
                shared[stage] = (net.clone(), entry)
        if not all(torch.isfinite(w).all() for w in net.W):   # training, a sleep or a merge broke the network:
            rec.setdefault("diverged", stage)                   # it goes on and is scored as it is, and marked
        rec["rows"].append(dict(stage=stage, **entry["accuracy"]))
        if analyses:
            rec["stable_rank"].append(dict(stage=stage, **entry["stable_rank"]))
            rec["capacity"].append(dict(stage=stage, layers=entry["capacity"]))
            acts[stage], confusions[stage] = entry["acts"], entry["confusion"]
        return net

    def slept(net, k):
        if not all(torch.isfinite(w).all() for w in net.W):   # training diverged (marked): no scale factors, no sleep
            return net.clone()
        net, infos[k] = recorded_sleep(net, k, seed, cfg, ctx, rec, progress)
        return net

    init = reach("init", lambda: initial_net(seed, cfg, ctx), "train")
    net, finished = init, []
    omega, anchor = None, None  # EWC / SI: importance of each weight and the weights it is pulled towards
    exemplars = {}              # iCaRL: {class: indices of its exemplars among the training images}

    def nme(stage, net, k):   # iCaRL's nearest-mean-of-exemplars accuracy after a stage of task k
        rec["nme"].append(dict(stage=stage, **nme_accuracy(net, exemplars, generator(seed, "nme", k), cfg, ctx)))

    for k, sleeps in schedule(spec, cfg, len(ctx.tasks)):
        start = net
        gen = generator(seed, "exemplars", k) if spec.exemplars else None
        memory = memory_set(exemplars, net, gen, cfg, ctx) if exemplars else None
        if spec.restart:
            start = init if k == 1 or cfg.merge_init == "shared" else initial_net(seed, cfg, ctx, copy=k)
        # gradients: EWC lambda F (W - W*) of lambda/2 sum F (W - W*)^2; SI 2 c Omega (W - W*) of c sum Omega (W - W*)^2
        penalty = None if omega is None else (omega, anchor, cfg.ewc_lambda if spec.penalty == "ewc" else 2 * cfg.si_c)
        path = [torch.zeros_like(w) for w in start.W] if spec.penalty == "si" else None
        net = reach(f"train_{k or 'all'}", lambda: train_task(start, k, seed, cfg, ctx, penalty, path, memory, progress,
                                                                f"{method} s{seed} task {k}", spec.distill), "train")
        if spec.exemplars:
            t = time.perf_counter()
            update_exemplars(exemplars, net, k, gen, cfg, ctx)
            rec["time"]["train"] += time.perf_counter() - t
            nme(f"train_{k}", net, k)
        if spec.penalty == "ewc":   # online EWC: the Fisher information of every task so far, summed
            idx = data.task_indices(ctx.train_y, ctx.tasks[k - 1], cfg.n_per_task or None)
            new = models.fisher(net, ctx.images(idx), ctx.output(ctx.train_y[idx]), cfg.dropout, ctx.outputs)
        elif spec.penalty == "si":  # SI: each weight's share of the loss decrease, over its squared change
            new = [p / ((w - w0).square() + cfg.si_xi) for p, w, w0 in zip(path, net.W, start.W)]
        if spec.penalty:
            omega = new if omega is None else [o + n for o, n in zip(omega, new)]
            anchor = [w.clone() for w in net.W]
        if sleeps:
            trained = net
            net = reach(f"sleep_{k}", lambda: slept(net, k), "sleep")
            if k in infos and analyses:   # what the sleep did (sleep_analysis.py)
                rec["analysis"].append(sleep_analysis.analyse(
                    k, [w.cpu() for w in trained.weights_only()], [w.cpu() for w in net.weights_only()], infos[k]["spikes"],
                    acts[f"train_{k}"], acts[f"sleep_{k}"], ctx.eval_y[:len(acts[f"train_{k}"][0])].cpu().numpy(),
                    confusions[f"train_{k}"], confusions[f"sleep_{k}"], ctx.n_classes))
            rec["synthetic"].append(dict(stage=f"synthetic_{k}", **synthetic_accuracy(start, trained, net, cfg, ctx)))
            if spec.exemplars:
                nme(f"sleep_{k}", net, k)
        finished.append(net)
    if spec.merge:
        net = reach("merged", lambda: models.merge(finished), "train")
    if spec.exemplars:   # what the memory holds at the end: exemplars per class, and their bytes (a byte per pixel)
        rec["exemplars"] = {c: len(i) for c, i in exemplars.items()}
        rec["exemplar_bytes"] = sum(rec["exemplars"].values()) * ctx.train_x.shape[1]
    rec["kept_bytes"], rec["kept_what"] = kept_between_tasks(spec, rec, net, cfg, ctx)
    for rows in (rec["rows"], rec["nme"]):
        if rows:
            rows.append(dict(rows[-1], stage="final"))
    return rec, activation_maps(acts, spec, cfg, ctx) if analyses else {}


def synthetic_accuracy(start, trained, slept, cfg, ctx):
    """The earlier replica's diagnostic: the accuracy of the weights before task k's training plus the change
    of sleep k."""
    synthetic = slept.with_weights([w0 + (w - w1) for w0, w, w1 in zip(start.W, slept.W, trained.W)], slept.vW)
    return evaluate(synthetic, cfg, ctx, analyses=False)["accuracy"]


def activation_maps(acts, spec, cfg, ctx):
    """PCA maps of the probe activations of every stage: before and after each sleep share one basis per
    layer; every other stage has its own."""
    groups = [[f"train_{k}", f"sleep_{k}"] if f"sleep_{k}" in acts else [f"train_{k}"] for k in range(1, len(ctx.tasks) + 1)] \
        if spec.sleep else [[s] for s in acts if s != "init"]
    maps = {}
    for group in groups:
        maps.update(analysis.pca_maps({s: acts[s] for s in group}, cfg.pca_components))
    return maps


def run_statistics(spec, rec, seed, cfg, ctx, shared):
    """A baseline that learns statistics instead of weights (NCM, SLDA; the analytic head on the features
    of the network trained on task 1, then frozen): after each task, fold its training images into the
    statistics and score the classifier they make; the same record as run_method's, without the analyses.
    NCM and SLDA keep a class per label and score each output by its best class: in domain-IL a task is known while
    it trains, so the digits that share an output (a permuted task's digits) keep statistics of their own. The
    analytic head's targets are the outputs."""
    x_eval = torch.cat(list(ctx.eval_chunks))
    if spec.statistics == "analytic":   # task 1's network, as sequential training makes it (the same stage)
        net = shared["train_1"][0] if "train_1" in shared else train_task(initial_net(seed, cfg, ctx), 1, seed, cfg, ctx)
        # the last hidden layer's evaluation-mode activations
        features = lambda x: torch.cat([models.forward(net, xb, cfg.dropout)[-2] for xb in x.split(2000)])
        stats, x_eval = baselines.RidgeHead(ctx.sizes[-2], ctx.outputs), features(x_eval)
    else:
        features = lambda x: x
        stats = baselines.ClassStatistics(ctx.train_x.shape[1], ctx.n_classes, covariance=spec.statistics == "slda")
    for k in range(1, len(ctx.tasks) + 1):
        t = time.perf_counter()
        idx = training_set(k, seed, cfg, ctx)
        with torch.no_grad():
            y = ctx.train_y[idx]
            stats.add(features(ctx.train_x[idx]), ctx.output(y) if spec.statistics == "analytic" else y)
        rec["time"]["train"] += time.perf_counter() - t
        t = time.perf_counter()
        score = dict(ncm=lambda: baselines.ncm_scores(stats, x_eval),
                     slda=lambda: baselines.slda_scores(stats, x_eval, cfg.slda_shrinkage),
                     analytic=lambda: baselines.ridge_scores(stats, x_eval, cfg.analytic_ridge))
        scores = score[spec.statistics]()
        if spec.statistics != "analytic":
            scores = baselines.at_outputs(scores, ctx.outputs)
        target = ctx.output(ctx.eval_y).cpu()
        per_task, overall = models.accuracy(scores.argmax(1), ctx.eval_y.cpu(), ctx.tasks, target)
        rec["time"]["eval"] += time.perf_counter() - t
        rec["rows"].append(dict(stage=f"train_{k}", **{f"task_{j + 1}": a for j, a in enumerate(per_task)}, all=overall,
                                task_il=models.task_il(scores, ctx.eval_y.cpu(), ctx.tasks, target, ctx.task_outputs)))
    rec["rows"].append(dict(rec["rows"][-1], stage="final"))
    rec["kept_bytes"] = stats.kept_bytes()
    rec["kept_what"] = "its features' statistics (the network: task 1's, frozen)" \
        if spec.statistics == "analytic" else "class statistics (there is no network)"
    return rec
