# %%
"""The floor of an experiment's time (a benchmark, not a test): its matrix products, counted from the shapes
its config gives, at this machine's measured rate; then the run itself, end to end, and their ratio.

What is counted, per method, seed and stage, as methods.run_method computes it: training (forward and
backward of every image, every epoch, of the set each task trains on), every evaluation (a forward pass
of every evaluation image), and the sleeps' data-based scale factors (a forward pass of every image each
sleep reads). The rate is that of a training step's matrix products at the protocol's batch and layer
sizes, on the pinned threads. The run is `python mnist_exp.py --out TMP ...` in a fresh folder, wall time.
Writes runs/bench_speed.md (--out). Options it does not know are mnist_exp.py's: the count follows them.

    python studies/bench_speed.py                      # the default run: its floor and its time (about a minute)
    python studies/bench_speed.py --runs 3 --against ../src-4ec69b9
                                                       # three runs each, alternating with another checkout's
    python studies/bench_speed.py --no-run             # the floor and the rate alone
    python studies/bench_speed.py --time 43.3          # the floor against a time measured elsewhere
    python studies/bench_speed.py --quick -- --methods src,sequential   # another protocol (after -- or not)
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

import project  # noqa: F401  (first: the root's library on the import path, studies/project.py)
import config  # first: the pinned code paths and threads
import data
import methods
import runner
import torch

PROG = "bench_speed.py"


# %% The floor: every pass of the run through its networks, counted from the shapes
# Left out: the sleeps' spiking simulation (event-driven, its cost follows the spikes, not a matrix product: it
# is counted as steps, beside the floor), the analyses (stable rank, capacity, PCA maps: small products on
# the probe images), the SGD update and every other element-wise operation (a few per weight per minibatch of
# 100 images: under 1 % of a step's products), data loading, start-up, tables and figures.
def layer_shapes(sizes, bias=False):
    """(inputs as a layer's weights read them, outputs) of each layer; with biases one more input, a constant 1."""
    return [(n_in + bias, n_out) for n_in, n_out in zip(sizes[:-1], sizes[1:])]


def forward_flops(sizes, bias=False):
    """One image through the network: a multiply and an add per weight."""
    return sum(2 * n_in * n_out for n_in, n_out in layer_shapes(sizes, bias))


def train_flops(sizes, bias=False):
    """One image's step in models.sgd_step: the forward, each layer's weight gradient (as many operations as its
    forward) and the error sent down to every layer but the input (through the weights without biases)."""
    return 2 * forward_flops(sizes, bias) + sum(2 * n_in * n_out for n_in, n_out in layer_shapes(sizes)[1:])


def scale_images(k, cfg, ctx):
    """Images the data-based scale factors of sleep k read (methods.sleep_reads); none with fixed --alpha."""
    scale = methods.sleep_reads(k, cfg, ctx)[0]
    return 0 if cfg.sleep.alpha is not None else len(scale)


def job_passes(method, seed, cfg, ctx, done):
    """The passes of one job (methods.run_method, stage by stage): (stage, part, count, flops), count being the
    images (training: per epoch) or, for the part "sleep steps", the steps simulated. done: the shared stages
    already computed for this seed, which the job takes instead (and adds those it computes)."""
    spec, out = methods.METHODS[method], []
    forward, step = forward_flops(ctx.sizes, cfg.bias), train_flops(ctx.sizes, cfg.bias)
    evaluated = len(ctx.eval_y)

    def reach(stage, part, images, per_image):
        if stage in spec.shared and stage in done:
            return
        if stage in spec.shared:
            done.add(stage)
        if images:
            out.append((stage, part, images, images * per_image))
        out.append((stage, "evaluation", evaluated, evaluated * forward))

    reach("init", "training", 0, 0)
    for k, sleeps in methods.schedule(spec, cfg, len(ctx.tasks)):
        trained = len(methods.training_set(k, seed, cfg, ctx))
        reach(f"train_{k or 'all'}", "training", trained * methods.epochs_of(k, cfg), step)
        if spec.distill and k >= 2:   # LwF: the previous network's outputs on the task's images, once
            out.append((f"teacher_{k}", "training", trained, trained * forward))
        if spec.penalty == "ewc":     # the Fisher information: a forward and a backward per image of the task
            n = len(data.task_indices(ctx.train_y, ctx.tasks[k - 1], cfg.n_per_task or None))
            out.append((f"fisher_{k}", "training", n, n * step))
        if sleeps:
            reach(f"sleep_{k}", "scale factors", scale_images(k, cfg, ctx), forward)
            steps = cfg.sleep.length(k)
            out.append((f"sleep_{k}", "sleep steps", steps, 0))
            # the synthetic network's evaluation, and with --sleep-window one per window of the sleep
            passes = 1 + (-(-steps // cfg.sleep_window) if cfg.sleep_window else 0)
            out.append((f"synthetic_{k}", "evaluation", passes * evaluated, passes * evaluated * forward))
    if spec.merge:
        reach("merged", "training", 0, 0)
    return out


def passes(cfg, ctx):
    """Every pass of the run: (method, seed, stage, part, count, flops). A stage that methods share is computed
    once per seed, by the first method of the command to reach it, as one process does (runner.work; with
    --workers N each process computes its own, so the floor stays a lower bound)."""
    refused = [m for m in cfg.methods if methods.METHODS[m].exemplars or methods.METHODS[m].statistics]
    if refused:
        config.fail(f"the floor counts the methods that train a network task by task or jointly; not "
                    f"{', '.join(refused)} (their exemplars' and statistics' passes are not counted)", PROG)
    rows = []
    for seed in cfg.seeds:   # the jobs' order (runner.run): seed by seed, the methods in the command's order
        done = set()
        for method in cfg.methods:
            rows += [(method, seed, *p) for p in job_passes(method, seed, cfg, methods.seeded(ctx, seed, cfg), done)]
    return rows


# %% This machine's rate at the training shapes
def matmul_rate(sizes, batch, dtype, device, repeats=5, steps=20):
    """Floating-point operations per second of a training step's matrix products at these shapes (models.sgd_step's:
    the forward, the weight gradients into the momentum buffers, the errors sent down), on random numbers of the
    initial weights' scale; after a warm-up, the best of `repeats` timings of `steps` minibatches (other load
    only ever slows a timing down)."""
    gen = torch.Generator().manual_seed(0)
    W = [((torch.rand(n_out, n_in, generator=gen, dtype=dtype) - 0.5) * 0.02).to(device)
         for n_in, n_out in layer_shapes(sizes)]
    V = [torch.zeros_like(w) for w in W]
    x = torch.rand(batch, sizes[0], generator=gen, dtype=dtype).to(device)

    def minibatches(n):
        for _ in range(n):
            acts = [x]
            for w in W:
                acts.append(acts[-1] @ w.T)
            d = acts[-1]
            for l in reversed(range(len(W))):
                d_below = d @ W[l] if l > 0 else None
                torch.addmm(V[l], d.T, acts[l], beta=0.5, alpha=1e-3, out=V[l])
                d = d_below
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    minibatches(steps)   # warm-up: threads started, buffers allocated
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        minibatches(steps)
        best = min(best, time.perf_counter() - t)
    return steps * batch * train_flops(sizes) / best


# %% The run, end to end as a user runs it
def wall(root, run_args):
    """Seconds of `python mnist_exp.py ... --out TMP` in the checkout `root`, wall time, into a fresh folder (no
    job is reused), reading this checkout's data."""
    env = dict(os.environ, SRC_DATA_DIR=data.DEFAULT_DATA_DIR)
    with tempfile.TemporaryDirectory(prefix="bench-speed-") as out:
        t = time.perf_counter()
        proc = subprocess.run([sys.executable, "mnist_exp.py", *run_args, "--out", out], cwd=root, env=env,
                              capture_output=True, text=True)
        seconds = time.perf_counter() - t
    if proc.returncode:
        last = (proc.stderr.strip() or proc.stdout.strip() or "no output").splitlines()[-1]
        config.fail(f"{os.path.join(root, 'mnist_exp.py')} failed (exit code {proc.returncode}): {last}", PROG)
    return seconds


# %% The benchmark: the floor, the run, their ratio
def table(rows, rate, evaluated):
    """The floor's markdown tables: by part (with the sleeps' steps beside it) and by method."""
    total = lambda part, method=None: sum(r[5] for r in rows if r[3] == part and method in (None, r[0]))
    count = lambda part: sum(r[4] for r in rows if r[3] == part)
    floor = sum(r[5] for r in rows)
    lines = ["| part | images | GFLOP | floor (s) |", "|---|---|---|---|",
             f"| training (forward and backward, per image and epoch) | {count('training'):,} | "
             f"{total('training') / 1e9:,.1f} | {total('training') / rate:.1f} |",
             f"| evaluation ({count('evaluation') // evaluated} passes over {evaluated:,} images) | "
             f"{count('evaluation'):,} | {total('evaluation') / 1e9:,.1f} | {total('evaluation') / rate:.1f} |",
             f"| scale factors (a forward pass of the images each sleep reads) | {count('scale factors'):,} | "
             f"{total('scale factors') / 1e9:,.1f} | {total('scale factors') / rate:.1f} |",
             f"| **floor** | | **{floor / 1e9:,.1f}** | **{floor / rate:.1f}** |"]
    if count("sleep steps"):
        lines.append(f"| the sleeps' spiking (steps: event-driven, not in the floor) | {count('sleep steps'):,} | | |")
    lines += ["", "| method | training GFLOP | evaluation GFLOP | scale factors GFLOP | floor (s) |",
              "|---|---|---|---|---|"]
    lines += [f"| {m} | {total('training', m) / 1e9:,.1f} | {total('evaluation', m) / 1e9:,.1f} | "
              f"{total('scale factors', m) / 1e9:,.1f} | {sum(r[5] for r in rows if r[0] == m) / rate:.1f} |"
              for m in dict.fromkeys(r[0] for r in rows)]
    return lines, floor / rate


def timed(args, run_args):
    """The run's wall time, the median of --runs (alternating with --against's runs, so that the machine's other
    load falls on both alike), how it was had, and a line on the other checkout; no time with --no-run."""
    if args.no_run or args.time is not None:
        return args.time, "given (--time)", []
    ours, theirs = [], []
    for _ in range(args.runs):
        ours.append(wall(config.ROOT, run_args))
        if args.against:
            theirs.append(wall(args.against, run_args))
    listed = lambda times: f"median of {args.runs}: {', '.join(f'{t:.1f}' for t in times)} s"
    other = [f"Against `{args.against}` (the same options, runs alternating): {statistics.median(theirs):.1f} s wall "
             f"({listed(theirs)}); this checkout / that one = {statistics.median(ours) / statistics.median(theirs):.2f}."
             ] if args.against else []
    return statistics.median(ours), listed(ours), other


def main(argv):
    p = config.Parser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                      allow_abbrev=False)
    p.add_argument("--no-run", action="store_true", help="count and measure the rate only: no run is timed")
    p.add_argument("--time", type=float, help="the run's wall time in seconds, measured elsewhere (no run is timed)")
    p.add_argument("--runs", type=int, default=1, help="runs timed; the median counts (default: 1)")
    p.add_argument("--against", default="", metavar="DIR",
                   help="also time DIR's mnist_exp.py with the same options (another checkout: git worktree add DIR "
                        "COMMIT), the runs alternating")
    p.add_argument("--out", default=os.path.join("runs", "bench_speed.md"),
                   help="where the table goes (default: runs/bench_speed.md); the runs write into fresh temporary folders")
    args, run_args = p.parse_known_args(argv)
    if "--" in run_args:   # mnist_exp.py's options may follow --
        run_args.remove("--")
    untimed = args.no_run or args.time is not None
    bad = [f"--runs must be a whole number >= 1; got {args.runs}"] * (args.runs < 1)
    bad += ["--no-run and --time both say that no run is timed: give one"] * (args.no_run and args.time is not None)
    bad += [f"--time must be a number of seconds > 0; got {args.time}"] * (args.time is not None and not args.time > 0)
    bad += ["--runs and --against time runs: not with --no-run or --time"] * (
        untimed and (args.runs != 1 or bool(args.against)))
    bad += [f"--against {args.against}: no mnist_exp.py there"] * bool(
        args.against and not os.path.isfile(os.path.join(args.against, "mnist_exp.py")))
    bad += ["--out after -- : the runs write into fresh temporary folders (this benchmark's --out is its table)"] * any(
        a.split("=")[0] == "--out" for a in run_args)
    if bad:
        config.fail("; ".join(bad), PROG)
    runner.writable(os.path.dirname(args.out) or ".", "--out")   # before minutes of timing
    cfg = config.resolve(config.DEFAULTS, run_args, PROG)
    ctx = runner.checked_data(cfg)   # the data, as the run reads them (and fetched before it is timed)
    rate = matmul_rate(ctx.sizes, cfg.batch_size, ctx.dtype, ctx.device)
    lines, floor = table(passes(cfg, ctx), rate, len(ctx.eval_y))
    v = runner.versions(ctx.device)
    head = [f"The floor of `{' '.join(['python mnist_exp.py', *run_args])}` (methods {', '.join(cfg.methods)}; seeds "
            f"{' '.join(map(str, cfg.seeds))}): its matrix products, counted from the shapes, at this machine's {cfg.dtype} "
            f"rate at the training shapes, **{rate / 1e9:.1f} GFLOP/s** (batch {cfg.batch_size}, "
            f"{'-'.join(map(str, ctx.sizes))}, forward and backward, best of 5); {v['device']}, {os.cpu_count()} CPU cores, "
            f"{v['threads']} threads, code path {v['code_path']}, torch {v['torch']}, commit {v['commit']}; "
            f"`{' '.join(['python', 'studies/bench_speed.py'] + argv)}`.", ""]
    seconds, how, other = timed(args, run_args)
    lines += [""] + other if other else []
    lines += ["", f"Run / floor: not measured (--no-run); the floor is {floor:.1f} s." if seconds is None else
              f"Run / floor: **{seconds / floor:.2f}** ({seconds:.1f} s wall, {how}; floor {floor:.1f} s)."]
    runner.write_text(args.out, "\n".join(head + lines) + "\n")
    print("\n".join(head + lines))


if __name__ == "__main__":
    main(sys.argv[1:])
