"""Why EWC holds so little of permuted MNIST under the original protocol's training (docs/scenarios.md).

EWC adds lambda F (W - W*) to each weight's gradient. Under the protocol's SGD with momentum (heavy ball: learning
rate lr, momentum m) that pull alone is stable only while lr lambda F < 2 (1 + m) for every weight: above it the
stiffest weights oscillate with growing amplitude and training diverges. The bound is set by the largest Fisher
entry; this study measures the Fisher after task 1, the bound, and, for a grid of lambda, how many weights the
penalty holds at all and the accuracy on tasks 1 and 2 after task 2. On the validation split of a tuning seed
(the last training images of each class; the test set is not read).

    python studies/ewc_stability.py                             # permuted MNIST, tuning seed 100 (about a minute)
    python studies/ewc_stability.py --lambdas 10 1000 30000 --n-per-task 2000
"""
import argparse

import project  # noqa: F401  (first: the root's library on the import path, studies/project.py)
import config  # first: the pinned code paths and threads
import data
import methods
import models
import runner
import torch

PROG = "ewc_stability.py"
HELD = 0.01   # a weight the penalty holds: its pull moves it by at least 1 % of its distance to W* each step


def bound(fisher, lr, momentum):
    """The largest lambda for which lambda F (W - W*) alone, under SGD with heavy-ball momentum, pulls every weight
    back without oscillating ever wider: lr lambda F_max < 2 (1 + momentum)."""
    return 2 * (1 + momentum) / (lr * max(f.max().item() for f in fisher))


def measure(args):
    """The lines of the study's report: the Fisher's spread per layer, the bound, and a row per lambda."""
    argv = ["--dataset", "permuted-mnist", "--scenario", "domain", "--n-per-task", str(args.n_per_task),
            "--validation", str(args.validation), "--probe-per-class", "10", "--methods", "ewc", "--seeds", str(args.seed)]
    cfg = config.resolve(argv=argv, prog=PROG)
    ctx = methods.seeded(runner.checked_data(cfg), args.seed, cfg)   # (a task asked for more images than it has: one line)
    first = methods.train_task(methods.initial_net(args.seed, cfg, ctx), 1, args.seed, cfg, ctx)
    idx = data.task_indices(ctx.train_y, ctx.tasks[0], cfg.n_per_task or None)
    fisher = models.fisher(first, ctx.images(idx), ctx.output(ctx.train_y[idx]), cfg.dropout, ctx.outputs)
    every = torch.cat([f.flatten() for f in fisher]).double()
    lines = [f"Fisher information after task 1 (seed {args.seed}, {len(idx):,} images; lr {cfg.lr}, momentum {cfg.momentum})",
             "", "| layer | largest | median | 99th percentile | 99.9th |", "|---|---|---|---|---|"]
    for l, f in enumerate(fisher, 1):
        q = torch.quantile(f.flatten().double()[::max(1, f.numel() // 2_000_000)],
                           torch.tensor([0.5, 0.99, 0.999], dtype=torch.double))
        lines.append(f"| {l} | {f.max().item():.2e} | {q[0]:.2e} | {q[1]:.2e} | {q[2]:.2e} |")
    most = bound(fisher, cfg.lr, cfg.momentum)
    before = methods.evaluate(first, cfg, ctx, analyses=False)["accuracy"]["task_1"]
    lines += ["", f"Stable while lambda < 2 (1 + m) / (lr F_max) = {most:.3g}. Task 1 after its own training: {before:.1f} %.", "",
              f"| lambda | weights held (lr lambda F > {HELD}) | finite after task 2 | task 1 | task 2 |",
              "|---|---|---|---|---|"]
    for strength in args.lambdas:   # (train_task trains a copy: first's weights stay the anchor)
        net = methods.train_task(first, 2, args.seed, cfg, ctx, penalty=(fisher, first.W, strength))
        held = (cfg.lr * strength * every > HELD).double().mean().item()
        finite = all(torch.isfinite(w).all() for w in net.W)
        acc = methods.evaluate(net, cfg, ctx, analyses=False)["accuracy"] if finite else None
        lines.append(f"| {strength:.3g} | {100 * held:.2f} % | {'yes' if finite else 'no: diverged'} | "
                     + (f"{acc['task_1']:.1f} | {acc['task_2']:.1f} |" if acc else "| |"))
    return lines


if __name__ == "__main__":
    parser = config.Parser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=100, help="a tuning seed (default 100); the report seeds 0-9 are refused")
    parser.add_argument("--n-per-task", type=int, default=10000, help="training images of each task (default 10000)")
    parser.add_argument("--validation", type=int, default=100,
                        help="held-out training images of each class scored instead of the test set (default 100)")
    parser.add_argument("--lambdas", type=float, nargs="+", default=[10.0, 1e3, 1e4, 3e4, 1e6],
                        help="EWC strengths trained on task 2 (default 10 1000 10000 30000 1000000)")
    args = parser.parse_args()
    if 0 <= args.seed <= 9:
        config.fail(f"--seed {args.seed} is a report seed; give a tuning seed (not 0-9; the default is 100)", PROG)
    if args.validation < 1 or min(args.lambdas) <= 0:
        config.fail("--validation must be at least 1 and every --lambdas value positive", PROG)
    print("\n".join(measure(args)))
