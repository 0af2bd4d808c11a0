"""The search of the sleep's constants, callable from one's own training loop: Optuna's CMA-ES over the
sleep's constants, log-uniform around a start (by default the constants src.calibrate sets from the network
itself), candidates slept together by the batched engine, pruning, storage a stopped search resumes from,
and a progress bar. studies/tune.py is one caller (the project's protocol); docs/own_search.py another (a
network trained in plain PyTorch).

Read top-down:
- `search_sleep`: the search of a user's loop, given as callables (training, validation score);
- `sleep_models`: several copies of a user's nn.Sequential slept at once (src.sleep_model, batched);
- `run_trials`: the search loop (batches of candidates, resumable, pruned), also studies/tune.py's
  baselines' search;
- `sleep_finals`: each candidate's final score on one seed, the loop of tasks with a sleep after each.

Thresholds and alpha_scale are redundant: the membrane potential is linear in alpha and reset to 0, so
scaling alpha_scale and every beta by one factor leaves every spike unchanged. The search keeps alpha_scale
and moves rate, inc, dec and each layer's beta.
"""
import copy
import dataclasses
import json
import os
import time

import codepath  # noqa: F401  (before torch and numba: the pinned code paths and threads)
import numpy as np
import optuna
import torch
from tqdm.auto import tqdm

import src

SEARCHED = ("rate", "inc", "dec", "beta")   # the sleep's constants searched (alpha_scale is redundant with the betas)
MAX_DECADES = 10.0                    # decades: beyond it the range's ends leave the floats' useful range
MAX_TASKS = 999                       # sleep_seed numbers the sleeps 1000 seed + task
optuna.logging.set_verbosity(optuna.logging.WARNING)   # (not a line per trial)
COMPLETE, RUNNING, PRUNED, WAITING = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.RUNNING,
                                      optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.WAITING)


# ---------------------------------------------------------------- the search of one's own loop

def search_sleep(train_task, score, n_tasks, *, model, images=None, sleep=None, start=None, seeds=(100,), trials=24,
                 batch=4, decades=2.0, prune=0.0, max_spikes_per_step=10.0, sleep_after=None, storage=None,
                 study="search_sleep", stale_after=7200.0, train_together=None, quiet=False):
    """Search the sleep's constants for your own loop of n_tasks tasks with a sleep after each; returns (the best
    src.Sleep, the optuna study: every trial's constants, its score and study.best_value, the best mean score).

    A candidate runs the loop on each tuning seed: model(seed), then for k = 1..n_tasks train_task(net, k, seed)
    and a sleep with the candidate's constants; its score is the mean over the seeds of score(net, seed), the
    final network's. The first task's training is done once per seed and shared by every candidate.
    - train_task(net, k, seed): net trained on task k, returned (it may train the one it gets: each candidate has
      its own copy; the optimiser is yours: a fresh one per task, or one kept on the network as an attribute,
      which the copy carries). It must give the same network for the same (net, k, seed): seed your data's
      shuffling from seed and k, or candidates differ by chance, not by their constants.
    - score(net, seed): the number to maximise, measured on a validation split (training images no training
      and no sleep reads), never the test set.
    - model(seed): the network before task 1, an nn.Sequential that src.sleep_model takes.
    - images(k): the images the sleep after task k reads (src.sleep_model's `images`: the task's training
      images, or every image seen so far); the sleep after task k on seed s draws its input from
      sleep_seed(s, k), so a plain run of the same constants is src.sleep_model(net, images(k), constants,
      task=k, seed=sleep_seed(s, k)) after each task (tests/test_search_sleep.py).
    - sleep(nets, k, seed, constants, max_spikes): instead of images, a sleep of your own (studies/tune.py's:
      the project's), returning the slept networks and each one's info (src.sleep's); constants: one src.Sleep
      per network, differing only in their SEARCHED values.
    - start: the src.Sleep the search centres on; default src.calibrate(the first seed's network after task 1,
      images(1), seed=that seed): its defaults' targets, docs/usage.md#calibrated-constants. Its fields other
      than rate, inc, dec and beta (the schedule, alpha_scale, ...) are every candidate's.
    - seeds: tuning seeds (default 100; keep them apart from the seeds you report); trials: candidates in all
      (complete or pruned; default 24); batch: candidates slept together (default 4); decades: the log-uniform
      range either side of the start's constants, in decades (default 2, as studies/tune.py's); prune P: after
      each seed but the last, a candidate whose mean score so far is below the P-th percentile of the complete
      trials' at the same seed (once 4 have one) stops (default 0, none); max_spikes_per_step: a candidate's
      sleep stops beyond this many spikes per step on average, hidden and output layers together (default 10:
      the protocol fires ~0.1), and keeps the score it has; sleep_after: the tasks after which a sleep runs
      (default all).
    - storage: a file (an SQLite database, made if absent) or an Optuna storage URL that keeps the study as it
      goes; run the same call again after a stop (Ctrl-C) and it resumes to the result an uninterrupted search
      gives (default None: in memory). study: its name there (default "search_sleep"), or an optuna.Study.
      A stored study made with other settings is refused. stale_after: seconds after which a trial still marked
      running, left by a process killed without Ctrl-C, is abandoned and its candidate drawn again (default 7200).
    - train_together(nets, k, seed): the candidates' networks trained on task k at once, a list in and a list out,
      each as train_task trains it alone, for every task after the first (default None: train_task one by one;
      studies/tune.py's trains them as one stacked network, models.stack).
    - quiet: no progress bar (by default one, over the trials).
    A bad argument is a one-line ValueError naming it."""
    check(train_task, score, n_tasks, model=model, images=images, sleep=sleep, start=start, seeds=seeds, trials=trials,
          batch=batch, decades=decades, prune=prune, max_spikes_per_step=max_spikes_per_step, sleep_after=sleep_after,
          storage=storage, study=study, stale_after=stale_after, train_together=train_together)
    steps = [(k, sleep_after is None or k in sleep_after) for k in range(1, n_tasks + 1)]
    if sleep is None:
        sleep = lambda nets, k, seed, constants, max_spikes: sleep_models(nets, images(k), constants, task=k,
                                                                          seed=sleep_seed(seed, k), max_spikes=max_spikes)
    firsts = {}

    def first(seed):   # the network after the first task, the same for every candidate
        if seed not in firsts:
            firsts[seed] = train_task(model(seed), steps[0][0], seed)
        return firsts[seed]

    if start is None:
        start = src.calibrate(first(seeds[0]), images(steps[0][0]), seed=seeds[0])
    net = first(seeds[0])
    layers = len((src.as_net(net) if isinstance(net, torch.nn.Module) else net).W)
    if len(start.beta) != layers:
        raise ValueError(f"start has {len(start.beta)} thresholds (beta) and the model {layers} Linear layers")
    middle = centre(start)
    record = json.dumps(dict(centre={k: float(v) for k, v in middle.items()}, decades=float(decades),
                             seeds=[int(s) for s in seeds], prune=float(prune), n_tasks=int(n_tasks),
                             sleep_after=None if sleep_after is None else sorted(int(k) for k in sleep_after),
                             max_spikes_per_step=float(max_spikes_per_step)), sort_keys=True)
    study = open_study(study, storage, record)
    abandon_stale(study, stale_after)
    if not study.trials:   # the start first: CMA-ES's first distribution is centred on it too
        study.enqueue_trial(middle)
    space = {k: (c / 10 ** decades, c * 10 ** decades) for k, c in middle.items()}

    def finals(candidates, seed):
        return sleep_finals([constants_of(start, c) for c in candidates], first(seed), steps,
                            train=(lambda nets, k: train_together(nets, k, seed)) if train_together else
                            lambda nets, k: [train_task(copy.deepcopy(net), k, seed) for net in nets],
                            sleep=lambda nets, k, each: sleep(nets, k, seed, each, max_spikes_per_step * each[0].length(k)),
                            score=lambda net: score(net, seed))
    run_trials(study, lambda trial: {k: trial.suggest_float(k, *r, log=True) for k, r in space.items()}, finals,
               list(seeds), trials, batch, prune,
               lambda seed: optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False), quiet)
    return constants_of(start, study.best_trial.params), study


def check(train_task, score, n_tasks, *, model, images, sleep, start, seeds, trials, batch, decades, prune,
          max_spikes_per_step, sleep_after, storage, study, stale_after, train_together):
    """A ValueError naming the first bad argument of search_sleep."""
    whole = lambda v, low: isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= low
    number = lambda v: isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)
    for name, f in (("train_task", train_task), ("score", score), ("model", model)):
        if not callable(f):
            raise ValueError(f"{name} must be a function; got {type(f).__name__}")
    for name, f in (("images", images), ("sleep", sleep), ("train_together", train_together)):
        if f is not None and not callable(f):
            raise ValueError(f"{name} must be a function; got {type(f).__name__}")
    if not whole(n_tasks, 1) or n_tasks > MAX_TASKS:
        raise ValueError(f"n_tasks must be a whole number from 1 to {MAX_TASKS}; got {n_tasks!r}")
    if (images is None) == (sleep is None):
        raise ValueError("images: give images (the sleep's images of each task) or sleep (a sleep of your own), "
                         "one of the two")
    if start is None and images is None:
        raise ValueError("start: with a sleep of your own, give the constants the search centres on (a src.Sleep)")
    if start is not None and not isinstance(start, src.Sleep):
        raise ValueError(f"start must be a src.Sleep or None (the calibrated constants); got {type(start).__name__}")
    if start is not None and not all(v > 0 for v in centre(start).values()):   # a log-uniform range has no centre at 0
        raise ValueError(f"start: the search is log-uniform around its constants, so each must be > 0; got {centre(start)}")
    if start is not None and sleep is None and start.input not in ("mean", "images"):
        raise ValueError(f"start: src.sleep_model shows the mean of the images or the images; input {start.input!r} "
                         "needs a sleep of your own")
    if isinstance(seeds, (str, bytes)) or not hasattr(seeds, "__len__") or not seeds or \
            not all(whole(s, 0) and s < 2 ** 32 for s in seeds) or len(set(seeds)) < len(seeds):
        raise ValueError(f"seeds must be distinct whole numbers from 0 to {2 ** 32 - 1}, at least one; got {seeds!r}")
    for name, v in (("trials", trials), ("batch", batch)):
        if not whole(v, 1):
            raise ValueError(f"{name} must be a whole number >= 1; got {v!r}")
    if not (number(decades) and 0 < decades <= MAX_DECADES):
        raise ValueError(f"decades must be > 0 and at most {MAX_DECADES:g}; got {decades!r}")
    if not (number(prune) and 0 <= prune < 100):
        raise ValueError(f"prune must be a percentile in [0, 100); got {prune!r}")
    for name, v in (("max_spikes_per_step", max_spikes_per_step), ("stale_after", stale_after)):
        if not (number(v) and v > 0):
            raise ValueError(f"{name} must be > 0; got {v!r}")
    if sleep_after is not None and (isinstance(sleep_after, (str, bytes)) or not hasattr(sleep_after, "__iter__") or
                                    not all(whole(k, 1) and k <= n_tasks for k in sleep_after)):
        raise ValueError(f"sleep_after must list tasks from 1 to n_tasks ({n_tasks}); got {sleep_after!r}")
    if storage is not None and not isinstance(storage, (str, os.PathLike)):
        raise ValueError(f"storage must be a file path or an Optuna storage URL; got {type(storage).__name__}")
    if not (isinstance(study, optuna.Study) or (isinstance(study, str) and study)):
        raise ValueError(f"study must be a name or an optuna.Study; got {study!r}")


def sleep_seed(seed, task):
    """The seed of the input of the sleep after `task` on tuning seed `seed` (1000 seed + task)."""
    return 1000 * seed + task


def centre(start):
    """The searched constants of a Sleep ({rate, inc, dec, beta_1, ...}: each threshold by itself)."""
    return dict(rate=start.rate, inc=start.inc, dec=start.dec, **{f"beta_{l + 1}": b for l, b in enumerate(start.beta)})


def constants_of(start, params):
    """The Sleep of a candidate: start with the searched constants params ({rate, inc, dec, beta_1, ...})."""
    return dataclasses.replace(start, rate=params["rate"], inc=params["inc"], dec=params["dec"],
                               beta=tuple(params[f"beta_{l + 1}"] for l in range(len(start.beta))))


def abandon_stale(study, after):
    """Fail the trials left running, more than `after` seconds ago, by a process that ended without a word (a kill):
    their candidates are drawn again. Those stopped by Ctrl-C (marked "stopped") are resumed as they were."""
    for t in study.get_trials(states=(RUNNING,)):
        if not t.user_attrs.get("stopped") and time.time() - t.datetime_start.timestamp() > after:
            study.tell(t.number, state=optuna.trial.TrialState.FAIL)


def open_study(study, storage, record):
    """The study (resumed when its storage holds it) that keeps the search's trials; refuses one made with
    other settings (record: what the search searches and how it scores)."""
    if not isinstance(study, optuna.Study):
        url = None if storage is None else str(storage) if "://" in str(storage) else "sqlite:///" + os.path.abspath(storage)
        try:
            study = optuna.create_study(study_name=study, storage=url, direction="maximize", load_if_exists=True)
        except Exception as err:   # a URL optuna or its database driver cannot open
            raise ValueError(f"storage {storage}: cannot open it ({type(err).__name__}: {str(err).splitlines()[0]})") from None
    held = study.user_attrs.get("sleep_search")
    if held is not None and held != record:
        raise ValueError(f"study {study.study_name} was made with other settings (its start, seeds, pruning, tasks or "
                         "spike budget); give its own to resume it, or another name")
    study.set_user_attr("sleep_search", record)
    return study


def sleep_models(models, images, constants, *, task, seed, max_spikes=None):
    """Copies of nn.Sequential models slept each with its own constants (one src.Sleep per model, differing only in
    src.SEARCHED), all at once by the batched engine, on the same input; returns (the slept copies, each sleep's
    info). One model sleeps as src.sleep_model(model, images, constants[0], task=task, seed=seed) does; with
    max_spikes, a sleep beyond that many spikes stops (info "stopped")."""
    nets = [src.as_net(m) for m in models]
    slept, infos = src.sleep(nets, src.sleep_images(images, nets[0]), constants[0].length(task),
                             torch.Generator().manual_seed(seed), list(constants), dropout=0.0, max_spikes=max_spikes)
    return [src.into_model(m, net) for m, net in zip(models, slept)], infos


# ---------------------------------------------------------------- the search loop

def run_trials(study, candidate_of, finals, seeds, trials, batch, prune, new_sampler, quiet=False):
    """Evaluate batches of candidates (candidate_of(trial): its values) until the study holds `trials` complete
    or pruned, never more; finals(candidates, seed): their scores on one seed (mean_finals). Each batch is drawn
    by a sampler seeded with the number of trials begun before it (new_sampler(seed)), so what it draws follows
    from the stored trials alone, not from this process's past; a batch stopped by Ctrl-C stays in the study,
    marked, and is the next run's first batch."""
    done = lambda: len(study.get_trials(deepcopy=False, states=(COMPLETE, PRUNED)))
    with tqdm(total=trials, initial=min(done(), trials), desc=study.study_name, disable=quiet) as bar:
        while done() < trials:
            t0, size = time.perf_counter(), min(batch, trials - done())
            asked = taken_up(study, size)
            try:
                study.sampler = new_sampler(sum(t.state != WAITING for t in study.get_trials(deepcopy=False)))
                while len(asked) < size:
                    asked.append(study.ask())
                scores = mean_finals(finals, [candidate_of(t) for t in asked], seeds,
                                     keep=lambda b, i, value: checkpoint(study, asked[b], i, value, prune))
                for t, score in zip(list(asked), scores):
                    t.set_user_attr("seconds", (time.perf_counter() - t0) / size)
                    if score is None:
                        study.tell(t, state=PRUNED)
                    else:
                        study.tell(t, score)
                    asked.remove(t)
            except KeyboardInterrupt:
                for t in asked:   # left running, marked: the next run evaluates them first
                    t.set_user_attr("stopped", True)
                raise
            bar.update(size)
            bar.set_postfix(best=f"{study.best_value:.1f}", pruned=len(study.get_trials(states=(PRUNED,))))


def taken_up(study, n):
    """Up to n trials a stopped run left in flight (marked "stopped"), taken up again under their own numbers
    and candidates, so that the study goes on as if it had not stopped."""
    left = [t for t in study.get_trials(deepcopy=False, states=(RUNNING,)) if t.user_attrs.get("stopped")][:n]
    trials = [optuna.trial.Trial(study, t._trial_id) for t in left]   # (optuna's handle of a running trial)
    for t in trials:
        t.set_user_attr("stopped", False)
    return trials


def mean_finals(finals, candidates, seeds, keep):
    """Mean final score over the seeds of each candidate, None for those stopped early, seed by seed:
    finals(candidates, seed) scores the candidates still running; after the i-th seed (not the last), a
    candidate b whose keep(b, i, mean so far) is False stops."""
    kept = {b: [] for b in range(len(candidates))}
    for i, seed in enumerate(seeds, start=1):
        live = [b for b, f in kept.items() if f is not None]
        for b, final in zip(live, finals([candidates[b] for b in live], seed) if live else []):
            kept[b].append(final)
            if i < len(seeds) and not keep(b, i, float(np.mean(kept[b]))):
                kept[b] = None
    return [None if f is None else float(np.mean(f)) for f in kept.values()]


def checkpoint(study, trial, step, value, prune):
    """Record a candidate's score after a seed; False when prune stops it there: below the prune-th percentile
    of the complete trials' scores at the same step (when 4 or more have one)."""
    trial.report(value, step)
    if not prune:
        return True
    others = [t.intermediate_values[step] for t in study.get_trials(deepcopy=False, states=(COMPLETE,))
              if step in t.intermediate_values]
    return len(others) < 4 or value >= np.percentile(others, prune)


# ---------------------------------------------------------------- one seed's candidates

def broken(net):
    """Training or a sleep left a layer not finite, or without a positive weight (where alpha is undefined)."""
    W = [m.weight for m in net.modules() if isinstance(m, torch.nn.Linear)] if isinstance(net, torch.nn.Module) else net.W
    return not all(torch.isfinite(w).all() and w.max() > 0 for w in W)


def sleep_finals(constants, first, steps, train, sleep, score):
    """Final score of each candidate sleep (constants: one src.Sleep each) on one seed: the search's core, plain
    values and functions. steps: the loop's schedule ((task trained, whether a sleep follows), methods.schedule);
    first: the network after the first step's training, the same for every candidate; train(nets, k): the networks
    trained on task k (a list in, a list out); sleep(nets, k, constants): the slept networks, slept together, and
    each sleep's info; score(net): its final score. A candidate stops with the score it has when its network breaks (a layer not finite or
    without positive weight) or its sleep stops (info "stopped": the spike budget)."""
    nets, finals = dict.fromkeys(range(len(constants)), first), {}
    for i, (k, sleeps) in enumerate(steps):
        if i and nets:
            nets = dict(zip(nets, train(list(nets.values()), k)))
        for b in [b for b, net in nets.items() if broken(net)]:
            finals[b] = score(nets.pop(b))
        if nets and sleeps:
            slept, infos = sleep(list(nets.values()), k, [constants[b] for b in nets])
            nets = dict(zip(nets, slept))
            for b, info in zip(list(nets), infos):
                if info["stopped"]:
                    finals[b] = score(nets.pop(b))
    finals.update({b: score(net) for b, net in nets.items()})
    return [finals[b] for b in range(len(constants))]
