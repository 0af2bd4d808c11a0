# %%
"""Search SRC's sleep constants (and the baselines' options and training) on tuning seeds, with Optuna, scored on a
validation split: the last --validation training images of each class (1000 unless given), which no
training or sleep of the study reads. The test set is never read here; it is for reports only.

    python studies/tune.py                                   # SRC: CMA-ES, candidates slept together, study in tune.db
    python studies/tune.py --trials 200 --batch 8            # a longer study; 8 candidates per batched sleep
    python studies/tune.py --trials 200 --prune 50           # stop candidates below the complete trials' median early
    python studies/tune.py --method lwf --trials 120 --prune 75 --save-preset lwf
                                                     # LwF's options and its training together (TPE)
    python studies/tune.py --method ewc --fixed-training     # EWC's lambda alone, 1 to 1e9 (the decades first); si: SI's c
    python studies/tune.py --storage postgresql://u@host/db  # several machines share one study: run it on each
    python studies/tune.py --quick --trials 8                # a smoke test
    python studies/tune.py --trials 120 --save-preset tuned  # and save the best constants as presets/tuned.json
    python studies/tune.py --init torch --sleep-data current   # a variant

A baseline's search (--method ewc, si or lwf) runs Optuna's TPE over the method's own options (EWC's lambda
and SI's c from 1 to 1e9, LwF's strength, schedule, outputs distilled and temperature) and, unless
--fixed-training, over the training it is given (output and loss, learning rate, momentum, epochs, hidden
widths, biases, dropout, initialisation); the data (images per task, validation split) stay the protocol's,
the same for every method. --save-preset NAME saves its best as a preset of that training, run as
`python mnist_exp.py --preset NAME --methods METHOD`.

Candidates run seed by seed. With --prune P, one is stopped after a seed (not the last) when its mean
final accuracy so far is below the P-th percentile of the complete trials' at the same seed; it is
recorded as pruned, and the best trial is chosen among the complete ones only. Each seed's first
training is done once per run of this script and shared by every batch.

A study is stored as it goes (runs/tune-<study>/study.db): stop it at any time and run the same command
to resume. The best constants are written to runs/tune-<study>/best.json; only --save-preset NAME writes
presets/NAME.json, which `python mnist_exp.py --preset NAME` uses (a committed preset is replaced only
when named so): the tuned constants and every protocol option of the study that differs from mnist_exp.py's
defaults (--init torch, --sleep-data current, ...), except --validation, the data limits and
the sizes --quick sets unless given (--epochs, --n-per-task, ...): they say how the study measured, not
what it found. Protocol options (--dataset, --quick, --epochs, ...) are those of mnist_exp.py; tuning
seeds must differ from the report seeds 0-4.

Thresholds and alpha_scale are redundant: the membrane potential is linear in alpha and reset to 0, so
scaling alpha_scale and every beta by one factor leaves every spike unchanged. The search
keeps alpha_scale and moves the three betas, over 6 effective constants instead of 7.
"""
import argparse
import dataclasses
import functools
import hashlib
import json
import os
import sys
import time
from types import SimpleNamespace

import project  # noqa: F401  (first: the root's library on the import path, studies/project.py)
import config  # first: the pinned code paths and threads
import codepath
import data
import methods
import numpy as np
import optuna
import runner
import torch
from tqdm.auto import tqdm

# %% Config: the search; the protocol it evaluates is mnist_exp.py's (config.py)
p = config.Parser(prog="tune.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                  allow_abbrev=False)
p.add_argument("--method", default="src", choices=["src", "lwf-src", "ewc", "si", "lwf"],
               help="what to tune (default: src; lwf-src: the sleep's constants for a network trained with LwF's "
                    "distillation, whose options are the protocol's: --lwf-outputs, --lwf-schedule, ...)")
p.add_argument("--fixed-training", action="store_true",
               help="a baseline's search: only the method's own options, on the protocol's training")
p.add_argument("--trials", type=int, default=120,
               help="trials (candidates, complete or pruned) the study should hold in all (default: 120)")
p.add_argument("--batch", type=int, default=4, help="SRC candidates evaluated together (default: 4)")
p.add_argument("--tune-seeds", type=int, nargs="+", default=[100, 101, 102, 103],
               help="tuning seeds (default: 100 101 102 103)")
p.add_argument("--start", default="", metavar="PRESET",
               help="preset whose constants centre the search (default: the constants this command's protocol, preset "
                    "and options give, which are the authors' unless changed)")
p.add_argument("--decades", type=float, default=2.0, help="search range either side of them, in decades (default: 2)")
p.add_argument("--max-spikes-per-step", type=float, default=10.0,
               help="spike budget of a candidate's sleep, hidden and output layers together, per step on average: "
                    "the protocol fires ~0.1; denser candidates are stopped, which bounds the search's cost (default: 10)")
p.add_argument("--prune", type=float, default=0.0, metavar="P",
               help="after each tuning seed but the last, stop a candidate whose mean final accuracy so far is below "
                    "the P-th percentile of the complete trials' at the same seed, once 4 have one; 50 is median "
                    "pruning (default: 0, none)")
p.add_argument("--storage", default="", help="Optuna storage URL (default: sqlite:///runs/tune-<study>/study.db)")
p.add_argument("--stale-after", type=float, default=7200,
               help="seconds after which a trial still marked running counts as abandoned (default: 7200)")
p.add_argument("--study", default="", help="study name (default: method, dataset and a hash of the protocol)")
p.add_argument("--save-preset", default="", metavar="NAME",
               help="save the best constants as the preset NAME (replacing presets/NAME.json's entry for this dataset)")
p.add_argument("--preset-dir", default=os.path.join(config.ROOT, "presets"),
               help="where --save-preset writes (default: presets/, which mnist_exp.py reads)")
args, protocol_args = p.parse_known_args()
SLEEPS = args.method in ("src", "lwf-src")   # a search of the sleep's constants (CMA-ES, batched)
if args.method == "lwf-src":
    protocol_args += ["--methods", "lwf-src"]   # so that LwF's options apply
named = {a[2:].split("=")[0].replace("-", "_") for a in protocol_args if a.startswith("--")}   # given, not added below
if not any(a == "--validation" or a.startswith("--validation=") for a in protocol_args):   # held out by default
    protocol_args += ["--validation", "30" if "--quick" in protocol_args else "1000"]
if "--quick" in protocol_args and not any(a.startswith("--n-per-task") for a in protocol_args):
    protocol_args += ["--n-per-task", "450"]   # what --quick's 3000 images leave each task after that hold-out
cfg = config.resolve(config.DEFAULTS, protocol_args, "tune.py")
problems = [f"--{k} must be a whole number >= 1; got {getattr(args, k)}" for k in ("trials", "batch") if getattr(args, k) < 1]
if args.start and (args.start not in config.PRESETS or cfg.dataset not in config.PRESETS[args.start][1]):
    problems.append(f"--start must be a preset with constants for {cfg.dataset}: "
                    + ", ".join(k for k, v in config.PRESETS.items() if cfg.dataset in v[1]) + f"; got {args.start!r}")
if not 0 <= args.prune < 100:
    problems.append(f"--prune must be a percentile in [0, 100); got {args.prune}")
if not args.decades > 0:
    problems.append(f"--decades must be > 0; got {args.decades}")
if set(args.tune_seeds) & set(range(5)) or min(args.tune_seeds) < 0 or len(set(args.tune_seeds)) < len(args.tune_seeds):
    problems.append(f"--tune-seeds must be distinct whole numbers apart from the report seeds 0-4; got {args.tune_seeds}")
problems += [f"--{k.replace('_', '-')} must be > 0; got {getattr(args, k)}" for k in ("max_spikes_per_step", "stale_after")
             if not getattr(args, k) > 0]
if not SLEEPS and (args.batch != 4 or args.start or args.decades != 2.0):
    problems.append("--batch, --start and --decades apply only with --method src (a baseline's candidates run one by one)")
if args.fixed_training and SLEEPS:
    problems.append("--fixed-training applies only with --method ewc, si or lwf")
BUILT_IN = ("original", "replica", *(f"icarl-{size}" for size in config.ICARL))
if args.save_preset and (cfg.quick or args.save_preset in BUILT_IN or not args.save_preset.replace("-", "").isalnum()):
    problems.append(f"--save-preset takes a name of letters, digits and '-' other than {', '.join(BUILT_IN)}, and no "
                    f"--quick run saves one; got {args.save_preset!r}" + (" with --quick" if cfg.quick else ""))
elif args.save_preset and os.path.exists(os.path.join(args.preset_dir, f"{args.save_preset}.json")):
    held = config.read_presets(args.preset_dir).get(args.save_preset, (cfg.protocol, {}))[0]
    if held != cfg.protocol:   # one preset file belongs to one protocol
        problems.append(f"--save-preset {args.save_preset}: that preset belongs to --protocol {held}; a study of "
                        f"--protocol {cfg.protocol} needs another name")
if cfg.validation < 1:
    problems.append(f"--validation must be >= 1: a study scores on held-out training images, never on the test set; "
                    f"got {cfg.validation}")
if problems:
    config.fail("; ".join(problems), "tune.py")

# Log-uniform, --decades either side of the constants of the --start preset, or of the command's own:
# CMA-ES starts at the centre of the space, so its first distribution is centred on them.
start = config.PRESETS[args.start][1][cfg.dataset] if args.start else \
    dict(rate=cfg.rate, inc=cfg.inc, dec=cfg.dec, beta=cfg.beta, alpha_scale=cfg.alpha_scale) if SLEEPS else {}
if SLEEPS and len(start["beta"]) != len(cfg.beta):
    config.fail(f"--start {args.start}: its constants have {len(start['beta'])} thresholds and this network has "
                f"{len(cfg.beta)} layers; start from the command's own constants (--beta with one value per layer)", "tune.py")
CENTRE = dict(rate=start["rate"], inc=start["inc"], dec=start["dec"], **{f"beta_{l + 1}": b for l, b in enumerate(start["beta"])}) \
    if SLEEPS else {}
SPACE = {k: (c / 10 ** args.decades, c * 10 ** args.decades) for k, c in CENTRE.items()}
# A baseline's options, and the training it may need: {field: (kind, range or choices)}. EWC's and SI's strengths
# span the whole class-incremental range (at 1e9 the earlier tasks' weights are frozen in place).
OWN = dict(ewc=dict(ewc_lambda=("log", (1.0, 1e9))), si=dict(si_c=("log", (1e-2, 1e9))),
           lwf=dict(lwf_lambda=("log", (0.01, 100.0)), lwf_schedule=("choice", ("constant", "growing")),
                    lwf_outputs=("choice", ("earlier", "all")), lwf_temperature=("log", (0.5, 8.0))))
TRAINING = dict(output=("choice", ("relu-mse", "linear-ce")), lr=("log", (1e-3, 0.3)), momentum=("choice", (0.0, 0.5, 0.9)),
                epochs=("int", (1, 20)), hidden=("choice", ("256", "1000", "400-400", "1200-1200")),
                bias=("choice", (False, True)), dropout=("choice", (0.0, 0.25)), init=("choice", ("uniform", "torch")))
# (the training first: the temperature is drawn only once the output is known to be logits)
BASELINE_SPACE = {} if SLEEPS else dict({} if args.fixed_training else TRAINING, **OWN[args.method])
# LwF as published for this benchmark (Avalanche's split-MNIST example: one hidden layer of 256 with biases, plain
# SGD at lr 0.001 for 10 epochs, every output distilled at T = 1, strength (k - 1)^2 / k): a candidate of its own
PUBLISHED = dict(lwf=dict(lwf_lambda=1.0, lwf_schedule="growing", lwf_outputs="all", lwf_temperature=1.0, output="linear-ce",
                          lr=0.001, momentum=0.0, epochs=10, hidden="256", bias=True, dropout=0.0, init="torch"))

protocol = {k: v for k, v in config.science(cfg).items() if k not in {"rate", "inc", "dec", "beta", "preset"}}
# the study's name hashes what it searches and how it scores: a different search never resumes into it
search = dict(protocol, tune_seeds=args.tune_seeds, prune=args.prune,
              **(dict(centre=CENTRE, decades=args.decades, max_spikes=args.max_spikes_per_step) if SLEEPS
                 else dict(space=sorted(BASELINE_SPACE))))
study_name = args.study or f"{args.method}-{cfg.dataset}-{hashlib.sha1(json.dumps(search, sort_keys=True).encode()).hexdigest()[:8]}"
tune_dir = os.path.join(cfg.out, f"tune-{study_name}")   # everything this study writes, unless --save-preset
if not args.storage:   # the study's database goes in its folder; with --storage the folder waits for best.json
    runner.writable(tune_dir, "--out")
storage = args.storage or "sqlite:///" + os.path.join(tune_dir, "study.db")
try:
    data.ensure_files(cfg.dataset, cfg.data_dir)
except data.DataError as err:
    config.fail(str(err), "tune.py")
ctx = methods.prepare(cfg)
config.check_data(cfg, ctx)


# %% Objectives: final accuracy on all classes, mean over the tuning seeds
@functools.cache
def first_network(seed):
    """The network trained on task 1: the same for every candidate, so trained once per seed and study run."""
    return methods.train_task(methods.initial_net(seed, cfg, ctx), 1, seed, cfg, methods.seeded(ctx, seed, cfg))


def src_finals(candidates, seed):
    """Final accuracy of SRC for each candidate set of constants on one seed; the candidates share the
    first training and sleep together in the batched engine. A candidate stops with the accuracy it has
    when it breaks its network (a layer without positive weight, where alpha is undefined; training
    diverged after its sleep) or when its sleep fires more than the spike budget."""
    nets, finals, ctx_seed = {b: first_network(seed) for b in range(len(candidates))}, {}, methods.seeded(ctx, seed, cfg)
    score = lambda net: methods.evaluate(net, cfg, ctx_seed, analyses=False)["accuracy"]["all"]
    for k in range(1, len(ctx_seed.tasks) + 1):
        if k > 1:
            nets = {b: methods.train_task(net, k, seed, cfg, ctx_seed, distill=args.method == "lwf-src")
                    for b, net in nets.items()}
        for b in [b for b, net in nets.items() if not all(torch.isfinite(w).all() and w.max() > 0 for w in net.W)]:
            finals[b] = score(nets.pop(b))
        if not nets:
            break
        alive = [dataclasses.replace(cfg.sleep, rate=c["rate"], inc=c["inc"], dec=c["dec"],
                                     beta=tuple(c[f"beta_{l + 1}"] for l in range(len(cfg.beta))))
                 for c in (candidates[b] for b in nets)]
        slept, infos = methods.sleep_task(list(nets.values()), k, seed, cfg, ctx_seed, constants=alive,
                                          max_spikes=args.max_spikes_per_step * cfg.sleep.length(k))
        nets = dict(zip(nets, slept))
        for b, info in zip(list(nets), infos):
            if info["stopped"]:
                finals[b] = score(nets.pop(b))
    finals.update({b: score(net) for b, net in nets.items()})
    return [finals[b] for b in range(len(candidates))]


def checkpoint(trial, step, value):
    """Record a candidate's score after a seed; False when --prune stops it there: below the --prune-th
    percentile of the complete trials' scores at the same step (when 4 or more have one)."""
    trial.report(value, step)
    if not args.prune:
        return True
    others = [t.intermediate_values[step] for t in study.get_trials(deepcopy=False, states=(COMPLETE,))
              if step in t.intermediate_values]
    return len(others) < 4 or value >= np.percentile(others, args.prune)


def src_scores(trials, candidates):
    """Mean final accuracy over the tuning seeds of each candidate, None for those pruned. A candidate's
    checkpoint after its i-th seed (step i of its record) is its mean final accuracy so far."""
    finals = {b: [] for b in range(len(trials))}
    for i, seed in enumerate(args.tune_seeds, start=1):
        live = [b for b, f in finals.items() if f is not None]
        for b, final in zip(live, src_finals([candidates[b] for b in live], seed)):
            finals[b].append(final)
            if i < len(args.tune_seeds) and not checkpoint(trials[b], i, np.mean(finals[b])):
                finals[b] = None
    return [None if f is None else float(np.mean(f)) for f in finals.values()]


def suggest(trial):
    """A baseline's candidate: {field: value} from BASELINE_SPACE (the temperature only for logits)."""
    params = {}
    for name, (kind, space) in BASELINE_SPACE.items():
        if name == "lwf_temperature" and params.get("output", cfg.output) != "linear-ce":
            continue
        params[name] = trial.suggest_float(name, *space, log=True) if kind == "log" else \
            trial.suggest_int(name, *space) if kind == "int" else trial.suggest_categorical(name, space)
    return params


def candidate(params):
    """The config and data of a baseline's candidate (hidden widths "400-400" as a tuple)."""
    fields = dict(params, **({"hidden": tuple(int(h) for h in params["hidden"].split("-"))} if "hidden" in params else {}))
    run_cfg = dataclasses.replace(cfg, **fields)
    return run_cfg, SimpleNamespace(**dict(vars(ctx), sizes=(ctx.sizes[0], *run_cfg.hidden, ctx.outputs)))


def baseline_score(trial, params):
    """Mean final accuracy of a baseline's candidate over the tuning seeds, None when pruned after a seed."""
    run_cfg, run_ctx = candidate(params)
    finals = []
    for i, seed in enumerate(args.tune_seeds, start=1):
        rec, _ = methods.run_method(args.method, seed, run_cfg, run_ctx, shared={}, analyses=False)
        finals.append(rec["rows"][-1]["all"])
        if i < len(args.tune_seeds) and not checkpoint(trial, i, np.mean(finals)):
            return None
    return float(np.mean(finals))


# %% The study: resumable, shareable through its storage
optuna.logging.set_verbosity(optuna.logging.WARNING)
sampler = optuna.samplers.CmaEsSampler(seed=0, warn_independent_sampling=False) if SLEEPS else \
    optuna.samplers.TPESampler(seed=0)
try:
    study = optuna.create_study(study_name=study_name, storage=storage, sampler=sampler, direction="maximize",
                                load_if_exists=True)
except Exception as err:   # a storage URL optuna or its database driver cannot open
    config.fail(f"--storage {storage}: cannot open it ({type(err).__name__}: {str(err).splitlines()[0]})", "tune.py")
held = study.user_attrs.get("search")   # what the study searches and how it scores: a resume must match it
if held is not None and held != json.dumps(search, sort_keys=True):
    config.fail(f"study {study_name} was made with other settings (its tuning seeds, pruning, search space or protocol); "
                "run its own command to resume it, or name a new one with --study", "tune.py")
study.set_user_attr("search", json.dumps(search, sort_keys=True))
runner.writable(tune_dir, "--out")
COMPLETE, RUNNING, PRUNED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.RUNNING,
                             optuna.trial.TrialState.PRUNED)
for t in study.get_trials(states=(RUNNING,)):   # left running by a process that was stopped
    if time.time() - t.datetime_start.timestamp() > args.stale_after:
        study.tell(t.number, state=optuna.trial.TrialState.FAIL)
if SLEEPS and not study.trials:
    study.enqueue_trial(CENTRE)   # the authors' constants are the first candidate
elif not study.trials:   # a baseline: first the protocol's own settings, then its published form (LwF's) or, for
    # one strength alone, every decade
    own = {k: getattr(cfg, k) for k in BASELINE_SPACE}
    study.enqueue_trial(dict(own, hidden="-".join(map(str, cfg.hidden))) if "hidden" in own else own)
    if args.method in PUBLISHED and not args.fixed_training:
        study.enqueue_trial(PUBLISHED[args.method])
    if len(BASELINE_SPACE) == 1:
        (name, (_, (low, high))), = BASELINE_SPACE.items()
        for e in range(int(np.log10(low)), int(np.log10(high)) + 1):
            if 10.0 ** e != own[name]:
                study.enqueue_trial({name: 10.0 ** e})
done = lambda: len(study.get_trials(states=(COMPLETE, PRUNED)))   # candidates, complete or pruned
total = args.trials
bar = tqdm(total=total, initial=min(done(), total), desc=study_name, disable=cfg.quiet)
while done() < total:
    t0 = time.perf_counter()
    if SLEEPS:
        trials = [study.ask() for _ in range(args.batch)]
        candidates = [{k: t.suggest_float(k, *SPACE[k], log=True) for k in SPACE} for t in trials]
        scores = src_scores(trials, candidates)
    else:
        trials = [study.ask()]
        scores = [baseline_score(trials[0], suggest(trials[0]))]
    for t, score in zip(trials, scores):
        t.set_user_attr("seconds", (time.perf_counter() - t0) / len(trials))
        if score is None:
            study.tell(t, state=PRUNED)
        else:
            study.tell(t, float(score))
    bar.update(len(trials))
    bar.set_postfix(best=f"{study.best_value:.1f}", pruned=len(study.get_trials(states=(PRUNED,))))
bar.close()

# %% Result: the best trial, written to the study's folder (and saved as a preset with --save-preset)
best = study.best_trial
complete = len(study.get_trials(states=(COMPLETE,)))
print(f"best of {complete} complete trials ({done() - complete} pruned): {best.value:.2f} % "
      f"(mean final accuracy on seeds {args.tune_seeds}), trial {best.number}")
print(json.dumps(best.params, indent=1))
result = dict(tuning=dict(study=study_name, storage=storage, trials=complete, pruned=done() - complete, seeds=args.tune_seeds,
                          mean_final=best.value,
                          scored_on=f"validation: the last {cfg.validation} training images of each class",
                          code_path=codepath.CODE_PATH, saved_by="python studies/tune.py " + " ".join(sys.argv[1:])),
              params=best.params)
# the variant: the protocol options of the study that differ from the defaults, then what the search found
how = {"validation", "quick", "protocol", "train_limit", "test_limit", "probe_per_class", "methods"}   # how it measured
if cfg.quick:
    how |= set(config.QUICK) - named   # --quick's sizes, unless given
if not SLEEPS:   # a baseline's preset sets no sleep (mnist_exp.py refuses a method that sleeps with it)
    how |= set(config.SLEEP_FIELDS.values())
variant = {k: v for k, v in protocol.items() if k not in how and v != getattr(config.DEFAULTS, k)}
if SLEEPS:
    result["constants"] = dict(variant, rate=best.params["rate"], inc=best.params["inc"], dec=best.params["dec"],
                               beta=[best.params[f"beta_{l + 1}"] for l in range(len(cfg.beta))], alpha_scale=start["alpha_scale"],
                               sleep_input=cfg.sleep_input)
else:   # the method's options and its training ("hidden" back to a list of widths)
    found = dict(best.params, **({"hidden": [int(h) for h in best.params["hidden"].split("-")]} if "hidden" in best.params else {}))
    result["constants"] = dict(variant, **found)
    result["method"] = args.method
runner.write_text(os.path.join(tune_dir, "best.json"), json.dumps(result, indent=1))
print(f"best constants in {os.path.join(tune_dir, 'best.json')}")
if args.save_preset:
    path = os.path.join(args.preset_dir, f"{args.save_preset}.json")
    presets = json.load(open(path)) if os.path.exists(path) else {}
    presets[cfg.dataset] = dict(protocol=cfg.protocol, constants=result["constants"], tuning=result["tuning"])
    runner.writable(args.preset_dir, "--preset-dir")
    runner.write_text(path, json.dumps(presets, indent=1), "--preset-dir")
    print(f"saved as preset {args.save_preset!r} in {path}: python mnist_exp.py --preset {args.save_preset}")
