"""What a method declares (methods.Method: its options and their ranges, what it needs, its scenarios, its search)
is what config.check refuses."""
import dataclasses
import os

import pytest

import config
import methods
from config import DEFAULTS, ConfigError, resolve


@pytest.fixture(autouse=True)
def in_a_notebook(monkeypatch):
    monkeypatch.setattr(config, "INTERACTIVE", True)


def problems(methods_run, counted=()):
    cfg = resolve(DEFAULTS, ["--methods", "sequential"])
    cfg = dataclasses.replace(cfg, methods=tuple(methods_run))
    cfg.origin = dict(config.DEFAULTS.origin)
    return config.check(cfg, set(counted))


def test_a_methods_own_option_acts_only_with_a_method_that_declares_it():
    owned = {k for spec in methods.METHODS.values() for group in spec.options for k in group.rules}
    assert owned == set(config.OWNED) and owned <= set(config.FIELDS)
    assert {"ewc_lambda", "si_c", "lwf_lambdas", "memory", "merge_init", "inc", "sleep_after"} <= owned
    for k, (group, owners) in config.OWNED.items():
        refused = f"{config.option(k)} applies only with {config.owned_applies(k)[2]}"
        assert refused in problems(["sequential"], {k}) and (refused not in problems(owners, {k}) or k in group.also), k
    # the words come from the declarations, and a further setting a field declares joins them
    assert "--si-xi applies only with --methods si" in problems(["sequential"], {"si_xi"})
    assert "--lwf-temperature applies only with --methods lwf or lwf-src and --output linear-ce" in \
        problems(["lwf"], {"lwf_temperature"})


@pytest.mark.parametrize("argv, message", [
    (["--methods", "ewc", "--ewc-lambda", "1e300"], "--ewc-lambda must be <= 1e12; got 1e+300"),
    (["--methods", "si", "--si-c", "1e300"], "--si-c must be <= 1e12; got 1e+300"),
    (["--methods", "ewc", "--ewc-lambda", "-1"], "--ewc-lambda must be >= 0; got -1.0"),
    (["--methods", "si", "--si-xi", "0"], "--si-xi must be > 0; got 0.0"),
    (["--methods", "slda", "--slda-shrinkage", "1.5"], "--slda-shrinkage must be in [0, 1]; got 1.5"),
    (["--methods", "merging", "--merge-init", "mine"], "--merge-init must be one of shared, own; got 'mine'"),
    (["--methods", "lwf", "--lwf-lambdas", "1", "1", "1", "1", "-2"], "--lwf-lambdas must be >= 0; got 1.0 1.0 1.0 1.0 -2.0"),
    (["--methods", "icarl", "--memory", "-5"], "--memory must be a whole number >= 0; got -5"),
    (["--methods", "icarl-src", "--memory", "20001", "--output", "linear-ce"],
     "--methods icarl-src needs --memory, a whole number of exemplars from 10 to 20000; got 20001"),
    (["--scenario", "domain", "--methods", "src,ewc,icarl-src", "--output", "linear-ce", "--memory", "100"],
     "--scenario domain runs sequential, control, ewc, si, lwf, lwf-src, merging, src, ncm, slda, analytic and "
     "parallel; not icarl-src (iCaRL is class-incremental"),
])
def test_a_declared_range_need_or_scenario_refuses_in_one_line(argv, message):
    with pytest.raises(ConfigError) as info:
        resolve(DEFAULTS, argv)
    assert message in str(info.value)


def test_the_strengths_at_their_bound_run_and_the_help_says_it(capsys):
    cfg = resolve(DEFAULTS, ["--methods", "ewc,si", "--ewc-lambda", "1e12", "--si-c", "1e12"])
    assert (cfg.ewc_lambda, cfg.si_c) == (1e12, 1e12)
    with pytest.raises(SystemExit):
        resolve(DEFAULTS, ["--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "(W - W*)^2 (>= 0; <= 1e12; default: 10.0)" in out and "(>= 0; <= 1e12; default: 0.01)" in out


def test_a_planted_method_declares_its_scenarios(monkeypatch):
    monkeypatch.setitem(methods.METHODS, "planted", methods.Method(scenarios=("class", "domain")))
    assert not any("runs" in p for p in problems(["planted"]))
    cfg = dataclasses.replace(resolve(DEFAULTS, ["--dataset", "mnist-fashion", "--methods", "src"]), methods=("planted",))
    cfg.origin = dict(config.DEFAULTS.origin)
    assert "--dataset mnist-fashion runs sequential, control, ewc, si, lwf, lwf-src, merging, src, ncm, slda, analytic " \
           "and parallel; not planted" in config.check(cfg, set())
    assert all("class" in spec.scenarios for spec in methods.METHODS.values())


def test_the_searches_are_the_documented_ones_and_lie_inside_the_declared_ranges():
    search = {m: spec.search for m, spec in methods.METHODS.items() if spec.search and not spec.sleep}
    assert search == dict(ewc=dict(ewc_lambda=("log", (1.0, 1e9))), si=dict(si_c=("log", (1e-2, 1e9))),
                          lwf=dict(lwf_lambda=("log", (0.01, 100.0)), lwf_schedule=("choice", ("constant", "growing")),
                                   lwf_outputs=("choice", ("earlier", "all")), lwf_temperature=("log", (0.5, 8.0))))
    for m, space in search.items():
        for k, (_, values) in space.items():
            assert all(test(v) for _, test in config.OWNED[k][0].rules[k] for v in values), (m, k)
    assert [m for m, spec in methods.METHODS.items() if spec.search and spec.sleep] == ["lwf-src", "src"]


@pytest.mark.parametrize("argv, message", [
    (["--methods", "ewc", "--ewc-lambda", "1e300"], "--ewc-lambda must be <= 1e12; got 1e+300"),
    (["--methods", "si", "--si-c", "1e300"], "--si-c must be <= 1e12; got 1e+300"),
    # --quick: 285 images of digit 0 where the first task keeps memory / 2 of each class
    (["--methods", "icarl", "--memory", "1000"], "--memory 1000: after task 1 each of its classes keeps 500 exemplars, "
                                                  "and class 0 has only 285 training images here"),
    (["--methods", "icarl-src", "--memory", "20000"], "--memory 20000: after task 1 each of its classes keeps 5000"),
])
def test_what_used_to_end_in_a_traceback_is_one_line_and_writes_nothing(argv, message, tmp_path, in_process):
    proc = in_process("mnist_exp.py", "--quick", "--output", "linear-ce", *argv, "--out", str(tmp_path))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith("mnist_exp.py: error: " + message) and os.listdir(tmp_path) == []


def data_problems(argv):
    cfg = resolve(DEFAULTS, argv)
    try:
        config.check_data(cfg, methods.prepare(cfg))
    except ConfigError as err:
        return str(err)
    return ""


def test_icarls_memory_must_fit_the_images_each_class_holds():
    # --quick: task 1's classes hold 285 and 339 images; memory m keeps round(m / 2) of each after task 1
    quick = ["--quick", "--methods", "icarl", "--output", "linear-ce", "--memory"]
    assert data_problems(quick + ["570"]) == ""
    assert data_problems(quick + ["571"]).startswith("--memory 571: after task 1 each of its classes keeps 286 exemplars")
    # one class a task: after task 2 each keeps memory / 2, more than the 5923 images of digit 0 ... or 1
    assert data_problems(["--methods", "icarl", "--output", "linear-ce", "--classes-per-task", "1", "--memory", "20000"]) \
        .startswith("--memory 20000: after task 2 each of its classes keeps 10000 exemplars, and class 1 has only 6742")
    # the full protocol's largest memory fits: 5000 of each class after task 1 (digit 5, the fewest, is task 3's)
    assert data_problems(["--methods", "icarl", "--output", "linear-ce", "--memory", "20000"]) == ""
