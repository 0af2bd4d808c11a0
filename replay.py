# %%
"""Rehearsal with and without sleep: final accuracy against the fraction of earlier tasks' images replayed.

The authors' sweep (MNIST/run_sleep_replay_sweep.m) trains each task k >= 2 on its own 5 000 images plus a
random fraction of all training images of the earlier tasks (mnist_exp.py --replay F), with and without
sleep, five runs each, with the authors' seven constants except at 10 %, where the script sleeps with its own
(--preset replay-10). Each fraction here is an ordinary run folder of mnist_exp.py (sequential and SRC,
seeds 0-4); the table and the figure are built from the finished folders alone.

    python replay.py --run                       # run every fraction that is not finished yet
    python replay.py --fractions 0 0.05 --run    # only some of them
    python replay.py --png-dir png               # the table (runs/replay/replay.md) and the figure
"""
import argparse
import os
import subprocess
import sys

import config  # first: the pinned code paths and threads
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

import runner

FRACTIONS = ["0", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1"]   # the authors' sweep
SEEDS = ["0", "1", "2", "3", "4"]
PRESETS = {"0.1": "replay-10"}   # the script's other constants at 10 %


def options(fraction):
    """mnist_exp.py's options for one fraction (as given: it names the run folder; 0.10 finds 0.1's preset)."""
    try:
        preset = PRESETS.get(f"{float(fraction):g}")
    except ValueError:   # not a number: mnist_exp.py's one-line error says so
        preset = None
    return ["--replay", fraction] + (["--preset", preset] if preset else [])


# %% Options, then the fractions that are not finished
if __name__ == "__main__":
    p = config.Parser(prog="replay.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                      allow_abbrev=False)
    p.add_argument("--run", action="store_true", help="run the fractions first (finished jobs are skipped)")
    p.add_argument("--fractions", nargs="+", default=FRACTIONS, help=f"fractions (default: {' '.join(FRACTIONS)})")
    p.add_argument("--workers", type=int, default=2, help="processes per fraction (default: 2)")
    p.add_argument("--out", default=os.path.join("runs", "replay"), help="where the table and figure go")
    p.add_argument("--png-dir", default="", help="where the figure goes (default: --out)")
    args = p.parse_args()
    for fraction in args.fractions:
        config.resolve(config.DEFAULTS, options(fraction), "replay.py")   # a bad fraction: the one-line error, before anything runs
    if args.run:
        for fraction in args.fractions:
            print(f"== --replay {fraction}", flush=True)
            if subprocess.run([sys.executable, os.path.join(config.ROOT, "mnist_exp.py"), *options(fraction),
                            "--methods", "sequential,src", "--seeds", *SEEDS, "--workers", str(args.workers), "--quiet",
                            "--no-figures"]).returncode:
                config.fail(f"--replay {fraction} failed; see its message above", "replay.py")

# %% The table: final accuracy of sequential training and SRC per fraction
if __name__ == "__main__":
    rows = [(float(f), runner.finished(options(f))) for f in args.fractions]
    fmt = lambda v: "not run" if v is None else f"{v[0]:.1f} ± {v[1]:.1f} (n={v[2]})"
    lines = ["| replayed fraction | sequential + rehearsal (%) | SRC + rehearsal (%) | sleep adds |", "|---|---|---|---|"]
    for fraction, got in rows:
        seq, src = got.get("sequential"), got.get("src")
        adds = f"{src[0] - seq[0]:+.1f}" if seq and src else ""
        lines.append(f"| {100 * fraction:g} % | {fmt(seq)} | {fmt(src)} | {adds} |")
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "replay.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))

# %% The figure: mean ± sample std over seeds against the replayed fraction
if __name__ == "__main__":
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for method, label, color in (("sequential", "without sleep", "tab:gray"), ("src", "with sleep (SRC)", "tab:blue")):
        points = [(100 * fraction, got[method]) for fraction, got in rows if method in got]
        if points:
            ax.errorbar([x for x, _ in points], [v[0] for _, v in points], yerr=[v[1] for _, v in points],
                        fmt="o-", color=color, capsize=3, label=label)
    for fraction, got in rows:   # where the sleep runs with the script's other constants
        if f"{fraction:g}" in PRESETS and "src" in got:
            ax.annotate(f"--preset {PRESETS[f'{fraction:g}']}", (100 * fraction, got["src"][0]), textcoords="offset points",
                        xytext=(-40, 10), fontsize=8, color="tab:blue")
    ax.set_xscale("symlog", linthresh=1)
    ticks = [100 * fraction for fraction, _ in rows]
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.set_xlabel("replayed: % of the earlier tasks' training images")
    ax.set_ylabel("final accuracy, all 10 classes (%)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    png_dir = args.png_dir or args.out
    os.makedirs(png_dir, exist_ok=True)
    fig.savefig(os.path.join(png_dir, "replay.png"), dpi=110)
    print(f"table in {os.path.join(args.out, 'replay.md')}, figure in {os.path.join(png_dir, 'replay.png')}")
