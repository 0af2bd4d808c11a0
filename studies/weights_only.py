"""Leads for a sleep that keeps nothing but the weights, probed on the validation split.

`--preset beyond-weights-only` keeps nothing between tasks besides the network: the sleep after task k reads only
task k's training images. Each lead below changes one thing of it, still keeping nothing, and is scored on
the held-out training images of the tuning seeds (the test set is not read):

- none: the preset as it is (the reference; the same numbers as mnist_exp.py with --validation);
- align: weight aligning after each sleep: the output weights of the newest classes rescaled to the mean
  norm of the earlier classes' (a correction of the bias towards the newest classes from the weights alone);
- dreams: the sleep shows one "dream" per earlier class, made at the start of task k by inverting the
  network kept from task k - 1 (an image in [0, 1] that its outputs classify as that class among the
  earlier ones), brightness matched to the task's images, and the mean image of each of task k's classes
  (two changes: those class means replace the one mean image of task k);
- lwf: training with LwF's distillation from the network kept from task k - 1 (the preset's strength);
- interpolate: the weights after the sleep mixed with those before it, gamma slept + (1 - gamma) trained;
- interleave: each epoch of training followed by a sleep of T_k / epochs steps.

    python studies/weights_only.py --seeds 100 101 102 103 --workers 2

writes runs/weights-only-leads/results.json (config, per-seed finals per lead) and prints a table.
"""
import concurrent.futures
import multiprocessing
import json
import os
import sys

import project  # noqa: F401  (first: the root's library on the import path, studies/project.py)
import codepath  # noqa: F401  (before torch: the pinned code paths and threads)
import torch

import analysis
import config
import methods
import models
import runner
import src

LEADS = ("none", "align", "dreams", "lwf", "interpolate", "interleave")


def align(net, k, ctx):
    """Weight aligning: rescale the output rows of task k's classes to the earlier classes' mean norm."""
    old, new = list(sum(ctx.tasks[:k - 1], ())), list(ctx.tasks[k - 1])
    if old:
        norms = net.W[-1][:, :net.W[-1].shape[1] - net.bias].norm(dim=1)
        net.W[-1][new] *= norms[old].mean() / norms[new].mean()
    return net


def dreams(net, classes, dropout, generator, steps=300):
    """One image per class in `classes` that `net` (evaluation mode) classifies as that class among them:
    Adam on the logits of a sigmoid image, from a dark image with a little noise."""
    u = (torch.randn(len(classes), net.W[0].shape[1] - net.bias, generator=generator) * 0.1 - 3)
    u = u.to(net.W[0].device).requires_grad_()
    optimiser = torch.optim.Adam([u], lr=0.1)
    for _ in range(steps):
        logits = models.forward(net, torch.sigmoid(u), dropout)[-1][:, list(classes)]
        loss = torch.nn.functional.cross_entropy(logits, torch.arange(len(classes), device=logits.device))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return torch.sigmoid(u).detach()


def run_lead(lead, seed, cfg, args):
    """The final accuracy (all classes, validation split) of one lead on one seed."""
    torch.set_num_threads(max(1, torch.get_num_threads() // args.workers))
    ctx = methods.prepare(cfg)
    c, net = cfg.sleep, methods.initial_net(seed, cfg, ctx)
    for k in range(1, len(ctx.tasks) + 1):
        earlier = sum(ctx.tasks[:k - 1], ())
        idx = methods.training_set(k, seed, cfg, ctx)
        x, y = ctx.train_x[idx], ctx.train_y[idx]
        if lead == "interleave":   # each epoch, then a sleep of its share of T_k (each sleep its own stream)
            net, gen = net.clone(), methods.generator(seed, "train", k, ctx.device)
            if not cfg.keep_momentum:
                net.vW = [torch.zeros_like(v) for v in net.vW]
            for e in range(cfg.epochs):
                models.train(net, x, y, epochs=1, batch_size=cfg.batch_size, lr=cfg.lr, momentum=cfg.momentum,
                             dropout=cfg.dropout, n_classes=ctx.n_classes, generator=gen)
                net, _ = src.sleep(net, x, max(1, c.length(k) // cfg.epochs),
                                   methods.generator(seed, "interleave", (k - 1) * cfg.epochs + e + 1), c,
                                   dropout=cfg.dropout, engine=cfg.engine)
            continue
        images = None
        if lead == "dreams":
            means = torch.stack([x[y == j].mean(0) for j in ctx.tasks[k - 1]])
            images = means
            if earlier:
                with torch.enable_grad():
                    dream = dreams(net, earlier, cfg.dropout, methods.generator(seed, "dreams", k))
                dream = (dream * means.mean() / dream.mean(1, keepdim=True)).clamp(0, 1)
                images = torch.cat([dream, means])
        trained = methods.train_task(net, k, seed, cfg, ctx, distill=lead == "lwf")
        net, _ = src.sleep(trained, x, c.length(k), methods.generator(seed, "sleep", k), c, dropout=cfg.dropout,
                           images=images, engine=cfg.engine)
        if lead == "align":
            net = align(net, k, ctx)
        if lead == "interpolate":
            net = net.with_weights([args.gamma * a + (1 - args.gamma) * b for a, b in zip(net.W, trained.W)], net.vW)
    return methods.evaluate(net, cfg, ctx, analyses=False)["accuracy"]["all"]


def main(argv):
    p = config.Parser(prog="weights_only.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--leads", default=",".join(LEADS), help=f"comma-separated, from {', '.join(LEADS)}")
    p.add_argument("--seeds", type=int, nargs="+", default=[100, 101, 102, 103], help="tuning seeds")
    p.add_argument("--workers", type=int, default=1, help="processes")
    p.add_argument("--gamma", type=float, default=0.75, help="interpolate: the slept weights' share")
    p.add_argument("--out", default="runs", help="folder for weights-only-leads/")
    args = p.parse_args(argv)
    leads = args.leads.split(",")
    bad = [lead for lead in leads if lead not in LEADS]
    if bad or args.workers < 1 or any(s < 0 for s in args.seeds) or not 0 <= args.gamma <= 1:
        config.fail(f"--leads takes {', '.join(LEADS)}, --workers >= 1, --seeds >= 0 and --gamma in [0, 1]; got "
                    f"{args.leads}, {args.workers}, {' '.join(map(str, args.seeds))}, {args.gamma}", "weights_only.py")
    if "gamma" in {a[2:].split("=")[0] for a in argv if a.startswith("--")} and "interpolate" not in leads:
        config.fail("--gamma applies only with the lead interpolate (--leads ...,interpolate)", "weights_only.py")
    cfg = config.resolve(config.DEFAULTS, ["--preset", "beyond-weights-only", "--methods", "src", "--validation", "1000"],
                         "weights_only.py")
    run_dir = os.path.join(args.out, "weights-only-leads")
    runner.writable(run_dir, "--out")
    jobs = [(lead, seed) for lead in leads for seed in args.seeds]
    with concurrent.futures.ProcessPoolExecutor(args.workers, multiprocessing.get_context("spawn")) as pool:
        finals = list(pool.map(run_lead, *zip(*jobs), [cfg] * len(jobs), [args] * len(jobs)))
    results = {lead: [f for (l, _), f in zip(jobs, finals) if l == lead] for lead in leads}
    runner.write_text(os.path.join(run_dir, "results.json"), json.dumps(dict(
        config=config.science(cfg), seeds=args.seeds, gamma=args.gamma,
        split="validation: the last 1000 training images of each class", finals=results), indent=1))
    print("| lead | final on validation (%) | per seed |\n|---|---|---|")
    for lead, f in results.items():
        print(f"| {lead} | {analysis.text(*analysis.mean_std(f))} | {', '.join(f'{v:.1f}' for v in f)} |")


if __name__ == "__main__":
    main(sys.argv[1:])
