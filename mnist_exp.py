# %%
"""Sleep Replay Consolidation on class-incremental split MNIST (Tadros et al., Nat. Commun. 2022).

Compares, from the same initial weights: sequential training (lower bound), SRC (sleep after each
task), model merging and parallel (joint) training (upper bound), and EWC and SI on request. Writes a
run folder runs/<dataset>-<preset>-<hash>/ (and nothing else) with the job files, results.csv,
stable_rank.csv, summary.md, config.json, run.log and the figures in png/.

    python mnist_exp.py                                  # the default protocol, one seed
    python mnist_exp.py --seeds 0 1 2 3 4 --workers 2    # five seeds, two processes
    python mnist_exp.py --quick                          # a smoke test (seconds)

Every field of the config cell below is also a command-line option (--sleep-steps 20000, ...). In a
notebook or an interactive window, edit the config cell and run the cells in order; the last cells
train once and then sleep with other constants as often as you like. Importing this file (tune.py does)
defines its functions and runs nothing.
"""
import argparse
import csv
import ctypes
import dataclasses
import glob
import hashlib
import json
import os
import platform
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

import data
import methods
import src
import visualize
from methods import METHODS, evaluate, initial_net, prepare, run_method, sleep_task, train_task

# The repository's folder, found through a module beside this script: a notebook kernel has no __file__.
ROOT = os.path.dirname(os.path.abspath(methods.__file__))
INTERACTIVE = "ipykernel" in sys.modules      # a Jupyter kernel or VS Code's interactive window
WORKER = bool(os.environ.get("SRC_WORKER"))   # a process started by run_jobs to run some of the jobs


def arg(default, help, shown=None):
    """A config field: its default, its help, and how --help shows the default (when not the value itself)."""
    return field(default=default, metadata=dict(help=help, shown=default if shown is None else shown))


# %% Config: every hyperparameter, with the protocol's defaults (PROTOCOL.md). Edit here in a notebook; every
# field is also a command-line option (--sleep-steps 20000).
@dataclass
class Config:
    # run
    methods: tuple = arg(("sequential", "src", "merging", "parallel"), "methods to compare")
    seeds: tuple = arg((0,), "one run per seed; the seed sets the initial weights and all later randomness")
    dataset: str = arg("mnist", "mnist or fashion-mnist")
    protocol: str = arg("original", "'original' (the authors' MATLAB, PROTOCOL.md) or 'replica' (the earlier Python "
                                    "replica at 4d1755d: every field in PROTOCOLS['replica'] at once); single options override it")
    preset: str = arg("original", "named set of sleep constants, and for a variant its training (SLEEP_PRESETS, "
                                  "presets/NAME.json); single options override it")
    out: str = arg("runs", "folder for run folders; a run folder is named by its config")
    data_dir: str = arg(data.DEFAULT_DATA_DIR, "where the datasets live (or set SRC_DATA_DIR)")
    device: str = arg("auto", "cpu, cuda (or cuda:N) or auto (cuda where there is one)")
    workers: int = arg(1, "processes running (method, seed) jobs side by side")
    force: bool = arg(False, "recompute results that already exist in the run folder")
    quick: bool = arg(False, "tiny run for smoke tests: few images, one epoch, short sleeps (sets the fields "
                             "below that are left at their defaults; see QUICK)")
    quiet: bool = arg(False, "no progress bars or per-job lines (the summary and the run folder are still printed)")
    figures: bool = arg(True, "draw the figures at the end (visualize.py)")
    png_dir: str = arg("", "where the figures go", shown="RUN_DIR/png")
    # data and tasks
    classes_per_task: int = arg(2, "digits per task: (0, 1), (2, 3), ...")
    n_per_task: int = arg(5000, "training images per task: the first n of its digits, in dataset order")
    train_limit: int = arg(0, "use only the first n training images (0: all)")
    test_limit: int = arg(0, "use only the first n test images (0: all)")
    replay: float = arg(0.0, "rehearsal: task k >= 2 also trains on this fraction of all training images of the "
                             "earlier tasks, drawn at random and rounded to hundreds (MNIST/run_sleep_with_replay.m)")
    memory: int = arg(0, "iCaRL (methods icarl, icarl-src): training images kept as exemplars, shared by the classes "
                         "seen (MNIST/run_icarl_mnist.m uses 100, 1000, 2000, 20000)")
    exemplars: str = arg("herding", "iCaRL: how each class's exemplars are chosen, 'herding' or 'random'")
    distillation: bool = arg(False, "iCaRL: the exemplars' targets are the previous network's softmax outputs instead "
                                    "of their one-hot labels")
    validation: int = arg(0, "hold out the last n training images of each class: no training or sleep reads them, and "
                             "every accuracy is measured on them instead of the test set (for tuning; 0: test set)")
    # network and training (DeepLearnToolbox fork of the original)
    hidden: tuple = arg((1200, 1200), "hidden layer widths")
    init: str = arg("uniform", "'uniform': weights start uniform in [-init_scale, init_scale]; 'torch': PyTorch's "
                               "default for a Linear layer without bias, uniform in [-1/sqrt(fan_in), 1/sqrt(fan_in)]")
    init_scale: float = arg(0.01, "bound of the 'uniform' initialisation")
    bias: bool = arg(False, "networks with biases, trained like the weights and starting at 0 (the original has none)")
    output: str = arg("relu-mse", "'relu-mse': ReLU output, half squared error, output error without the ReLU derivative "
                                  "(the original); 'linear-ce': logits and softmax cross-entropy")
    dropout: float = arg(0.25, "fraction of hidden units dropped in training; evaluation scales by 1 - dropout")
    inverted_dropout: bool = arg(False, "torch's inverted dropout: the training mask divided by 1 - dropout, "
                                        "evaluation unscaled (same in expectation; changes the activations alpha sees)")
    lr: float = arg(0.1, "learning rate, per minibatch-mean gradient")
    momentum: float = arg(0.5, "v = momentum v + lr g; W -= v")
    keep_momentum: bool = arg(True, "momentum buffers carry over from task to task (the original); "
                                    "--no-keep-momentum: zero at each task, as a fresh torch optimiser")
    batch_size: int = arg(100, "images per minibatch")
    epochs: int = arg(2, "passes over each task's training set")
    dtype: str = arg("float32", "float32 (as the original) or float64")
    matmul: str = arg("float32", "precision of training's matrix products: float32, or bfloat16 for searches (about 2x "
                                 "faster products at minibatch 100 on CPUs with bf16 units, a few percent per candidate; "
                                 "changes the numbers; weights and updates stay in --dtype)")
    # sleep: length and input
    sleep_steps: int = arg(15000, "time steps of the first sleep")
    sleep_steps_increment: int = arg(5000, "extra steps per later task: T_k = sleep_steps + (k-1) increment")
    dt: float = arg(0.001, "simulation time step (s)")
    mask_size: int = arg(11, "side of the square window of the mean image shown each step (MATLAB's 10 + 1)")
    sleep_input: str = arg(None, "rate map of the sleep: 'mean' (the protocol: the mean of all images seen, through the "
                                 "window), 'class-means' (each step, the mean image of one class seen, drawn at random) "
                                 "or 'replica' (each step, the mean of sleep_samples random training images of the "
                                 "current task times a random pixel mask)",
                          shown="from --preset")
    sleep_data: str = arg("seen", "what each sleep reads: 'seen' (every training image of the tasks so far, the "
                                  "original), 'current' (only the images task k trained on: nothing kept between tasks) "
                                  "or 'current+means' (those, and a mean image per class seen, kept from its task)")
    sleep_samples: int = arg(10, "sleep input 'replica': images of the current task averaged per step")
    sleep_mask_fraction: float = arg(0.25, "sleep input 'replica': fraction of pixels each step's mask keeps")
    # sleep: the genetic-search constants and the input; None takes them from the preset
    rate: float = arg(None, "input rate: a pixel of value p fires with probability 2 dt rate p", shown="from --preset")
    inc: float = arg(None, "potentiation: W += inc g(W) where pre and post fired", shown="from --preset")
    dec: float = arg(None, "depression: W -= dec g(W) where post fired and pre did not", shown="from --preset")
    beta: tuple = arg(None, "threshold multipliers, one per layer", shown="from --preset")
    alpha_scale: float = arg(None, "scale of the data-based factors alpha", shown="from --preset")
    alpha: tuple = arg((), "fixed scale factors, one per layer, instead of the data-based ones (empty: data-based)")
    # sleep: switches of the original, off in the protocol
    decay: float = arg(0.999, "membrane decay per step")
    threshold: float = arg(1.0, "base firing threshold")
    w_inh: float = arg(0.0, "lateral inhibition: impulse -= w_inh mean(impulse)")
    dc: float = arg(0.0, "constant drive of the output layer per step")
    refractory: int = arg(0, "steps a neuron ignores input after firing")
    norm_w: bool = arg(False, "rescale each input's weight range after sleep to its range before")
    gamma: float = arg(1.0, "factor of that rescaling")
    plasticity: tuple = arg((1.0, 1.0, 1.0), "multiplier of inc and dec in each layer during sleep (0 freezes a layer: "
                                              "an ablation, not in the original)")
    sleep_bias: str = arg("ignore", "with --bias, what sleep does with the biases: 'ignore' (the spiking network has "
                                    "none; they come out unchanged), 'current' (alpha_l b_l added to the membranes every "
                                    "step, unchanged) or 'unit' (the weights of an input unit that fires every step, so "
                                    "the sleep's plasticity changes them too)")
    bias_scale: float = arg(1.0, "with --sleep-bias current: the current is bias_scale alpha_l b_l (not in the issue's "
                                 "three treatments: 1 scales the bias like a weight)")
    plasticity_factor: str = arg("original", "g(w) of the sleep's update: 'original' 2 sigmoid(-w / 0.001), or "
                                             "'logistic' sigmoid(w) (the earlier replica)")
    engine: str = arg("auto", "sleep engine: numba (CPU), torch (any device) or auto")
    # the paper's other baselines; strengths: the best of a grid on tuning seeds 100, 101 (python tune.py
    # --method ewc / si), which is the weakest: in this class-incremental setting neither beats sequential
    ewc_lambda: float = arg(10.0, "EWC: strength of the penalty lambda/2 sum F (W - W*)^2 (online EWC, F summed over tasks)")
    si_c: float = arg(0.01, "SI: strength c of the penalty c sum Omega (W - W*)^2")
    si_xi: float = arg(0.1, "SI: damping xi in Omega += path / (change^2 + xi)")
    merge_init: str = arg("shared", "merging: 'shared' initial weights for every copy, or 'own' (each its own, "
                                    "as the replica at 4d1755d)")
    # analyses
    probe_per_class: int = arg(100, "test images per class in the PCA activation maps")
    pca_components: int = arg(10, "PCA components of the activation maps")


# %% Derived settings: sleep presets, quick sizes, the command line, checks, the run folder's name
# The seven constants the authors found by genetic search (MNIST/ and FashionMNIST/run_class_task_summary.m).
# More presets (tune.py writes them) are read from presets/<name>.json.
SLEEP_PRESETS = {
    "original": {
        "mnist": dict(rate=239.515363, inc=0.032064, dec=0.003344,
                      beta=(14.548273, 44.560317, 38.046326), alpha_scale=55.882454, sleep_input="mean"),
        "fashion-mnist": dict(rate=181.047258, inc=0.041001, dec=0.003344,
                              beta=(40.446884, 27.596929, 33.109393), alpha_scale=31.592987, sleep_input="mean"),
    },
}
for _path in sorted(glob.glob(os.path.join(ROOT, "presets", "*.json"))):
    with open(_path) as _f:
        SLEEP_PRESETS[os.path.basename(_path)[:-5]] = {d: p["constants"] for d, p in json.load(_f).items()}

# --protocol: every field that differs from the original, at once (single options given still win).
# 'replica': the earlier Python replica (agbld/sleep-replay-consolidation-python) at commit 4d1755d.
PROTOCOLS = {
    "original": {},
    "replica": dict(hidden=(4000, 4000), init="torch", output="linear-ce", inverted_dropout=True, lr=0.01,
                    keep_momentum=False, plasticity_factor="logistic", inc=0.001, dec=0.0001, sleep_steps=400,
                    sleep_steps_increment=133, sleep_input="replica", alpha=(14.983829, 253.17746, 7.770772),
                    merge_init="own"),
}

# --quick: these sizes replace the fields not given
QUICK = dict(train_limit=3000, test_limit=1000, n_per_task=500, epochs=1, sleep_steps=1000,
             sleep_steps_increment=500, probe_per_class=20)

# Fields that say how to run, not what to compute: they stay out of the run folder's name and config.json.
# Fields added after run folders were first named: left out of the name at these values, so older folders keep theirs.
LATER = dict(validation=0, matmul="float32", sleep_data="seen", replay=0.0, bias=False, sleep_bias="ignore", memory=0,
             exemplars="herding", distillation=False, bias_scale=1.0)

RUNTIME = {"methods", "seeds", "out", "data_dir", "device", "workers", "force", "quiet", "figures", "png_dir", "engine"}

LISTS = dict(methods=str, seeds=int, hidden=int, beta=float, plasticity=float, alpha=float)   # options taking several values


def fail(message):
    """A bad input: one line on stderr, exit code 2 (as argparse does), no traceback."""
    print(f"mnist_exp.py: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def parse_config(argv=None):
    """Config from the command line (and --config FILE). Inside a notebook kernel, unknown arguments are ignored."""
    p = argparse.ArgumentParser(prog="mnist_exp.py", description=__doc__, allow_abbrev=False,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="start from this config.json (for example a run folder's), then apply the options given")
    for f in dataclasses.fields(Config):
        kw = dict(default=argparse.SUPPRESS, help=f"{f.metadata['help']} (default: {f.metadata['shown']})")
        if isinstance(f.default, bool):
            kw["action"] = argparse.BooleanOptionalAction
        elif f.name in LISTS:   # alpha may be given empty: data-based
            kw.update(nargs="*" if f.default == () else "+", type=str)
        else:
            kw["type"] = (str if f.name == "sleep_input" else float) if f.default is None else type(f.default)
        p.add_argument("--" + f.name.replace("_", "-"), **kw)
    args, unknown = p.parse_known_args(sys.argv[1:] if argv is None else argv)
    if unknown and not INTERACTIVE:
        p.error(f"unrecognized arguments: {' '.join(unknown)}")
    given = vars(args)
    base = {}
    if given.get("config"):
        try:
            with open(given["config"]) as f:
                base = {k: v for k, v in json.load(f).items() if k in Config.__dataclass_fields__}
        except (OSError, ValueError) as err:
            fail(f"--config {given['config']}: cannot read it as a config.json ({err})")
    given.pop("config", None)
    for name, kind in LISTS.items():
        if name in given:  # accept "a,b" as well as "a b"
            try:
                given[name] = tuple(kind(s) for v in given[name] for s in v.split(",") if s)
            except ValueError:
                fail(f"--{name} takes {'whole numbers' if kind is int else 'numbers'}; got {' '.join(given[name])}")
    return resolve(Config(**{**base, **given}), given=set(base) | set(given))


def resolve(cfg, given=None):
    """Derived values (the protocol's fields, quick sizes, sleep constants from the preset, duplicates
    merged), then every check, each failing with a one-line message that names the option.
    given: the fields set explicitly (on the command line); without it, those that differ from the defaults."""
    defaults = Config()
    if given is None:
        given = {k for k in Config.__dataclass_fields__ if getattr(cfg, k) != getattr(defaults, k)}
    if cfg.protocol not in PROTOCOLS:
        fail(f"--protocol must be one of {', '.join(PROTOCOLS)}; got {cfg.protocol!r}")
    profile = {**PROTOCOLS[cfg.protocol], **(QUICK if cfg.quick else {})}
    cfg = dataclasses.replace(cfg, **{k: v for k, v in profile.items() if k not in given})
    if cfg.dataset not in data.DATASETS:
        fail(f"--dataset must be one of {', '.join(data.DATASETS)}; got {cfg.dataset!r}")
    if cfg.preset not in SLEEP_PRESETS:
        fail(f"--preset must be one of {', '.join(SLEEP_PRESETS)}; got {cfg.preset!r}")
    if cfg.dataset not in SLEEP_PRESETS[cfg.preset]:
        fail(f"--preset {cfg.preset} has no constants for {cfg.dataset} (it has: {', '.join(SLEEP_PRESETS[cfg.preset])})")
    # the preset's values, for the fields neither given nor set by the protocol (a preset may set any field:
    # a variant's training as well as its sleep constants)
    preset = SLEEP_PRESETS[cfg.preset][cfg.dataset]
    unknown = sorted(set(preset) - set(Config.__dataclass_fields__))
    if unknown:
        fail(f"--preset {cfg.preset}: presets/{cfg.preset}.json sets unknown fields: {', '.join(unknown)}")
    filled = {k: (tuple(v) if isinstance(v, list) else v) for k, v in preset.items()
              if getattr(cfg, k) is None or (k not in given and k not in profile)}
    cfg = dataclasses.replace(cfg, **filled)
    cfg = dataclasses.replace(cfg, methods=tuple(dict.fromkeys(cfg.methods)), seeds=tuple(dict.fromkeys(cfg.seeds)),
                              hidden=tuple(cfg.hidden), beta=tuple(float(b) for b in cfg.beta),
                              plasticity=tuple(float(p) for p in cfg.plasticity), alpha=tuple(float(a) for a in cfg.alpha))
    spec = data.DATASETS[cfg.dataset]
    n_layers = len(cfg.hidden) + 1
    problems = [f"--methods: unknown method {m!r} (choose from {', '.join(METHODS)})" for m in cfg.methods if m not in METHODS]
    whole = lambda v, low: isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= low
    for name, low in [("workers", 1), ("batch_size", 1), ("epochs", 1), ("n_per_task", 1), ("sleep_steps", 1), ("sleep_samples", 1),
                      ("train_limit", 0), ("test_limit", 0), ("validation", 0), ("memory", 0), ("sleep_steps_increment", 0), ("refractory", 0),
                      ("probe_per_class", 1), ("pca_components", 1)]:
        if not whole(getattr(cfg, name), low):
            problems.append(f"--{name.replace('_', '-')} must be a whole number >= {low}; got {getattr(cfg, name)}")
    if not cfg.seeds or not all(whole(s, 0) and s < 2 ** 32 for s in cfg.seeds):
        problems.append(f"--seeds must be whole numbers from 0 to {2 ** 32 - 1}; got {' '.join(map(str, cfg.seeds))}")
    if not cfg.hidden or not all(whole(h, 1) for h in cfg.hidden):
        problems.append(f"--hidden needs one or more widths, each a whole number >= 1; got {' '.join(map(str, cfg.hidden))}")
    else:   # one value per layer (alpha may be empty: data-based)
        problems += [f"--{name} needs one value per layer ({n_layers}); got {len(getattr(cfg, name))}"
                     for name in ("beta", "plasticity", "alpha")
                     if len(getattr(cfg, name)) != n_layers and (name != "alpha" or cfg.alpha)]
    if not whole(cfg.classes_per_task, 1) or spec["classes"] % cfg.classes_per_task:
        problems.append(f"--classes-per-task must divide the {spec['classes']} classes of {cfg.dataset}; got {cfg.classes_per_task}")
    if not whole(cfg.mask_size, 1) or cfg.mask_size > spec["side"]:
        problems.append(f"--mask-size must be a whole number from 1 to the image side, {spec['side']}; got {cfg.mask_size}")
    for name in ("lr", "init_scale", "si_xi"):
        if not getattr(cfg, name) > 0:
            problems.append(f"--{name.replace('_', '-')} must be > 0; got {getattr(cfg, name)}")
    for name in ("momentum", "ewc_lambda", "si_c"):
        if not getattr(cfg, name) >= 0:
            problems.append(f"--{name.replace('_', '-')} must be >= 0; got {getattr(cfg, name)}")
    if not 0 <= cfg.dropout < 1:
        problems.append(f"--dropout must be in [0, 1); got {cfg.dropout}")
    if not 0 <= cfg.replay <= 1:
        problems.append(f"--replay must be a fraction in [0, 1] (0.05: 5 % of the earlier tasks' images); got {cfg.replay}")
    if not 0 < cfg.sleep_mask_fraction <= 1:
        problems.append(f"--sleep-mask-fraction must be in (0, 1]; got {cfg.sleep_mask_fraction}")
    try:   # the sleep constants: src.CONSTANTS says what each may be
        src.check_constants(rate=cfg.rate, inc=cfg.inc, dec=cfg.dec, beta=cfg.beta, alpha_scale=cfg.alpha_scale,
                            dt=cfg.dt, decay=cfg.decay, threshold=cfg.threshold, w_inh=cfg.w_inh, dc=cfg.dc,
                            plasticity=cfg.plasticity, gamma=cfg.gamma, **(dict(alpha=cfg.alpha) if cfg.alpha else {}))
    except ValueError as err:
        problems.append(f"--{str(err).replace('_', '-')}")
    choices = dict(sleep_input=("mean", "class-means", "replica"), dtype=("float32", "float64"),
                   matmul=("float32", "bfloat16"), sleep_data=("seen", "current", "current+means"),
                   engine=("auto", "numba", "torch"), init=("uniform", "torch"), output=("relu-mse", "linear-ce"),
                   plasticity_factor=src.FACTORS, merge_init=("shared", "own"), sleep_bias=src.BIAS,
                   exemplars=("herding", "random"))
    problems += [f"--{k.replace('_', '-')} must be one of {', '.join(v)}; got {getattr(cfg, k)!r}"
                 for k, v in choices.items() if getattr(cfg, k) not in v]
    icarl = [m for m in cfg.methods if m in METHODS and METHODS[m].exemplars]
    if icarl and not (whole(cfg.memory, 10) and cfg.memory <= 20000):
        problems.append(f"--methods {icarl[0]} needs --memory, a whole number of exemplars from 10 to 20000; got {cfg.memory}")
    if icarl and cfg.output != "linear-ce":
        problems.append(f"--methods {icarl[0]} needs --output linear-ce (iCaRL, as the authors run it, trains a softmax output)")
    if not cfg.bias_scale > 0 or (cfg.bias_scale != 1 and cfg.sleep_bias != "current"):
        problems.append(f"--bias-scale must be > 0 and applies with --sleep-bias current only; got {cfg.bias_scale} "
                        f"with --sleep-bias {cfg.sleep_bias}")
    if cfg.sleep_bias != "ignore" and not cfg.bias:
        problems.append(f"--sleep-bias {cfg.sleep_bias} needs networks with biases: add --bias")
    device = cfg.device.split(":")[0]
    if device not in ("auto", "cpu", "cuda"):
        problems.append(f"--device must be cpu, cuda, cuda:N or auto; got {cfg.device!r}")
    elif device == "cuda" and not torch.cuda.is_available():
        problems.append("--device cuda: this machine has no CUDA device that torch can use; use cpu or auto")
    elif cfg.engine == "numba" and device == "cuda":
        problems.append("--engine numba runs on the CPU; with --device cuda use --engine torch or auto")
    if problems:
        fail("; ".join(problems))
    return cfg


def run_name(cfg):
    """Run folder name: dataset, preset and a hash of every field that changes the numbers."""
    named = {k: v for k, v in folder_config(cfg).items() if k not in LATER or v != LATER[k]}
    digest = hashlib.sha1(json.dumps(named, sort_keys=True).encode()).hexdigest()[:8]
    protocol = "" if cfg.protocol == "original" else f"-{cfg.protocol}"
    return f"{cfg.dataset}{protocol}-{cfg.preset}{'-quick' if cfg.quick else ''}-{digest}"


def finished(options):
    """{method: (mean, std, n, diverged)} of the final accuracy in the run folder these options name (empty if
    none has finished): what the sweep scripts (bridge.py, replay.py) read."""
    cfg = parse_config(options)
    path = os.path.join(cfg.out, run_name(cfg), "summary.csv")
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        return {r["method"]: (float(r["all_mean"]), float(r["all_std"]), int(r["n"]), int(r.get("diverged") or 0))
                for r in csv.DictReader(f)}


def folder_config(cfg):
    """The fields that name the run folder: everything that changes the numbers."""
    return {k: v for k, v in dataclasses.asdict(cfg).items() if k not in RUNTIME}


# %% Jobs: one per (method, seed), each saved on its own; finished ones are skipped
def versions(device):
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True).stdout.strip()
    except OSError:
        commit, dirty = "", ""
    return dict(python=platform.python_version(), torch=torch.__version__, numpy=np.__version__,
                numba=src.numba.__version__, commit=commit + ("-dirty" if dirty else ""),
                device=torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine(),
                threads=torch.get_num_threads())


def log(run_dir, message, echo=True):
    """A line in the run folder's run.log (always) and on stdout (when echo)."""
    with open(os.path.join(run_dir, "run.log"), "a") as f:
        f.write(time.strftime("%Y-%m-%d %H:%M:%S ") + message + "\n")
    if echo:
        print(message, flush=True)


def job_path(run_dir, method, seed):
    return os.path.join(run_dir, "jobs", f"{method}-seed{seed}")


def save_job(run_dir, rec, maps, labels):
    """Atomic: the .json appears (by rename) only once its maps are on disk, so a present .json is a finished job."""
    path = job_path(run_dir, rec["method"], rec["seed"])
    os.makedirs(os.path.dirname(path), exist_ok=True)
    arrays = {f"{stage}/layer_{l + 1}": m.astype(np.float16) for stage, ms in maps.items() for l, m in enumerate(ms)}
    np.savez_compressed(path + ".tmp.npz", labels=labels, **arrays)
    os.replace(path + ".tmp.npz", path + ".npz")
    with open(path + ".tmp.json", "w") as f:
        json.dump(rec, f, indent=1)
    os.replace(path + ".tmp.json", path + ".json")


def _die_with_parent():
    """In a worker, before it starts (Linux): be sent SIGTERM when the parent dies, however it dies."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)   # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def run_jobs(jobs, cfg, run_dir):
    """Run the (method, seed) jobs here, or spread the seeds over --workers processes (each runs this script).
    A stopped run (Ctrl-C, SIGTERM) stops its workers too; finished jobs stay, and a re-run resumes."""
    seeds = list(dict.fromkeys(seed for _, seed in jobs))
    if cfg.workers == 1:
        ctx = prepare(cfg)
        for seed in seeds:
            shared = {}  # stages several methods of this seed reach the same way, computed once
            for method in [m for m, s in jobs if s == seed]:
                t = time.perf_counter()
                rec, maps = run_method(method, seed, cfg, ctx, shared, progress=not cfg.quiet)
                rec["time"]["total"] = time.perf_counter() - t
                rec["versions"] = versions(ctx.device)
                save_job(run_dir, rec, maps, ctx.eval_y[:len(ctx.eval_chunks[0])].cpu().numpy())
                log(run_dir, f"{method:>10} seed {seed}: final {rec['rows'][-1]['all']:.2f} %  "
                    + "  ".join(f"{k} {v:.1f}s" for k, v in rec["time"].items()), echo=not cfg.quiet)
        return
    threads = max(1, (os.cpu_count() or 1) // cfg.workers)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), NUMBA_NUM_THREADS=str(threads), SRC_WORKER="1")
    pending, running = list(seeds), []
    bar = tqdm(total=len(seeds), desc="seeds", disable=cfg.quiet)
    try:
        while pending or running:
            while pending and len(running) < cfg.workers:
                seed = pending.pop(0)
                cmd = [sys.executable, os.path.join(ROOT, "mnist_exp.py"), "--config", os.path.join(run_dir, "config.json"),
                       "--methods", ",".join(m for m, s in jobs if s == seed), "--seeds", str(seed), "--workers", "1",
                       "--out", cfg.out, "--data-dir", cfg.data_dir, "--device", cfg.device, "--engine", cfg.engine,
                       "--no-figures", "--quiet"] + (["--force"] if cfg.force else [])
                running.append((seed, subprocess.Popen(cmd, env=env, preexec_fn=_die_with_parent if sys.platform == "linux" else None)))
            time.sleep(0.2)
            for job in [j for j in running if j[1].poll() is not None]:
                running.remove(job)
                bar.update()
                if job[1].returncode:
                    raise SystemExit(f"mnist_exp.py: the worker of seed {job[0]} failed (exit code {job[1].returncode}); "
                                     f"see its messages above and {os.path.join(run_dir, 'run.log')}")
    finally:
        for _, proc in running:
            proc.terminate()
        for _, proc in running:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        bar.close()


def _stop(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def run(cfg):
    """Every (method, seed) job of the config that the run folder does not hold yet; returns the run folder."""
    run_dir = os.path.join(cfg.out, run_name(cfg))
    try:   # fetched and checked once, before any worker starts
        data.ensure_files(cfg.dataset, cfg.data_dir)
    except data.DataError as err:
        fail(str(err))
    os.makedirs(run_dir, exist_ok=True)
    path = os.path.join(run_dir, "config.json")
    if not os.path.exists(path):   # the folder's config never changes (it names the folder): written once
        with open(path + ".tmp", "w") as f:
            json.dump(dict(folder_config(cfg), versions=versions(torch.device("cpu"))), f, indent=1)
        os.replace(path + ".tmp", path)
    todo = [(m, s) for s in cfg.seeds for m in cfg.methods if cfg.force or not os.path.exists(job_path(run_dir, m, s) + ".json")]
    if not WORKER:
        log(run_dir, f"run folder {run_dir}: {len(todo)} of {len(cfg.seeds) * len(cfg.methods)} jobs to run "
            f"(methods {','.join(cfg.methods)}; seeds {' '.join(map(str, cfg.seeds))})")
    handle = threading.current_thread() is threading.main_thread() and not INTERACTIVE
    previous = signal.signal(signal.SIGTERM, _stop) if handle else None
    t = time.perf_counter()
    try:
        if todo:
            run_jobs(todo, cfg, run_dir)
    except KeyboardInterrupt:
        if INTERACTIVE:
            raise
        log(run_dir, "stopped; the finished jobs are kept: run the same command again to resume")
        raise SystemExit(130)
    finally:
        if handle:
            signal.signal(signal.SIGTERM, previous)
    if todo and not WORKER:
        log(run_dir, f"{len(todo)} jobs in {time.perf_counter() - t:.1f} s")
    return run_dir


# %% Run: every (method, seed) job of the config; a re-run skips the finished ones
if __name__ == "__main__":
    cfg = parse_config()
    run_dir = run(cfg)

# %% Tables, rebuilt from the run folder's job files
if __name__ == "__main__" and not WORKER:
    summary = visualize.tables(run_dir)
    with open(os.path.join(run_dir, "summary.md")) as f:
        print(f.read())

# %% Figures, rebuilt from the run folder alone (python visualize.py RUN_DIR does the same)
if __name__ == "__main__" and cfg.figures and not WORKER:
    written = visualize.figures(run_dir, cfg.png_dir or os.path.join(run_dir, "png"))
    log(run_dir, f"figures in {os.path.dirname(written[0])}")

# %% Explore (interactive only): train task 1 of the first seed once, and keep it
if INTERACTIVE:
    ctx, seed = prepare(cfg), cfg.seeds[0]
    init = initial_net(seed, cfg, ctx)
    trained = train_task(init, 1, seed, cfg, ctx)
    shared = {"init": (init, evaluate(init, cfg, ctx)), "train_1": (trained, evaluate(trained, cfg, ctx))}
    print("after task 1:", {k: round(v, 1) for k, v in shared["train_1"][1]["accuracy"].items()})

# %% Sleep the trained network with other constants: edit `trial` and re-run this cell alone
if INTERACTIVE:
    trial = resolve(dataclasses.replace(cfg, inc=2 * cfg.inc))   # for example: twice the potentiation
    slept, info = sleep_task(trained, 1, seed, trial, ctx)
    print(f"alpha {np.round(info['alpha'], 2).tolist()}, spikes per step "
          f"{[round(sum(c) / methods.sleep_steps(trial, 1), 3) for c in info['spikes']]}")
    print("after sleep 1:", {k: round(v, 1) for k, v in evaluate(slept, trial, ctx, analyses=False)["accuracy"].items()})

# %% The whole SRC chain with those constants, reusing task 1's training (change only sleep constants in `trial`)
if INTERACTIVE:
    rec, _ = run_method("src", seed, trial, ctx, shared)
    print("final:", {k: round(v, 1) for k, v in rec["rows"][-1].items() if k != "stage"})
