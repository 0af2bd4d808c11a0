"""The sleep on networks nobody tuned it on: no sleep, each preset, calibrated and searched constants, in one's own
plain PyTorch loop (class-incremental split MNIST or Fashion-MNIST: 5 tasks of two classes, a sleep after each).

Each network of NETWORKS is trained task after task on the first N_PER_TASK training images of the task's two
classes (as the project's runs), with a fresh optimiser per task, on cross-entropy; the last VALIDATION training
images of each class are held out (with --limit, a fifth of each class at most): no training and no sleep reads
them. After each task, src.sleep_model sleeps it with one of SLEEPS; the sleep after task k on seed s draws its input from sleep_search.sleep_seed(s, k):
- none: no sleep (sequential training);
- original-seen, tuned: the preset's constants, reading every training image seen so far (their own runs');
- original-task, beyond-weights-only: the preset's constants, reading the task's training images (a network of
  one hidden layer gets a preset's first threshold and its output's);
- calibrated: src.calibrate(the network after task 1, task 1's images) once, kept for every sleep, reading the
  task's images (docs/usage.md#calibrated-constants: calibrate once);
- searched: sleep_search.search_sleep on the held-out images of the tuning seeds SEARCH["seeds"], centred on the
  calibrated constants (of the first tuning seed's network), then those constants for every report seed.
Reported: accuracy on the test set's ten classes after task 5; for every sleep, each layer's spikes per neuron
per step and its scale factor alpha (why a sleep fails: a layer that never fires, or fires every step).

Each (network, sleep, seed) is a job file of OUT/own_networks/NETWORK/ (OUT/own_networks_limitN/ with --limit N;
the search: search.json, its study in search.db), which records the network, the sleep and what it read; a
finished job is skipped, so a stopped study resumes; the table is rebuilt from the folder alone.

    python studies/own_networks.py --run                   # every network, seeds 0-4 (see docs/usage.md for the time)
    python studies/own_networks.py --run --networks vdv --seeds 0 1
    python studies/own_networks.py                         # the tables from the finished jobs
"""
import argparse
import copy
import dataclasses
import json
import os
import time

import project  # noqa: F401  (first: the root's library on the import path, studies/project.py)
import codepath  # noqa: F401  (before torch: the pinned code paths and threads)
import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

import analysis
import config
import data
import runner
import scenarios
import sleep_search
import src


@dataclasses.dataclass(frozen=True)
class Network:
    dataset: str
    hidden: tuple
    bias: bool
    optimiser: str          # "sgd" (with momentum) or "adam"
    lr: float
    momentum: float = 0.0
    batch: int = 100
    epochs: int = 2
    init: float = 0.0       # weights uniform in [-init, init]; 0: PyTorch's default initialisation
    dropout: float = 0.0    # nn.Dropout after each hidden ReLU (torch's inverted dropout)


NETWORKS = {   # project: the project's network and initialisation (on cross-entropy, torch's dropout); own-loop:
    # docs/own_loop.py's; vdv: van de Ven's split-MNIST network; one-hidden: one hidden layer of 256
    "project": Network("mnist", (1200, 1200), False, "sgd", 0.1, 0.5, init=0.01, dropout=0.25),
    "own-loop": Network("mnist", (1200, 1200), False, "sgd", 0.1, 0.5),
    "vdv": Network("mnist", (400, 400), True, "adam", 0.001, batch=128),
    "one-hidden": Network("mnist", (256,), True, "sgd", 0.1, 0.5),
    "vdv-fashion": Network("fashion-mnist", (400, 400), True, "adam", 0.001, batch=128),
    "one-hidden-fashion": Network("fashion-mnist", (256,), True, "sgd", 0.1, 0.5),
}
# sleep: (constants, the images each sleep reads)
SLEEPS = {"none": (None, None), "original-seen": ("original", "seen"), "original-task": ("original", "task"),
          "beyond-weights-only": ("beyond-weights-only", "task"), "tuned": ("tuned", "seen"),
          "calibrated": ("calibrated", "task"), "searched": ("searched", "task")}
TASKS = [(0, 1), (2, 3), (4, 5), (6, 7), (8, 9)]
N_PER_TASK, VALIDATION = 5000, 500
SEARCH = dict(seeds=(100, 101), trials=16, batch=4, prune=50.0)


class Setting:
    """One network's data (the held-out images apart) and loop."""

    def __init__(self, name, limit=0):
        self.name, self.net, self.limit = name, NETWORKS[name], limit
        train_x, train_y, self.test_x, self.test_y = data.load(self.net.dataset)
        if limit:
            train_x, train_y, self.test_x, self.test_y = train_x[:limit], train_y[:limit], self.test_x[:limit], self.test_y[:limit]
        held = torch.zeros(len(train_y), dtype=torch.bool)
        for c in range(10):   # (with --limit, a fifth of each class at most)
            mine = torch.nonzero(train_y == c).flatten()
            held[mine[-min(VALIDATION, len(mine) // 5):]] = True
        self.val_x, self.val_y = train_x[held], train_y[held]
        pool_x, pool_y = train_x[~held], train_y[~held]
        self.task = []   # (x, y) of each task: the first N_PER_TASK of its classes, in dataset order
        for pair in TASKS:
            mine = torch.nonzero(torch.isin(pool_y, torch.tensor(pair))).flatten()[:N_PER_TASK]
            self.task.append((pool_x[mine], pool_y[mine]))

    def model(self, seed):
        torch.manual_seed(seed)
        sizes, layers = (784, *self.net.hidden, 10), []
        for i, (a, b) in enumerate(zip(sizes, sizes[1:])):
            layers.append(torch.nn.Linear(a, b, bias=self.net.bias))
            if self.net.init:
                torch.nn.init.uniform_(layers[-1].weight, -self.net.init, self.net.init)
            if i < len(sizes) - 2:
                layers += [torch.nn.ReLU()] + ([torch.nn.Dropout(self.net.dropout)] if self.net.dropout else [])
        return torch.nn.Sequential(*layers)

    def train_task(self, net, k, seed):
        n = self.net
        opt = (torch.optim.Adam(net.parameters(), lr=n.lr) if n.optimiser == "adam"
               else torch.optim.SGD(net.parameters(), lr=n.lr, momentum=n.momentum))
        shuffle = torch.Generator().manual_seed(1000 * seed + k)
        torch.manual_seed(1000 * seed + k)   # nn.Dropout's masks: the same (net, k, seed) trains the same network
        net.train()
        for _ in range(n.epochs):
            for x, y in DataLoader(TensorDataset(*self.task[k - 1]), batch_size=n.batch, shuffle=True, generator=shuffle):
                opt.zero_grad()
                torch.nn.functional.cross_entropy(net(x), y).backward()
                opt.step()
        net.eval()
        return net

    def images(self, k, reads):
        """The images the sleep after task k reads: the task's, or every training image seen so far."""
        return self.task[k - 1][0] if reads == "task" else torch.cat([x for x, _ in self.task[:k]])

    def accuracy(self, net, x, y):
        with torch.no_grad():
            return 100 * (net(x).argmax(1) == y).float().mean().item()


def folder_of(out, limit=0):
    """The study's folder: a --limit smoke test has its own, so its jobs never stand in for the whole study's."""
    return os.path.join(out, f"own_networks_limit{limit}" if limit else "own_networks")


def constants_dict(c):
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(c).items()}


def searched(setting, folder, quiet):
    """The search's constants (search.json; the search run and kept there if absent)."""
    path = os.path.join(folder, "search.json")
    if os.path.exists(path):
        rec = read(path)
        if rec.get("search") != json.loads(json.dumps(SEARCH)):
            config.fail(f"{path} was searched with {rec.get('search')}, not {SEARCH}: delete it and search.db to search again")
        return src.Sleep(**{k: tuple(v) if isinstance(v, list) else v for k, v in rec["constants"].items()}), rec
    t0 = time.perf_counter()
    try:
        best, study = sleep_search.search_sleep(
            setting.train_task, lambda net, seed: setting.accuracy(net, setting.val_x, setting.val_y), len(TASKS),
            model=setting.model, images=lambda k: setting.images(k, "task"), seeds=list(SEARCH["seeds"]),
            trials=SEARCH["trials"], batch=SEARCH["batch"], prune=SEARCH["prune"],
            storage=os.path.join(folder, "search.db"), quiet=quiet)
    except ValueError as err:   # a search.db kept from other settings
        config.fail(f"{os.path.join(folder, 'search.db')}: {err}")
    rec = dict(constants=constants_dict(best), search=dict(SEARCH), minutes=(time.perf_counter() - t0) / 60,
               start_validation=study.trials[0].value, best_validation=study.best_value,
               candidates=len(study.trials), complete=sum(t.state == sleep_search.COMPLETE for t in study.trials))
    runner.write_text(path, json.dumps(rec, indent=1))
    return best, rec


def preset(name, layers):
    """A preset's constants for a network of `layers` Linear layers: the presets have three thresholds (two hidden
    layers and the output); one hidden layer gets the first and the output's."""
    c = config.preset_sleep(name)
    if layers == len(c.beta):
        return c
    pick = lambda v: (v[0], v[-1])
    return dataclasses.replace(c, beta=pick(c.beta), plasticity=pick(c.plasticity))


def run(setting, sleep, seed, constants, first):
    """The loop of one (sleep, seed): its final test accuracy and every sleep's spikes and alpha."""
    name, reads = SLEEPS[sleep]
    net, sleeps, t0 = copy.deepcopy(first), [], time.perf_counter()
    for k in range(1, len(TASKS) + 1):
        if k > 1:
            net = setting.train_task(net, k, seed)
        if name is None:
            continue
        if name == "calibrated" and constants is None:   # once, on the network after task 1
            constants = src.calibrate(net, setting.images(1, reads), seed=sleep_search.sleep_seed(seed, 1))
        c = constants if name in ("calibrated", "searched") else preset(name, len(setting.net.hidden) + 1)
        net, info = src.sleep_model(net, setting.images(k, reads), c, task=k, seed=sleep_search.sleep_seed(seed, k),
                                    progress=False)
        steps = c.length(k)
        sleeps.append(dict(task=k, steps=steps, alpha=[float(a) for a in info["alpha"]],
                           rates=[sum(n) / (len(n) * steps) for n in info["spikes"]]))
    mine = [torch.isin(setting.test_y, torch.tensor(pair)) for pair in TASKS]
    return dict(network=setting.name, sleep=sleep, seed=seed, accuracy=setting.accuracy(net, setting.test_x, setting.test_y),
                per_task=[setting.accuracy(net, setting.test_x[m], setting.test_y[m]) for m in mine], sleeps=sleeps,
                constants=constants_dict(c) if name else None, seconds=time.perf_counter() - t0,
                config=dict(spec=dataclasses.asdict(setting.net), reads=reads, tasks=TASKS, n_per_task=N_PER_TASK,
                            validation=VALIDATION, limit=setting.limit), codepath=codepath.describe())


def study(names, sleeps, seeds, out, limit=0, quiet=False):
    """Run every missing job of these networks, sleeps and seeds (each network's search first, if asked)."""
    for name in names:
        setting, folder = Setting(name, limit), os.path.join(folder_of(out, limit), name)
        runner.writable(folder, "--out")
        best = searched(setting, folder, quiet)[0] if "searched" in sleeps else None
        for seed in seeds:
            todo = [s for s in sleeps if not os.path.exists(os.path.join(folder, f"{s}-{seed}.json"))]
            if not todo:
                continue
            first = setting.train_task(setting.model(seed), 1, seed)
            for sleep in todo:
                rec = run(setting, sleep, seed, best if sleep == "searched" else None, first)
                runner.write_text(os.path.join(folder, f"{sleep}-{seed}.json"), json.dumps(rec))
                if not quiet:
                    print(f"{name} {sleep} seed {seed}: {rec['accuracy']:.1f} %", flush=True)


def read(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as err:
        config.fail(f"{path} cannot be read ({err}): delete it and run the same command again")


def records(out, name, limit=0):
    folder = os.path.join(folder_of(out, limit), name)
    names = sorted(os.listdir(folder)) if os.path.isdir(folder) else []
    return [read(os.path.join(folder, f)) for f in names if f.endswith(".json") and f != "search.json"]


def finals(recs, sleep):
    """{seed: final accuracy} of one sleep."""
    return {r["seed"]: r["accuracy"] for r in recs if r["sleep"] == sleep}


def paired(recs, sleep, against="none"):
    """sleep minus against, seed by seed over their common seeds (scenarios.against: mean, sample std, n, the seeds
    below 0) and its text, mean ± 2 SE; None under two seeds."""
    d = scenarios.against(finals(recs, against), finals(recs, sleep))
    return d and (d, f"{analysis.text(d[0], sign=True)} ± {2 * d[1] / np.sqrt(d[2]):.1f}")


def table(out, names, limit=0):
    """Markdown: each network's final accuracy under each sleep (mean ± sample std, n; below it, minus no sleep seed
    by seed, mean ± 2 SE), calibrated minus each other sleep, and the first sleep's firing per layer under each."""
    lines = ["| network | " + " | ".join(SLEEPS) + " | search |", "|---|" + "---|" * (len(SLEEPS) + 1)]
    for name in names:
        recs = records(out, name, limit)
        cells = []
        for s in SLEEPS:
            acc = list(finals(recs, s).values())
            d = paired(recs, s) if s != "none" else None
            cells.append(f"{analysis.text(*analysis.mean_std(acc))} (n={len(acc)})" + (f"<br>{d[1]}" if d else "")
                         if acc else "")
        path = os.path.join(folder_of(out, limit), name, "search.json")
        found = read(path) if os.path.exists(path) else None
        cost = (f"{found['minutes']:.0f} min, {found['candidates']} candidates; validation {found['start_validation']:.1f}"
                f" → {found['best_validation']:.1f}") if found else ""
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {cost} |")
    others = [s for s in SLEEPS if s not in ("none", "calibrated")]
    lines += ["", "Calibrated minus each other sleep, seed by seed (mean ± 2 SE; beyond 2 SE in bold)", "",
              "| network | " + " | ".join(others) + " |", "|---|" + "---|" * len(others)]
    for name in names:
        recs, cells = records(out, name, limit), []
        for s in others:
            d = paired(recs, "calibrated", s)
            text = f"{d[1]} (n={d[0][2]})" if d else ""
            cells.append(f"**{text}**" if d and scenarios.verdict(d[0]) != "within noise" else text)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "The first sleep (after task 1), seed 0: spikes per neuron per step of the input and of each layer "
              "(the output last)", "", "| network | " + " | ".join(s for s in SLEEPS if s != "none") + " |",
              "|---|" + "---|" * (len(SLEEPS) - 1)]
    for name in names:
        by = {r["sleep"]: r for r in records(out, name, limit) if r["seed"] == 0 and r["sleeps"]}
        lines.append(f"| {name} | " + " | ".join(" / ".join(f"{v:.3g}" for v in by[s]["sleeps"][0]["rates"]) if s in by else ""
                                                for s in SLEEPS if s != "none") + " |")
    return lines


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", action="store_true", help="run the missing jobs (default: only the tables)")
    p.add_argument("--networks", nargs="+", default=list(NETWORKS), choices=list(NETWORKS), metavar="NAME",
                   help=f"networks (default: all: {', '.join(NETWORKS)})")
    p.add_argument("--sleeps", nargs="+", default=list(SLEEPS), choices=list(SLEEPS), metavar="NAME",
                   help=f"sleeps (default: all: {', '.join(SLEEPS)})")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4], help="report seeds (default: 0-4)")
    p.add_argument("--out", default="runs", help="the study's folder is OUT/own_networks (default: runs)")
    p.add_argument("--limit", type=int, default=0, help="only the first N training and test images (a smoke test, in a folder of its own)")
    p.add_argument("--quiet", action="store_true", help="no progress bar or per-job lines")
    args = p.parse_args()
    if min(args.seeds) < 0 or set(args.seeds) & set(SEARCH["seeds"]):
        config.fail(f"--seeds: report seeds are whole numbers >= 0 other than the tuning seeds {SEARCH['seeds']}")
    if args.limit < 0:
        config.fail("--limit must be 0 (all images) or a positive number of images")
    if args.run:
        study(args.networks, args.sleeps, args.seeds, args.out, args.limit, args.quiet)
    text = "\n".join(table(args.out, args.networks, args.limit)) + "\n"
    runner.writable(folder_of(args.out, args.limit), "--out")
    runner.write_text(os.path.join(folder_of(args.out, args.limit), "own_networks.md"), text)
    print(text)
