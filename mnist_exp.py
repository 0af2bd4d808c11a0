# %%
"""Sleep Replay Consolidation on class-incremental split MNIST (Tadros et al., Nat. Commun. 2022).

Compares, from the same initial weights: sequential training (lower bound), SRC (sleep after each
task), model merging and parallel (joint) training (upper bound). Writes a run folder with
results.csv, stable_rank.csv, summary.md, config.json and the figures.

    python mnist_exp.py                                  # the default protocol, one seed
    python mnist_exp.py --seeds 0 1 2 3 4 --workers 2    # five seeds, two processes
    python mnist_exp.py --quick                          # a smoke test (seconds)

Every field of the config cell below is also a command-line option (--sleep-steps 20000, ...).
Importing this file (tune.py does) defines its functions and runs nothing.
"""
import argparse
import dataclasses
import glob
import hashlib
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np
import torch
from tqdm.auto import tqdm

import analysis
import data
import models
import src

ROOT = os.path.dirname(os.path.abspath(__file__))


def arg(default, help):
    return field(default=default, metadata=dict(help=help))


# %% Config: every hyperparameter, with the protocol's defaults (../shared/ALGORITHM.md)
@dataclass
class Config:
    # run
    methods: tuple = arg(("sequential", "src", "merging", "parallel"), "methods to compare")
    seeds: tuple = arg((0,), "one run per seed; the seed sets the initial weights and all later randomness")
    dataset: str = arg("mnist", "mnist or fashion-mnist")
    preset: str = arg("original", "named set of sleep constants (SLEEP_PRESETS); single constants below override it")
    out: str = arg("runs", "folder for run folders; a run folder is named by its config")
    data_dir: str = arg(data.DEFAULT_DATA_DIR, "where the datasets live (or set SRC_DATA_DIR)")
    device: str = arg("auto", "cpu, cuda or auto")
    workers: int = arg(1, "processes running (method, seed) jobs side by side")
    force: bool = arg(False, "recompute results that already exist in the run folder")
    quick: bool = arg(False, "tiny run for smoke tests: few images, one epoch, short sleeps")
    quiet: bool = arg(False, "no progress bars")
    figures: bool = arg(True, "draw the figures at the end (visualize.py)")
    png_dir: str = arg("", "where the figures go (default: png/ for full runs, RUN/png for --quick)")
    # data and tasks
    classes_per_task: int = arg(2, "digits per task: (0, 1), (2, 3), ...")
    n_per_task: int = arg(5000, "training images per task: the first n of its digits, in dataset order")
    train_limit: int = arg(0, "use only the first n training images (0: all)")
    test_limit: int = arg(0, "use only the first n test images (0: all)")
    # network and training (DeepLearnToolbox fork of the original)
    hidden: tuple = arg((1200, 1200), "hidden layer widths")
    init_scale: float = arg(0.01, "weights start uniform in [-init_scale, init_scale]")
    dropout: float = arg(0.25, "fraction of hidden units dropped in training; evaluation scales by 1 - dropout")
    lr: float = arg(0.1, "learning rate, per minibatch-mean gradient")
    momentum: float = arg(0.5, "v = momentum v + lr g; W -= v")
    batch_size: int = arg(100, "images per minibatch")
    epochs: int = arg(2, "passes over each task's training set")
    dtype: str = arg("float32", "float32 (as the original) or float64")
    # sleep: length and input
    sleep_steps: int = arg(15000, "time steps of the first sleep")
    sleep_steps_increment: int = arg(5000, "extra steps per later task: T_k = sleep_steps + (k-1) increment")
    dt: float = arg(0.001, "simulation time step (s)")
    mask_size: int = arg(11, "side of the square window of the mean image shown each step (MATLAB's 10 + 1)")
    sleep_input: str = arg(None, "rate map of the sleep: 'mean' (the protocol: the mean of all images seen) or "
                                 "'class-means' (each step, the mean image of one class seen, drawn at random)")
    # sleep: the genetic-search constants and the input; None takes them from the preset
    rate: float = arg(None, "input rate: a pixel of value p fires with probability 2 dt rate p")
    inc: float = arg(None, "potentiation: W += inc g(W) where pre and post fired")
    dec: float = arg(None, "depression: W -= dec g(W) where post fired and pre did not")
    beta: tuple = arg(None, "threshold multipliers of the three layers")
    alpha_scale: float = arg(None, "scale of the data-based factors alpha")
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
    engine: str = arg("auto", "sleep engine: numba (CPU), torch (any device) or auto")
    # the paper's other baselines; strengths: the best of a grid on tuning seeds 100, 101 (python tune.py
    # --method ewc / si), which is the weakest: in this class-incremental setting neither beats sequential
    ewc_lambda: float = arg(10.0, "EWC: strength of the penalty lambda/2 sum F (W - W*)^2 (online EWC, F summed over tasks)")
    si_c: float = arg(0.01, "SI: strength c of the penalty c sum Omega (W - W*)^2")
    si_xi: float = arg(0.1, "SI: damping xi in Omega += path / (change^2 + xi)")
    # analyses
    probe_per_class: int = arg(100, "test images per class in the PCA activation maps")
    pca_components: int = arg(10, "PCA components of the activation maps")


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

QUICK = dict(train_limit=3000, test_limit=1000, n_per_task=500, epochs=1, sleep_steps=1000,
             sleep_steps_increment=500, probe_per_class=20)

# Fields that say how to run, not what to compute: they stay out of the run folder's name.
RUNTIME = {"methods", "seeds", "out", "data_dir", "device", "workers", "force", "quiet", "figures", "png_dir", "engine"}

# method: restart (each task trains a fresh copy of the initial weights), sleep (SRC after each task),
# merge (average the copies at the end), joint (one training on all tasks at once), penalty (a quadratic
# pull towards the weights after the previous tasks: EWC or SI)
METHODS = {   # in the order of the tables: lower bound, baselines, SRC, upper bound
    "sequential": dict(),
    "ewc": dict(penalty="ewc"),
    "si": dict(penalty="si"),
    "merging": dict(restart=True, merge=True),
    "src": dict(sleep=True),
    "parallel": dict(joint=True),
}


LISTS = dict(methods=str, seeds=int, hidden=int, beta=float, plasticity=float)   # options taking several values


def parse_config(argv=None):
    """Config from the command line (and --config FILE). Inside a notebook kernel, unknown arguments are ignored."""
    p = argparse.ArgumentParser(description=__doc__, allow_abbrev=False, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="start from this config.json (for example a run folder's), then apply the options given")
    for f in dataclasses.fields(Config):
        kw = dict(default=argparse.SUPPRESS, help=f"{f.metadata['help']} (default: {f.default})")
        if isinstance(f.default, bool):
            kw["action"] = argparse.BooleanOptionalAction
        elif f.name in LISTS:
            kw.update(nargs="+", type=str)
        else:
            kw["type"] = (str if f.name == "sleep_input" else float) if f.default is None else type(f.default)
        p.add_argument("--" + f.name.replace("_", "-"), **kw)
    interactive = "ipykernel" in sys.modules
    args, unknown = p.parse_known_args(sys.argv[1:] if argv is None else argv)
    if unknown and not interactive:
        p.error(f"unrecognized arguments: {' '.join(unknown)}")
    given = vars(args)
    base = {}
    if given.get("config"):
        with open(given.pop("config")) as f:
            base = {k: v for k, v in json.load(f).items() if k in Config.__dataclass_fields__}
    given.pop("config", None)
    if given.get("quick", base.get("quick")):
        base = {**QUICK, **base}
    for name, kind in LISTS.items():
        if name in given:  # accept "a,b" as well as "a b"
            given[name] = tuple(kind(s) for v in given[name] for s in v.split(",") if s)
    cfg = Config(**{**base, **given})
    return resolve(cfg)


def resolve(cfg):
    """Derived values: sleep constants from the preset, then checks that fail early with a clear message."""
    presets = SLEEP_PRESETS.get(cfg.preset)
    if presets is None or cfg.dataset not in presets:
        raise SystemExit(f"no sleep preset {cfg.preset!r} for {cfg.dataset}; known: "
                         + ", ".join(f"{p} ({', '.join(d)})" for p, d in SLEEP_PRESETS.items()))
    filled = {k: (v if getattr(cfg, k) is None else getattr(cfg, k)) for k, v in presets[cfg.dataset].items()}
    cfg = dataclasses.replace(cfg, **filled)
    cfg = dataclasses.replace(cfg, beta=tuple(float(b) for b in cfg.beta),
                              plasticity=tuple(float(p) for p in cfg.plasticity), seeds=tuple(int(s) for s in cfg.seeds),
                              methods=tuple(cfg.methods), hidden=tuple(int(h) for h in cfg.hidden))
    problems = [f"unknown method {m!r} (choose from {', '.join(METHODS)})" for m in cfg.methods if m not in METHODS]
    problems += [f"{name} must be > 0" for name in ("lr", "batch_size", "epochs", "n_per_task", "rate", "dt",
                                                    "alpha_scale", "threshold", "mask_size", "init_scale")
                 if not getattr(cfg, name) > 0]
    problems += [f"{name} must be >= 0" for name in ("inc", "dec", "momentum", "sleep_steps_increment", "train_limit",
                                                     "test_limit", "refractory", "ewc_lambda", "si_c", "si_xi")
                 if not getattr(cfg, name) >= 0]
    if not 0 <= cfg.dropout < 1:
        problems.append("dropout must be in [0, 1)")
    if not 0 <= cfg.decay <= 1:
        problems.append("decay must be in [0, 1]")
    if len(cfg.beta) != len(cfg.hidden) + 1 or min(cfg.beta) <= 0:
        problems.append(f"beta needs one positive value per layer ({len(cfg.hidden) + 1})")
    if len(cfg.plasticity) != len(cfg.hidden) + 1 or min(cfg.plasticity) < 0:
        problems.append(f"plasticity needs one value >= 0 per layer ({len(cfg.hidden) + 1})")
    if cfg.sleep_input not in ("mean", "class-means"):
        problems.append("sleep_input must be mean or class-means")
    if cfg.dtype not in ("float32", "float64"):
        problems.append("dtype must be float32 or float64")
    if cfg.sleep_steps < 1:
        problems.append("sleep_steps must be >= 1")
    if 10 % cfg.classes_per_task:
        problems.append("classes_per_task must divide 10")
    if problems:
        raise SystemExit("bad configuration: " + "; ".join(problems))
    return cfg


def run_name(cfg):
    """Run folder name: dataset, preset and a hash of every field that changes the numbers."""
    key = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in RUNTIME}
    digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:8]
    return f"{cfg.dataset}-{cfg.preset}{'-quick' if cfg.quick else ''}-{digest}"



# %% Data: the tensors every method uses
def prepare(cfg):
    """Device, tasks and data of a config, on the device: train and test images in [0, 1], flattened."""
    ctx = SimpleNamespace(device=torch.device("cuda" if cfg.device == "auto" and torch.cuda.is_available() else
                                              ("cpu" if cfg.device == "auto" else cfg.device)),
                          dtype=getattr(torch, cfg.dtype), tasks=data.class_tasks(10, cfg.classes_per_task),
                          sizes=(784, *cfg.hidden, 10))
    train_x, train_y, test_x, test_y = data.load(cfg.dataset, cfg.data_dir)
    train_x, train_y = train_x[:cfg.train_limit or None], train_y[:cfg.train_limit or None]
    test_x, test_y = test_x[:cfg.test_limit or None], test_y[:cfg.test_limit or None]
    ctx.train_x, ctx.train_y = train_x.to(ctx.device, ctx.dtype), train_y.to(ctx.device)
    probe = analysis.probe_indices(test_y, cfg.probe_per_class, 10)
    rest = np.setdiff1d(np.arange(len(test_y)), probe)
    # evaluation data: the probe images (for the activation maps) first, then the rest of the test set
    ctx.eval_chunks = [test_x[probe].to(ctx.device, ctx.dtype)] + list(test_x[rest].to(ctx.device, ctx.dtype).split(2000))
    ctx.eval_y = torch.cat([test_y[probe], test_y[rest]]).to(ctx.device)
    return ctx


# %% The experiment loop: one loop for every method
def generator(seed, phase, k, device="cpu"):
    """The seed's random stream for one phase (training or sleep) of task k (k = 0: joint training).
    Every method draws the same numbers in the same phase (common random numbers), so methods differ
    only in what they do: sequential and SRC train task 1 identically, and their difference is the sleep."""
    state = np.random.SeedSequence([seed, ("train", "sleep").index(phase), k]).generate_state(1)[0]
    return torch.Generator(device=device).manual_seed(int(state))


@torch.no_grad()
def evaluate(net, cfg, ctx, analyses=True):
    """What the experiment records of a network: accuracy on each task and on all test images; with
    analyses, the stable rank of each layer and the activations of the probe images (the first chunk of
    the test pass)."""
    probe_acts = models.forward(net, ctx.eval_chunks[0], cfg.dropout)
    pred = torch.cat([probe_acts[-1].argmax(1)] + [models.predict(net, xb, cfg.dropout) for xb in ctx.eval_chunks[1:]])
    per_task, overall = models.accuracy(pred, ctx.eval_y, ctx.tasks)
    accuracy = dict(**{f"task_{k + 1}": a for k, a in enumerate(per_task)}, all=overall)
    if not analyses:
        return dict(accuracy=accuracy)
    return dict(accuracy=accuracy,
                stable_rank={f"layer_{l + 1}": analysis.stable_rank(w) for l, w in enumerate(net.W)},
                acts=[a.cpu().numpy() for a in probe_acts])


def train_task(start, k, seed, cfg, ctx, penalty=None, path=None, progress=False, desc="train"):
    """A copy of `start` trained on task k (k = 0: all tasks at once), with the seed's stream for task k."""
    net = start.clone()
    classes = sum(ctx.tasks, ()) if k == 0 else ctx.tasks[k - 1]
    idx = data.task_indices(ctx.train_y, classes, None if k == 0 else cfg.n_per_task)
    models.train(net, ctx.train_x[idx], ctx.train_y[idx], epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr,
                 momentum=cfg.momentum, dropout=cfg.dropout, n_classes=10, generator=generator(seed, "train", k, ctx.device),
                 penalty=penalty, path=path, progress=progress, desc=desc)
    return net


def sleep_steps(cfg, k):
    """Length of the sleep after task k: T_k = sleep_steps + (k - 1) sleep_steps_increment."""
    return cfg.sleep_steps + (k - 1) * cfg.sleep_steps_increment


def sleep_task(nets, k, seed, cfg, ctx, progress=False, **constants):
    """SRC's sleep after task k, on the training images of tasks 1..k, for one network or a list of them
    (slept together by the batched engine; `constants` may then give one value per network)."""
    classes = sum(ctx.tasks[:k], ())
    seen = data.task_indices(ctx.train_y, classes)
    images = None if cfg.sleep_input == "mean" else \
        torch.stack([ctx.train_x[ctx.train_y == c].mean(0) for c in classes])   # one mean image per class: no raw image kept
    kw = {**dict(rate=cfg.rate, inc=cfg.inc, dec=cfg.dec, beta=cfg.beta, alpha_scale=cfg.alpha_scale), **constants}
    return src.sleep(nets, ctx.train_x[seen], sleep_steps(cfg, k), generator(seed, "sleep", k), dropout=cfg.dropout, dt=cfg.dt,
                     mask_size=cfg.mask_size, decay=cfg.decay, threshold=cfg.threshold, w_inh=cfg.w_inh, dc=cfg.dc,
                     refractory=cfg.refractory, plasticity=cfg.plasticity, norm_w=cfg.norm_w, gamma=cfg.gamma,
                     images=images, engine=cfg.engine, progress=progress, **kw)


def run_method(method, seed, cfg, ctx, shared, progress=False):
    """Train (and sleep) one method from the seed's initial weights; returns its record and PCA maps.

    shared: {key: (net, evaluation)} of this seed, where a key names what was done from the initial
    weights. Stages that several methods reach the same way (the initial network; the first task trained
    from it) are computed once per seed; the random streams make a recomputation identical.
    """
    spec = METHODS[method]
    rec = dict(method=method, seed=seed, rows=[], stable_rank=[], sleep=[], time=dict(train=0.0, sleep=0.0, eval=0.0))
    acts = {}

    def reach(key, make, phase, share=True):
        """The network after the steps `key` (the last names the stage): made by make() unless shared."""
        if share and key in shared:
            net, entry = shared[key]
            net = net.clone()
        else:
            t = time.perf_counter()
            net = make()
            rec["time"][phase] += time.perf_counter() - t
            t = time.perf_counter()
            entry = evaluate(net, cfg, ctx)
            rec["time"]["eval"] += time.perf_counter() - t
            if share and len(key) <= 2:
                shared[key] = (net.clone(), entry)
        stage = key[-1].split("+")[0]
        rec["rows"].append(dict(stage=stage, **entry["accuracy"]))
        rec["stable_rank"].append(dict(stage=stage, **entry["stable_rank"]))
        acts[stage] = entry["acts"]
        return net

    def slept(net, k):
        t = time.perf_counter()
        net, info = sleep_task(net, k, seed, cfg, ctx, progress=progress)
        steps = sleep_steps(cfg, k)
        rec["sleep"].append(dict(task=k, steps=steps, seconds=time.perf_counter() - t, alpha=info["alpha"],
                                 spikes_per_step=[sum(c) / steps for c in info["spikes"]]))
        return net

    key = ("init",)
    init = reach(key, lambda: models.init_net(ctx.sizes, cfg.init_scale, torch.Generator().manual_seed(seed),
                                              ctx.dtype, ctx.device), "train")
    net, finished = init, []
    omega, anchor = None, None  # EWC / SI: importance of each weight and the weights it is pulled towards
    for k in [0] if spec.get("joint") else range(1, len(ctx.tasks) + 1):
        if spec.get("restart"):
            net, key = init, ("init",)
        pen = spec.get("penalty")
        # gradients: EWC lambda F (W - W*) of lambda/2 sum F (W - W*)^2; SI 2 c Omega (W - W*) of c sum Omega (W - W*)^2
        penalty = None if omega is None else (omega, anchor, cfg.ewc_lambda if pen == "ewc" else 2 * cfg.si_c)
        path = [torch.zeros_like(w) for w in net.W] if pen == "si" else None
        key += (f"train_{k or 'all'}" + (f"+{pen}" if penalty or path else ""),)
        start = net
        net = reach(key, lambda: train_task(start, k, seed, cfg, ctx, penalty, path, progress, f"{method} s{seed} task {k}"),
                    "train", share=path is None)
        if pen:
            if pen == "ewc":   # online EWC: the Fisher information of every task so far, summed
                idx = data.task_indices(ctx.train_y, ctx.tasks[k - 1], cfg.n_per_task)
                new = models.fisher(net, ctx.train_x[idx], ctx.train_y[idx], cfg.dropout, 10)
            else:              # SI: each weight's share of the loss decrease, over its squared change
                new = [p / ((w - w0).square() + cfg.si_xi) for p, w, w0 in zip(path, net.W, start.W)]
            omega = new if omega is None else [o + n for o, n in zip(omega, new)]
            anchor = [w.clone() for w in net.W]
        if spec.get("sleep"):
            key += (f"sleep_{k}",)
            net = reach(key, lambda: slept(net, k), "sleep")
        finished.append(net)
    if spec.get("merge"):
        net = reach(("merged",), lambda: models.merge(finished), "train", share=False)
    rec["rows"].append(dict(rec["rows"][-1], stage="final"))
    # PCA maps: before and after each sleep share one basis per layer; every other stage has its own
    groups = [[f"train_{k}", f"sleep_{k}"] for k in range(1, len(ctx.tasks) + 1)] if spec.get("sleep") else \
        [[s] for s in acts if s != "init"]
    maps = {}
    for group in groups:
        maps.update(analysis.pca_maps({s: acts[s] for s in group}, cfg.pca_components))
    return rec, maps


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


def run_jobs(jobs, cfg, run_dir):
    """Run the (method, seed) jobs here, or spread the seeds over --workers processes (each runs this script)."""
    seeds = list(dict.fromkeys(seed for _, seed in jobs))
    if cfg.workers <= 1:
        ctx = prepare(cfg)
        for seed in seeds:
            shared = {}  # stages several methods of this seed reach the same way, computed once
            for method in [m for m, s in jobs if s == seed]:
                t = time.perf_counter()
                rec, maps = run_method(method, seed, cfg, ctx, shared, progress=not cfg.quiet)
                rec["time"]["total"] = time.perf_counter() - t
                rec["versions"] = versions(ctx.device)
                save_job(run_dir, rec, maps, ctx.eval_y[:len(ctx.eval_chunks[0])].cpu().numpy())
                if not cfg.quiet:
                    print(f"{method:>10} seed {seed}: final {rec['rows'][-1]['all']:.1f} %  "
                          + "  ".join(f"{k} {v:.1f}s" for k, v in rec["time"].items()))
        return
    threads = max(1, (os.cpu_count() or 1) // cfg.workers)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), NUMBA_NUM_THREADS=str(threads), SRC_JOB="1")
    pending, running = list(seeds), []
    bar = tqdm(total=len(seeds), desc="seeds", disable=cfg.quiet)
    while pending or running:
        while pending and len(running) < cfg.workers:
            seed = pending.pop(0)
            cmd = [sys.executable, os.path.abspath(__file__), "--config", os.path.join(run_dir, "config.json"),
                   "--methods", ",".join(m for m, s in jobs if s == seed), "--seeds", str(seed), "--workers", "1",
                   "--out", cfg.out, "--data-dir", cfg.data_dir, "--device", cfg.device, "--engine", cfg.engine,
                   "--no-figures", "--quiet"] + (["--force"] if cfg.force else [])
            running.append((seed, subprocess.Popen(cmd, env=env)))
        time.sleep(0.2)
        for job in [j for j in running if j[1].poll() is not None]:
            running.remove(job)
            bar.update()
            if job[1].returncode:
                raise SystemExit(f"the job of seed {job[0]} failed (exit code {job[1].returncode})")
    bar.close()


def accuracy_matrix(rec, cols):
    """R[i, j]: accuracy on task j at the method's last stage of task i (train_i, or sleep_i for SRC; a
    merging copy), with the final network as the last row. Joint training has only the final row."""
    last = {}
    for row in rec["rows"]:
        suffix = row["stage"].rsplit("_", 1)[-1]
        if suffix.isdigit():
            last[int(suffix)] = row
    rows = [last[k] for k in sorted(last)][:-1] + [rec["rows"][-1]]
    return [[row[c] for c in cols] for row in rows]


def collect(run_dir):
    """Write the run folder's tables from its job files: results.csv, stable_rank.csv, summary.csv/.md."""
    recs, jobs_dir = [], os.path.join(run_dir, "jobs")
    for name in sorted(os.listdir(jobs_dir) if os.path.isdir(jobs_dir) else []):
        if name.endswith(".json") and not name.endswith(".tmp.json"):
            with open(os.path.join(jobs_dir, name)) as f:
                recs.append(json.load(f))
    if not recs:
        raise SystemExit(f"{run_dir} holds no finished job yet")
    order = {m: i for i, m in enumerate(METHODS)}
    recs.sort(key=lambda r: (order.get(r["method"], 99), r["seed"]))
    cols = [k for k in recs[0]["rows"][0] if k.startswith("task_")]
    with open(os.path.join(run_dir, "results.csv"), "w") as f:
        f.write(",".join(["method", "seed", "stage", *cols, "all"]) + "\n")
        for r in recs:
            for row in r["rows"]:
                f.write(",".join([r["method"], str(r["seed"]), row["stage"]] + [f"{row[c]:.2f}" for c in cols + ["all"]]) + "\n")
    layers = [k for k in recs[0]["stable_rank"][0] if k.startswith("layer_")]
    with open(os.path.join(run_dir, "stable_rank.csv"), "w") as f:
        f.write(",".join(["method", "seed", "stage", *layers]) + "\n")
        for r in recs:
            for row in r["stable_rank"]:
                f.write(",".join([r["method"], str(r["seed"]), row["stage"]] + [f"{row[c]:.4f}" for c in layers]) + "\n")
    keys = cols + ["all", "acc", "bwt", "forgetting", "seconds"]
    summary = []
    for method in dict.fromkeys(r["method"] for r in recs):
        group = [r for r in recs if r["method"] == method]
        values = {c: [r["rows"][-1][c] for r in group] for c in cols + ["all"]}
        metrics = [analysis.cl_metrics(accuracy_matrix(r, cols)) for r in group]
        values.update({m: [x[m] for x in metrics] for m in ("acc", "bwt", "forgetting")})
        values["seconds"] = [r["time"]["total"] for r in group]
        summary.append(dict(method=method, seeds=[r["seed"] for r in group],
                            **{k: (float(np.mean(v)), float(np.std(v))) for k, v in values.items()}))
    fmt = lambda v: "n/a" if np.isnan(v[0]) else f"{v[0]:.1f} ± {v[1]:.1f}"
    with open(os.path.join(run_dir, "summary.csv"), "w") as f:
        f.write("method,seeds," + ",".join(f"{k}_mean,{k}_std" for k in keys) + "\n")
        for row in summary:
            f.write(f"{row['method']},{len(row['seeds'])}," + ",".join(f"{row[k][0]:.3f},{row[k][1]:.3f}" for k in keys) + "\n")
    with open(os.path.join(run_dir, "summary.md"), "w") as f:
        f.write("| method | seeds | final, all tasks (%) | " + " | ".join(f"T{k + 1}" for k in range(len(cols)))
                + " | ACC | BWT | forgetting | s per job |\n" + "|---" * (len(keys) + 2) + "|\n")
        for row in summary:
            f.write(f"| {row['method']} | {len(row['seeds'])} | **{fmt(row['all'])}** | "
                    + " | ".join(fmt(row[c]) for c in cols) + " | "
                    + " | ".join(fmt(row[k]) for k in ("acc", "bwt", "forgetting", "seconds")) + " |\n")
    return summary


# %% Run: every (method, seed) job of the config, then the tables and figures of the run folder
if __name__ == "__main__":
    cfg = parse_config()
    run_dir = os.path.join(cfg.out, run_name(cfg))
    os.makedirs(run_dir, exist_ok=True)
    if not os.environ.get("SRC_JOB"):  # jobs started by run_jobs leave their parent's config.json alone
        with open(os.path.join(run_dir, "config.json"), "w") as f:
            json.dump(dict(dataclasses.asdict(cfg), versions=versions(torch.device("cpu"))), f, indent=1)
    todo = [(m, s) for s in cfg.seeds for m in cfg.methods if cfg.force or not os.path.exists(job_path(run_dir, m, s) + ".json")]
    if not cfg.quiet:
        print(f"run folder {run_dir}: {len(todo)} of {len(cfg.seeds) * len(cfg.methods)} jobs to run")
    wall = time.perf_counter()
    if todo:
        run_jobs(todo, cfg, run_dir)
    wall = time.perf_counter() - wall

# %%
if __name__ == "__main__" and not os.environ.get("SRC_JOB"):
    summary = collect(run_dir)
    if not cfg.quiet:
        with open(os.path.join(run_dir, "summary.md")) as f:
            print(f.read())
        print(f"{len(todo)} jobs in {wall:.1f} s; results in {run_dir}")

# %% Figures, rebuilt from the run folder alone
if __name__ == "__main__" and cfg.figures and not os.environ.get("SRC_JOB"):
    import visualize
    png_dir = cfg.png_dir or (os.path.join(run_dir, "png") if cfg.quick else os.path.join(ROOT, "png"))
    visualize.main(run_dir, png_dir)
    if not cfg.quiet:
        print(f"figures in {png_dir}")
