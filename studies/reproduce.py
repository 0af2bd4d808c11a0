# %%
"""Every documented number, re-checkable: the manifest studies/reproduce.json, and the runs that check it.

Each entry of the manifest is one row of a table of README.md or docs/ (or numbers their text quotes): the
command that makes it (mnist_exp.py's options, or a study's), the seeds, the values the docs print for each
method, the code path they were made on, the estimated cost (minutes on this project's 2 cores) and the
tolerance within which the entry holds:
- digit: every printed number (mean, sample std, per-seed value) is what the runs give, rounded as printed
  (the code path it was made on gives the same bits again);
- 2se: every printed mean is within two standard errors (the printed sample std / sqrt(n)) of the runs'
  mean, or within the printed digit's rounding where that is wider.

    python studies/reproduce.py --list               # the entries, their cost and command
    python studies/reproduce.py --check              # against the finished runs in runs/, running nothing (seconds)
    python studies/reproduce.py --quick              # run the entries marked quick (about a minute in all; CI runs them)
    python studies/reproduce.py --only NAME ...      # run these entries
    python studies/reproduce.py --all                # run every entry (--list --all says how long)

Entries run through the ordinary run folders (mnist_exp.py ... --quiet --no-figures, or the study's script), so
finished jobs are reused and a stopped run resumes. One line per entry: holds, drifted (expected X, got Y) or
not run; the exit code is 0 only when every selected entry holds.
"""
import argparse
import json
import math
import os
import shlex
import sys

import project  # noqa: F401  (first: the root's library on the import path, studies/project.py)
import config  # first: the pinned code paths and threads
import codepath

import analysis
import results

PROG = "reproduce.py"
MANIFEST = os.path.join(config.ROOT, "studies", "reproduce.json")


# %% The manifest: entries, their commands and the jobs they read
def load(path):
    """The manifest's entries, by name."""
    try:
        with open(path) as f:
            return {e["name"]: e for e in json.load(f)["entries"]}
    except (OSError, ValueError, KeyError, TypeError) as err:
        config.fail(f"{path} is not a reproduction manifest ({type(err).__name__}: {err}); restore it with git checkout", PROG)


def paired(metric, manifest):
    """The entry a "minus NAME" metric pairs with (None when NAME is a method of the same run)."""
    return manifest.get(metric[len("minus "):]) if metric.startswith("minus ") else None


def runs(entry, manifest):
    """[(script, options, methods, seeds)]: the entry's own run, then those of the entries it is paired with (on its
    seeds). A study computes everything at once: its methods are ["*"]."""
    script, *options = shlex.split(entry["command"])
    if script != "mnist_exp.py":
        own = ["*"]
    elif "--methods" in options:   # methods that must run together (an option applies only with one of them)
        own = options[options.index("--methods") + 1].split(",")
    else:   # those the values come from: iCaRL's NME is iCaRL's job, "minus M" needs M of the same run
        named = [m.removesuffix(" (NME)") for m in entry["expected"]] + [
            k[len("minus "):].removesuffix(" (NME)") for v in entry["expected"].values() for k in v
            if k.startswith("minus ") and not paired(k, manifest)]
        own = list(dict.fromkeys(named))
    found = [(script, options, own, entry["seeds"])]
    for metrics in entry["expected"].values():
        for other in filter(None, (paired(k, manifest) for k in metrics)):
            found += runs(dict(other, seeds=entry["seeds"]), manifest)[:1]
    return found


def shown(script, options, methods, seeds):
    """A run as one command line."""
    return " ".join(["python", script, *options] + (["--methods", ",".join(methods)] if "--methods" not in options and
                                                    methods != ["*"] else []) + ["--seeds", *map(str, seeds)])


def run_dir(options, methods, out, name):
    """mnist_exp.py's run folder for these options (the one its command fills)."""
    return results.run_dir(options, ",".join(methods), out, f"{PROG}, entry {name}")


# %% What the runs give: each seed's value of a method's metric
def job(folder, method, seed):
    """A finished job's record (for "METHOD (NME)", iCaRL's nearest-mean scores as its rows); None when not finished."""
    rec = results.job(folder, method.removesuffix(" (NME)"), seed)
    return rec and (dict(rec, rows=rec["nme"]) if method.endswith(" (NME)") else rec)


def measure(rec, metric):
    """One job's metric: all, task_K, task_il (the final network's), acc, bwt, forgetting (analysis.cl_metrics),
    STAGE:COLUMN (after a stage: train_2:task_1), kept_bytes, diverged (1 or 0)."""
    rows = rec["rows"]
    if ":" in metric:
        stage, column = metric.split(":")
        return next(r[column] for r in rows if r["stage"] == stage)
    if metric in ("acc", "bwt", "forgetting"):
        cols = [c for c in rows[-1] if c.startswith("task_") and c[5:].isdigit()]
        return analysis.cl_metrics([(r["stage"], [r[c] for c in cols]) for r in rows[:-1]], [rows[-1][c] for c in cols])[metric]
    if metric in ("kept_bytes", "diverged"):
        return rec["kept_bytes"] if metric == "kept_bytes" else int("diverged" in rec)
    return rows[-1]["all" if metric == "per_seed" else metric]


def read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def patches(entry, key, metric, out):
    """studies/patches.py's results: key "SETTING OVERLAP"; metric a stage's accuracy ("task 1", "task 2", "sleep")
    or image 1's drive ("own drive after STAGE", "task-2 drive after STAGE", cf_analysis)."""
    found = read_json(os.path.join(out, "patches", "results.json"))
    setting, overlap = key.split()
    got = {r["seed"]: r for r in (found or {}).get("results", []) if r["setting"] == setting and r["overlap"] == int(overlap)}
    if not set(entry["seeds"]) <= set(got):
        return None
    if " drive after " in metric:
        which, stage = metric.split(" drive after ")
        return [got[s]["drives"][stage][which != "own"] for s in entry["seeds"]]
    return [got[s]["accuracy"][metric] for s in entry["seeds"]]


def leads(entry, lead, metric, out):
    """studies/weights_only.py's results: each lead's finals on the validation split."""
    found = read_json(os.path.join(out, "weights-only-leads", "results.json")) or {}
    finals = dict(zip(found.get("seeds", []), found.get("finals", {}).get(lead, [])))
    return [finals[s] for s in entry["seeds"]] if set(entry["seeds"]) <= set(finals) else None


def robustness(entry, method, metric, out):
    """studies/robustness.py's job files: metric "clean" (the clean test images), "KIND LEVEL", the accuracy at
    one point of a grid ("blur 2.5", "noise 0.3", "fgsm 0.1"), or "ATTACK SCORE", a score of an attack's job
    ("deepfool median_l2", "jsma success": robustness.attack_scores)."""
    folder = os.path.join(out, "robustness_quick" if "--quick" in entry["command"].split() else "robustness")
    kind, _, level = metric.partition(" ")
    if kind in ("deepfool", "jsma", "cw"):
        recs = [read_json(os.path.join(folder, "attacks", f"seed{s}_{method}.json")) for s in entry["seeds"]]
        return None if None in recs or any(kind not in r["scores"] for r in recs) else [r["scores"][kind][level] for r in recs]
    recs = [read_json(os.path.join(folder, f"seed{s}_{method}.json")) for s in entry["seeds"]]
    if None in recs:
        return None
    if metric == "clean":
        return [r["clean"] for r in recs]
    at = [r["grids"].get(kind, []).index(float(level)) if float(level) in r["grids"].get(kind, []) else None for r in recs]
    return None if None in at else [r["curves"][kind][i] for r, i in zip(recs, at)]


def own_networks(entry, sleep, metric, out):
    """studies/own_networks.py's job files: metric "accuracy", one sleep's final test accuracy on the network the
    entry's command names (--networks NAME)."""
    options = shlex.split(entry["command"])
    network = options[options.index("--networks") + 1]
    recs = [read_json(os.path.join(out, "own_networks", network, f"{sleep}-{s}.json")) for s in entry["seeds"]]
    return None if None in recs else [r[metric] for r in recs]


# a study's reader, and its command's options besides the entry's (seeds; where it writes)
STUDIES = {
    "studies/robustness.py": (robustness, lambda out, workers: ["--out", out]),
    "studies/patches.py": (patches, lambda out, workers: ["--out", os.path.join(out, "patches"), "--quiet"]),
    "studies/weights_only.py": (leads, lambda out, workers: ["--out", out, "--workers", str(workers)]),
    "studies/own_networks.py": (own_networks, lambda out, workers: ["--out", out, "--quiet"]),
}


def per_seed(entry, method, metric, manifest, out):
    """The entry's method's metric on each of its seeds; "minus X": less X's final, seed by seed (X a method of the
    same run or another entry). None when a job is not finished."""
    script, *options = shlex.split(entry["command"])
    if metric.startswith("minus "):
        other = paired(metric, manifest)
        first = per_seed(entry, method, "all", manifest, out)
        second = per_seed(dict(other, seeds=entry["seeds"]), next(iter(other["expected"])), "all", manifest, out) if other \
            else per_seed(entry, metric[len("minus "):], "all", manifest, out)
        return None if first is None or second is None else [a - b for a, b in zip(first, second)]
    if script != "mnist_exp.py":
        return STUDIES[script][0](entry, method, metric, out)
    folder = run_dir(options, runs(entry, manifest)[0][2], out, entry["name"])
    recs = [job(folder, method, seed) for seed in entry["seeds"]]
    return None if None in recs else [measure(rec, metric) for rec in recs]


# %% Does it hold?
def spread(values):
    """Mean ± sample std (the mean alone for one value), rounded as the docs print them."""
    return analysis.text(*analysis.mean_std(values))


def holds(want, got, metric, tolerance):
    if metric == "diverged":
        return sum(got) == want
    if metric == "kept_bytes":
        return set(got) == {want}
    # to the printed digit: within half of its last place (a mean on a rounding edge may print either way)
    same = lambda a, b: len(a) == len(b) and all(abs(x - y) <= 0.05 + 1e-9 for x, y in zip(a, b))
    if metric == "per_seed":   # under 2se the mean ("all") says it
        return tolerance == "2se" or same(want, got)
    mean, std = analysis.mean_std(got)
    if tolerance == "digit":
        return same(want, [mean, std][:len(want)])
    band = max(2 * want[1] / math.sqrt(len(got)) if len(want) > 1 else 0.0, 0.05)
    return abs(mean - want[0]) <= band + 1e-9


def show(want, got, metric):
    """The expected and the found value, as the docs print them."""
    if metric == "per_seed":
        return [", ".join(f"{x:.1f}" for x in v) for v in (want, got)]
    if metric in ("diverged", "kept_bytes"):
        return [str(want), str(sum(got)) if metric == "diverged" else ", ".join(map(str, sorted(set(got))))]
    return [" ± ".join(f"{x:.1f}" for x in want), spread(got)]


def verdict(entry, manifest, out):
    """'holds', 'drifted (expected X, got Y)' or 'not run'."""
    drifted = []
    for method, metrics in entry["expected"].items():
        for metric, want in metrics.items():
            got = per_seed(entry, method, metric, manifest, out)
            if got is None:
                return "not run"
            if not holds(want, got, metric, entry["tolerance"]):
                drifted.append("{} {}: expected {}, got {}".format(method, metric, *show(want, got, metric)))
    if not drifted:
        return "holds"
    path = "" if entry["code_path"] == codepath.CODE_PATH else f"; the docs' numbers were made on the {entry['code_path']} code path"
    return f"drifted ({drifted[0]}" + (f"; {len(drifted) - 1} more" if len(drifted) > 1 else "") + path + ")"


# %% Running and listing
def compute(entries, manifest, out, workers):
    """Run what the entries that are not finished need: one command per run folder and seeds, whose finished jobs it
    skips (the entries of a study all take its one command)."""
    commands = {}
    for entry in [e for e in entries if verdict(e, manifest, out) == "not run"]:
        for script, options, methods, seeds in runs(entry, manifest):
            key = (script, tuple(options), tuple(seeds))
            commands[key] = list(dict.fromkeys(commands.get(key, []) + methods))
    for (script, options, seeds), methods in commands.items():
        print(f"== {shown(script, list(options), methods, seeds)}", flush=True)
        code = results.experiment(options, ",".join(methods), seeds, out, workers) if script == "mnist_exp.py" else \
            results.child([sys.executable, os.path.join(config.ROOT, script), *options, "--seeds", *map(str, seeds),
                           *STUDIES[script][1](out, workers)])
        if code:
            print(f"(it failed: exit code {code}; its entries read what it finished)", flush=True)


def cost(entries, manifest):
    """Minutes on 2 cores for the entries together: an entry whose jobs another already runs adds its share of new ones."""
    seen, total = set(), 0.0
    for entry in entries:
        keys = {(s, tuple(o), m, seed) for s, o, ms, seeds in runs(entry, manifest) for m in ms for seed in seeds}
        total += entry["minutes"] * len(keys - seen) / len(keys)
        seen |= keys
    return total


def main(argv):
    p = config.Parser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
    which = p.add_mutually_exclusive_group()
    which.add_argument("--only", nargs="+", metavar="NAME", help="these entries")
    which.add_argument("--quick", action="store_true", help="the entries marked quick: about a minute in all (CI runs them)")
    which.add_argument("--all", action="store_true", help="every entry")
    p.add_argument("--list", action="store_true", help="list the entries (all, or those chosen) with their cost; run nothing")
    p.add_argument("--check", action="store_true", help="compare the entries (all, or those chosen) with the finished runs; "
                                                         "run nothing")
    p.add_argument("--workers", type=int, default=2, help="processes of each run (default: 2)")
    p.add_argument("--out", default="runs", help="where the run folders are (mnist_exp.py's --out; the studies' results "
                                                 "under it; default: runs)")
    p.add_argument("--manifest", default=MANIFEST, help="the manifest (default: studies/reproduce.json)")
    args = p.parse_args(argv)
    if not (args.list or args.check or args.only or args.quick or args.all):
        config.fail("choose --list, --check, --quick, --only NAME ... or --all (see --help)", PROG)
    if args.workers < 1:
        config.fail(f"--workers must be a whole number >= 1; got {args.workers}", PROG)
    manifest = load(args.manifest)
    unknown = [n for n in args.only or [] if n not in manifest]
    if unknown:
        config.fail(f"no entry named {', '.join(unknown)} (--list names them)", PROG)
    entries = [manifest[n] for n in args.only] if args.only else \
        [e for e in manifest.values() if e.get("quick")] if args.quick else list(manifest.values())
    width = max(len(e["name"]) for e in entries)
    if args.list:
        for e in entries:
            print(f"{e['name']:<{width}}  {e['minutes']:5.1f} min{' quick' if e.get('quick') else '      '}  "
                  + shown(*runs(e, manifest)[0]))
        minutes = cost(entries, manifest)
        print(f"{len(entries)} entries: about " + (f"{minutes:.1f} minutes" if minutes < 60 else f"{minutes / 60:.1f} hours")
              + " on 2 cores (jobs that entries share counted once)")
        return 0
    if not args.check:
        try:
            compute(entries, manifest, args.out, args.workers)
        except KeyboardInterrupt:   # Ctrl-C or SIGTERM: the run in progress stopped (results.child)
            print(f"{PROG}: stopped; the finished jobs are kept: run the same command to resume", file=sys.stderr)
            return 130
    verdicts = {e["name"]: verdict(e, manifest, args.out) for e in entries}
    for name, said in verdicts.items():
        print(f"{name:<{width}}  {said}")
    counts = {k: sum(v.startswith(k) for v in verdicts.values()) for k in ("holds", "drifted", "not run")}
    print(f"{counts['holds']} hold, {counts['drifted']} drifted, {counts['not run']} not run")
    return 0 if counts["holds"] == len(entries) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
