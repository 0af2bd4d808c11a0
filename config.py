"""The experiment's configuration: its fields, the protocols and presets (their constants: constants.py), the
one precedence rule, every check, and the run folder's name. mnist_exp.py's Config cell and the study scripts build on it.

One precedence, in a notebook and on the command line:

    DEFAULTS < --protocol < --preset < --quick's sizes < yours

where yours are the values a Config cell writes (on a field that a protocol or preset may set, whose line
reads None until you write one: any value; on another field: a value other than its default), then the
options typed on the command line, even at their default (and the fields of a --config FILE). `resolve`
applies it, checks every field once (`check` returns the problems; one line that names each option) and
builds the sleep's constants (`sleep_constants`, a src.Sleep) once.
"""
import argparse
import dataclasses
import hashlib
import json
import math
import os
import re
import sys
from dataclasses import dataclass, field

import codepath  # noqa: F401  (before torch: the pinned code paths and threads)
import constants
import data
import icarl
import src
import torch
from methods import METHODS, SLEEP_FIELDS, scenario, split_of

ROOT = os.path.dirname(os.path.abspath(__file__))
INTERACTIVE = "ipykernel" in sys.modules      # a Jupyter kernel or VS Code's interactive window


class ConfigError(ValueError):
    """A bad setting, in a notebook (on the command line: one line on stderr and exit code 2)."""


def fail(message, prog=None):
    """A bad input: one line `PROG: error: message` on stderr and exit code 2, no traceback (in a notebook: a
    ConfigError). prog: the script whose error it is; by default the one running, named as argparse names it."""
    if INTERACTIVE:
        raise ConfigError(message)
    print(f"{prog or os.path.basename(sys.argv[0])}: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def arg(default, help, runtime=False, kind=None, layered=False):
    """A field: its default and help; runtime: it says how to run, not what is computed (it stays out of
    the run folder's name); kind: the option's type where the default (None) does not say; layered: a
    protocol or preset may set it, so a Config holds None there (not yours) until you write a value."""
    return field(default=None if layered else default,
                 metadata=dict(help=help, runtime=runtime, kind=kind or type(default), default=default))


# src.Sleep's defaults (the protocol's, PROTOCOL.md): the sleep's fields below have theirs
SLEEP = {f.name: f.default for f in dataclasses.fields(src.Sleep)}


@dataclass
class Config:
    # how to run
    methods: tuple = arg(("sequential", "src", "merging", "parallel"), f"methods to compare: {', '.join(METHODS)}", True)
    seeds: tuple = arg((0,), "one run per seed; the seed sets the initial weights and all later randomness", True)
    out: str = arg("runs", "folder for run folders; a run folder is named by its config", True)
    data_dir: str = arg(data.DEFAULT_DATA_DIR, "where the datasets live (or set SRC_DATA_DIR)", True)
    device: str = arg("auto", "cpu, cuda (or cuda:N) or auto (cuda where there is one)", True)
    engine: str = arg("auto", "sleep engine: numba (the CPU: with cuda the weights visit it for the sleep), torch "
                      "(any device) or auto (numba on the CPU, torch on a GPU)", True)
    workers: int = arg(1, "processes sharing the jobs of this command (each claims jobs the others have not; at most the jobs "
                                 "to run and the cores)", True)
    force: bool = arg(False, "recompute jobs that already exist in the run folder", True)
    quiet: bool = arg(False, "no progress bars or per-job lines", True)
    figures: bool = arg(True, "draw the figures at the end (visualize.py)", True)
    png_dir: str = arg("", "where the figures go (default: RUN_DIR/png)", True)
    # what is computed: the protocol and preset
    dataset: str = arg("mnist", "mnist, fashion-mnist, mnist-fashion (cross-modal: MNIST, then Fashion-MNIST, "
                                "one shared 10-way head) or permuted-mnist (each task the ten digits under its own "
                                "pixel permutation, drawn from the seed; the first task unpermuted, as van de Ven's "
                                "runs; 28 x 28, not padded; with --scenario domain)")
    scenario: str = arg("class", "'class' (class-incremental: an output per class) or 'domain' (domain-incremental: "
                                 "every task on one shared head, the first or second digit of a pair; permuted-mnist's "
                                 "ten digits); task-IL is a column of either")
    protocol: str = arg("original", "'original' (the authors' MATLAB, PROTOCOL.md) or 'replica' (the earlier Python replica)")
    preset: str = arg(None, "named sleep constants, and for a variant its training (presets/NAME.json); "
                            "default: the protocol's own (iCaRL + sleep: the iCaRL script's for the memory)", kind=str)
    quick: bool = arg(False, "a smoke test: 500 images a task, one epoch in minibatches of 10, short sleeps (QUICK); "
                             "its networks learn each task, so forgetting and the sleep's effect show")
    # layered: the fields a protocol or preset sets (every sleep constant is a preset's)
    # data and tasks
    classes_per_task: int = arg(2, "classes per task: (0, 1), (2, 3), ...", layered=True)
    task_order: str = arg("fixed", "'fixed' (the tasks in the order of their digits) or 'random' (a permutation drawn "
                                   "from the seed: the same for every method and setting of that seed)")
    n_tasks: int = arg(0, "learn only the first n tasks of the order (0: all; 2: the task-2 length study's two tasks)")
    tasks: int = arg(10, f"permuted-mnist: its tasks, each the ten digits under one permutation (1 to "
                         f"{data.MAX_PERMUTATIONS})")
    n_per_task: int = arg(5000, "training images per task: the first n of its classes, in dataset order (0: all)", layered=True)
    train_limit: int = arg(0, "use only the first n training images (0: all; of a pair: of each dataset)")
    test_limit: int = arg(0, "use only the first n test images (0: all; of a pair: of each dataset)")
    score_on: str = arg("test", "'test' (the test set) or 'train': every accuracy is measured on all training images "
                                "instead (what the authors' reduced-data script reports)")
    validation: int = arg(0, "hold out the last n training images of each class and score on them instead of the "
                             "test set, which is then not read (tuning; 0: test set)")
    replay: float = arg(0.0, "rehearsal: task k >= 2 also trains on this fraction of the earlier tasks' images")
    memory: int = arg(0, "iCaRL: training images kept as exemplars, shared by the classes seen")
    exemplars: str = arg("herding", "iCaRL: how exemplars are chosen, herding or random")
    distillation: bool = arg(False, "iCaRL: exemplars' targets are the previous network's softmax outputs")
    # network and training
    hidden: tuple = arg((1200, 1200), "hidden layer widths", layered=True)
    init: str = arg("uniform", "'uniform' in [-init_scale, init_scale], or 'torch' (PyTorch's Linear default)", layered=True)
    init_scale: float = arg(0.01, "bound of the uniform initialisation")
    bias: bool = arg(False, "networks with biases (the original has none)", layered=True)
    output: str = arg("relu-mse", "'relu-mse' (the original) or 'linear-ce' (logits, softmax cross-entropy)", layered=True)
    dropout: float = arg(0.25, "fraction of hidden units dropped in training; evaluation scales by 1 - dropout", layered=True)
    inverted_dropout: bool = arg(False, "torch's inverted dropout instead of the original's", layered=True)
    lr: float = arg(0.1, "learning rate, per minibatch-mean gradient", layered=True)
    momentum: float = arg(0.5, "v = momentum v + lr g; W -= v", layered=True)
    keep_momentum: bool = arg(True, "momentum buffers carry over from task to task (the original)", layered=True)
    batch_size: int = arg(100, "images per minibatch")
    epochs: int = arg(2, "passes over each task's training set", layered=True)
    task_epochs: tuple = arg((), "passes over each task's training set, one number per task in the order learnt, "
                                 "instead of --epochs (the task-2 length study: 2 20)")
    dtype: str = arg("float32", "float32 (as the original) or float64")
    # sleep (src.Sleep, whose defaults these are); rate, inc, dec, beta and alpha_scale have none: a preset's
    rate: float = arg(None, "input rate: a pixel of value p fires with probability 2 dt rate p", kind=float, layered=True)
    inc: float = arg(None, "potentiation: W += inc g(W) where pre and post fired", kind=float, layered=True)
    dec: float = arg(None, "depression: W -= dec g(W) where post fired and pre did not", kind=float, layered=True)
    beta: tuple = arg(None, "threshold multipliers, one per layer", kind=float, layered=True)
    alpha_scale: float = arg(None, "scale of the data-based factors alpha", kind=float, layered=True)
    alpha: tuple = arg((), "fixed scale factors, one per layer, instead of the data-based ones (src.Sleep's None)",
                       layered=True)
    alpha_softmax: bool = arg(SLEEP["alpha_softmax"], "the output layer's factor sees softmax probabilities (iCaRL's "
                                                      "script)", layered=True)
    sleep_after: tuple = arg((), "sleep only after these tasks (1 for the first; default: after every task; the "
                                 "cross-modal rehearsal script's is 2: its first sleep's result is not used)")
    sleep_steps: int = arg(SLEEP["steps"], "time steps of the first sleep", layered=True)
    sleep_steps_increment: int = arg(SLEEP["steps_increment"], "extra steps per later task: T_k = sleep_steps + (k-1) "
                                                               "increment", layered=True)
    dt: float = arg(SLEEP["dt"], "simulation time step (s)", layered=True)
    decay: float = arg(SLEEP["decay"], "membrane decay per step", layered=True)
    mask_size: int = arg(SLEEP["mask_size"], "side of the square window of the rate map shown each step", layered=True)
    sleep_input: str = arg(SLEEP["input"], "'mean' (the mean image seen, through the window), 'class-means' (one "
                                           "class's mean per step), 'replica' (masked means of current-task images) or "
                                           "'images' (one training image per step, whole, in order: the ICLR 2020 "
                                           "robustness sleep's)", layered=True)
    sleep_data: str = arg(SLEEP["data"], "what each sleep reads: 'seen' (every training image so far), 'current' "
                                         "(task k's images: nothing kept), 'current+means' (and a kept mean image per "
                                         "class) or 'first' (the first task's images: the cross-modal script's)",
                          layered=True)
    sleep_samples: int = arg(SLEEP["samples"], "sleep input replica: images averaged per step", layered=True)
    sleep_mask_fraction: float = arg(SLEEP["mask_fraction"], "sleep input replica: fraction of pixels each step's mask "
                                                             "keeps", layered=True)
    plasticity: tuple = arg((1.0, 1.0, 1.0), "multiplier of inc and dec per layer (0 freezes a layer: an ablation)",
                            layered=True)
    plasticity_factor: str = arg(SLEEP["factor"], "g(w): 'original' 2 sigmoid(-w / 0.001) or 'logistic' sigmoid(w)",
                                 layered=True)
    sleep_bias: str = arg(SLEEP["bias"], "with --bias: 'ignore', 'current' or 'unit' (src.sleep)", layered=True)
    sleep_exp: str = arg(SLEEP["exp"], "the numba engine's exp: 'exact' or 'fast' (SIMD, float32-accurate; for "
                                       "searches and variants, not the protocol)", layered=True)
    # the other methods
    ewc_lambda: float = arg(10.0, "EWC: strength lambda of the penalty lambda/2 sum F (W - W*)^2")
    si_c: float = arg(0.01, "SI: strength c of the penalty c sum Omega (W - W*)^2")
    si_xi: float = arg(0.1, "SI: damping xi in Omega += path / (change^2 + xi)")
    lwf_lambda: float = arg(4.0, "LwF: strength of the distillation from the previous network's outputs (chosen on "
                                 "validation)", layered=True)
    lwf_temperature: float = arg(2.0, "LwF: temperature T of the distillation (logits; the ReLU output has none)",
                                 layered=True)
    lwf_outputs: str = arg("earlier", "LwF: the outputs distilled, 'earlier' (the earlier tasks' classes) or 'all' (the "
                                      "new task's too, towards the previous network's outputs)", layered=True)
    lwf_schedule: str = arg("constant", "LwF: the strength at task k, 'constant' (--lwf-lambda) or 'growing' "
                                        "(--lwf-lambda (k - 1)^2 / k)", layered=True)
    lwf_lambdas: tuple = arg((), "LwF: one strength per task in the order learnt (the first is not used), instead "
                                 "of --lwf-lambda and --lwf-schedule")
    merge_init: str = arg("shared", "merging: 'shared' initial weights for every copy, or 'own'", layered=True)
    slda_shrinkage: float = arg(0.1, "SLDA: the shared covariance shrunk towards I, (1 - s) S + s I")
    analytic_ridge: float = arg(0.001, "analytic head: the ridge r of W = (G + r I)^-1 C (chosen on validation)")
    # analyses
    sleep_window: int = arg(0, "also record each layer's spikes per window of N sleep steps and the accuracy on the "
                               "evaluation images at the end of every window (0: not; slower by one evaluation a window)")
    probe_per_class: int = arg(100, "test images per class in the activation maps and capacity")
    pca_components: int = arg(10, "PCA components of the activation maps")
    # derived by resolve
    sleep: src.Sleep = field(default=None, init=False, repr=False, metadata=dict(derived=True))
    origin: dict = field(default=None, init=False, repr=False, metadata=dict(derived=True))


FIELDS = {f.name: f for f in dataclasses.fields(Config) if not f.metadata.get("derived")}
SCIENCE = [k for k, f in FIELDS.items() if not f.metadata["runtime"]]   # what names the run folder
# the bottom layer: every field at its default, marked as the defaults' so that resolving it sets nothing of yours
# (dataclasses.replace drops the mark: replace(DEFAULTS, ...) is a Config that writes every field)
DEFAULTS = Config(**{k: f.metadata["default"] for k, f in FIELDS.items()})
DEFAULTS.origin = dict.fromkeys(FIELDS, "defaults")
LISTS = dict(methods=str, seeds=int, hidden=int, task_epochs=int, sleep_after=int, beta=float, plasticity=float, alpha=float,
             lwf_lambdas=float)   # options of several values
option = lambda name: "--" + name.replace("_", "-")

# --protocol: the training every field of which differs from the original's; its sleep is its preset.
# 'replica': the earlier Python replica (agbld/sleep-replay-consolidation-python) at commit 4d1755d.
PROTOCOLS = {
    "original": {},
    "replica": dict(hidden=(4000, 4000), init="torch", output="linear-ce", inverted_dropout=True, lr=0.01,
                    keep_momentum=False, merge_init="own"),
}


def read_presets(folder):
    """The presets of a folder's NAME.json files (constants.read_presets); a damaged one is a one-line error."""
    try:
        return constants.read_presets(folder)
    except ValueError as err:
        fail(str(err))


# --preset: {name: (protocol it belongs to, {dataset: fields})}: the built-in ones (the authors' constants,
# constants.py) and presets/'s (studies/tune.py writes them)
PRESETS = {**constants.BUILT_IN, **read_presets(os.path.join(ROOT, "presets"))}

# --quick: a smoke test's sizes
# (minibatches of 10: 50 steps a task, as many images as one epoch of 100s, but enough steps to learn the task)
QUICK = dict(train_limit=3000, test_limit=1000, n_per_task=500, epochs=1, batch_size=10, sleep_steps=1000,
             sleep_steps_increment=500, probe_per_class=20)

def quick_sizes(dataset):
    """--quick's sizes; a pair of datasets keeps its own 255-step sleeps (already shorter)."""
    pair = "parts" in data.DATASETS.get(dataset, {})
    return {k: v for k, v in QUICK.items() if not (pair and k.startswith("sleep_steps"))}


def listed(names):
    """'a, b and c'."""
    return ", ".join(names[:-1]) + " and " + names[-1] if len(names) > 1 else names[0]


SLEEPING = [m for m, spec in METHODS.items() if spec.sleep]
ICARL_METHODS = [m for m, spec in METHODS.items() if spec.exemplars]
# the fields methods own (Method.options): {field: (the Options declaring it, the methods that declare those)}
OWNED = {k: (group, [m for m, s in METHODS.items() if group in s.options])
         for spec in METHODS.values() for group in spec.options for k in group.rules}


def owned_applies(name):
    """APPLIES's row of a field methods own: it acts only with one of them (and what else they declare it needs)."""
    group, owners = OWNED[name]
    test, words = group.also.get(name, (lambda c: True, ""))
    return (name, lambda c: any(m in owners for m in c.methods) and test(c),
            group.who(owners) + (f" and {words}" if words else ""))


# fields that act only with a method, a setting or another field: (field, applies?, what it needs)
APPLIES = [
    (k, lambda c: c.sleep_input == "replica", "--sleep-input replica") for k in ("sleep_samples", "sleep_mask_fraction")] + [
    ("replay", lambda c: any(m in METHODS and not (METHODS[m].joint or METHODS[m].statistics) for m in c.methods),
     "a method that trains task by task (parallel trains on every image at once; "
     f"{listed([m for m, s in METHODS.items() if s.statistics])} train no network)"),
    ("alpha_scale", lambda c: not c.alpha, "data-based scale factors (no --alpha)"),
    # the window moves over a rate map; the replica's and the robustness scripts' inputs show whole images
    ("mask_size", lambda c: c.sleep_input in ("mean", "class-means"), "--sleep-input mean or class-means"),
    ("sleep_exp", lambda c: c.plasticity_factor == "original", "--plasticity-factor original (the logistic g keeps its exp)"),
    ("sleep_bias", lambda c: c.bias, "--bias"),
    ("tasks", lambda c: "base" in data.DATASETS[c.dataset], "--dataset permuted-mnist (a split's tasks are its classes')"),
    ("classes_per_task", lambda c: "base" not in data.DATASETS[c.dataset],
     "a split dataset (each of permuted-mnist's tasks holds the ten digits)"),
    ("test_limit", lambda c: not c.validation and c.score_on == "test",
     "the test set (it is not read with --validation or --score-on train)"),
    ("score_on", lambda c: not c.validation, "the test set or the training images (--validation scores on its own split)"),
    ("png_dir", lambda c: c.figures, "figures (not --no-figures)"),
    *map(owned_applies, OWNED)]


# ---------------------------------------------------------------- the command line
class Parser(argparse.ArgumentParser):
    """argparse whose errors are one line (no usage block), exit code 2."""

    def error(self, message):
        fail(f"{message} (see --help)", self.prog)


# a value that begins as a negative number does; argparse takes -1,1,1 or -1e-3 for an option
NEGATIVE = re.compile(r"-\.?\d")


def joined(argv, valued):
    """argv with a negative value joined to its option (--plasticity -1,1,1 as --plasticity=-1,1,1). valued:
    {option: whether it takes several values}; of those, a lone negative number (-1 2 3) is left to argparse."""
    out = []
    for a in argv:
        if out and out[-1] in valued and NEGATIVE.match(a) and ("," in a or not valued[out[-1]]):
            out[-1] += "=" + a
        else:
            out.append(a)
    return out


def parse_args(argv, prog=None, parser=None):
    """The Config fields of a --config FILE and those the options give, two dicts, from argv. Inside a notebook
    kernel, unknown arguments (the kernel's own) are ignored. parser: one with a study script's own options,
    which come back too. prog: the script (default: the one running)."""
    p = parser or Parser(prog=prog, description=__doc__, allow_abbrev=False,
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="start from this config.json (for example a run folder's), then apply the options")
    for name, f in FIELDS.items():
        default, kind = f.metadata["default"], f.metadata["kind"]
        shown = "from the preset" if default is None else " ".join(map(str, default)) if isinstance(default, tuple) \
            else default
        rules = "".join(f"{words}; " for words, _ in OWNED[name][0].rules[name]) if name in OWNED else ""
        kw = dict(default=argparse.SUPPRESS, help=f"{f.metadata['help']} ({rules}default: {shown or 'none'})")
        if kind is bool:
            kw["action"] = argparse.BooleanOptionalAction
        elif name in LISTS:
            kw.update(nargs="*" if name == "alpha" else "+", type=str)
        else:
            kw["type"] = kind
        p.add_argument(option(name), **kw)
    valued = {option(k): k in LISTS for k, f in FIELDS.items() if f.metadata["kind"] is not bool}
    for o in map(option, LISTS):   # argparse keeps the last of a repeated option: --seeds 0 --seeds 1 would run seed 1
        if sum(a == o or a.startswith(o + "=") for a in argv) > 1:
            fail(f"{o} is given more than once: give its values once ({o} 0 1, or {o} 0,1)", prog)
    args, unknown = p.parse_known_args(joined(argv, valued))
    if unknown and not INTERACTIVE:
        p.error(f"unrecognized arguments: {' '.join(unknown)}")
    given = vars(args)
    path = given.pop("config", None)
    for name, kind in LISTS.items():
        if name in given:   # "a,b" as well as "a b"
            try:
                given[name] = tuple(kind(s) for v in given[name] for s in v.split(",") if s)
            except ValueError:
                fail(f"{option(name)} takes {'whole numbers' if kind is int else 'numbers'}; got {' '.join(given[name])}", prog)
    return read_config(path, prog=prog) if path else {}, given


def read_config(path, what="--config", text=False, prog=None):
    """The Config fields of a config.json (a run folder's, or one written by hand; text: its contents)."""
    try:
        if text:
            fields = json.loads(path)
        else:
            with open(path) as f:
                fields = json.load(f)
        if not isinstance(fields, dict):
            raise ValueError(f"a JSON {type(fields).__name__}, not an object of fields")
    except (OSError, ValueError) as err:
        fail(f"{what} {path}: cannot read it as a config.json ({err}); fix or delete it", prog)
    unknown = sorted(set(fields) - set(FIELDS) - {"versions"})
    if unknown:
        fail(f"{what} {path}: unknown fields {', '.join(unknown)}", prog)
    return {k: tuple(v) if isinstance(v, list) else v for k, v in fields.items() if k in FIELDS}


# ---------------------------------------------------------------- the one precedence
def yours(cfg):
    """The fields a Config sets: a value on a layered field (None there is not yours), another field's value
    where it is not the default; of a resolved Config (and DEFAULTS), not those still at the default it took."""
    norm = lambda v: tuple(v) if isinstance(v, list) else v
    taken = lambda k, v: (cfg.origin or {}).get(k) == "defaults" and v == getattr(DEFAULTS, k)
    values = {k: norm(getattr(cfg, k)) for k in FIELDS}
    return {k: v for k, v in values.items() if v != FIELDS[k].default and not taken(k, v)}


def resolve(cfg=DEFAULTS, argv=(), prog=None):
    """The config that runs: DEFAULTS < protocol < preset < quick < yours (cfg's own settings, then a --config
    file's fields, then the options typed), checked; with cfg.sleep (src.Sleep) and cfg.origin (the layer each
    field came from). prog: the script whose errors these are (default: the one running)."""
    filed, given = parse_args(list(argv), prog)
    mine = {**yours(cfg), **filed, **given}
    bad = lambda name, v, choices: fail(f"{option(name)} must be one of {', '.join(choices)}; got {v!r}", prog)
    protocol, dataset = mine.get("protocol", "original"), mine.get("dataset", "mnist")
    if protocol not in PROTOCOLS:
        bad("protocol", protocol, PROTOCOLS)
    if dataset not in data.DATASETS:
        bad("dataset", dataset, data.DATASETS)
    preset = mine.get("preset") or default_preset(protocol, mine.get("methods", DEFAULTS.methods), mine.get("memory", 0))
    if preset not in PRESETS:
        bad("preset", preset, PRESETS)
    belongs, constants = PRESETS[preset]
    if belongs != protocol:
        fail(f"--preset {preset} belongs to --protocol {belongs}, not {protocol}: a mix of two protocols; "
             f"set the constants one by one instead", prog)
    dataset = data.DATASETS[dataset].get("base", dataset)   # permuted MNIST: MNIST's constants
    if dataset not in constants:
        fail(f"--preset {preset} has no constants for {dataset} (it has: {', '.join(constants)})", prog)
    unknown = sorted(set(constants[dataset]) - set(FIELDS))
    if unknown:
        fail(f"--preset {preset} sets unknown fields: {', '.join(unknown)}", prog)
    layers = [("defaults", {k: getattr(DEFAULTS, k) for k in FIELDS}), ("protocol", PROTOCOLS[protocol]),
              ("preset", dict(constants[dataset], preset=preset)),
              ("quick", quick_sizes(dataset) if mine.get("quick") else {}), ("yours", mine)]
    values, origin = {}, {}
    for layer, settings in layers:
        for k, v in settings.items():
            values[k], origin[k] = tuple(v) if isinstance(v, list) else v, layer
    unknown = sorted(set(values) - set(FIELDS))
    if unknown:
        fail(f"unknown settings: {', '.join(unknown)} (python mnist_exp.py --help lists them)", prog)
    problems = [typed(k, v) for k, v in values.items() if typed(k, v)]
    if problems:
        fail("; ".join(problems), prog)
    values = {k: as_float(k, v) for k, v in values.items()}   # 1 and 1.0 are one setting (and one folder name)
    values.update({k: tuple(dict.fromkeys(values[k])) for k in ("methods", "seeds")})   # repeats merged
    out = Config(**values)
    out.origin = origin
    lower = {k: v for _, settings in layers[:-1] for k, v in settings.items()}   # what yours would replace
    # an option typed counts even at the value below it; a Config's (or a --config file's) where it changes it
    counted = set(given) | {k for k, v in mine.items() if as_float(k, v) != as_float(k, lower[k])}
    problems = check(out, counted)
    if problems:
        fail("; ".join(dict.fromkeys(problems)), prog)
    out.sleep = sleep_constants(out)
    return out


def as_float(name, value):
    """A number of a float field as a float (a list of them too)."""
    if (LISTS.get(name) or FIELDS[name].metadata["kind"]) is not float or value is None:
        return value
    return tuple(float(v) for v in value) if isinstance(value, (tuple, list)) else float(value)


def typed(name, value):
    """'' when the value has its field's type (a number where a number goes, ...), else what is wrong."""
    f = FIELDS[name]
    kind, none = LISTS.get(name) or f.metadata["kind"], value is None and f.metadata["default"] is None
    number = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and (kind is float or isinstance(v, int)) \
        and math.isfinite(v)
    if name in LISTS:
        ok = none or isinstance(value, tuple) and all(isinstance(v, str) if kind is str else number(v) for v in value)
        words = f"a list of {'names' if kind is str else 'whole numbers' if kind is int else 'finite numbers'}"
    elif kind is bool:
        ok, words = isinstance(value, bool), "true or false"
    elif kind in (int, float):
        ok = number(value) or none
        words = "a whole number" if kind is int else "a finite number"
    else:
        ok, words = isinstance(value, str) or none, "a string"
    return "" if ok else f"{option(name)} must be {words}; got {value!r}"


def default_preset(protocol, methods, memory):
    """The protocol's own preset; iCaRL (with or without sleep) on the original protocol: the iCaRL script's for
    the memory size (on Fashion-MNIST it sets that script's training too, so iCaRL trains alike either way)."""
    if protocol == "original" and any(METHODS[m].exemplars for m in methods if m in METHODS):
        return next(name for largest, name in constants.ICARL_SIZES if memory <= largest)
    return "replica" if protocol == "replica" else "original"


def seeds_problem(seeds):
    """'' when every seed is one torch's generators take (a whole number from 0 to 2^32 - 1), else what is wrong."""
    if seeds and all(isinstance(s, int) and not isinstance(s, bool) and 0 <= s < 2 ** 32 for s in seeds):
        return ""
    return f"--seeds must be whole numbers from 0 to {2 ** 32 - 1}; got {' '.join(map(str, seeds))}"


def sleep_constants(cfg):
    """The sleep's constants (src.Sleep) of a config with a method that sleeps, else None; a ValueError names
    a constant that src.Sleep does not allow."""
    if not any(m in SLEEPING for m in cfg.methods) or cfg.rate is None:
        return None
    return src.Sleep(**{s: getattr(cfg, c) for s, c in SLEEP_FIELDS.items() if s != "alpha"}, alpha=cfg.alpha or None)


def preset_sleep(name, dataset="mnist"):
    """A preset's sleep constants on a dataset (a src.Sleep, for src.sleep_model): what --preset NAME sleeps
    with, through the one precedence (DEFAULTS < its protocol < the preset). A ValueError names the presets
    with sleep constants for the dataset when NAME is not one of them."""
    have = [k for k, (_, held) in PRESETS.items() if "rate" in held.get(dataset, {})]
    if name not in have:
        raise ValueError(f"{name!r} is not a preset with sleep constants for {dataset} (choose from {', '.join(have)})")
    return resolve(Config(methods=("src",), dataset=dataset, protocol=PRESETS[name][0], preset=name)).sleep


def check(cfg, counted):
    """Every problem of a resolved config, each naming its option ([]: none); it changes nothing. counted: the
    fields you set that count (APPLIES: an option that would do nothing is refused). What a method declares
    (methods.Method: its options' rules, what it needs, its scenarios) is checked here."""
    spec = data.DATASETS[cfg.dataset]
    n_layers = len(cfg.hidden) + 1 if isinstance(cfg.hidden, tuple) else 0
    problems = [f"--methods: unknown method {m!r} (choose from {', '.join(METHODS)})" for m in cfg.methods if m not in METHODS]
    if not cfg.methods:
        problems.append(f"--methods needs at least one method ({', '.join(METHODS)})")
    whole = lambda v, low: isinstance(v, int) and not isinstance(v, bool) and v >= low
    ints = dict(workers=1, batch_size=1, epochs=1, n_per_task=0, train_limit=0, test_limit=0, validation=0,
                probe_per_class=1, pca_components=1, classes_per_task=1, n_tasks=0)
    problems += [f"{option(k)} must be a whole number >= {low}; got {getattr(cfg, k)}" for k, low in ints.items()
                 if not whole(getattr(cfg, k), low)]
    if seeds_problem(cfg.seeds):
        problems.append(seeds_problem(cfg.seeds))
    if not cfg.hidden or not all(whole(h, 1) for h in cfg.hidden):
        problems.append(f"--hidden needs one or more widths, each a whole number >= 1; got {' '.join(map(str, cfg.hidden))}")
    elif network_bytes(cfg) > memory_bytes():   # (an allocation error deep in torch otherwise)
        problems.append(f"--hidden {' '.join(map(str, cfg.hidden))}: the network's weights, momentum and a copy need "
                        f"{network_bytes(cfg) / 2 ** 30:.1f} GiB, more than this machine's {memory_bytes() / 2 ** 30:.0f} GiB")
    elif any(m in SLEEPING for m in cfg.methods) and cfg.beta is not None and len(cfg.beta) != n_layers:
        problems.append(f"--beta needs one value per layer ({n_layers}); got {len(cfg.beta)}")
    if cfg.scenario not in ("class", "domain"):
        problems.append(f"--scenario must be one of class, domain; got {cfg.scenario!r}")
    elif cfg.scenario not in spec.get("scenarios", (cfg.scenario,)):
        problems.append(f"--dataset {cfg.dataset} is learnt domain-incrementally (each task the ten digits on one "
                        "10-way head): add --scenario domain")
    elif "parts" in spec and cfg.scenario == "domain":
        problems.append(f"--scenario domain: --dataset {cfg.dataset} is its own scenario (its two datasets on one "
                        "shared head, cross-modal); drop --scenario")
    else:
        unfit = [m for m in cfg.methods if m in METHODS and scenario(cfg) not in METHODS[m].scenarios]
        if unfit:
            fit = [m for m, s in METHODS.items() if scenario(cfg) in s.scenarios]
            why = "".join(f" ({METHODS[m].why})" for m in dict.fromkeys(unfit) if METHODS[m].why)
            where = f"--dataset {cfg.dataset}" if "parts" in spec else f"--scenario {cfg.scenario}"
            problems.append(f"{where} runs {listed(fit)}; not {', '.join(unfit)}{why}")
    if not (whole(cfg.tasks, 1) and cfg.tasks <= data.MAX_PERMUTATIONS):
        problems.append(f"--tasks must be a whole number from 1 to {data.MAX_PERMUTATIONS}; got {cfg.tasks}")
    if "parts" in spec:   # the cross-modal pair: its tasks are its datasets
        if cfg.classes_per_task != spec["classes"] // len(spec["parts"]):
            problems.append(f"--dataset {cfg.dataset} learns its {len(spec['parts'])} datasets as its tasks: "
                            f"--classes-per-task must be {spec['classes'] // len(spec['parts'])}; got {cfg.classes_per_task}")
        if cfg.task_order != "fixed":
            problems.append(f"--dataset {cfg.dataset} learns its datasets in their order (its constants and "
                            "--sleep-data first are the first dataset's): --task-order must be fixed")
    permuted = "base" in spec   # (its tasks are --tasks, each of all ten digits)
    split = whole(cfg.tasks, 1) if permuted else whole(cfg.classes_per_task, 1)
    if split and cfg.scenario == "domain" and not permuted and cfg.classes_per_task < 2:
        problems.append(f"--scenario domain needs --classes-per-task >= 2 (a shared head of one output is always "
                        f"right); got {cfg.classes_per_task}")
    if split and not permuted and spec["classes"] % cfg.classes_per_task:
        problems.append(f"--classes-per-task must divide the {spec['classes']} classes of {cfg.dataset}; got {cfg.classes_per_task}")
    elif split and whole(cfg.n_tasks, 0):
        n, per_task = split_of(cfg)
        if cfg.n_tasks > n:
            problems.append(f"--n-tasks must be at most the {n} tasks of {per_task} classes; got {cfg.n_tasks}")
        elif cfg.task_epochs and len(cfg.task_epochs) != (cfg.n_tasks or n):
            problems.append(f"--task-epochs needs one number per task learnt ({cfg.n_tasks or n}); got "
                            f"{' '.join(map(str, cfg.task_epochs))}")
    learnt = (cfg.n_tasks or split_of(cfg)[0]) if split else 0
    if not all(whole(k, 1) and k <= learnt for k in cfg.sleep_after):
        problems.append(f"--sleep-after takes task numbers from 1 to {learnt}; got {' '.join(map(str, cfg.sleep_after))}")
    if not all(whole(e, 1) for e in cfg.task_epochs):
        problems.append(f"--task-epochs must be whole numbers >= 1; got {' '.join(map(str, cfg.task_epochs))}")
    if cfg.task_epochs and "epochs" in counted:
        problems.append("--epochs and --task-epochs both set the epochs: give one")
    if cfg.task_epochs and "parallel" in cfg.methods:
        problems.append("--task-epochs applies to methods that learn task by task; parallel trains once on all tasks "
                        "together (run it with --epochs, as a separate command)")
    if not (isinstance(cfg.mask_size, int) and cfg.mask_size <= spec["side"]):
        problems.append(f"--mask-size must be a whole number from 1 to the image side, {spec['side']}; got {cfg.mask_size}")
    problems += [f"{option(k)} must be > 0; got {getattr(cfg, k)}" for k in ("lr", "init_scale") if not getattr(cfg, k) > 0]
    if not cfg.momentum >= 0:
        problems.append(f"--momentum must be >= 0; got {cfg.momentum}")
    broken = set()   # the methods' own fields (Method.options) that break a rule they declare: the first one
    for k, (group, _) in OWNED.items():
        values = getattr(cfg, k) if k in LISTS else (getattr(cfg, k),)
        words = next((words for words, test in group.rules[k] if not all(map(test, values))), "")
        if words:
            broken.add(k)
            problems.append(f"{option(k)} must be {words}; got {' '.join(map(str, values)) if k in LISTS else repr(values[0])}")
    if cfg.lwf_lambdas and "lwf_lambdas" not in broken and split and len(cfg.lwf_lambdas) != learnt:
        problems.append(f"--lwf-lambdas needs one strength per task learnt ({learnt}); got {len(cfg.lwf_lambdas)}")
    if cfg.lwf_lambdas and {"lwf_lambda", "lwf_schedule"} & counted:
        problems.append("--lwf-lambdas sets every task's strength: give it or --lwf-lambda / --lwf-schedule, not both")
    if not 0 <= cfg.dropout < 1:
        problems.append(f"--dropout must be in [0, 1); got {cfg.dropout}")
    if not 0 <= cfg.replay <= 1:
        problems.append(f"--replay must be a fraction in [0, 1] (0.05: 5 % of the earlier tasks' images); got {cfg.replay}")
    choices = dict(task_order=("fixed", "random"), score_on=("test", "train"), dtype=("float32", "float64"), engine=("auto", "numba", "torch"), init=("uniform", "torch"),
                   output=("relu-mse", "linear-ce"))
    problems += [f"{option(k)} must be one of {', '.join(v)}; got {getattr(cfg, k)!r}"
                 for k, v in choices.items() if getattr(cfg, k) not in v]
    sleepers = [m for m in cfg.methods if m in SLEEPING]
    if sleepers and cfg.rate is None:
        problems.append(f"--preset {cfg.preset} has no sleep constants (it is a baseline's training): run --methods "
                        f"{', '.join(sleepers)} with a sleep's preset, or set --rate, --inc, --dec, --beta and --alpha-scale")
    try:   # src.Sleep says what each of the sleep's constants may be
        sleep_constants(cfg)
    except (ValueError, TypeError) as err:
        name, _, rest = str(err).partition(" ")
        problems.append(f"{option(SLEEP_FIELDS.get(name, name))} {rest}")
    wanted = {}   # what the methods run need (Method.needs), each named by the first that declares it
    for m in cfg.methods:
        for need in METHODS[m].needs if m in METHODS else ():
            wanted.setdefault(need, m)
    problems += [f"--methods {m} needs {words.format(**vars(cfg))}" for (test, words), m in wanted.items() if not test(cfg)]
    icarls = [m for m in cfg.methods if m in ICARL_METHODS]
    sleepers = {m: METHODS[m].sleep_constants for m in cfg.methods if m in SLEEPING}
    if icarls and not cfg.origin.get("preset") == "yours":   # iCaRL's runs take the iCaRL script's preset
        sleepers.update({m: "icarl" for m in icarls})
    if len(set(sleepers.values())) > 1:
        problems.append(f"--methods {', '.join(sleepers)} need different presets (the protocol's and the iCaRL "
                        "script's): run them as separate commands")
    for name, applies, needs in APPLIES:
        if name in counted and not applies(cfg):
            problems.append(f"{option(name)} applies only with {needs}")
    # where it runs is src.placement's decision, as methods.prepare's (--engine numba with cuda sleeps on the CPU)
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", cfg.device):
        problems.append(f"--device must be cpu, cuda, cuda:N or auto; got {cfg.device!r}")
    elif cfg.device.startswith("cuda") and not torch.cuda.is_available():
        problems.append("--device cuda: this machine has no CUDA device that torch can use; use cpu or auto")
    elif cfg.device.startswith("cuda:") and int(cfg.device[5:]) >= torch.cuda.device_count():
        problems.append(f"--device {cfg.device}: this machine has {torch.cuda.device_count()} CUDA device(s), "
                        "counted from cuda:0")
    elif cfg.sleep_exp == "fast" and src.placement(cfg.device, cfg.engine)[1] != "numba":
        problems.append("--sleep-exp fast is the numba engine's: it needs --engine numba (or auto on the CPU)")
    return problems


def network_bytes(cfg):
    """Bytes of a network's weights, momentum buffers and one copy of both (what training holds at least)."""
    spec = data.DATASETS[cfg.dataset]
    sizes = (spec["side"] ** 2, *cfg.hidden, spec.get("outputs", spec["classes"]))
    return 3 * 2 * sum((a + cfg.bias) * b for a, b in zip(sizes[:-1], sizes[1:])) * (8 if cfg.dtype == "float64" else 4)


def memory_bytes():
    """This machine's memory."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def check_data(cfg, ctx):
    """The checks that need the data's counts (ctx from methods.prepare)."""
    problems = []
    # every task of the split (with --task-order random and --n-tasks, any may be learnt)
    for k, classes in enumerate(ctx.split, start=1):
        have = int(sum((ctx.train_y == c).sum().item() for c in classes))
        if have < cfg.n_per_task or not have:
            problems.append(f"--n-per-task {cfg.n_per_task}: task {k} has only {have} training images here "
                            "(after --train-limit and --validation); use at most that")
            break
    if any(m in ICARL_METHODS for m in cfg.methods):   # each class's exemplars are chosen among its images
        have = lambda c: int((ctx.train_y == c).sum().item())
        for k in range(1, len(ctx.tasks) + 1):   # (with --task-order random, any class may be task k's)
            fewest = min(ctx.tasks[k - 1] if cfg.task_order == "fixed" else range(ctx.n_classes), key=have)
            keep = icarl.per_class(cfg.memory, k, cfg.classes_per_task)
            if have(fewest) < keep:
                problems.append(f"--memory {cfg.memory}: after task {k} each of its classes keeps {keep} exemplars, and "
                                f"class {fewest} has only {have(fewest)} training images here (after --train-limit and "
                                "--validation); lower --memory")
                break
    shown = ctx.eval_y[:ctx.probes]
    for c in range(ctx.n_classes):
        if (shown == c).sum().item() < cfg.probe_per_class:
            problems.append(f"--probe-per-class {cfg.probe_per_class}: class {c} has only {(shown == c).sum().item()} "
                            f"evaluation images (raise --test-limit or lower --probe-per-class)")
            break
    if problems:
        fail("; ".join(problems))


# ---------------------------------------------------------------- the run folder's name and record
def science(cfg):
    """The fields that say what is computed (everything but how to run)."""
    return {k: getattr(cfg, k) for k in SCIENCE}


def run_name(cfg):
    """dataset, protocol, preset, and a hash of every field that differs from its default."""
    changed = {k: v for k, v in science(cfg).items() if v != getattr(DEFAULTS, k)}
    digest = hashlib.sha1(json.dumps(changed, sort_keys=True).encode()).hexdigest()[:8]
    return f"{cfg.dataset}-{cfg.protocol}-{cfg.preset}{'-quick' if cfg.quick else ''}-{digest}"


def describe(cfg):
    """One line: the protocol, the preset and your settings (the rest of the config is in config.json)."""
    mine = [f"{k}={getattr(cfg, k)}" for k in SCIENCE if cfg.origin.get(k) == "yours"]
    return f"protocol {cfg.protocol}, preset {cfg.preset}" + (f"; yours: {', '.join(mine)}" if mine else "")
