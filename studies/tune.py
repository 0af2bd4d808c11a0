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
    python studies/tune.py --quick --trials 8 --one-by-one   # its twin: each candidate trained alone (the same trials)
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

A candidate runs the method's own schedule, as mnist_exp.py does (--sleep-after included). A study is
stored as it goes (runs/tune-<study>/study.db): stop it at any time (Ctrl-C) and run the same command to
resume. The batch in flight is evaluated first, and each batch's sampler is seeded from the trials begun
before it, so a resumed study ends where an uninterrupted one would. The best constants are written to runs/tune-<study>/best.json; only --save-preset NAME writes
presets/NAME.json, which `python mnist_exp.py --preset NAME` uses (a committed preset is replaced only
when named so): the tuned constants and every protocol option of the study that differs from mnist_exp.py's
defaults (--init torch, --sleep-data current, ...), except --validation, the data limits and
the sizes --quick sets unless given (--epochs, --n-per-task, ...): they say how the study measured, not
what it found. Protocol options (--dataset, --quick, --epochs, ...) are those of mnist_exp.py; tuning
seeds must differ from the report seeds 0-4.

The sleep's search is sleep_search.search_sleep (the one a user's own loop calls, docs/usage.md) on the
protocol's training, sleep and validation score; a baseline's runs in its loop, sleep_search.run_trials.
Thresholds and alpha_scale are redundant (sleep_search.py): the search keeps alpha_scale and moves the three
betas, over 6 effective constants instead of 7.
"""
import argparse
import dataclasses
import functools
import hashlib
import json
import os
import sys

import project  # noqa: F401  (first: the root's library on the import path, studies/project.py)
import config  # first: the pinned code paths and threads
import codepath
import constants
import methods
import models
import numpy as np
import optuna
import runner
import sleep_search

PROG = "tune.py"
ARGV = ["--quick", "--trials", "8"]   # the command's options when the cells are run one by one (a smoke test)
SLEEP_METHODS = tuple(m for m, spec in methods.METHODS.items() if spec.search and spec.sleep)   # searches of the
# sleep's constants (CMA-ES, batched)
SEARCHED, MAX_DECADES = sleep_search.SEARCHED, sleep_search.MAX_DECADES   # the constants searched; --decades' bound
# A baseline's options (its declared search, methods.METHODS), and the training it may need: {field: (kind, range
# or choices)}
OWN = {m: spec.search for m, spec in methods.METHODS.items() if spec.search and not spec.sleep}
TRAINING = dict(output=("choice", ("relu-mse", "linear-ce")), lr=("log", (1e-3, 0.3)), momentum=("choice", (0.0, 0.5, 0.9)),
                epochs=("int", (1, 20)), hidden=("choice", ("256", "1000", "400-400", "1200-1200")),
                bias=("choice", (False, True)), dropout=("choice", (0.0, 0.25)), init=("choice", ("uniform", "torch")))
# LwF as published for this benchmark (Avalanche's split-MNIST example: one hidden layer of 256 with biases, plain
# SGD at lr 0.001 for 10 epochs, every output distilled at T = 1, strength (k - 1)^2 / k): a candidate of its own
PUBLISHED = dict(lwf=dict(lwf_lambda=1.0, lwf_schedule="growing", lwf_outputs="all", lwf_temperature=1.0, output="linear-ce",
                          lr=0.001, momentum=0.0, epochs=10, hidden="256", bias=True, dropout=0.0, init="torch"))
COMPLETE, PRUNED = optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED


# %% Config: the search's options; the protocol it evaluates is mnist_exp.py's (config.py)
def parser():
    p = config.Parser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                      allow_abbrev=False)
    p.add_argument("--method", default="src", choices=[m for m, spec in methods.METHODS.items() if spec.search],
                   help="what to tune (default: src; lwf-src: the sleep's constants for a network trained with LwF's "
                        "distillation, whose options are the protocol's: --lwf-outputs, --lwf-schedule, ...)")
    p.add_argument("--fixed-training", action="store_true",
                   help="a baseline's search: only the method's own options, on the protocol's training")
    p.add_argument("--trials", type=int, default=120,
                   help="trials (candidates, complete or pruned) the study should hold in all (default: 120)")
    p.add_argument("--batch", type=int, default=4, help="SRC candidates evaluated together (default: 4)")
    p.add_argument("--one-by-one", action="store_true",
                   help="train a batch's SRC candidates one by one instead of as one stacked network (the same scores, "
                        "slower where the network is small: the stacked training's check)")
    p.add_argument("--tune-seeds", type=int, nargs="+", default=[100, 101, 102, 103],
                   help="tuning seeds (default: 100 101 102 103)")
    p.add_argument("--start", default="", metavar="PRESET",
                   help="preset whose constants centre the search (default: the constants this command's protocol, "
                        "preset and options give, which are the authors' unless changed)")
    p.add_argument("--decades", type=float, default=2.0,
                   help=f"search range either side of them, in decades, up to {MAX_DECADES:g} (default: 2)")
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
    return p


def parse(argv):
    """The search's options and the protocol's config of a command line, checked (one line, exit 2, on a bad
    one): (args, cfg, named), named being the protocol's fields the command gives itself."""
    args, protocol_args = parser().parse_known_args(argv)
    if args.method == "lwf-src":
        protocol_args += ["--methods", "lwf-src"]   # so that LwF's options apply
    named = {a[2:].split("=")[0].replace("-", "_") for a in protocol_args if a.startswith("--")}   # given, not added below
    if not any(a == "--validation" or a.startswith("--validation=") for a in protocol_args):   # held out by default
        protocol_args += ["--validation", "30" if "--quick" in protocol_args else "1000"]
    if "--quick" in protocol_args and not any(a.startswith("--n-per-task") for a in protocol_args):
        protocol_args += ["--n-per-task", "450"]   # what --quick's 3000 images leave each task after that hold-out
    cfg = config.resolve(config.DEFAULTS, protocol_args, PROG)
    problems = check(args, cfg)
    if problems:
        config.fail("; ".join(problems), PROG)
    return args, cfg, named


def start_constants(args, cfg):
    """The sleep constants the search centres on: the --start preset's, or the command's own; None when the
    preset has none for the dataset (a baseline's preset)."""
    if not args.start:
        return {k: getattr(cfg, k) for k in SEARCHED}
    held = config.PRESETS[args.start][1].get(cfg.dataset, {})
    return {k: held[k] for k in SEARCHED} if set(SEARCHED) <= set(held) else None


def start_sleep(args, cfg):
    """The Sleep the search centres on: the command's, with the start's constants."""
    return dataclasses.replace(cfg.sleep, **start_constants(args, cfg))


def check(args, cfg):
    """What is wrong with a search's options, one phrase each ([] when nothing)."""
    sleeps = args.method in SLEEP_METHODS
    problems = [f"--{k} must be a whole number >= 1; got {getattr(args, k)}" for k in ("trials", "batch")
                if getattr(args, k) < 1]
    if not 0 <= args.prune < 100:
        problems.append(f"--prune must be a percentile in [0, 100); got {args.prune}")
    if not 0 < args.decades <= MAX_DECADES:
        problems.append(f"--decades must be > 0 and at most {MAX_DECADES:g}; got {args.decades}")
    if config.seeds_problem(args.tune_seeds) or set(args.tune_seeds) & set(range(5)) or \
            len(set(args.tune_seeds)) < len(args.tune_seeds):
        problems.append(f"--tune-seeds must be distinct whole numbers from 5 to {2 ** 32 - 1} (apart from the report "
                        f"seeds 0-4); got {' '.join(map(str, args.tune_seeds))}")
    problems += [f"--{k.replace('_', '-')} must be > 0; got {getattr(args, k)}" for k in ("max_spikes_per_step", "stale_after")
                 if not getattr(args, k) > 0]
    if not sleeps and (args.batch != 4 or args.start or args.decades != 2.0 or args.one_by_one):
        problems.append(f"--batch, --one-by-one, --start and --decades apply only to a sleep's search (--method "
                        f"{' or '.join(SLEEP_METHODS)}; a baseline's candidates run one by one)")
    if sleeps and args.method not in cfg.methods:
        problems.append(f"--methods: a search of --method {args.method} runs {args.method}; got --methods "
                        f"{','.join(cfg.methods)}")
    if args.fixed_training and sleeps:
        problems.append("--fixed-training applies only with --method ewc, si or lwf")
    if sleeps and args.start and (args.start not in config.PRESETS or start_constants(args, cfg) is None):
        problems.append(f"--start must be a preset with sleep constants for {cfg.dataset}: " + ", ".join(
            k for k, (_, held) in config.PRESETS.items() if set(SEARCHED) <= set(held.get(cfg.dataset, {})))
            + f"; got {args.start!r}")
    elif sleeps and cfg.sleep is not None:   # (none when --methods has no sleep: refused above)
        start = start_constants(args, cfg)
        if len(start["beta"]) != len(cfg.beta):
            problems.append(f"--start {args.start}: its constants have {len(start['beta'])} thresholds and this network "
                            f"has {len(cfg.beta)} layers; start from the command's own constants (--beta with one value "
                            "per layer)")
        elif not all(v > 0 for v in centre(args, cfg).values()):   # a log-uniform range has no centre at 0
            problems.append(f"{'--start ' + args.start if args.start else '--rate, --inc, --dec and --beta'}: the search "
                            f"is log-uniform around these constants, so each must be > 0; got {centre(args, cfg)}")
    built_in = tuple(constants.BUILT_IN)   # (a file of that name would hide the built-in preset)
    if args.save_preset and (cfg.quick or args.save_preset in built_in or not args.save_preset.replace("-", "").isalnum()):
        problems.append(f"--save-preset takes a name of letters, digits and '-' other than {', '.join(built_in)}, and no "
                        f"--quick run saves one; got {args.save_preset!r}" + (" with --quick" if cfg.quick else ""))
    elif args.save_preset and os.path.exists(os.path.join(args.preset_dir, f"{args.save_preset}.json")):
        held = config.read_presets(args.preset_dir).get(args.save_preset, (cfg.protocol, {}))[0]
        if held != cfg.protocol:   # one preset file belongs to one protocol
            problems.append(f"--save-preset {args.save_preset}: that preset belongs to --protocol {held}; a study of "
                            f"--protocol {cfg.protocol} needs another name")
    if cfg.validation < 1:
        problems.append(f"--validation must be >= 1: a study scores on held-out training images, never on the test set; "
                        f"got {cfg.validation}")
    return problems


# %% The search space: a baseline's options and training (the sleep's: sleep_search.search_sleep's, log-uniform,
# --decades either side of the start's constants)
def centre(args, cfg):
    """The searched constants of the start ({rate, inc, dec, beta_1, ...})."""
    return sleep_search.centre(start_sleep(args, cfg))


def search_space(args, cfg):
    """{field: (kind, range or choices)} of a baseline's search (the training first: a baseline's temperature is
    drawn only once the output is known to be logits)."""
    return dict({} if args.fixed_training else TRAINING, **OWN[args.method])


def suggest(trial, space, cfg):
    """A candidate: {field: value} from the space (the temperature only for logits); a trial taken up again
    gives the values it holds."""
    params = {}
    for name, (kind, values) in space.items():
        if name == "lwf_temperature" and params.get("output", cfg.output) != "linear-ce":
            continue
        params[name] = trial.suggest_float(name, *values, log=True) if kind == "log" else \
            trial.suggest_int(name, *values) if kind == "int" else trial.suggest_categorical(name, values)
    return params


# %% Objectives: final accuracy on all classes, the mean over the tuning seeds
def src_search(args, cfg, ctx, study):
    """The sleep's search (sleep_search.search_sleep) in study: each candidate along the method's own schedule, as
    mnist_exp.py runs it (--sleep-after included), scored on the validation split; returns (best Sleep, study).
    A batch's candidates share each seed's minibatches and dropout masks, so they train as one stacked network
    (models.stack: the element-wise work batched, each product the network's own; each gives the numbers it gives
    alone), unless --one-by-one."""
    spec = methods.METHODS[args.method]
    seeded = functools.cache(lambda seed: methods.seeded(ctx, seed, cfg))
    return sleep_search.search_sleep(
        lambda net, k, seed: methods.train_task(net, k, seed, cfg, seeded(seed), distill=spec.distill),
        lambda net, seed: methods.evaluate(net, cfg, seeded(seed), analyses=False)["accuracy"]["all"], len(ctx.tasks),
        model=lambda seed: methods.initial_net(seed, cfg, ctx),
        sleep=lambda nets, k, seed, each, max_spikes: methods.sleep_task(nets, k, seed, cfg, seeded(seed), constants=each,
                                                                         max_spikes=max_spikes),
        sleep_after=[k for k, sleeps in methods.schedule(spec, cfg, len(ctx.tasks)) if sleeps],
        start=start_sleep(args, cfg), seeds=args.tune_seeds, trials=args.trials, batch=args.batch, decades=args.decades,
        prune=args.prune, max_spikes_per_step=args.max_spikes_per_step, study=study, quiet=cfg.quiet,
        train_together=None if args.one_by_one else lambda nets, k, seed: models.unstack(methods.train_task(
            models.stack(nets), k, seed, cfg, seeded(seed), distill=spec.distill)))


def baseline_finals(method, cfg, ctx):
    """finals(candidates, seed) of a baseline's search: each candidate's final accuracy, run as mnist_exp.py runs it."""
    def finals(candidates, seed):
        return [methods.run_method(method, seed, *candidate(cfg, ctx, params), shared={}, analyses=False)[0]["rows"][-1]["all"]
                for params in candidates]
    return finals


def candidate(cfg, ctx, params):
    """The config and data of a baseline's candidate (hidden widths "400-400" as a tuple)."""
    fields = dict(params, **({"hidden": tuple(int(h) for h in params["hidden"].split("-"))} if "hidden" in params else {}))
    run_cfg = dataclasses.replace(cfg, **fields)
    return run_cfg, dataclasses.replace(ctx, sizes=(ctx.sizes[0], *run_cfg.hidden, ctx.outputs))


# %% The study: resumable, shareable through its storage
def protocol(cfg):
    """The study's protocol: the run folder's fields, less the searched constants and the preset."""
    return {k: v for k, v in config.science(cfg).items() if k not in {*SEARCHED, "preset"}}


def search_record(args, cfg):
    """What the study searches and how it scores (its name hashes it): a different search never resumes into it."""
    return dict(protocol(cfg), tune_seeds=args.tune_seeds, prune=args.prune,
                **(dict(centre=centre(args, cfg), decades=args.decades, max_spikes=args.max_spikes_per_step)
                   if args.method in SLEEP_METHODS else dict(space=sorted(search_space(args, cfg)))))


def open_study(args, cfg):
    """The study (resumed when its storage holds it) and its folder; refuses one made with other settings."""
    search = json.dumps(search_record(args, cfg), sort_keys=True)
    name = args.study or f"{args.method}-{cfg.dataset}-{hashlib.sha1(search.encode()).hexdigest()[:8]}"
    folder = os.path.join(cfg.out, f"tune-{name}")   # everything this study writes, unless --save-preset
    if not args.storage:   # the study's database goes in its folder; with --storage the folder waits for best.json
        runner.writable(folder, "--out")
    storage = args.storage or "sqlite:///" + os.path.join(folder, "study.db")
    try:
        study = optuna.create_study(study_name=name, storage=storage, direction="maximize", load_if_exists=True)
    except Exception as err:   # a storage URL optuna or its database driver cannot open
        config.fail(f"--storage {storage}: cannot open it ({type(err).__name__}: {str(err).splitlines()[0]})", PROG)
    held = study.user_attrs.get("search")
    if held is not None and held != search:
        config.fail(f"study {name} was made with other settings (its tuning seeds, pruning, search space or protocol); "
                    "run its own command to resume it, or name a new one with --study", PROG)
    study.set_user_attr("search", search)
    runner.writable(folder, "--out")
    return study, folder, storage


def first_candidates(study, args, cfg, space):
    """A baseline's new study's first candidates: its protocol settings, then its published form (LwF's) or, for
    one strength alone, every decade (SRC's: the start's constants, sleep_search.search_sleep)."""
    own = {k: getattr(cfg, k) for k in space}
    study.enqueue_trial(dict(own, hidden="-".join(map(str, cfg.hidden))) if "hidden" in own else own)
    if args.method in PUBLISHED and not args.fixed_training:
        study.enqueue_trial(PUBLISHED[args.method])
    if len(space) == 1:
        (name, (_, (low, high))), = space.items()
        for e in range(int(np.log10(low)), int(np.log10(high)) + 1):
            if 10.0 ** e != own[name]:
                study.enqueue_trial({name: 10.0 ** e})


# %% Result: the best trial, written to the study's folder (and saved as a preset with --save-preset)
def result(study, args, cfg, named, storage, command):
    """best.json's content: the best complete trial, how it was found, and the variant it belongs to."""
    best = study.best_trial
    complete = len(study.get_trials(states=(COMPLETE,)))
    pruned = len(study.get_trials(states=(PRUNED,)))
    out = dict(tuning=dict(study=study.study_name, storage=storage, trials=complete, pruned=pruned, seeds=args.tune_seeds,
                           mean_final=best.value, scored_on=f"validation: the last {cfg.validation} training images of each class",
                           code_path=codepath.CODE_PATH, saved_by=command), params=best.params)
    # the variant: the protocol options of the study that differ from the defaults, then what the search found
    how = {"validation", "quick", "protocol", "train_limit", "test_limit", "probe_per_class", "methods"}   # how it measured
    if cfg.quick:
        how |= set(config.QUICK) - named   # --quick's sizes, unless given
    if args.method not in SLEEP_METHODS:   # a baseline's preset sets no sleep (mnist_exp.py refuses a method that sleeps with it)
        how |= set(methods.SLEEP_FIELDS.values())
    variant = {k: v for k, v in protocol(cfg).items() if k not in how and v != getattr(config.DEFAULTS, k)}
    if args.method in SLEEP_METHODS:   # (alpha_scale: the one the candidates slept with)
        out["constants"] = dict(variant, rate=best.params["rate"], inc=best.params["inc"], dec=best.params["dec"],
                                beta=[best.params[f"beta_{l + 1}"] for l in range(len(cfg.beta))],
                                alpha_scale=cfg.sleep.alpha_scale, sleep_input=cfg.sleep_input)
    else:   # the method's options and its training ("hidden" back to a list of widths)
        found = dict(best.params, **({"hidden": [int(h) for h in best.params["hidden"].split("-")]} if "hidden" in best.params else {}))
        out["constants"] = dict(variant, **found)
        out["method"] = args.method
    return out


def save(out, folder, args, cfg):
    """Write best.json (result's) to the study's folder and, with --save-preset, the preset."""
    runner.write_text(os.path.join(folder, "best.json"), json.dumps(out, indent=1))
    print(f"best constants in {os.path.join(folder, 'best.json')}")
    if args.save_preset:
        path = os.path.join(args.preset_dir, f"{args.save_preset}.json")
        presets = json.load(open(path)) if os.path.exists(path) else {}
        presets[cfg.dataset] = dict(protocol=cfg.protocol, constants=out["constants"], tuning=out["tuning"])
        runner.writable(args.preset_dir, "--preset-dir")
        runner.write_text(path, json.dumps(presets, indent=1), "--preset-dir")
        print(f"saved as preset {args.save_preset!r} in {path}: python mnist_exp.py --preset {args.save_preset}")


# %% Run: python studies/tune.py OPTIONS (cell by cell: ARGV above)
def main(argv):
    args, cfg, named = parse(argv)
    ctx = runner.checked_data(cfg)
    study, folder, storage = open_study(args, cfg)
    sleep_search.abandon_stale(study, args.stale_after)   # trials left running by a process killed without a word
    try:
        if args.method in SLEEP_METHODS:
            src_search(args, cfg, ctx, study)
        else:   # a baseline's candidates one by one, drawn by TPE
            space = search_space(args, cfg)
            if not study.trials:
                first_candidates(study, args, cfg, space)
            sleep_search.run_trials(study, lambda trial: suggest(trial, space, cfg), baseline_finals(args.method, cfg, ctx),
                                    args.tune_seeds, args.trials, 1, args.prune,
                                    lambda seed: optuna.samplers.TPESampler(seed=seed), cfg.quiet)
    except KeyboardInterrupt:
        if config.INTERACTIVE:
            raise
        print(f"{PROG}: stopped; the study keeps its finished trials and the batch in flight, which the same command "
              "evaluates first when it resumes", file=sys.stderr)
        raise SystemExit(130)
    out, best = result(study, args, cfg, named, storage, " ".join(["python studies/tune.py", *argv])), study.best_trial
    print(f"best of {out['tuning']['trials']} complete trials ({out['tuning']['pruned']} pruned): {best.value:.2f} % "
          f"(mean final accuracy on seeds {args.tune_seeds}), trial {best.number}")
    print(json.dumps(best.params, indent=1))
    save(out, folder, args, cfg)


if __name__ == "__main__":
    main(ARGV if config.INTERACTIVE else sys.argv[1:])
