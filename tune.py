# %%
"""Search SRC's sleep constants (and the strengths of EWC and SI) on tuning seeds, with Optuna, scored on a
validation split: the last --validation training images of each class (1000 unless given), which no
training or sleep of the study reads. The test set is never read here; it is for reports only.

    python tune.py                                   # SRC: CMA-ES, candidates slept together, study in tune.db
    python tune.py --trials 200 --batch 8            # a longer study; 8 candidates per batched sleep
    python tune.py --trials 200 --prune 50           # stop candidates below the complete trials' median early
    python tune.py --method ewc                      # EWC's lambda on a grid; --method si for SI's c
    python tune.py --storage postgresql://u@host/db  # several machines share one study: run it on each
    python tune.py --quick --trials 8                # a smoke test
    python tune.py --trials 120 --save-preset tuned  # and save the best constants as presets/tuned.json
    python tune.py --init torch --sleep-data current   # a variant

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

import config  # first: the pinned code paths and threads
import methods
import numpy as np
import optuna
import runner
import torch
from tqdm.auto import tqdm

# %% Config: the search; the protocol it evaluates is mnist_exp.py's (config.py)
p = config.Parser(prog="tune.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                  allow_abbrev=False)
p.add_argument("--method", default="src", choices=["src", "ewc", "si"], help="what to tune (default: src)")
p.add_argument("--trials", type=int, default=120,
               help="trials (candidates, complete or pruned) the study should hold in all (default: 120)")
p.add_argument("--batch", type=int, default=4, help="SRC candidates evaluated together (default: 4)")
p.add_argument("--tune-seeds", type=int, nargs="+", default=[100, 101, 102, 103],
               help="tuning seeds (default: 100 101 102 103)")
p.add_argument("--start", default="original", help="preset whose constants centre the search (default: original)")
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
named = {a[2:].split("=")[0].replace("-", "_") for a in protocol_args if a.startswith("--")}   # given, not added below
if not any(a == "--validation" or a.startswith("--validation=") for a in protocol_args):   # held out by default
    protocol_args += ["--validation", "30" if "--quick" in protocol_args else "1000"]
if "--quick" in protocol_args and not any(a.startswith("--n-per-task") for a in protocol_args):
    protocol_args += ["--n-per-task", "450"]   # what --quick's 3000 images leave each task after that hold-out
cfg = config.resolve(config.DEFAULTS, protocol_args, "tune.py")
problems = [f"--{k} must be a whole number >= 1; got {getattr(args, k)}" for k in ("trials", "batch") if getattr(args, k) < 1]
if args.start not in config.PRESETS or cfg.dataset not in config.PRESETS[args.start][1]:
    problems.append(f"--start must be a preset with constants for {cfg.dataset}: "
                    + ", ".join(k for k, v in config.PRESETS.items() if cfg.dataset in v[1]) + f"; got {args.start!r}")
if not 0 <= args.prune < 100:
    problems.append(f"--prune must be a percentile in [0, 100); got {args.prune}")
if not args.decades > 0:
    problems.append(f"--decades must be > 0; got {args.decades}")
if set(args.tune_seeds) & set(range(5)) or min(args.tune_seeds) < 0:
    problems.append(f"--tune-seeds must be whole numbers apart from the report seeds 0-4; got {args.tune_seeds}")
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

# Log-uniform, --decades either side of the constants of the --start preset (the authors' by default):
# CMA-ES starts at the centre of the space, so its first distribution is centred on them.
start = config.PRESETS[args.start][1][cfg.dataset]
CENTRE = dict(rate=start["rate"], inc=start["inc"], dec=start["dec"], **{f"beta_{l + 1}": b for l, b in enumerate(start["beta"])})
SPACE = {k: (c / 10 ** args.decades, c * 10 ** args.decades) for k, c in CENTRE.items()}
GRIDS = dict(ewc=[1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7], si=[0.01, 0.1, 1.0, 10.0, 100.0, 1000.0, 1e4])

protocol = {k: v for k, v in config.science(cfg).items() if k not in {"rate", "inc", "dec", "beta", "preset"}}
search = dict(protocol, start=args.start, decades=args.decades) if args.method == "src" else protocol
study_name = args.study or f"{args.method}-{cfg.dataset}-{hashlib.sha1(json.dumps(search, sort_keys=True).encode()).hexdigest()[:8]}"
tune_dir = os.path.join(cfg.out, f"tune-{study_name}")   # everything this study writes, unless --save-preset
runner.writable(tune_dir, "--out")
storage = args.storage or "sqlite:///" + os.path.join(tune_dir, "study.db")
try:
    config.data.ensure_files(cfg.dataset, cfg.data_dir)
except config.data.DataError as err:
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
            nets = {b: methods.train_task(net, k, seed, cfg, ctx_seed) for b, net in nets.items()}
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


def baseline_final(method, strength, seed):
    """Final accuracy of EWC or SI with the given strength on one seed."""
    field = "ewc_lambda" if method == "ewc" else "si_c"
    run_cfg = dataclasses.replace(cfg, **{field: strength})
    rec, _ = methods.run_method(method, seed, run_cfg, ctx, shared={})
    return rec["rows"][-1]["all"]


# %% The study: resumable, shareable through its storage
optuna.logging.set_verbosity(optuna.logging.WARNING)
sampler = optuna.samplers.CmaEsSampler(seed=0, warn_independent_sampling=False) if args.method == "src" else None
try:
    study = optuna.create_study(study_name=study_name, storage=storage, sampler=sampler, direction="maximize",
                                load_if_exists=True)
except Exception as err:   # a storage URL optuna or its database driver cannot open
    config.fail(f"--storage {storage}: cannot open it ({type(err).__name__}: {str(err).splitlines()[0]})", "tune.py")
COMPLETE, RUNNING, PRUNED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.RUNNING,
                             optuna.trial.TrialState.PRUNED)
for t in study.get_trials(states=(RUNNING,)):   # left running by a process that was stopped
    if time.time() - t.datetime_start.timestamp() > args.stale_after:
        study.tell(t.number, state=optuna.trial.TrialState.FAIL)
if args.method == "src" and not study.trials:
    study.enqueue_trial(CENTRE)   # the authors' constants are the first candidate
done = lambda: len(study.get_trials(states=(COMPLETE, PRUNED)))   # candidates, complete or pruned
total = args.trials if args.method == "src" else len(GRIDS[args.method])
bar = tqdm(total=total, initial=min(done(), total), desc=study_name, disable=cfg.quiet)
while done() < total:
    t0 = time.perf_counter()
    if args.method == "src":
        trials = [study.ask() for _ in range(args.batch)]
        candidates = [{k: t.suggest_float(k, *SPACE[k], log=True) for k in SPACE} for t in trials]
        scores = src_scores(trials, candidates)
    else:   # the next grid value that has no result yet
        tried = {t.params["strength"] for t in study.get_trials(states=(COMPLETE, RUNNING))}
        strength = next((s for s in GRIDS[args.method] if s not in tried), None)
        if strength is None:
            break
        study.enqueue_trial({"strength": strength})
        trials = [study.ask()]
        trials[0].suggest_float("strength", min(GRIDS[args.method]), max(GRIDS[args.method]), log=True)
        scores = [np.mean([baseline_final(args.method, strength, s) for s in args.tune_seeds])]
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
                          code_path=config.codepath.CODE_PATH, saved_by="python tune.py " + " ".join(sys.argv[1:])),
              params=best.params)
if args.method == "src":
    # the variant: the protocol options of the study that differ from the defaults, then the tuned constants
    how = {"validation", "quick", "protocol", "train_limit", "test_limit", "probe_per_class"}   # how it measured
    how |= set(config.QUICK) - named   # --quick's sizes, unless given
    variant = {k: v for k, v in protocol.items() if k not in how and v != getattr(config.DEFAULTS, k)}
    result["constants"] = dict(variant, rate=best.params["rate"], inc=best.params["inc"], dec=best.params["dec"],
                               beta=[best.params[f"beta_{l + 1}"] for l in range(len(cfg.beta))], alpha_scale=start["alpha_scale"],
                               sleep_input=cfg.sleep_input)
runner.write_text(os.path.join(tune_dir, "best.json"), json.dumps(result, indent=1))
print(f"best constants in {os.path.join(tune_dir, 'best.json')}")
if args.save_preset and args.method == "src":
    path = os.path.join(args.preset_dir, f"{args.save_preset}.json")
    presets = json.load(open(path)) if os.path.exists(path) else {}
    presets[cfg.dataset] = dict(protocol=cfg.protocol, constants=result["constants"], tuning=result["tuning"])
    runner.writable(args.preset_dir, "--preset-dir")
    runner.write_text(path, json.dumps(presets, indent=1), "--preset-dir")
    print(f"saved as preset {args.save_preset!r} in {path}: python mnist_exp.py --preset {args.save_preset}")
