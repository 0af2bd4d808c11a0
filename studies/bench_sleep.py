# %%
"""Benchmark of the sleep engines on the paper network (not a test): steps per second and speed-up.

The network is trained on task 1 (seed 0) and sleeps on the real masked mean input, as after the first
task of the experiment. The literal loop (engine "torch", one network) and the event-driven engine
("numba") run the same first steps of the same raster side by side; then B = 1, 8 and 64 networks at
once. Writes runs/bench_sleep.md; `--out docs/bench_sleep.md` refreshes the table docs/speed.md shows.

    python studies/bench_sleep.py                 # about two minutes on a 2-core CPU
    python studies/bench_sleep.py --device cuda   # adds the torch engine on the GPU
"""
import argparse
import os
import platform
import sys
import time

import project  # noqa: F401  (first: the root's library on the import path, studies/project.py)
import config  # first: the pinned code paths and threads
import data
import methods
import numba
import src
import torch
from runner import writable, write_text

p = config.Parser(prog="bench_sleep.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                  allow_abbrev=False)
p.add_argument("--literal-steps", type=int, default=1500, help="steps timed for the literal loop")
p.add_argument("--steps", type=int, default=15000, help="steps timed for the fast engine (the first sleep)")
p.add_argument("--batches", type=int, nargs="+", default=[1, 8, 64], help="numbers of networks simulated at once")
p.add_argument("--busy", type=float, nargs="+", default=[0.2, 0.1],
               help="also time B = 1 with every threshold multiplied by these factors (busier sleeps, as candidates can be)")
p.add_argument("--device", default="cpu", help="also time the torch engine on this device (cuda)")
p.add_argument("--out", default=os.path.join("runs", "bench_sleep.md"), help="where the table goes (default: runs/bench_sleep.md)")
args = p.parse_args()
bad = [f"--{k.replace('_', '-')} must be whole numbers >= 1; got {v}" for k, v in
       dict(literal_steps=[args.literal_steps], steps=[args.steps], batches=args.batches).items() if min(v) < 1]
bad += [f"--busy must be finite factors > 0; got {args.busy}"] * (not all(0 < b < float("inf") for b in args.busy))
bad += [f"--device must be cpu, cuda or cuda:N; got {args.device!r}"] * (args.device.split(":")[0] not in ("cpu", "cuda"))
if bad:
    config.fail("; ".join(bad), "bench_sleep.py")
writable(os.path.dirname(args.out) or ".", "--out")   # before minutes of timing

# %% The paper network after task 1 (seed 0, the experiment's own setup), and its sleep input
cfg = config.resolve(config.DEFAULTS, ["--device", "cpu"], "bench_sleep.py")
ctx = methods.prepare(cfg)
net = methods.train_task(methods.initial_net(0, cfg, ctx), 1, 0, cfg, ctx)
sleep_x = ctx.train_x[data.task_indices(ctx.train_y, ctx.tasks[0])]
alpha = src.scale_factors(net, sleep_x, cfg.dropout, cfg.alpha_scale)
B_max, T = max(args.batches), max(args.steps, args.literal_steps)
rasters = torch.stack([src.input_spikes(sleep_x.mean(0), T, torch.Generator().manual_seed(b), rate=cfg.rate, dt=cfg.dt,
                                        mask_size=cfg.mask_size) for b in range(B_max)])
kw = dict(inc=cfg.inc, dec=cfg.dec)


def timed(engine, B, steps, device="cpu", repeats=2, beta=cfg.beta, exp="exact"):
    """Network-steps per second of one call on B copies of the network, each with its own raster (best of
    `repeats` calls: the machine's other load only ever slows a call down), its weights and spike counts."""
    W = [w.to(device) for w in net.W] if B == 1 else [w.expand(B, *w.shape).contiguous().to(device) for w in net.W]
    spikes = rasters[0, :steps] if B == 1 else rasters[:B, :steps]
    best = 0.0
    for _ in range(repeats):
        if device != "cpu":
            torch.cuda.synchronize()
        t = time.perf_counter()
        out, counts = src.sleep_on_spikes(W, spikes, alpha, beta, engine=engine, exp=exp, **kw)
        if device != "cpu":
            torch.cuda.synchronize()
        best = max(best, B * steps / (time.perf_counter() - t))
    return best, out, counts


# %% Side by side on the same steps, then batched
src.sleep_on_spikes([w[:2, :3] for w in net.W[:1]], rasters[0, :2, :3], alpha[:1], cfg.beta[:1], **kw)  # compile
lit, w_lit, c_lit = timed("torch", 1, args.literal_steps)
fast, w_fast, c_fast = timed("numba", 1, args.literal_steps)
same = all(torch.equal(a, b) for a, b in zip(c_lit, c_fast))
close = max((a - b).abs().max().item() for a, b in zip(w_lit, w_fast))
hidden = lambda counts, B, steps: sum(c.sum().item() for c in counts[1:-1]) / (B * steps)   # spikes per step
rows = [("literal loop (torch), B = 1", args.literal_steps, lit, hidden(c_lit, 1, args.literal_steps)),
        ("event-driven (numba), B = 1, same steps", args.literal_steps, fast, hidden(c_fast, 1, args.literal_steps))]
for B in args.batches:
    rate, _, counts = timed("numba", B, args.steps)
    rows.append((f"event-driven (numba), B = {B}", args.steps, rate, hidden(counts, B, args.steps)))
fast_same = []
for f in args.busy:   # the literal loop's cost does not depend on activity (a dense product per layer and step)
    beta = [b * f for b in cfg.beta]
    rate, w_exact, counts = timed("numba", 1, args.steps, beta=beta)
    rows.append((f"event-driven (numba), B = 1, thresholds x {f}", args.steps, rate, hidden(counts, 1, args.steps)))
    rate, w_fast, counts_fast = timed("numba", 1, args.steps, beta=beta, exp="fast")
    rows.append((f"event-driven (numba), B = 1, thresholds x {f}, fast exp", args.steps, rate, hidden(counts_fast, 1, args.steps)))
    fast_same.append((f, all(torch.equal(a, b) for a, b in zip(counts, counts_fast)),
                      max((a - b).abs().max().item() for a, b in zip(w_exact, w_fast))))
if args.device != "cpu":
    for B in args.batches:
        rate, _, counts = timed("torch", B, args.literal_steps, args.device)
        rows.append((f"torch engine on {args.device}, B = {B}", args.literal_steps, rate, hidden(counts, B, args.literal_steps)))

machine = (torch.cuda.get_device_name(0) + ", " if args.device != "cpu" else "") + \
    f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}, numba {numba.__version__}"
lines = [f"Sleep engines on the paper network after task 1 ({machine}); `{' '.join(['python', 'studies/bench_sleep.py'] + sys.argv[1:])}`.",
         "", "| engine | steps timed | hidden spikes per step | network-steps/s | vs literal |", "|---|---|---|---|---|"]
lines += [f"| {name} | {steps} | {spikes:.2f} | {rate:,.0f} | {rate / lit:.0f}x |" for name, steps, rate, spikes in rows]
lines += ["", f"Same spikes in both engines over the {args.literal_steps} steps: {same}; "
              f"largest weight difference {close:.1e} (float32)."]
lines += [f"Fast exp against exact, thresholds x {f}, {args.steps} steps: same spikes {same}, largest weight "
          f"difference {diff:.1e}." for f, same, diff in fast_same]
write_text(args.out, "\n".join(lines) + "\n")
print("\n".join(lines))
