"""The scenarios as data (data.Tasks): class-, domain-incremental split MNIST and permuted MNIST; their label ->
output maps, permuted images, refusals and a quick domain-incremental run that learns."""
import dataclasses

import pytest
import torch

import config
import data
import methods
import models
from config import DEFAULTS, ConfigError, resolve


@pytest.fixture(autouse=True)
def in_a_notebook(monkeypatch):
    monkeypatch.setattr(config, "INTERACTIVE", True)


def tasks_of(*argv):
    cfg = resolve(DEFAULTS, ["--quick", "--device", "cpu", "--methods", "sequential", *argv])
    return cfg, methods.prepare(cfg)


def test_each_scenario_maps_labels_to_outputs_as_worked_by_hand():
    labels = torch.tensor([0, 1, 2, 3, 9])
    _, ctx = tasks_of()   # class-IL: an output per class, a task's outputs its classes
    assert (ctx.scenario, ctx.outputs, ctx.sizes[-1]) == ("class", 10, 10)
    assert ctx.output(labels).tolist() == [0, 1, 2, 3, 9] and ctx.task_outputs((2, 3)) == (2, 3)
    _, ctx = tasks_of("--scenario", "domain")   # split MNIST, domain-IL: the first or second digit of the pair
    assert (ctx.scenario, ctx.outputs, ctx.sizes[-1], ctx.split) == ("domain", 2, 2, data.class_tasks())
    assert ctx.output(labels).tolist() == [0, 1, 0, 1, 1] and ctx.task_outputs((2, 3)) == (0, 1)
    _, ctx = tasks_of("--dataset", "fashion-mnist", "--scenario", "domain", "--classes-per-task", "5")
    assert ctx.outputs == 5 and ctx.output(torch.tensor([4, 5, 7])).tolist() == [4, 0, 2]
    _, ctx = tasks_of("--dataset", "permuted-mnist", "--scenario", "domain", "--tasks", "3")
    # digit d of permuted task t is class 10 t + d, at output d
    assert (ctx.scenario, ctx.n_classes, ctx.outputs, len(ctx.split)) == ("domain", 30, 10, 3)
    assert ctx.split[1] == tuple(range(10, 20)) and ctx.task_outputs(ctx.split[2]) == tuple(range(10))
    assert ctx.output(torch.tensor([0, 13, 29])).tolist() == [0, 3, 9]
    n = len(ctx.train_x.images)
    assert n == 3000 and len(ctx.train_y) == 3 * n and (ctx.train_y[2 * n:] - ctx.train_y[:n] == 20).all()
    _, ctx = tasks_of("--dataset", "mnist-fashion")   # the pair: garment k at output k
    assert (ctx.scenario, ctx.outputs) == ("cross-modal", 10) and ctx.output(torch.tensor([3, 13])).tolist() == [3, 3]


def test_domain_il_scores_the_shared_head_and_task_il_is_the_same_outputs():
    # two tasks (0, 1), (2, 3) on two outputs: an image of digit 2 is right at output 0
    scores = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.7, 0.3], [0.6, 0.4]])
    y = torch.tensor([0, 1, 2, 3])
    ctx = data.Tasks("domain", 4, 2, ((0, 1), (2, 3)), ((0, 1), (2, 3)), (4, 2), "cpu", "torch", torch.float32,
                     None, None, None, y, 0)
    per_task, overall = models.accuracy(scores.argmax(1), y, ctx.tasks, ctx.output(y))
    assert (per_task, overall) == ([100.0, 50.0], 75.0)
    assert models.task_il(scores, y, ctx.tasks, ctx.output(y), ctx.task_outputs) == 75.0


def test_a_permuted_task_is_its_images_under_one_permutation_of_the_pixels():
    cfg, ctx = tasks_of("--dataset", "permuted-mnist", "--scenario", "domain", "--tasks", "3")
    seeded = methods.seeded(ctx, 0, cfg)
    base, n = ctx.train_x.images, len(ctx.train_x.images)
    assert seeded.train_x.images is base   # one set of images for every task: no copy per task
    first = seeded.train_x[torch.arange(n)]
    assert torch.equal(first, base)   # the first task unpermuted (as van de Ven's runs)
    tasks = [seeded.train_x[torch.arange(t * n, (t + 1) * n)] for t in range(3)]
    for t, x in enumerate(tasks):   # each image: the same multiset of pixels as the original
        assert torch.equal(x.sort(1).values, base.sort(1).values)
        assert torch.equal(x, base[:, seeded.train_x.permutations[t]])   # one permutation for all a task's images
    assert not torch.equal(tasks[1], base) and not torch.equal(tasks[1], tasks[2])
    # a minibatch across tasks is each image under its own task's permutation
    mixed = seeded.train_x[torch.tensor([5, n + 5, 2 * n + 7])]
    assert torch.equal(mixed, torch.stack([tasks[0][5], tasks[1][5], tasks[2][7]]))
    # the evaluation images of task t are permuted alike
    chunks = list(seeded.eval_chunks)
    images, y = torch.cat(chunks), seeded.eval_y
    test = ctx.eval_chunks.images.images
    where = torch.cat(list(ctx.eval_chunks.index))
    assert torch.equal(images, test[where % len(test)].gather(1, seeded.train_x.permutations[where // len(test)]))
    assert torch.equal(ctx.output(y), y % 10) and set((y // 10).tolist()) == {0, 1, 2}
    # the permutations are the seed's
    other = methods.seeded(ctx, 1, cfg).train_x.permutations
    assert torch.equal(other[0], seeded.train_x.permutations[0]) and not torch.equal(other[1], seeded.train_x.permutations[1])


def test_without_a_seed_permuted_images_are_not_read():
    _, ctx = tasks_of("--dataset", "permuted-mnist", "--scenario", "domain", "--tasks", "2")
    with pytest.raises(ValueError, match="methods.seeded"):
        ctx.train_x[torch.arange(3)]


@pytest.mark.parametrize("argv, message", [
    (["--scenario", "domain", "--methods", "icarl", "--output", "linear-ce", "--memory", "100"],
     "--scenario domain runs sequential, control, ewc, si, lwf, lwf-src, merging, src, ncm, slda, analytic and "
     "parallel; not icarl (iCaRL is class-incremental: its memory is shared out among classes as they arrive"),
    (["--dataset", "permuted-mnist", "--scenario", "domain", "--tasks", "0"],
     "--tasks must be a whole number from 1 to 100; got 0"),
    (["--dataset", "permuted-mnist", "--scenario", "domain", "--tasks", "100000"],
     "--tasks must be a whole number from 1 to 100; got 100000"),
    (["--dataset", "permuted-mnist"], "--dataset permuted-mnist is learnt domain-incrementally"),
    (["--scenario", "domain", "--dataset", "mnist-fashion", "--methods", "src"],
     "--scenario domain: --dataset mnist-fashion is its own scenario"),
    (["--scenario", "task"], "--scenario must be one of class, domain; got 'task'"),
    (["--scenario", "domain", "--classes-per-task", "1"], "--scenario domain needs --classes-per-task >= 2"),
    (["--tasks", "3"], "--tasks applies only with --dataset permuted-mnist"),
    (["--dataset", "permuted-mnist", "--scenario", "domain", "--classes-per-task", "5"],
     "--classes-per-task applies only with a split dataset"),
    (["--dataset", "permuted-mnist", "--scenario", "domain", "--tasks", "3", "--n-tasks", "4"],
     "--n-tasks must be at most the 3 tasks of 10 classes; got 4"),
])
def test_each_refusal_is_one_line(argv, message):
    with pytest.raises(ConfigError) as info:
        resolve(DEFAULTS, argv)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_a_permuted_run_asking_more_images_than_a_task_holds_is_refused():
    cfg, ctx = tasks_of("--dataset", "permuted-mnist", "--scenario", "domain", "--tasks", "2", "--n-per-task", "3001")
    with pytest.raises(ConfigError, match=r"--n-per-task 3001: task 1 has only 3000 training images"):
        config.check_data(cfg, ctx)
    cfg, ctx = tasks_of("--dataset", "permuted-mnist", "--scenario", "domain", "--tasks", "2", "--n-per-task", "3000")
    config.check_data(cfg, ctx)


def test_the_config_cell_and_the_options_have_the_new_fields():
    cfg = resolve(DEFAULTS, ["--dataset", "permuted-mnist", "--scenario", "domain", "--tasks", "4"])
    assert (cfg.scenario, cfg.tasks, cfg.origin["tasks"]) == ("domain", 4, "yours")
    # the permuted tasks sleep with MNIST's constants (the authors')
    assert cfg.sleep == resolve(DEFAULTS).sleep
    # the defaults are class-IL: the run folder of the default protocol keeps its name
    assert (DEFAULTS.scenario, DEFAULTS.tasks) == ("class", 10)
    assert config.run_name(resolve(DEFAULTS)) == config.run_name(dataclasses.replace(resolve(DEFAULTS), scenario="class"))


def learns(*argv):
    cfg = resolve(DEFAULTS, ["--quick", "--device", "cpu", "--methods", "sequential", "--probe-per-class", "1", *argv])
    rec, _ = methods.run_method("sequential", 0, cfg, methods.prepare(cfg), {}, analyses=False)
    return rec["rows"][-1]


def test_split_mnist_domain_il_learns_the_newest_task():
    final = learns("--scenario", "domain", "--n-tasks", "2", "--hidden", "50")   # (0, 1), then (2, 3) on 2 outputs
    assert final["task_2"] > 85 and final["task_il"] == final["all"]   # chance: 50 %


def test_permuted_mnist_learns_the_newest_task():
    final = learns("--dataset", "permuted-mnist", "--scenario", "domain", "--tasks", "2", "--hidden", "100",
                   "--n-per-task", "1000", "--lr", "0.3", "--test-limit", "500")
    assert final["task_2"] > 60 and final["all"] > 40   # chance: 10 %


def test_tables_name_permuted_tasks_by_their_permutation_and_pairs_by_their_digits():
    import results
    permuted = [{"tasks": [list(range(10 * t, 10 * t + 10)) for t in range(3)]}]
    names, note = results.task_names(permuted, 3, "permuted-mnist")
    assert names == ["T1 (unpermuted)", "T2 (permutation 1)", "T3 (permutation 2)"] and note == ""
    split = [{"tasks": [[0, 1], [2, 3]]}]
    assert results.task_names(split, 2, "mnist")[0] == ["T1 (0, 1)", "T2 (2, 3)"]


def test_in_domain_il_nearest_mean_keeps_a_mean_per_digit_and_scores_the_shared_outputs():
    cfg = resolve(DEFAULTS, ["--quick", "--device", "cpu", "--methods", "ncm", "--scenario", "domain"])
    rec, _ = methods.run_method("ncm", 0, cfg, methods.prepare(cfg), {}, analyses=False)
    assert rec["kept_bytes"] == 10 * (784 + 1) * 4   # ten digits' sums and counts, not the two outputs'
    assert rec["rows"][-1]["all"] > 83   # ten means give 86.1 here; the two outputs' pooled means gave 80.3


def test_the_scenarios_study_pairs_by_seed_and_says_beats_only_beyond_two_standard_errors():
    import scenarios
    base = {0: 60.0, 1: 61.0, 2: 59.0}
    mean, std, n, below = scenarios.against(base, {0: 70.0, 1: 60.0, 2: 65.0, 3: 99.0})   # seed 3 has no pair
    assert (mean, n, below) == (5.0, 3, [1]) and std == pytest.approx(31 ** 0.5)   # differences 10, -1, 6
    assert scenarios.verdict((mean, std, n, below)) == "within noise"   # 2 SE = 6.4 > 5
    assert scenarios.verdict(scenarios.against(base, {0: 70.0, 1: 70.0, 2: 70.0})) == "beats"
    assert scenarios.verdict(scenarios.against(base, {0: 50.0, 1: 52.0, 2: 50.0})) == "below"
    assert scenarios.against(base, {0: 70.0}) is None   # one pair: no spread


def test_the_scenarios_table_pairs_each_sleep_with_sequential_and_lwf_from_the_rows_folders(tmp_path, monkeypatch):
    import argparse
    import json
    import scenarios
    monkeypatch.chdir(tmp_path)
    rows = scenarios.rows(argparse.Namespace(setting="split"))
    finals = {"base": dict(sequential=(60.0, 61.0), src=(70.0, 72.0), parallel=(97.0, 98.0)),
              "baselines": dict(ewc=(62.0, 61.0), si=(61.0, 61.0), lwf=(75.0, 74.0))}
    for row in rows:
        folder = tmp_path / "runs" / config.run_name(resolve(DEFAULTS, [*row.options, "--methods", row.methods]))
        (folder / "jobs").mkdir(parents=True)
        for method, values in finals.get(row.group, {}).items():
            for seed, final in enumerate(values):
                (folder / "jobs" / f"{method}-seed{seed}.json").write_text(json.dumps(dict(
                    method=method, seed=seed, rows=[dict(stage="final", task_1=final, all=final)], stable_rank=[],
                    kept_bytes=seed, time=dict(total=1.0))))
    lines = scenarios.table([(row, {}) for row in rows])
    by = {line.split(" | ")[0][2:]: line.split(" | ") for line in lines[2:] if line.startswith("| ")}
    assert list(by) == ["sequential", "src, the authors' constants", "parallel", "ewc", "si", "lwf"]
    # src - sequential: 10, 11 (beyond 2 SE); src - lwf: -5, -2 (mean -3.5 beyond 2 SE = 3.0)
    assert by["src, the authors' constants"][1:5] == ["2", "71.0 ± 1.4", "10.5 ± 0.7 (n=2), beats", "-3.5 ± 2.1 (n=2), below"]
    assert by["lwf"][3:5] == ["14.0 ± 1.4 (n=2), beats", ""] and by["parallel"][3] == "" and by["sequential"][3] == ""
    assert lines[-1].endswith("Sleeps that scored below the same seed's sequential training: none.")
    base = next(r for r in rows if r.group == "base")
    jobs = tmp_path / "runs" / config.run_name(resolve(DEFAULTS, [*base.options, "--methods", base.methods])) / "jobs"
    for seed, final in enumerate((50.0, 59.0)):   # below sequential's 60 and 61 on both seeds
        rec = json.loads((jobs / f"src-seed{seed}.json").read_text())
        rec["rows"][0].update(task_1=final, all=final)
        (jobs / f"src-seed{seed}.json").write_text(json.dumps(rec))
    lines = scenarios.table([(row, {}) for row in rows])
    assert lines[-1].endswith("sequential training: src, the authors' constants: seeds 0, 1.")
