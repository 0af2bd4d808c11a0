"""The configuration: one precedence, every option acts or is refused, the run folder's name, bad files."""
import dataclasses
import glob
import json
import os
import re
import sys

import pytest
import torch

import config
import constants
import methods
import src
from config import DEFAULTS, ConfigError, resolve


@pytest.fixture(autouse=True)
def in_a_notebook(monkeypatch):
    """Errors as exceptions (as in a notebook) instead of exit code 2, so that their messages can be read."""
    monkeypatch.setattr(config, "INTERACTIVE", True)


def error(*argv, cfg=DEFAULTS):
    with pytest.raises(ConfigError) as info:
        resolve(cfg, list(argv))
    return str(info.value)


def test_one_precedence_defaults_protocol_preset_quick_yours(monkeypatch):
    monkeypatch.setitem(config.PRESETS, "variant", ("original", {"mnist": dict(constants.ORIGINAL["mnist"], epochs=3,
                                                                              sleep_steps=7000, inc=0.5)}))
    cfg = resolve(DEFAULTS, ["--preset", "variant"])
    assert (cfg.epochs, cfg.sleep_steps, cfg.sleep.inc, cfg.rate) == (3, 7000, 0.5, 239.515363)
    assert cfg.origin["epochs"] == "preset" and cfg.origin["preset"] == "yours"
    # quick's sizes beat the preset's; what you set beats both
    assert resolve(DEFAULTS, ["--preset", "variant", "--quick"]).sleep_steps == 1000
    cfg = resolve(DEFAULTS, ["--preset", "variant", "--quick", "--sleep-steps", "20", "--inc", "0.1", "--epochs", "5"])
    assert (cfg.sleep_steps, cfg.sleep.steps, cfg.inc, cfg.sleep.inc, cfg.epochs) == (20, 20, 0.1, 0.1, 5)
    # a Config cell's edit counts as yours, and the command line wins over it
    cell = config.Config(inc=0.07, epochs=4, preset="variant")
    cfg = resolve(cell, [])
    assert (cfg.sleep.inc, cfg.epochs, cfg.sleep_steps) == (0.07, 4, 7000)
    assert resolve(cell, ["--inc", "0.09"]).sleep.inc == 0.09
    # the protocol's training is below the preset and yours
    cfg = resolve(DEFAULTS, ["--protocol", "replica", "--lr", "0.2", "--hidden", "30", "20"])
    assert (cfg.lr, cfg.hidden, cfg.init, cfg.preset) == (0.2, (30, 20), "torch", "replica")


def test_the_replica_protocol_and_its_preset():
    cfg = resolve(DEFAULTS, ["--protocol", "replica"])
    assert (cfg.hidden, cfg.init, cfg.output, cfg.lr, cfg.inverted_dropout, cfg.keep_momentum, cfg.merge_init) == \
        ((4000, 4000), "torch", "linear-ce", 0.01, True, False, "own")
    s = cfg.sleep
    assert (s.factor, s.inc, s.dec, s.steps, s.steps_increment, s.input) == ("logistic", 0.001, 0.0001, 400, 133, "replica")
    assert s.alpha == (14.983829, 253.17746, 7.770772) and s.rate == 239.515363
    back = resolve(DEFAULTS, ["--protocol", "replica", "--hidden", "1200", "1200", "--keep-momentum", "--alpha"])
    assert back.hidden == (1200, 1200) and back.keep_momentum and back.sleep.alpha is None and back.init == "torch"
    assert "-replica-" in config.run_name(cfg) and "replica" not in config.run_name(resolve())
    assert "--preset beyond belongs to --protocol original, not replica" in error("--protocol", "replica", "--preset", "beyond")


@pytest.mark.parametrize("argv, message", [
    (["--methods", "sequential,src", "--memory", "100"], "--memory applies only with an iCaRL method"),
    (["--methods", "src", "--distillation"], "--distillation applies only with an iCaRL method"),
    (["--exemplars", "random"], "--exemplars applies only with an iCaRL method"),
    (["--sleep-samples", "3"], "--sleep-samples applies only with --sleep-input replica"),
    (["--sleep-input", "images", "--mask-size", "5"], "--mask-size applies only with --sleep-input mean or class-means"),
    (["--methods", "src", "--merge-init", "own"], "--merge-init applies only with --methods merging"),
    (["--ewc-lambda", "5"], "--ewc-lambda applies only with --methods ewc"),
    (["--lwf-lambda", "2"], "--lwf-lambda applies only with --methods lwf or lwf-src"),
    (["--lwf-outputs", "all"], "--lwf-outputs applies only with --methods lwf or lwf-src"),
    (["--methods", "parallel", "--replay", "0.05"], "--replay applies only with a method that trains task by task"),
    (["--preset", "lwf", "--methods", "lwf,src"], "--preset lwf has no sleep constants (it is a baseline's training)"),
    (["--methods", "lwf", "--lwf-outputs", "some"], "--lwf-outputs must be one of earlier, all; got 'some'"),
    (["--methods", "lwf", "--lwf-lambdas", "0", "1"], "--lwf-lambdas needs one strength per task learnt (5); got 2"),
    (["--methods", "lwf", "--lwf-lambdas", "0", "1", "1", "1", "-1"], "--lwf-lambdas must be >= 0"),
    (["--methods", "lwf", "--lwf-lambdas", "0", "1", "1", "1", "1", "--lwf-lambda", "2"], "--lwf-lambdas sets every task's strength"),
    (["--score-on", "train", "--validation", "100"], "--score-on applies only with the test set or the training images"),
    (["--methods", "lwf", "--lwf-temperature", "3"], "--lwf-temperature applies only with --methods lwf or lwf-src and --output linear-ce"),
    (["--sleep-exp", "fast", "--engine", "torch"], "--sleep-exp fast is the numba engine's"),
    (["--si-c", "1"], "--si-c applies only with --methods si"),
    (["--alpha", "1", "2", "3", "--alpha-scale", "4"], "--alpha-scale applies only with data-based scale factors"),
    (["--methods", "sequential,parallel", "--inc", "0.1"], "--inc applies only with a method that sleeps"),
    (["--sleep-bias", "unit"], "--sleep-bias applies only with --bias"),
    (["--validation", "100", "--test-limit", "50"], "--test-limit applies only with the test set"),
    (["--no-figures", "--png-dir", "x"], "--png-dir applies only with figures"),
    (["--methods", "src,icarl-src", "--memory", "100", "--output", "linear-ce"], "need different presets"),
    (["--methods", "src,icarl", "--memory", "100", "--output", "linear-ce"], "src, icarl need different presets"),
    (["--methods", ","], "--methods needs at least one method"),
    (["--methods", "srcc"], "unknown method 'srcc'"),
    (["--inc", "-1"], "--inc must be >= 0; got -1.0"),
    (["--beta", "1", "2"], "--beta needs one value per layer (3); got 2"),
    (["--plasticity", "1", "1"], "--plasticity needs one value per layer"),
    (["--sleep-input", "noise"], "--sleep-input must be one of mean, class-means, replica"),
    (["--sleep-steps", "0"], "--sleep-steps must be a whole number >= 1"),
    (["--epochs", "0"], "--epochs must be a whole number >= 1"),
    (["--seeds", "x"], "--seeds takes whole numbers"),
    (["--preset", "nope"], "--preset must be one of original"),
    (["--seeds", "-1"], "--seeds must be whole numbers from 0 to 4294967295; got -1"),
    (["--seeds", "abc"], "--seeds takes whole numbers; got abc"),
    (["--seeds", "99999999999999999999"], "--seeds must be whole numbers from 0"),
    (["--hidden", "0"], "--hidden needs one or more widths, each a whole number >= 1; got 0"),
    (["--hidden", "0", "0"], "--hidden needs one or more widths"),
    (["--hidden", "1000000000"], "--hidden 1000000000: the network's weights, momentum and a copy need 17747.3 GiB, more than"),
    (["--lr", "inf"], "--lr must be a finite number; got inf"),
    (["--dataset", "cifar"], "--dataset must be one of mnist, fashion-mnist, mnist-fashion, permuted-mnist; got 'cifar'"),
    (["--classes-per-task", "0"], "--classes-per-task must be a whole number >= 1; got 0"),
    (["--classes-per-task", "3"], "--classes-per-task must divide"),
    (["--mask-size", "100"], "--mask-size must be a whole number from 1 to the image side, 28; got 100"),
    (["--workers", "0"], "--workers must be a whole number >= 1; got 0"),
    (["--workers", "-1"], "--workers must be a whole number >= 1; got -1"),
    (["--lr", "-1"], "--lr must be > 0"),
    (["--inc", "-1"], "--inc must be >= 0; got -1"),
    (["--decay", "2"], "--decay must be in [0, 1]"),
    (["--methods", "src,ewc9"], "--methods: unknown method 'ewc9'"),
    (["--plasticity", "1,0"], "--plasticity needs one value per layer, as beta (3); got 2"),
    (["--dropout", "1.5"], "--dropout must be in [0, 1)"),
    (["--sleep-input", "noise"], "--sleep-input must be one of mean, class-means"),
    (["--engine", "gpu"], "--engine must be one of auto, numba, torch"),
    (["--device", "tpu"], "--device must be cpu, cuda, cuda:N or auto"),
    (["--config", "/no/such/config.json"], "--config /no/such/config.json: cannot read it"),
    (["--methods", "icarl"], "--methods icarl needs --memory, a whole number of exemplars from 10 to 20000; got 0"),
    (["--methods", "icarl-src", "--memory", "100"], "--methods icarl-src needs --output linear-ce"),
    (["--exemplars", "greedy"], "--exemplars must be one of herding, random; got 'greedy'"),
    (["--bias", "--sleep-bias", "scaled"], "--sleep-bias must be one of ignore, current, unit; got 'scaled'"),
])
def test_an_option_that_cannot_act_is_refused_in_one_line(argv, message):
    got = error(*argv)
    assert message in got and "\n" not in got


def test_settings_at_their_default_do_not_rename():
    name = config.run_name(resolve())
    assert name == config.run_name(resolve(DEFAULTS, ["--sleep-data", "seen", "--validation", "0", "--hidden", "1200", "1200"]))
    assert name != config.run_name(resolve(DEFAULTS, ["--sleep-data", "current"]))
    assert name != config.run_name(resolve(DEFAULTS, ["--validation", "100"]))
    # how to run does not name the folder; a new field at its default never would
    assert name == config.run_name(resolve(DEFAULTS, ["--workers", "2", "--quiet", "--seeds", "3", "--out", "x"]))
    assert name.startswith("mnist-original-original-")


@pytest.mark.parametrize("content, message", [
    ("[1, 2]", "a JSON list, not an object"), ('{"hidden": 5}', "--hidden must be a list of whole numbers; got 5"),
    ('{"beta": "abc"}', "--beta must be a list of finite numbers"), ('{"lr": Infinity}', "--lr must be a finite number"), ('{"epochs": 2.5}', "--epochs must be a whole number"),
    ('{"widht": 3}', "unknown fields widht"), ("{", "cannot read it as a config.json"),
])
def test_a_damaged_config_file_is_one_line(tmp_path, content, message):
    path = tmp_path / "config.json"
    path.write_text(content)
    assert message in error("--config", str(path))


def test_a_run_folders_config_resolves_to_the_same_folder(tmp_path):
    cfg = resolve(DEFAULTS, ["--preset", "beyond", "--quick", "--epochs", "3"])
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config.science(cfg)))
    again = resolve(DEFAULTS, ["--config", str(path)])
    assert config.run_name(again) == config.run_name(cfg) and again.sleep == cfg.sleep


def test_command_line_errors_are_one_line_with_exit_code_2(in_process):
    # 10 is EWC's default: typed, it is refused as any other value; -1,1,1 is a value, not an option
    for argv, message in ((["--methods", "src", "--distillation"], "--distillation applies only"), (["--junk"], "--junk"),
                          (["--epochs", "x"], "--epochs"),
                          (["--methods", "sequential,src", "--ewc-lambda", "10", "--quick"], "--ewc-lambda applies only"),
                          (["--plasticity", "-1,1,1"], "--plasticity must be >= 0")):
        proc = in_process("mnist_exp.py", *argv)
        assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert proc.stderr.startswith("mnist_exp.py: error: ") and message in proc.stderr and not proc.stdout


@pytest.mark.parametrize("args, message", [
    (["studies/replay.py", "--fractions", "abc"], "replay.py: error: --fractions takes the rows' --replay values"),
    (["studies/replay.py", "--fractions", "0.1", "0.10"], "replay.py: error: --fractions gives one fraction more than once"),
    (["studies/replay.py", "--fractions", "0", "--out", "/dev/null/x"], "replay.py: error: --out /dev/null/x/replay: cannot"),
    (["studies/patches.py", "--seeds", "99999999999"], "patches.py: error: --seeds must be whole numbers from 0 to 4294967295"),
    (["studies/patches.py", "--out", "/dev/null/x"], "patches.py: error: --out /dev/null/x: cannot write there"),
])
def test_a_study_scripts_errors_are_one_line_with_its_name(in_process, args, message):
    proc = in_process(*args)
    assert proc.returncode == 2 and proc.stderr.startswith(message) and proc.stderr.count("\n") == 1, proc.stderr


def test_an_error_names_the_script_that_runs_without_being_told(monkeypatch, capsys):
    monkeypatch.setattr(config, "INTERACTIVE", False)
    monkeypatch.setattr(sys, "argv", ["studies/tune.py", "--methods", "srcc"])
    with pytest.raises(SystemExit) as stop:
        resolve(DEFAULTS, ["--methods", "srcc"])
    assert stop.value.code == 2 and capsys.readouterr().err.startswith("tune.py: error: --methods: unknown method 'srcc'")
    assert not hasattr(config, "PROG")   # no name left behind by an earlier resolve


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of a machine without CUDA")
def test_cuda_without_a_gpu_is_a_clear_error():
    assert "--device cuda: this machine has no CUDA device" in error("--device", "cuda")


def test_duplicates_are_merged_and_help_shows_real_defaults(capsys):
    cfg = config.resolve(config.DEFAULTS, ["--seeds", "7", "7", "3", "--methods", "src,src,sequential"])
    assert cfg.seeds == (7, 3) and cfg.methods == ("src", "sequential")
    with pytest.raises(SystemExit):
        config.resolve(config.DEFAULTS, ["--help"])
    out = capsys.readouterr().out
    assert "(default: None)" not in out and "(default: )" not in out and "(default: from the preset)" in out


@pytest.mark.parametrize("value", ["10", "5"])   # 10 is EWC's default
def test_an_option_typed_at_its_default_is_yours_as_any_value(value):
    assert error("--methods", "sequential,src", "--ewc-lambda", value) == "--ewc-lambda applies only with --methods ewc"
    assert "--epochs and --task-epochs both set" in error("--n-tasks", "2", "--task-epochs", "2", "5", "--epochs", "2")
    # and it wins over the protocol's and the preset's values
    assert resolve(DEFAULTS, ["--protocol", "replica", "--hidden", "1200", "1200"]).hidden == (1200, 1200)
    cfg = resolve(DEFAULTS, ["--preset", "lwf", "--methods", "lwf", "--epochs", "2", "--no-bias", "--lwf-lambda", "4"])
    assert (cfg.epochs, cfg.bias, cfg.lwf_lambda, cfg.hidden) == (2, False, 4.0, (256,))


def test_negative_numbers_are_values_however_they_are_written():
    assert error("--plasticity", "-1,1,1") == "--plasticity must be >= 0; got [-1.,  1.,  1.]"
    assert error("--inc", "-1e-3") == "--inc must be >= 0; got -0.001"
    assert "--seeds must be whole numbers from 0" in error("--seeds", "-1", "2")


def test_quick_in_the_config_applies_the_quick_sizes_it_does_not_override():
    cfg = config.resolve(config.Config(quick=True, epochs=3))
    assert (cfg.n_per_task, cfg.sleep_steps, cfg.epochs) == (500, 1000, 3)


@pytest.mark.parametrize("argv", [["--protocol", "replica", "--methods", "sequential,src"], ["--quick", "--validation", "30"],
                                  ["--methods", "sequential"], ["--preset", "beyond"], ["--alpha", "1", "2", "3"]])
def test_resolving_again_changes_nothing(argv, tmp_path):
    # a resolved config (the explore cell's replace + resolve, a worker's --config of the run folder's config.json)
    # holds every field the protocol, preset or quick set: none of them counts as yours a second time
    cfg = resolve(DEFAULTS, argv)
    again = resolve(cfg)
    assert config.science(again) == config.science(cfg) and again.sleep == cfg.sleep
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config.science(cfg)))
    assert config.run_name(resolve(DEFAULTS, ["--config", str(path)])) == config.run_name(cfg)


def test_a_number_names_one_folder_however_it_is_written():
    assert config.run_name(resolve(config.Config(lr=1))) == config.run_name(resolve(DEFAULTS, ["--lr", "1"]))
    assert resolve(config.Config(beta=(1, 2, 3))).sleep.beta == (1.0, 2.0, 3.0)


def test_a_run_without_sleep_needs_no_sleep_constants():
    cfg = resolve(DEFAULTS, ["--hidden", "100", "--methods", "sequential,parallel"])
    assert cfg.hidden == (100,) and cfg.sleep is None
    assert resolve(DEFAULTS, ["--protocol", "replica", "--methods", "icarl-src", "--memory", "100"]).preset == "replica"


def config_cell(edits=None):
    """The text of mnist_exp.py's Config cell and the Config it makes, with lines edited as a user does."""
    source = open(f"{config.ROOT}/mnist_exp.py").read()
    call = source[source.index("cfg = config.Config(") + len("cfg = "):source.index("\n)\n") + 2]
    for old, new in (edits or {}).items():
        assert call.count(old) == 1, old
        call = call.replace(old, new)
    return call, eval(call, {"config": config})


def test_a_value_written_in_the_config_cell_is_yours_even_at_its_default():
    replica = {'protocol="original"': 'protocol="replica"'}
    cfg = resolve(config_cell(replica)[1])   # None: the protocol's and preset's
    assert (cfg.hidden, cfg.sleep.steps) == ((4000, 4000), 400)
    cfg = resolve(config_cell(dict(replica, **{"hidden=None": "hidden=(1200, 1200)",
                                               "sleep_steps=None": "sleep_steps=15000"}))[1])
    assert (cfg.hidden, cfg.sleep.steps, cfg.init) == ((1200, 1200), 15000, "torch")
    assert config.describe(cfg).endswith("yours: protocol=replica, hidden=(1200, 1200), sleep_steps=15000")


def test_every_field_a_protocol_or_preset_sets_is_none_until_yours():
    # every sleep constant is a preset's
    set_by = {k for settings in config.PROTOCOLS.values() for k in settings} | set(methods.SLEEP_FIELDS.values()) | \
        {k for _, constants in config.PRESETS.values() for fields in constants.values() for k in fields}
    assert {k for k in set_by if getattr(config.Config(), k) is not None} == set()
    # their defaults, DEFAULTS', are declared once: the sleep's are src.Sleep's own
    own = src.Sleep(rate=1, inc=0, dec=0, beta=(1, 1, 1), alpha_scale=1)
    assert all(getattr(DEFAULTS, c) == getattr(own, s) for s, c in methods.SLEEP_FIELDS.items() if s not in (*src.SEARCHED, "alpha"))


def test_the_authors_constants_are_written_once():
    # the Fashion-MNIST rehearsal script's below 2.5 % are the MNIST class task's seven: derived from them
    cfg = resolve(DEFAULTS, ["--dataset", "fashion-mnist", "--preset", "fashion-replay-low"])
    assert {k: getattr(cfg, k) for k in constants.ORIGINAL["mnist"]} == constants.ORIGINAL["mnist"]
    # every number of the built-in presets (the authors' scripts', the replica's) and of the reduced-data sweep's precise enough to be theirs
    # alone, at least 4 significant digits: 239.515363, 0.003344, not 0.1 or 20.0
    built_in = set(config.PRESETS) - set(config.read_presets(os.path.join(config.ROOT, "presets")))
    tables = [fields for name in built_in for fields in config.PRESETS[name][1].values()] + list(constants.REDUCED.values())
    values = [v for fields in tables for value in fields.values()
              for v in (value if isinstance(value, tuple) else (value,)) if isinstance(v, float)]
    theirs = {v for v in values if len(f"{v:.6e}".split("e")[0].replace(".", "").strip("-").rstrip("0")) >= 4}
    assert {239.515363, 0.003344, 14.983829, 2.023822} <= theirs and 20.0 not in theirs
    # ... written in one module of the project's code (the tests write what they expect on purpose)
    files = [*glob.glob(f"{config.ROOT}/*.py"), *glob.glob(f"{config.ROOT}/studies/*.py"), *glob.glob(f"{config.ROOT}/docs/*.py")]
    holders = sorted(os.path.relpath(p, config.ROOT) for p in files
                     if theirs & {float(n) for n in re.findall(r"(?<![\w.])\d+\.\d+(?:e-?\d+)?", open(p).read())})
    assert holders == ["constants.py"]


def test_checking_returns_the_problems_and_changes_nothing():
    cfg = resolve(DEFAULTS, ["--methods", "sequential,src"])
    assert config.check(cfg, set()) == []
    bad = dataclasses.replace(cfg, methods=("src", "src", "ewc9"), inc=-1.0)
    bad.origin = cfg.origin
    before = dict(vars(bad))
    problems = config.check(bad, {"ewc_lambda"})
    assert {"--methods: unknown method 'ewc9' (choose from " + ", ".join(methods.METHODS) + ")", "--inc must be >= 0; got -1.0",
            "--ewc-lambda applies only with --methods ewc"} <= set(problems)
    assert vars(bad) == before   # no sleep built, no repeat merged


def test_the_config_cell_lists_every_field_at_its_default():
    # The experiment's Config cell shows each field with its default, or None (a protocol's or preset's field):
    # unedited, it sets nothing of its own (a default changed in config.py but not there would otherwise become
    # a silent setting of every run).
    call, cell = config_cell()
    assert config.yours(cell) == {}
    listed = {line.split("=")[0].strip() for part in call.splitlines()[1:] for line in part.split("#")[0].split(", ")
              if "=" in line}
    assert listed == set(config.FIELDS)


@pytest.mark.parametrize("args, message", [
    (["--task-order", "shuffled"], "--task-order must be one of fixed, random"),
    (["--n-tasks", "6"], "--n-tasks must be at most the 5 tasks of 2 classes"),
    (["--n-tasks", "2", "--task-epochs", "2", "5", "5"], "--task-epochs needs one number per task learnt (2)"),
    (["--task-epochs", "2", "0", "2", "2", "2"], "--task-epochs must be whole numbers >= 1"),
    (["--n-tasks", "2", "--task-epochs", "2", "5", "--epochs", "3"], "--epochs and --task-epochs both set the epochs"),
    (["--methods", "parallel", "--n-tasks", "2", "--task-epochs", "2", "5"], "--task-epochs applies to methods that learn"),
])
def test_task_options_are_checked(args, message):
    with pytest.raises(ConfigError) as info:
        resolve(DEFAULTS, args)
    assert message in str(info.value)
