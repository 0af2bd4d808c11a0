"""The reproduction manifest (studies/reproduce.json) against the docs: every number of the tables it covers, and
the numbers it quotes from their text, are the manifest's; its commands are valid; its quick subset runs in CI."""
import json
import os
import re
import runpy
import shlex
import sys

import numpy as np
import pytest

import reproduce
import results

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
with open(reproduce.MANIFEST) as f:
    MANIFEST = json.load(f)
ENTRIES = {e["name"]: e for e in MANIFEST["entries"]}
NUMBER = r"[-−+]?\d[\d,]*(?:\.\d+)?"


def tables(doc, section):
    """The markdown tables under a heading of a doc, up to the next heading (code blocks skipped): each a list of its
    lines' cells, the header first (the |---| line left out)."""
    with open(os.path.join(ROOT, doc)) as f:
        lines = f.read().splitlines()
    heads = [i for i, line in enumerate(lines) if line.startswith("#") and line.lstrip("#").strip() == section]
    assert heads, f"{doc} has no heading {section!r}"
    found, current, code = [], None, False
    for line in lines[heads[0] + 1:]:
        code ^= line.startswith("```")
        if line.startswith("#") and not code:
            break
        if line.startswith("|") and not code:
            if current is None:
                current = []
                found.append(current)
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip()[1:-1])]
            if not all(set(c) <= set("-:") for c in cells):
                current.append(cells)
        else:
            current = None
    return found


def number(text):
    return float(text.replace("−", "-").replace(",", ""))


def cell(text):
    """A cell's numbers: {"value": [mean, std], "n": n, "diverged": k} for "mean ± std (n=N, K diverged)", {"value":
    [v1, v2, ...]} for a list, {"value": x} for one number; None for text (or an empty cell)."""
    s = text.replace("**", "").strip()
    m = re.fullmatch(rf"({NUMBER}) ± ({NUMBER})(?: \(n=(\d+)(?:, (\d+) diverged)?\))?", s)
    if m:
        return dict(value=[number(m[1]), number(m[2])], n=m[3] and int(m[3]), diverged=int(m[4] or 0))
    if re.fullmatch(rf"{NUMBER}(?:, {NUMBER})+", s):
        return dict(value=[number(x) for x in s.split(", ")])
    return dict(value=number(s)) if re.fullmatch(NUMBER, s) else None


def rows(table):
    """{row key: {column spec: the cell's numbers}} of a table of the manifest: the key is its label cells joined
    by " | "; a number column's spec is METRIC (the row's one method) or METHOD/METRIC."""
    spec = MANIFEST["tables"][table]
    (head, *lines) = tables(spec["doc"], spec["section"])[spec.get("index", 0)]
    assert head == [name for name, _ in spec["columns"]], f"{table}: the columns of {spec['doc']}'s table changed"
    found = {}
    for line in lines:
        key = " | ".join(c for c, (_, what) in zip(line, spec["columns"]) if what == "label")
        found[key] = {what: cell(c) for c, (_, what) in zip(line, spec["columns"]) if what not in (None, "label") and cell(c)}
    return found


def quoted(value, difference=False):
    """A value as the docs' text prints it: 72.3 ± 1.8, 57.0; a difference with its sign (+0.7, −2.0)."""
    text = " ± ".join(f"{x:{'+' if difference and i == 0 else ''}.1f}" for i, x in enumerate(value))
    return text.replace("-", "−")


def test_the_readme_headline_table_is_covered_column_by_column():
    spec = MANIFEST["tables"]["readme-headline"]
    assert (spec["doc"], spec["section"]) == ("README.md", "Split MNIST, by what each method keeps")
    assert all(what for _, what in spec["columns"]), "every column of the headline table holds a checked number"
    assert sum(bool(cells) for cells in rows("readme-headline").values()) >= 15


@pytest.mark.parametrize("table", MANIFEST["tables"])
def test_every_number_of_a_covered_table_is_its_entrys(table):
    spec, found = MANIFEST["tables"][table], rows(table)
    for key, cells in found.items():
        if key in spec.get("skip", {}) or not cells:
            continue
        covering = [e for e in ENTRIES.values() if e.get("rows", {}).get(table) == key]
        assert covering, f"{spec['doc']}: the row {key!r} has no entry in the manifest"
        for what, c in cells.items():
            if what == "n":
                assert all(len(e["seeds"]) == c["value"] for e in covering), f"{table} {key!r}: n"
                continue
            method, metric = what.split("/", 1) if "/" in what else (None, what)
            mine = [e for e in covering if (method in e["expected"] if method else len(e["expected"]) == 1)]
            assert len(mine) == 1, f"{table} {key!r}: {what} is in {len(mine)} of the row's entries, not 1"
            entry = mine[0]
            want = entry["expected"][method or next(iter(entry["expected"]))]
            value = c["value"] if isinstance(c["value"], list) or metric == "kept_bytes" else [c["value"]]
            assert want.get(metric) == value, f"{spec['doc']}, {key!r}, {what}: {value} in the docs, {want.get(metric)} " \
                                              f"in the manifest's {entry['name']}"
            if c.get("n"):   # "mean ± std (n=5, 4 diverged)"
                assert (c["n"], c["diverged"]) == (len(entry["seeds"]), want.get("diverged", 0)), f"{entry['name']}"
    stale = [e["name"] for e in ENTRIES.values() if table in e.get("rows", {}) and e["rows"][table] not in found]
    assert not stale, f"entries whose row {spec['doc']} no longer has: {stale}"


def test_every_number_an_entry_quotes_is_in_its_docs():
    for entry in ENTRIES.values():
        for doc in entry.get("quoted_in", []):
            with open(os.path.join(ROOT, doc)) as f:
                text = f.read()
            for method, metrics in entry["expected"].items():
                for metric, value in metrics.items():
                    assert quoted(value, metric.startswith("minus ")) in text, f"{entry['name']}: {method} {metric} {value} " \
                                                                              f"is not in {doc}"


def test_every_entry_says_where_it_comes_from_and_runs_as_documented():
    tolerances, paths = {"digit", "2se"}, {"avx2", "auto", "compatible"}
    for name, entry in ENTRIES.items():
        script, *options = shlex.split(entry["command"])
        assert entry.get("rows") or entry.get("quoted_in") or entry.get("note"), f"{name}: from where?"
        assert set(entry.get("rows", {})) <= set(MANIFEST["tables"]), f"{name}: a table the manifest does not describe"
        assert entry["tolerance"] in tolerances and entry["code_path"] in paths and entry["minutes"] > 0, name
        assert not {"--seeds", "--out", "--workers", "--quiet", "--no-figures"} & set(options), f"{name}: reproduce.py adds those"
        if entry["tolerance"] == "2se":   # the mean is what holds or not: per-seed values come with it
            assert all("all" in r for r in entry["expected"].values() if "per_seed" in r), name
        if script == "mnist_exp.py":   # a valid command (else config's one-line error, exit 2)
            reproduce.run_dir(options, reproduce.runs(entry, ENTRIES)[0][2], "runs", name)
        else:
            assert script in reproduce.STUDIES, name
    # CI runs the quick entries: they must stay near a minute on 2 cores
    assert 0 < sum(e["minutes"] for e in ENTRIES.values() if e.get("quick")) <= 1.25


def test_holds_to_the_digit_or_within_two_standard_errors():
    finals = [43.5, 38.2, 40.7, 52.9, 49.6]   # 45.0 ± 6.1
    assert reproduce.holds([45.0, 6.1], finals, "all", "digit")
    assert not reproduce.holds([45.0, 6.1], [f + 0.1 for f in finals], "all", "digit")
    assert reproduce.holds([45.0, 6.1], [f + 5.4 for f in finals], "all", "2se")        # 2 SE = 5.46
    assert not reproduce.holds([45.0, 6.1], [f + 5.5 for f in finals], "all", "2se")
    assert reproduce.holds([19.3, 0.0], [19.34] * 5, "all", "2se")                      # std 0: the printed digit
    assert not reproduce.holds([19.3, 0.0], [19.36] * 5, "all", "2se")
    assert not reproduce.holds([43.5, 38.2, 40.7, 52.9, 49.7], finals, "per_seed", "digit")
    assert reproduce.holds([43.5, 38.2, 40.7, 52.9, 49.7], finals, "per_seed", "2se")    # there the mean says it
    assert reproduce.holds(4, [1, 1, 0, 1, 1], "diverged", "2se") and reproduce.holds(31400, [31400] * 5, "kept_bytes", "2se")


def test_check_reads_each_seeds_job_and_pairs_seeds(tmp_path):
    """A run folder with made-up jobs: an entry holds, drifts or is not run, and a difference is taken seed by seed."""
    entry = dict(name="made-up", command="mnist_exp.py --n-tasks 2", seeds=[0, 1], tolerance="digit", code_path="avx2",
                 expected={"src": {"all": [41.0, 1.4], "per_seed": [40.0, 42.0], "task_2": [59.0, 1.4],
                                   "minus sequential": [20.5, 0.7]}})
    folder = reproduce.run_dir(["--n-tasks", "2"], ["src", "sequential"], str(tmp_path), "made-up")
    os.makedirs(os.path.join(folder, "jobs"))
    for method, finals in (("src", [40.0, 42.0]), ("sequential", [20.0, 21.0])):
        for seed, final in enumerate(finals):
            rows = [dict(stage="train_1", task_1=99.0, task_2=0.0, all=50.0, task_il=99.0),
                    dict(stage="final", task_1=final, task_2=100 - final, all=final, task_il=99.0)]
            path = os.path.join(folder, "jobs", f"{method}-seed{seed}")
            with open(path + ".json", "w") as f:
                json.dump(dict(method=method, seed=seed, rows=rows, stable_rank=[], time=dict(total=1.0), kept_bytes=0), f)
            np.savez(path + ".npz", labels=np.zeros(1))
    manifest = {"made-up": entry}
    assert reproduce.verdict(entry, manifest, str(tmp_path)) == "holds"
    entry["expected"]["src"]["all"] = [41.1, 1.4]
    assert reproduce.verdict(entry, manifest, str(tmp_path)) == "drifted (src all: expected 41.1 ± 1.4, got 41.0 ± 1.4)"
    assert reproduce.verdict(dict(entry, seeds=[0, 1, 2]), manifest, str(tmp_path)) == "not run"


def test_the_robustness_reader_takes_each_seeds_clean_accuracy_and_grid_points(tmp_path):
    entry = dict(name="made-up", command="studies/robustness.py --run", seeds=[0, 1], tolerance="digit", code_path="avx2",
                 expected={"sleep": {"clean": [93.5, 0.7], "blur 2.5": [79.0, 1.4]}})
    os.makedirs(tmp_path / "robustness")
    for seed, (clean, blurred) in enumerate([(93.0, 78.0), (94.0, 80.0)]):
        rec = dict(seed=seed, method="sleep", clean=clean, grids={"blur": [0.5, 2.5]}, curves={"blur": [clean, blurred]})
        (tmp_path / "robustness" / f"seed{seed}_sleep.json").write_text(json.dumps(rec))
    assert reproduce.robustness(entry, "sleep", "blur 2.5", str(tmp_path)) == [78.0, 80.0]
    assert reproduce.robustness(entry, "sleep", "blur 0.5", str(tmp_path)) == [93.0, 94.0]
    assert reproduce.verdict(entry, {"made-up": entry}, str(tmp_path)) == "holds"
    assert reproduce.robustness(entry, "sleep", "blur 3", str(tmp_path)) is None          # not a point of the grid
    assert reproduce.robustness(entry, "sleep", "noise 0.1", str(tmp_path)) is None       # not a grid of the jobs
    assert reproduce.robustness(entry, "control", "clean", str(tmp_path)) is None         # not run
    assert reproduce.robustness(dict(entry, command="studies/robustness.py --run --quick"), "sleep", "clean",
                                str(tmp_path)) is None                                    # --quick: its own folder
    # an attack's scores: its own job files (OUT/robustness/attacks)
    os.makedirs(tmp_path / "robustness" / "attacks")
    for seed, l2 in enumerate([1.25, 1.5]):
        rec = dict(seed=seed, method="sleep", scores={"deepfool": {"success": 100.0, "median_l2": l2}})
        (tmp_path / "robustness" / "attacks" / f"seed{seed}_sleep.json").write_text(json.dumps(rec))
    assert reproduce.robustness(entry, "sleep", "deepfool median_l2", str(tmp_path)) == [1.25, 1.5]
    assert reproduce.robustness(entry, "sleep", "cw median_l2", str(tmp_path)) is None    # not an attack of the jobs


def test_the_own_networks_reader_takes_the_named_network_s_jobs(tmp_path):
    entry = dict(command="studies/own_networks.py --run --networks vdv", seeds=[0, 1])
    os.makedirs(tmp_path / "own_networks" / "vdv")
    for seed, acc in enumerate([21.5, 19.0]):
        (tmp_path / "own_networks" / "vdv" / f"calibrated-{seed}.json").write_text(json.dumps(dict(accuracy=acc)))
    assert reproduce.own_networks(entry, "calibrated", "accuracy", str(tmp_path)) == [21.5, 19.0]
    assert reproduce.own_networks(entry, "none", "accuracy", str(tmp_path)) is None                       # not run
    assert reproduce.own_networks(dict(entry, seeds=[0, 1, 2]), "calibrated", "accuracy", str(tmp_path)) is None


@pytest.mark.slow
@pytest.mark.xdist_group("quick_run")   # (on the worker that holds quick_run)
def test_list_then_the_quick_entries_run_and_hold(quick_run, in_process, monkeypatch):
    script = os.path.join(ROOT, "studies", "reproduce.py")
    # the entries' commands (python SCRIPT ARGS, results.child's) in this process, without a start-up each: the
    # scripts run as processes of their own in quick_run (mnist_exp.py) and test_results.py's test of --help
    def child(cmd):
        monkeypatch.setattr(sys, "argv", cmd[1:])
        try:
            runpy.run_path(cmd[1], run_name="__main__")
        except SystemExit as stop:
            return stop.code or 0
        return 0
    monkeypatch.setattr(results, "child", child)
    listed = in_process(script, "--list")
    assert listed.returncode == 0, listed.stderr
    assert all(name in listed.stdout for name in ENTRIES) and "hours on 2 cores" in listed.stdout
    # into quick_run's folder: the smoke entry (mnist_exp.py --quick, seed 0) is found finished there and checked to
    # the digit; the other quick entries run
    quick = in_process(script, "--quick", "--out", str(quick_run[0]), "--workers", "1")
    said = dict(line.split(None, 1) for line in quick.stdout.splitlines() if line.split(" ", 1)[0] in ENTRIES)
    assert said == {name: "holds" for name, e in ENTRIES.items() if e.get("quick")}, quick.stdout + quick.stderr
    assert quick.returncode == 0
    bad = in_process(script, "--only", "no-such-entry")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "no entry named no-such-entry" in bad.stderr
