"""The toy task of the authors' Patches/ scripts: four binary images, two tasks, one sleep.

Each image of width x width pixels has the same `overlap` pixels on (a random choice), and its own unique
pixels on besides; images 1 and 2 are task 1, images 3 and 4 task 2. A network without hidden layer (pixels
-> 4 outputs, no bias, softmax and cross-entropy, batch 2, no dropout, momentum 0.5, weights uniform in
+-0.01) learns task 1, then task 2, then sleeps once: 30 000 steps, the mean of the four images as input
without a window, rate 64, inc 0.0035, dec 0.0002, threshold multiplier 1.045, scale factor from the four
images (softmax outputs) x 4.25. Accuracy on the four images after each stage.

Two settings, one per script:
- overlap (Patches/run_patches_all_overlap.m): width 10, overlap 1..25, lr 0.05, task 1 for 4 epochs, task 2
  for 2;
- softmax (Patches/run_patches_softmax.m): width 11, overlap 12, lr 0.1, 4 and 4 epochs; also the drive of
  image 1 to its own output against the strongest task-2 output's (cf_analysis.m) and the weights by source
  pixel group: each task-1 image's own pixels, the shared pixels and the task-2 images' pixels, into task 1's
  and task 2's outputs (plot_weights_hist_new.m).

The scripts give each image width^2 / 6 - overlap unique pixels, which is not a whole number (their indexing
fails from the second image on); here it is floor(width^2 / 6) - overlap, none from overlap floor(width^2 / 6)
on, where the four images are the same. Five seeds (the scripts' five trials; the softmax script runs one).

    python studies/patches.py                  # both settings, seeds 0-4 (about a minute): runs/patches/
    python studies/patches.py --png-dir png    # and the figures there (patches.png, patches_weights.png)
"""
import argparse
import json
import os
import sys

import project  # noqa: F401  (first: the root's library on the import path, studies/project.py)
import config  # first: the pinned code paths and threads
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch
from tqdm.auto import tqdm

import analysis
import models
import runner
import src

SETTINGS = {
    "overlap": dict(width=10, overlaps=list(range(1, 26)), lr=0.05, epochs=(4, 2)),
    "softmax": dict(width=11, overlaps=[12], lr=0.1, epochs=(4, 4)),
}
SLEEP = dict(rate=64.0, inc=0.0035, dec=0.0002, beta=(1.045,), alpha_scale=4.25, alpha_softmax=True, steps=30000,
             plasticity=(1.0,))   # beta: the scripts' [0.95 0.65 0.35] * 1.1, of which one layer uses the first
STAGES = ("task 1", "task 2", "sleep")


def patches(width, overlap, gen, n_images=4):
    """[n_images, width^2] binary images: `overlap` shared pixels, then floor(width^2 / 6) - overlap unique
    pixels each (none when that is not positive), all drawn from one random permutation."""
    order = torch.randperm(width * width, generator=gen)
    shared, rest = order[:overlap], order[overlap:]
    rest = rest[torch.randperm(len(rest), generator=gen)]
    n = max(0, width * width // 6 - overlap)
    X = torch.zeros(n_images, width * width, dtype=torch.float64)
    X[:, shared] = 1
    for i in range(n_images):
        X[i, rest[i * n:(i + 1) * n]] = 1
    return X


def groups(X):
    """Pixel masks: each image's own pixels (on in it and not in its task partner), and the shared ones."""
    own = [(X[i] == 1) & (X[i ^ 1] != 1) for i in range(len(X))]
    return own, (X == 1).all(0)


def drives(W, X):
    """cf_analysis.m: image 1's drive to its own output (shared + its own pixels), and the strongest task-2
    output's drive from the shared pixels plus the strongest from image 1's own pixels."""
    own, shared = groups(X)
    mine = W[0, shared].sum() + W[0, own[0]].sum()
    other = max(W[2, shared].sum(), W[3, shared].sum()) + max(W[2, own[0]].sum(), W[3, own[0]].sum())
    return float(mine), float(other)


def weight_groups(W, X):
    """plot_weights_hist_new.m: {into task t's outputs: {source pixels: weights}}: a task's own images' pixels
    each into its own image's output, the shared pixels and the other task's images' pixels into both."""
    own, shared = groups(X)
    into = {}
    for t, outs, others in (("task 1", (0, 1), (2, 3)), ("task 2", (2, 3), (0, 1))):
        into[t] = {f"{t}'s own pixels": torch.cat([W[o, own[o]] for o in outs]).tolist(),
                   "shared pixels": torch.cat([W[o, shared] for o in outs]).tolist(),
                   "the other task's pixels": torch.cat([W[o, own[i]] for o in outs for i in others]).tolist()}
    return into


def trial(setting, overlap, seed):
    """One run of a setting at one overlap: accuracy on the four images after each stage, the drives and the
    weight groups of the three networks."""
    s = SETTINGS[setting]
    gen = torch.Generator().manual_seed(int(np.random.SeedSequence([seed, overlap, s["width"]]).generate_state(1)[0]))
    X = patches(s["width"], overlap, gen)
    y = torch.arange(4)
    net = models.init_net((s["width"] ** 2, 4), 0.01, gen, dtype=torch.float64, output="linear")
    score = lambda net: 100 * (models.predict(net, X, 0.0) == y).double().mean().item()
    nets = []
    for task, epochs in enumerate(s["epochs"]):
        net = net.clone()
        models.train(net, X[2 * task:2 * task + 2], y[2 * task:2 * task + 2], epochs=epochs, batch_size=2, lr=s["lr"],
                     momentum=0.5, dropout=0.0, n_classes=4, generator=gen)
        nets.append(net)
    constants = src.Sleep(**SLEEP, mask_size=s["width"])   # the window is the whole image: no mask
    slept, info = src.sleep(net, X, constants.steps, gen, constants, dropout=0.0, engine="numba")
    nets.append(slept)
    out = dict(setting=setting, overlap=overlap, seed=seed, accuracy=dict(zip(STAGES, map(score, nets))),
               drives={st: drives(n.W[0], X) for st, n in zip(STAGES, nets)}, alpha=info["alpha"],
               output_spikes=info["spikes"][-1])
    if setting == "softmax":
        out["weights"] = {st: weight_groups(n.W[0], X) for st, n in zip(STAGES, nets)}
    return out


def table(results):
    lines = ["| setting | overlap | after task 1 (%) | after task 2 (%) | after sleep (%) | n |", "|---|---|---|---|---|---|"]
    for setting in SETTINGS:
        for overlap in SETTINGS[setting]["overlaps"]:
            got = [r for r in results if r["setting"] == setting and r["overlap"] == overlap]
            if got:
                lines.append(f"| {setting} | {overlap} | " + " | ".join(analysis.text(*analysis.mean_std([r["accuracy"][st] for r in got])) for st in STAGES)
                             + f" | {len(got)} |")
    got = [r for r in results if r["setting"] == "softmax"]
    if got:
        lines += ["", "Softmax setting: image 1's drive to its own output against the strongest task-2 output's (cf_analysis).",
                  "", "| stage | own output | strongest task-2 output |", "|---|---|---|"]
        lines += [f"| after {st} | {analysis.text(*analysis.mean_std([r['drives'][st][0] for r in got]))} | {analysis.text(*analysis.mean_std([r['drives'][st][1] for r in got]))} |"
                  for st in STAGES]
    return lines


def figure(results):
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    ax = axes[0]
    overlaps = SETTINGS["overlap"]["overlaps"]
    for st, color in zip(STAGES, ("tab:gray", "tab:orange", "tab:blue")):
        runs = np.array([[r["accuracy"][st] for r in results if r["setting"] == "overlap" and r["overlap"] == o] for o in overlaps])
        ax.errorbar(overlaps, runs.mean(1), yerr=runs.std(1, ddof=1) if runs.shape[1] > 1 else None, fmt="o-",
                    color=color, capsize=2, markersize=3, label=f"after {st}")
    ax.axvline(SETTINGS["overlap"]["width"] ** 2 // 6, color="k", linestyle=":", linewidth=1)
    ax.set(xlabel="overlapping pixels (width 10; from the dotted line on, one image)",
           ylabel="accuracy on the four images (%)", title="overlap setting")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    soft = [r for r in results if r["setting"] == "softmax"]
    ax = axes[1]
    x = np.arange(len(STAGES))
    for i, (label, color) in enumerate((("own output", "k"), ("strongest task-2 output", "tab:red"))):
        values = np.array([[r["drives"][st][i] for r in soft] for st in STAGES])
        ax.bar(x + (i - 0.5) * 0.35, values.mean(1), 0.35, yerr=values.std(1, ddof=1) if values.shape[1] > 1 else None,
               color=color, label=label, capsize=3)
    ax.set_xticks(x, [f"after {st}" for st in STAGES])
    ax.set(ylabel="summed weights from image 1's pixels", title="softmax setting: image 1's drive")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def weights_figure(results):
    """plot_weights_hist_new.m: histograms of the weights into each task's outputs by source pixels, after
    each stage (the softmax setting, every seed together)."""
    soft = [r for r in results if r["setting"] == "softmax"]
    fig, axes = plt.subplots(len(STAGES), 2, figsize=(9, 7), sharex=True, sharey=True, squeeze=False)
    colors = {"own": "tab:green", "shared pixels": "tab:purple", "the other task's pixels": "tab:orange"}
    for i, st in enumerate(STAGES):
        for j, t in enumerate(("task 1", "task 2")):
            ax = axes[i][j]
            for group, color in colors.items():
                key = f"{t}'s own pixels" if group == "own" else group
                w = np.concatenate([r["weights"][st][t][key] for r in soft])
                ax.hist(w, bins=np.linspace(-0.4, 0.3, 36), color=color, alpha=0.5, label=key.replace(t, "the task"))
            ax.set_title(f"after {st}: weights into {t}'s outputs", fontsize=9)
            ax.grid(alpha=0.3)
    for ax in axes[-1]:
        ax.set_xlabel("weight")
    for row in axes:
        row[0].set_ylabel("weights (all seeds)")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def main(argv):
    p = config.Parser(prog="patches.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4], help="seeds (default: 0-4)")
    p.add_argument("--out", default=os.path.join("runs", "patches"), help="where results.json, patches.md and the figure go")
    p.add_argument("--png-dir", default="", help="where the figure goes (default: --out)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    if config.seeds_problem(args.seeds):   # mnist_exp.py's rule: what torch's generators take
        config.fail(config.seeds_problem(args.seeds), "patches.py")
    runner.writable(args.out, "--out")
    png_dir = args.png_dir or args.out
    runner.writable(png_dir, "--png-dir")
    todo = [(s, o, seed) for s in SETTINGS for o in SETTINGS[s]["overlaps"] for seed in args.seeds]
    results = [trial(*t) for t in tqdm(todo, desc="patches", disable=args.quiet)]
    record = dict(settings=SETTINGS, sleep=SLEEP, seeds=args.seeds, results=results,
                  versions=runner.versions(torch.device("cpu")))
    runner.write_text(os.path.join(args.out, "results.json"), json.dumps(record, indent=1))
    lines = table(results)
    runner.write_text(os.path.join(args.out, "patches.md"), "\n".join(lines) + "\n")
    for name, draw in (("patches", figure), ("patches_weights", weights_figure)):
        fig = draw(results)
        runner.write_atomic(os.path.join(png_dir, f"{name}.png"), lambda tmp: fig.savefig(tmp, dpi=110, format="png"), "--png-dir")
    print("\n".join(lines))
    print(f"results in {args.out}, figures patches.png and patches_weights.png in {png_dir}")


if __name__ == "__main__":
    main(sys.argv[1:])
