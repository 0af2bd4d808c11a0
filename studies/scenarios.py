"""Domain-incremental learning: split MNIST on a shared 2-way head and permuted MNIST, every method that is
defined there, and where SRC stands.

Split MNIST, domain-IL (--scenario domain): the five pairs (0, 1), ..., (8, 9) in turn, one head of two outputs
(the first or the second digit of the pair). Permuted MNIST, domain-IL (--dataset permuted-mnist): ten tasks,
each the ten digits under one pixel permutation drawn from the seed, the first unpermuted; one 10-way head.
The network and its training are the original protocol's (784-1200-1200, no biases, ReLU/MSE, SGD 0.1 with
momentum 0.5, 2 epochs a task); on permuted MNIST each task trains on 10 000 of its images (--n-per-task: ten
tasks of 60 000 would take 10 times the time of the class-IL run for every method and seed) and is scored on the
first 2 000 test images under its permutation (--test-limit: every task is scored after every stage, and on all
10 000 that evaluation was 114 s of a sequential job's 184 s). Its activation maps and capacity read 10 probe
images per class (--probe-per-class: its 100 classes, ten digits under ten permutations, are 1 000 probe images,
as the class-IL run's 100 of each of 10; at 100 per class the capacity's 330 eigendecompositions of 1 200 x 1 200
covariances took more than the training). Its searches train on 2 000 images a task and score the last 100
training images of each digit under each permutation (--n-per-task 2000 --validation 100: a tenth of the cost,
the same for every method searched).

EWC's lambda, SI's c and LwF's options (strength, schedule, outputs distilled) are each searched on
the validation split (the last 1 000 training images of each class, tuning seed 100, 12 candidates: EWC's and
SI's decades first), SRC's constants too (12 candidates centred on the authors', the same budget); SEARCHED below holds what the searches chose, and their commands.
Then ten report seeds of each on the test set: one row with sequential training and SRC with the authors'
constants, one with EWC, SI and LwF at their searched values; one row per preset (its own constants; beyond-weights-only
trains with its own output and loss, so its row has its own sequential training); one row with SRC's searched
constants. Every sleep is compared with sequential training of the same seed (the same network before it sleeps).

    python studies/scenarios.py --setting split --run       # about half an hour on 2 cores
    python studies/scenarios.py --setting permuted --run    # its rows (SRC's ten tasks read every image seen: hours)
    python studies/scenarios.py --setting split             # the table (runs/scenarios_split/) and its figures
"""
import sys

import project  # noqa: F401  (first: the root's library on the import path, studies/project.py)
import sweep  # first: the pinned code paths, and matplotlib's file backend
import analysis
import matplotlib.pyplot as plt
import numpy as np
import results

SEEDS = tuple(str(s) for s in range(10))
SETTINGS = {"split": ["--scenario", "domain"],
            "permuted": ["--dataset", "permuted-mnist", "--scenario", "domain", "--n-per-task", "10000", "--test-limit", "2000",
                         "--probe-per-class", "10"]}
PRESETS = ("tuned", "beyond-weights-only")   # beyond-weights-only also sets its training: a sequential of its own
# What the searches on validation chose (tuning seed 100, 12 candidates each, with the setting's options):
#   python studies/tune.py --method ewc --fixed-training --scenario domain --trials 12 --tune-seeds 100   (si, lwf too)
#   python studies/tune.py --scenario domain --trials 12 --batch 4 --tune-seeds 100                      (SRC)
# A setting whose searches have not run has no baselines' row and no searched row.
SEARCHED = {
    "split": dict(
        baselines=["--ewc-lambda", "1637.2573637744765", "--si-c", "100.0", "--lwf-lambda", "3.5312166324796896",
                   "--lwf-schedule", "constant", "--lwf-outputs", "all"],
        src=["--rate", "502.24490241814607", "--inc", "0.019698991241553332", "--dec", "0.006681310087991309",
             "--beta", "56.713992058844845", "900.6452966397574", "41.23037008349563"]),
    # permuted: on 2 000 images a task, 100 held out per digit (the docstring); python studies/tune.py --dataset
    # permuted-mnist --scenario domain --n-per-task 2000 --validation 100 --probe-per-class 10 --trials 12 --batch 4
    # --tune-seeds 100 (--method ewc|si|lwf --fixed-training for the baselines)
    "permuted": dict(
        baselines=["--ewc-lambda", "10.0", "--si-c", "0.01", "--lwf-lambda", "0.4656804637919569",
                   "--lwf-schedule", "constant", "--lwf-outputs", "earlier"],
        src=["--rate", "28.579348154260373", "--inc", "0.0028402635729787022", "--dec", "0.007361092152344737",
             "--beta", "274.296565641642", "14.68421824303774", "16.959022301417292"]),
}
# Published anchors, on other networks: van de Ven et al. (Three scenarios for continual learning, 2019; Three types
# of incremental learning, Nature Machine Intelligence 2022: an MLP of 2 x 1000 with biases, permuted MNIST padded
# to 32 x 32) and Avalanche's reproductions; {method: text}
ANCHORS = {
    "split": {"lwf": "71.0 ± 1.3 (van de Ven et al.; MAS 68.6)", "parallel": "98.4 (joint, van de Ven et al.)"},
    "permuted": {"sequential": "78.5 ± 0.2 (van de Ven et al.)", "lwf": "72.6 ± 0.5 (van de Ven et al.)",
                 "ewc": "94.3, online 94.4 (van de Ven et al.); 83 (Avalanche)", "si": "95.3 (van de Ven et al.); 83 (Avalanche)",
                 "parallel": "97.6 (joint, van de Ven et al.)"},
}


def rows(args):
    base, searched = SETTINGS[args.setting], SEARCHED[args.setting]
    got = [sweep.Row("sequential training and SRC with the authors' constants", base, "sequential,src,parallel", group="base")]
    if searched["baselines"]:   # (not before their searches have chosen)
        got.append(sweep.Row("EWC, SI and LwF at their searched strengths", base + searched["baselines"], "ewc,si,lwf",
                             group="baselines"))
    got += [sweep.Row(f"preset {p}", base + ["--preset", p],
                      "sequential,src" if p == "beyond-weights-only" else "src", group=p) for p in PRESETS]
    if searched["src"]:
        got.append(sweep.Row("constants searched on validation", base + searched["src"], "src", group="searched"))
    return got


def setting_of(results_):
    """The setting of a sweep's rows (their options say it)."""
    return "permuted" if "permuted-mnist" in results_[0][0].options else "split"


def finals(row, method):
    """{seed: final accuracy} of one method in a row's run folder (its finished jobs: a damaged one is left out,
    and its command computes it again)."""
    folder = sweep.folder(row)
    recs = [results.job(folder, m, s) for m, s in results.jobs_in(folder) if m == method]
    return {rec["seed"]: rec["rows"][-1]["all"] for rec in recs if rec}


def against(base, other):
    """other - base, seed by seed over their common seeds: (mean, sample std, n, seeds where it is below 0)."""
    seeds = sorted(set(base) & set(other))
    diffs = np.array([other[s] - base[s] for s in seeds])
    if len(diffs) < 2:
        return None
    return float(diffs.mean()), float(diffs.std(ddof=1)), len(diffs), [s for s, d in zip(seeds, diffs) if d < 0]


def verdict(diff):
    """'beats' / 'below' only beyond 2 standard errors of the paired differences, else 'within noise'."""
    mean, std, n, _ = diff
    se = std / np.sqrt(n)
    return "beats" if mean > 2 * se else "below" if mean < -2 * se else "within noise"


def entries(results_):
    """[(label, method, finals {seed: %}, the sequential finals it pairs with, kept bytes)] of every method of every
    row; a method is paired with its own row's sequential training, else the first row's (the same network before
    it sleeps); sequential training and joint training (the bounds) with none."""
    out, base_seq = [], {}
    for row, _ in results_:
        folder = sweep.folder(row)
        own_seq = finals(row, "sequential")
        base_seq = base_seq or own_seq
        for method in row.methods.split(","):
            got = finals(row, method)
            if not got:
                continue
            rec = results.job(folder, method, min(got))
            label = ("src, the authors' constants" if method == "src" else method) if row.group in ("base", "baselines") \
                else f"{method}, {row.label}"
            pair = {} if method in ("sequential", "parallel") else own_seq or base_seq
            out.append((label, method, got, pair, rec.get("kept_bytes")))
    return out


def paired_cell(diff):
    """'mean ± std, verdict' of paired differences ('(n=N)' when fewer seeds pair than the row has), '' without."""
    return f"{analysis.text(diff[0], diff[1])} (n={diff[2]}), {verdict(diff)}" if diff else ""


def table(results_):
    """Each method's final accuracy; each sleep and baseline minus sequential training and minus LwF (the strongest
    baseline that keeps nothing but the network), seed by seed; what it keeps; the published anchors."""
    lines = ["| method | n | final, every task (%) | − sequential, paired (points) | − LwF, paired (points) | "
             "kept between tasks (bytes) | anchor (other networks) |", "|---|---|---|---|---|---|---|"]
    below = []
    setting = setting_of(results_)
    got_all = entries(results_)
    lwf = next((got for _, method, got, _, _ in got_all if method == "lwf"), {})
    for label, method, got, pair, kept in got_all:
        values = [got[s] for s in sorted(got)]
        diff = against(pair, got) if pair else None
        if diff and method.endswith("src"):
            below += [f"{label}: seed{'s' * (len(diff[3]) > 1)} {', '.join(map(str, diff[3]))}"] if diff[3] else []
        versus_lwf = against(lwf, got) if lwf and method.endswith("src") else None
        lines.append(f"| {label} | {len(values)} | {analysis.text(*analysis.mean_std(values))} | {paired_cell(diff)} | "
                     f"{paired_cell(versus_lwf)} | " + (f"{kept:,}" if kept is not None else "") + " | "
                     + ANCHORS[setting].get(method, "") + " |")
    lines += ["", "Paired: seed by seed over the seeds both have (n); \"beats\" or \"below\" only beyond 2 standard "
              "errors of the differences. Sleeps that scored below the same seed's sequential training: "
              + ("; ".join(below) if below else "none") + "."]
    return lines


def figure(results_):
    """Each method's final accuracy per seed (points) and its mean, sorted as the table."""
    got = entries(results_)
    fig, ax = plt.subplots(figsize=(7.5, 0.45 * max(len(got), 2) + 1.2))
    for i, (label, _, finals_, _, _) in enumerate(got):
        values = list(finals_.values())
        ax.plot(values, [i] * len(values), "o", color="tab:blue", alpha=0.4, markersize=4)
        ax.plot([np.mean(values)], [i], "|", color="black", markersize=14)
    ax.set_yticks(range(len(got)), [g[0] for g in got], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("final accuracy, every task (%): seeds (dots) and mean (bar)")
    ax.set_title(f"{setting_of(results_)} MNIST, domain-incremental")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def arguments(p):
    p.add_argument("--setting", choices=list(SETTINGS), default="split",
                   help="split: split MNIST, 5 tasks on a 2-way head; permuted: permuted MNIST, 10 tasks (default: split)")


SWEEP = sweep.Sweep(name="scenarios", doc=__doc__, rows=rows, table=table, figure=figure, arguments=arguments,
                    seeds=SEEDS, suffix=lambda args: "_" + args.setting)

if __name__ == "__main__":
    sweep.main(SWEEP, sys.argv[1:])
