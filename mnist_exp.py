# %%
"""Sleep Replay Consolidation on class-incremental split MNIST (Tadros et al., Nat. Commun. 2022).

Compares, from the same initial weights: sequential training (lower bound), SRC (sleep after each
task), model merging and parallel (joint) training (upper bound), and EWC, SI and iCaRL on request.
Writes one run folder, runs/<dataset>-<protocol>-<preset>-<hash>/, with the job files, tables, figures
and config.json; a re-run skips the jobs that are finished.

    python mnist_exp.py                                  # the default protocol, seed 0 (about a minute)
    python mnist_exp.py --seeds 0 1 2 3 4 --workers 2    # five seeds, two processes
    python mnist_exp.py --quick                          # a smoke test (seconds)
    python mnist_exp.py --help                           # every option

In a notebook or VS Code's interactive window: edit a value in the Config cell and run the cells; the
last cells train once and then sleep with other constants as often as you like. Which value runs:
defaults < --protocol < --preset < --quick's sizes < yours (a value written in the Config cell, where a
protocol's or preset's field reads None until you write one; then an option typed on the command line).
"""
import dataclasses
import os
import sys

import config  # first: it pins the CPU code paths and threads before torch loads (codepath.py)
import numpy as np
import methods
import results
import runner
from methods import evaluate, initial_net, prepare, run_method, sleep_task, train_task

# %% Config: edit a value and run the cells. None: the protocol's or preset's (its default: python mnist_exp.py
# --help); any value written there is yours. Each line is also an option (--sleep-steps 20000); their meaning:
# python mnist_exp.py --help (config.py).
cfg = config.Config(
    methods=("sequential", "src", "merging", "parallel"),   # also ewc, si, icarl, icarl-src, ncm, slda, analytic
    seeds=(0,),
    dataset="mnist",           # or fashion-mnist, mnist-fashion, permuted-mnist (with scenario="domain")
    scenario="class",          # or domain: every task on one shared head
    protocol="original",       # the authors' MATLAB; or replica (the earlier Python replica)
    preset=None,               # None: the protocol's own; or tuned, tuned-class-means, beyond, replay-10, ...
    quick=False,               # a smoke test: few images, one epoch, short sleeps
    # data and tasks
    classes_per_task=None, tasks=10, task_order="fixed", n_tasks=0, n_per_task=None, train_limit=0, test_limit=0, validation=0,
    score_on="test",
    replay=0.0,                # rehearsal: fraction of the earlier tasks' images
    memory=0, exemplars="herding", distillation=False,   # iCaRL
    # network and training
    hidden=None,               # one width per hidden layer: (400, 400), ...
    init=None, init_scale=0.01, bias=None,
    output=None,               # relu-mse or linear-ce
    dropout=None, inverted_dropout=None,
    lr=None, momentum=None, keep_momentum=None,
    batch_size=100,
    epochs=None, task_epochs=(),  # or one number per task: (2, 20)
    dtype="float32",
    # sleep
    rate=None,                 # input rate
    inc=None,                  # potentiation
    dec=None,                  # depression
    beta=None,                 # threshold multiplier per layer
    alpha_scale=None,          # scale of the data-based factors
    alpha=None, alpha_softmax=None,
    sleep_after=(),            # or the tasks after which to sleep: (2,)
    sleep_steps=None, sleep_steps_increment=None,
    dt=None, decay=None, mask_size=None,
    sleep_input=None,          # mean, class-means, replica or images
    sleep_data=None,           # seen, current, current+means
    sleep_samples=None, sleep_mask_fraction=None,
    plasticity=None, plasticity_factor=None, sleep_bias=None, sleep_exp=None,
    # the other methods
    ewc_lambda=10.0, si_c=0.01, si_xi=0.1, merge_init=None, slda_shrinkage=0.1, analytic_ridge=0.001,
    lwf_lambda=None, lwf_temperature=None, lwf_outputs=None, lwf_schedule=None,   # earlier or all, constant or growing
    lwf_lambdas=(),            # or one LwF strength per task
    # analyses
    sleep_window=0,            # N > 0: the spikes per N sleep steps and the accuracy during sleep
    probe_per_class=100, pca_components=10,
    # how to run
    out="runs", data_dir=config.DEFAULTS.data_dir, device="auto", engine="auto", workers=1,
    force=False, quiet=False, figures=True, png_dir="",
)
cfg = config.resolve(cfg, sys.argv[1:])   # the one precedence, and every check
print(config.describe(cfg))

# %% Run: every (method, seed) job the run folder does not hold yet
run_dir = runner.run(cfg)

# %% Tables: the folder's files from all its jobs; printed, this command's methods and seeds (and what else it holds)
results.tables(run_dir)
print(results.asked_table(run_dir, [(m, s) for s in cfg.seeds for m in cfg.methods]))

# %% Figures, rebuilt from the run folder alone (python visualize.py RUN_DIR does the same)
if cfg.figures:
    import visualize   # here: matplotlib's import is for runs that draw
    written = visualize.figures(run_dir, cfg.png_dir or os.path.join(run_dir, "png"))
    runner.log(run_dir, f"figures in {os.path.dirname(written[0])}")

# %% Explore (interactive only): train task 1 of the first seed once, and keep it
if config.INTERACTIVE:
    seed = cfg.seeds[0]
    ctx = methods.seeded(prepare(cfg), seed, cfg)   # the tasks in the seed's order
    init = initial_net(seed, cfg, ctx)
    trained = train_task(init, 1, seed, cfg, ctx)
    shared = {"init": (init, evaluate(init, cfg, ctx)), "train_1": (trained, evaluate(trained, cfg, ctx))}
    print("after task 1:", {k: round(v, 1) for k, v in shared["train_1"][1]["accuracy"].items()})

# %% Sleep the trained network with other constants: edit `trial` and re-run this cell alone
if config.INTERACTIVE:
    trial = config.resolve(dataclasses.replace(cfg, inc=2 * cfg.inc))   # for example: twice the potentiation
    slept, info = sleep_task(trained, 1, seed, trial, ctx)
    print(f"alpha {np.round(info['alpha'], 2).tolist()}, spikes per step "
          f"{[round(sum(c) / trial.sleep.length(1), 3) for c in info['spikes']]}")
    print("after sleep 1:", {k: round(v, 1) for k, v in evaluate(slept, trial, ctx, analyses=False)["accuracy"].items()})

# %% The whole SRC chain with those constants, reusing task 1's training (change only sleep constants in `trial`)
if config.INTERACTIVE:
    rec, _ = run_method("src", seed, trial, ctx, shared)
    print(f"diverged at {rec['diverged']} (weights not finite); scored as it is:" if "diverged" in rec else "final:",
          {k: round(v, 1) for k, v in rec["rows"][-1].items() if k != "stage"})
