"""The one loop, in process, on a tiny config: what each step reads and carries over."""
import dataclasses

import pytest
import torch

import data
import methods
import config
import models
import src


@pytest.fixture(scope="module")
def small():
    cfg = config.resolve(config.DEFAULTS, ["--quick", "--device", "cpu", "--hidden", "20", "20", "--sleep-steps", "300",
                                           "--sleep-steps-increment", "100"])
    return cfg, methods.prepare(cfg)


@pytest.fixture(scope="module")
def wide(small):
    """small on the protocol's 1200-1200 network: for what a 20-20 one does not learn (features that outlast the head)"""
    cfg = dataclasses.replace(small[0], hidden=(1200, 1200))
    return cfg, methods.prepare(cfg)


def test_momentum_carries_from_task_to_task_and_across_sleep(small, monkeypatch):
    # Record the momentum buffers as each training starts and ends: task k + 1 must start from those
    # task k ended with (the sleep in between keeps them), not from zeros.
    cfg, ctx = small
    seen, train = [], models.train

    def spy(net, *args, **kwargs):
        start = [v.clone() for v in net.vW]
        out = train(net, *args, **kwargs)
        seen.append((start, [v.clone() for v in net.vW]))
        return out

    monkeypatch.setattr(models, "train", spy)
    methods.run_method("src", 5, cfg, ctx, shared={})
    assert len(seen) == len(ctx.tasks)
    assert all((v == 0).all() for v in seen[0][0])
    for (_, end), (start, _) in zip(seen, seen[1:]):
        assert all(torch.equal(a, b) for a, b in zip(end, start)) and any(a.abs().sum() > 0 for a in start)


def test_sleep_reads_every_seen_training_image(small, monkeypatch):
    # Not only the n_per_task images each task trained on: all training images of the tasks seen so far.
    cfg, ctx = small
    got = {}
    monkeypatch.setattr(src, "sleep", lambda nets, sleep_x, steps, generator, c, **kw: got.update(x=sleep_x, steps=steps))
    net = methods.initial_net(0, cfg, ctx)
    methods.sleep_task(net, 2, 0, cfg, ctx)
    seen = torch.isin(ctx.train_y, torch.tensor([0, 1, 2, 3]))
    assert len(got["x"]) == seen.sum().item() > 2 * cfg.n_per_task
    assert torch.equal(got["x"], ctx.train_x[seen])
    assert got["steps"] == 300 + 100 == cfg.sleep.length(2)


def test_shared_stages_are_declared_and_identical(small):
    cfg, ctx = small
    shared = {}
    seq, _ = methods.run_method("sequential", 2, cfg, ctx, shared)
    assert set(shared) == {"init", "train_1"}
    # SI declares only init: it trains task 1 again, and gets what sequential put in `shared`
    si, _ = methods.run_method("si", 2, cfg, ctx, shared)
    assert seq["rows"][1] == si["rows"][1] and si["time"]["train"] > 0
    merging, _ = methods.run_method("merging", 2, cfg, ctx, shared)
    assert [r["stage"] for r in merging["rows"]][-2:] == ["merged", "final"] and merging["rows"][1] == seq["rows"][1]


def test_sizes_come_from_the_data(small):
    cfg, ctx = small
    assert ctx.sizes == (ctx.train_x.shape[1], *cfg.hidden, data.DATASETS["mnist"]["classes"]) == (784, 20, 20, 10)
    three = dataclasses.replace(cfg, hidden=(30, 20, 10))
    assert methods.prepare(three).sizes == (784, 30, 20, 10, 10)


def test_synthetic_is_the_weights_before_training_plus_the_sleeps_change(small, monkeypatch):
    cfg, ctx = small
    seen, evaluate = [], methods.evaluate
    monkeypatch.setattr(methods, "evaluate", lambda net, *a, **kw: seen.append(net) or evaluate(net, *a, **kw))
    rec, _ = methods.run_method("src", 4, cfg, ctx, shared={})
    # evaluated in order: init, then per task: train_k, sleep_k, synthetic_k
    assert len(seen) == 1 + 3 * len(ctx.tasks) and [r["stage"] for r in rec["synthetic"]] == [f"synthetic_{k}" for k in range(1, 6)]
    for k in range(len(ctx.tasks)):
        before = seen[3 * k - 1] if k else seen[0]
        trained, slept, synthetic = seen[3 * k + 1: 3 * k + 4]
        for w0, w1, w2, ws in zip(before.W, trained.W, slept.W, synthetic.W):
            torch.testing.assert_close(ws, w0 + (w2 - w1))


def test_replica_factors_in_the_loop(small):
    cfg, ctx = small
    own = dataclasses.replace(cfg, merge_init="own", keep_momentum=False)
    a, b = methods.initial_net(1, own, ctx), methods.initial_net(1, own, ctx, copy=2)
    assert torch.equal(a.W[0], methods.initial_net(1, cfg, ctx).W[0]) and not torch.equal(a.W[0], b.W[0])
    trained = methods.train_task(a, 1, 1, cfg, ctx)
    again = methods.train_task(trained, 2, 1, own, ctx)          # fresh buffers: as training from zero momentum
    zeroed = trained.clone()
    zeroed.vW = [torch.zeros_like(v) for v in zeroed.vW]
    assert all(torch.equal(u, v) for u, v in zip(again.W, methods.train_task(zeroed, 2, 1, cfg, ctx).W))
    assert not all(torch.equal(u, v) for u, v in zip(again.W, methods.train_task(trained, 2, 1, cfg, ctx).W))


def test_a_diverged_training_is_recorded_and_scored_not_a_crash(small, monkeypatch):
    cfg, ctx = small
    train = models.train

    def diverge(net, *args, **kwargs):   # task 2's training blows up
        out = train(net, *args, **kwargs)
        if kwargs["generator"].initial_seed() == methods.generator(6, "train", 2).initial_seed():
            net.W[0][0, 0] = float("nan")
        return out

    monkeypatch.setattr(models, "train", diverge)
    rec, _ = methods.run_method("src", 6, cfg, ctx, shared={})
    assert rec["diverged"] == "train_2" and [s["task"] for s in rec["sleep"]] == [1]
    assert [r["stage"] for r in rec["rows"]][-2:] == ["sleep_5", "final"] and 0 <= rec["rows"][-1]["all"] <= 100


def test_storage_free_sleeps_read_only_the_current_task(small, monkeypatch):
    # 'current': the scale factors and the mean input come from the n_per_task images task k trained on;
    # 'current+means': alpha from those, the input from the kept class means of every task so far, whose
    # count-weighted mean is the mean of all images the tasks trained on.
    cfg, ctx = small
    got = {}
    monkeypatch.setattr(src, "sleep", lambda nets, sleep_x, steps, generator, c, **kw: got.update(x=sleep_x, **kw))
    variant = lambda **kw: config.resolve(dataclasses.replace(cfg, **kw))
    net = methods.initial_net(0, cfg, ctx)
    own = [data.task_indices(ctx.train_y, ctx.tasks[j], cfg.n_per_task) for j in range(3)]
    methods.sleep_task(net, 3, 0, variant(sleep_data="current"), ctx)
    assert torch.equal(got["x"], ctx.train_x[own[2]]) and got["images"] is None and len(got["x"]) == cfg.n_per_task
    methods.sleep_task(net, 3, 0, variant(sleep_data="current+means"), ctx)
    assert torch.equal(got["x"], ctx.train_x[own[2]])
    assert torch.allclose(got["images"], ctx.train_x[torch.cat(own)].mean(0), atol=1e-6)
    methods.sleep_task(net, 3, 0, variant(sleep_data="current+means", sleep_input="class-means"), ctx)
    assert got["images"].shape == (6, ctx.train_x.shape[1])
    x1 = ctx.train_x[own[0]][ctx.train_y[own[0]] == 1]
    assert torch.allclose(got["images"][1], x1.mean(0), atol=1e-6)
    keeps = lambda **kw: methods.sleep_keeps(variant(**kw), ctx)[1]
    assert keeps(sleep_data="current") == 0 and keeps(sleep_data="current+means") == 10 * (784 + 1) * 4
    assert keeps(sleep_data="seen") == len(ctx.train_y) * 784


def test_the_validation_split_is_held_out_of_training_and_replaces_the_test_set():
    base = config.resolve(config.DEFAULTS, ["--quick", "--device", "cpu"])
    ctx0, ctx = methods.prepare(base), methods.prepare(dataclasses.replace(base, validation=20))
    counts = torch.bincount(ctx0.train_y)
    assert len(ctx.eval_y) == 200 and torch.equal(torch.bincount(ctx.eval_y), torch.full((10,), 20))
    assert len(ctx.train_y) == len(ctx0.train_y) - 200 and torch.equal(torch.bincount(ctx.train_y), counts - 20)
    # the held-out images are the last 20 of each class; no test image is read
    for c in range(10):
        last = ctx0.train_x[ctx0.train_y == c][-20:]
        held = torch.cat(ctx.eval_chunks)[ctx.eval_y == c]
        assert torch.equal(held.sort(0).values, last.sort(0).values)
    # every task still trains on the same first images
    for t in ctx.tasks:
        a = ctx0.train_x[data.task_indices(ctx0.train_y, t, 100)]
        assert torch.equal(a, ctx.train_x[data.task_indices(ctx.train_y, t, 100)])


def test_rehearsal_adds_a_random_fraction_of_the_earlier_tasks_rounded_to_hundreds(small):
    # --replay F: task k >= 2 trains on its own first n_per_task images, then round(F x N_old, -2) distinct
    # images drawn from all training images of tasks 1..k-1 (N_old of them), none of task k's classes.
    cfg, ctx = small
    own = data.task_indices(ctx.train_y, ctx.tasks[2], cfg.n_per_task)
    old = data.task_indices(ctx.train_y, (0, 1, 2, 3))
    # --quick's 3000 images hold 1218 of digits 0-3: 5 % is 60.9 -> 100, 25 % is 304.5 -> 300, all -> 1200
    assert len(old) == 1218
    for fraction, expected in ((0.0, 0), (0.05, 100), (0.25, 300), (1.0, 1200)):
        idx = methods.training_set(3, 7, dataclasses.replace(cfg, replay=fraction), ctx)
        assert torch.equal(idx[:len(own)], own) and len(idx) == len(own) + expected
        extra = idx[len(own):]
        assert len(set(extra.tolist())) == expected and set(extra.tolist()) <= set(old.tolist())
    # task 1 has nothing to rehearse; a seed draws the same images each time, another seed others
    assert torch.equal(methods.training_set(1, 7, dataclasses.replace(cfg, replay=0.5), ctx),
                       data.task_indices(ctx.train_y, ctx.tasks[0], cfg.n_per_task))
    a, b, c = (methods.training_set(2, s, dataclasses.replace(cfg, replay=0.5), ctx) for s in (7, 7, 8))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_icarl_trains_on_the_task_plus_its_exemplars_padded_to_whole_minibatches(small, monkeypatch):
    cfg, ctx = small
    cfg = dataclasses.replace(cfg, output="linear-ce", memory=50, batch_size=100)   # minibatches of the protocol's 100
    seen, train = [], models.train
    monkeypatch.setattr(models, "train", lambda net, x, y, **kw: (seen.append((x, y)), train(net, x, y, **kw))[1])
    rec, _ = methods.run_method("icarl", 0, cfg, ctx, shared={})
    assert [len(x) for x, _ in seen][:4] == [500] + [600] * 3   # (the quick split has too few 8s and 9s to pad task 5)
    # task 2: its 500 images, the 2 x 25 exemplars of digits 0 and 1 (memory 50 over 2 classes), one-hot; then
    # 50 more of its own images from its 500th on (the first of them a second copy of the 500th, as the MATLAB)
    x, y = seen[1]
    task2 = data.task_indices(ctx.train_y, (2, 3), 549)
    assert torch.equal(x[:500], ctx.train_x[task2[:500]]) and torch.equal(x[550:], ctx.train_x[task2[499:549]])
    assert torch.equal(y[550:].argmax(1), ctx.train_y[task2[499:549]])
    assert sorted(y[500:550].argmax(1).tolist()) == [0] * 25 + [1] * 25 and set(y[500:550].sum(1).tolist()) == {1.0}
    assert (y[500:550].max(1).values == 1).all()                                   # one-hot
    # task 5: 8 classes x round(50 / 8) = 6 exemplars (6.25 -> 6)
    assert sorted(seen[4][1][500:548].argmax(1).tolist()) == sorted(list(range(8)) * 6)
    assert rec["exemplars"] == {c: 5 for c in range(10)} and rec["exemplar_bytes"] == 50 * 784
    assert [r["stage"] for r in rec["nme"]] == [f"train_{k}" for k in range(1, 6)] + ["final"]
    # with distillation the exemplars' targets are the previous network's softmax outputs
    seen.clear()
    methods.run_method("icarl", 0, dataclasses.replace(cfg, distillation=True), ctx, shared={})
    soft = seen[1][1][500:550]
    torch.testing.assert_close(soft.sum(1), torch.ones(50))
    assert (soft.max(1).values < 1).all()


def test_icarl_sleep_uses_the_scripts_constants_for_the_memory_and_softmax_scale_factors(small, monkeypatch):
    _, ctx = small
    calls, sleep = [], src.sleep
    monkeypatch.setattr(src, "sleep", lambda *a, **kw: (calls.append(a[4]), sleep(*a, **kw))[1])
    icarl = lambda *more: config.resolve(config.DEFAULTS, ["--quick", "--device", "cpu", "--sleep-steps", "300",
                                                           "--methods", "icarl-src", "--output", "linear-ce", *more])
    cfg = icarl("--memory", "100")
    methods.run_method("icarl-src", 0, cfg, ctx, shared={})
    assert cfg.preset == "icarl-medium" and len(calls) == 5
    assert all(c.inc == 0.042289 and c.beta == (38.451454, 22.198208, 6.893450) and c.alpha_softmax for c in calls)
    assert icarl("--memory", "50").sleep.rate == 95.654279 and icarl("--memory", "2000").sleep.alpha_scale == 2.023822
    # a constant the user sets wins over the iCaRL preset; src cannot share the run
    assert icarl("--memory", "100", "--inc", "0.5").sleep.inc == 0.5


def test_the_statistics_baselines_run_in_the_loop_and_count_what_they_keep(wide):
    cfg, ctx = wide
    for method, kept in (("ncm", 10 * 785 * 4), ("slda", (10 * 785 + 784 * 784) * 4), ("analytic", (1200 + 10) * 1200 * 4)):
        rec, maps = methods.run_method(method, 0, dataclasses.replace(cfg, methods=(method,)), ctx, shared={})
        assert [r["stage"] for r in rec["rows"]] == [f"train_{k}" for k in range(1, 6)] + ["final"] and maps == {}
        assert rec["kept_bytes"] == kept and rec["rows"][0]["task_1"] > 95 and rec["stable_rank"] == []
        # no forgetting of what the statistics hold: a task's accuracy drops only as classes join
        assert rec["rows"][-1]["all"] > 60


def test_lwf_distils_the_previous_networks_outputs_for_the_earlier_classes(small, monkeypatch):
    # Task 1 trains as sequential (no earlier classes); task k >= 2 gets the evaluation-mode outputs of the
    # network it starts from, on its own training images, as soft targets for the classes of tasks 1..k-1.
    cfg, ctx = small
    got, train = [], models.train
    monkeypatch.setattr(models, "train", lambda net, x, y, **kw: got.append((net.clone(), x, kw["distill"])) or
                        train(net, x, y, **kw))
    start = methods.initial_net(0, cfg, ctx)
    one = methods.train_task(start, 1, 0, cfg, ctx, distill=True)
    assert got[-1][2] is None
    assert all(torch.equal(a, b) for a, b in zip(one.W, methods.train_task(start, 1, 0, cfg, ctx).W))
    methods.train_task(one, 3, 0, cfg, ctx, distill=True)
    _, x, (old, earlier, strength, T) = got[-1]
    assert earlier.tolist() == [True] * 4 + [False] * 6
    assert (strength, T) == (cfg.lwf_lambda, cfg.lwf_temperature)
    torch.testing.assert_close(old, models.forward(one, x, cfg.dropout)[-1])
    rec, _ = methods.run_method("lwf", 0, cfg, ctx, shared={})
    assert [r["stage"] for r in rec["rows"]][:3] == ["init", "train_1", "train_2"]


def test_lwf_strength_per_task_constant_growing_or_given():
    cfg = config.resolve(config.DEFAULTS, ["--methods", "lwf", "--lwf-lambda", "2"])
    assert [methods.lwf_strength(k, cfg) for k in range(2, 6)] == [2.0] * 4
    grow = config.resolve(config.DEFAULTS, ["--methods", "lwf", "--lwf-lambda", "2", "--lwf-schedule", "growing"])
    assert [methods.lwf_strength(k, grow) for k in range(2, 6)] == pytest.approx([1.0, 8 / 3, 4.5, 6.4])   # 2 (k-1)^2 / k
    given = config.resolve(config.DEFAULTS, ["--methods", "lwf", "--lwf-lambdas", "0", "0.5", "7", "1", "3"])
    assert [methods.lwf_strength(k, given) for k in range(2, 6)] == [0.5, 7.0, 1.0, 3.0]


def test_lwf_all_outputs_teaches_every_output_with_the_tasks_strength(small, monkeypatch):
    cfg, ctx = small
    cfg = dataclasses.replace(cfg, lwf_outputs="all", lwf_schedule="growing", lwf_lambda=3.0)
    got, train = [], models.train
    monkeypatch.setattr(models, "train", lambda net, x, y, **kw: got.append(kw["distill"]) or train(net, x, y, **kw))
    methods.train_task(methods.initial_net(0, cfg, ctx), 4, 0, cfg, ctx, distill=True)
    _, taught, strength, _ = got[-1]
    assert taught.all() and strength == pytest.approx(3 * 9 / 4)


def test_task_il_is_recorded_for_every_kind_of_method(wide):
    # a network's, a statistics baseline's: each row has task_il, and knowing the task never hurts here
    cfg, ctx = wide
    final = {}
    for method in ("sequential", "ncm"):
        rec, _ = methods.run_method(method, 0, dataclasses.replace(cfg, methods=(method,)), ctx, shared={})
        final[method] = rec["rows"][-1]
        assert 0 <= final[method]["all"] <= final[method]["task_il"] <= 100
    # sequential training forgets the head, not every feature: given the task it stays far above chance (50 %),
    # while without the task it knows the last task's classes only
    assert final["sequential"]["task_il"] > 80 and final["sequential"]["all"] < 30


def test_a_network_that_diverges_is_marked_at_the_stage_it_broke_for_every_method(small):
    # lr 1e30 sends the weights to inf or NaN within task 1's training: every method that trains says so
    cfg, ctx = small
    wild = dataclasses.replace(cfg, lr=1e30)
    for method in ("sequential", "merging", "lwf"):
        rec, _ = methods.run_method(method, 0, wild, ctx, shared={}, analyses=False)
        assert rec["diverged"] == "train_1", method
    assert "diverged" not in methods.run_method("sequential", 0, cfg, ctx, shared={}, analyses=False)[0]


def test_every_job_records_the_bytes_it_keeps_between_tasks(small):
    cfg, ctx = small
    weights = 4 * sum(a * b for a, b in zip(ctx.sizes[:-1], ctx.sizes[1:]))
    shared = {}   # (the original's sleep, every image seen: test_experiment's quick run; no analyses: not read here)
    got = {m: methods.run_method(m, 0, cfg, ctx, shared=shared, analyses=False)[0] for m in ("sequential", "lwf", "ewc")}
    assert got["sequential"]["kept_bytes"] == got["lwf"]["kept_bytes"] == 0
    assert got["sequential"]["kept_what"] == "nothing" and "LwF's teacher" in got["lwf"]["kept_what"]
    assert got["ewc"]["kept_bytes"] == 2 * weights
    net = methods.initial_net(0, cfg, ctx)
    assert methods.kept_between_tasks(methods.METHODS["merging"], {}, net, cfg, ctx)[0] == 4 * weights
    # iCaRL + the original's sleep: the exemplars are among the images seen, so only those count
    seen = (ctx.train_y < 10).sum().item() * 784
    rec = dict(exemplar_bytes=100 * 784, sleep_keeps_bytes=seen, sleep_reads="every training image of the tasks seen")
    assert methods.kept_between_tasks(methods.METHODS["icarl-src"], rec, net, cfg, ctx)[0] == seen
    weights_only = config.resolve(config.DEFAULTS, ["--quick", "--device", "cpu", "--hidden", "20", "20", "--preset",
                                                    "beyond-weights-only", "--sleep-steps", "300", "--sleep-steps-increment", "100"])
    rec = methods.run_method("src", 0, weights_only, methods.prepare(weights_only), shared={}, analyses=False)[0]
    assert rec["kept_bytes"] == 0 and rec["kept_what"] == "nothing"
    # rehearsal draws from every earlier task's training images: it keeps them all
    replay = config.resolve(config.DEFAULTS, ["--quick", "--device", "cpu", "--hidden", "20", "20", "--replay", "0.1",
                                              "--methods", "sequential"])
    ctx = methods.prepare(replay)
    rec = methods.run_method("sequential", 0, replay, ctx, shared={}, analyses=False)[0]
    assert rec["kept_bytes"] == (ctx.train_y < 8).sum().item() * 784 > 0


def test_score_on_train_measures_every_accuracy_on_all_training_images():
    cfg = config.resolve(config.DEFAULTS, ["--quick", "--device", "cpu", "--score-on", "train", "--classes-per-task", "10"])
    ctx = methods.prepare(cfg)
    assert list(ctx.tasks) == [tuple(range(10))] and len(ctx.eval_y) == len(ctx.train_y) == cfg.train_limit
    assert torch.equal(torch.sort(torch.cat(ctx.eval_chunks).sum(1)).values, torch.sort(ctx.train_x.sum(1)).values)


def test_a_random_task_order_is_the_seeds_and_every_method_of_the_seed_learns_it(small, monkeypatch):
    cfg = config.resolve(config.DEFAULTS, ["--quick", "--device", "cpu", "--task-order", "random", "--methods", "sequential,ncm"])
    orders = {s: methods.task_order(s, cfg, 5) for s in range(6)}
    assert all(sorted(o) == [0, 1, 2, 3, 4] for o in orders.values()) and len({tuple(o) for o in orders.values()}) > 1
    assert methods.task_order(3, cfg, 5) == orders[3]                     # drawn from the seed alone
    fixed = config.resolve(config.DEFAULTS, ["--quick"])
    assert methods.task_order(3, fixed, 5) == [0, 1, 2, 3, 4]
    _, ctx = small
    seed = next(s for s, o in orders.items() if o[0] != 0)
    want = [list(data.class_tasks()[i]) for i in orders[seed]]
    trained = []
    monkeypatch.setattr(models, "train", lambda net, x, y, **kw: trained.append(sorted(set(y.tolist()))))
    seq, _ = methods.run_method("sequential", seed, cfg, ctx, {})
    assert seq["tasks"] == want and trained == want                       # trained in that order, digits recorded
    ncm, _ = methods.run_method("ncm", seed, cfg, ctx, {})
    assert ncm["tasks"] == want
    # the first row after task 1 scores the first task learnt: NCM knows only its two classes there
    assert ncm["rows"][0]["task_1"] > 50 and ncm["rows"][0]["task_2"] == 0


def test_two_task_mode_learns_the_first_two_tasks_with_their_own_epochs(small, monkeypatch):
    _, ctx = small
    cfg = config.resolve(config.DEFAULTS, ["--quick", "--device", "cpu", "--sleep-steps", "300", "--methods", "src",
                                           "--n-tasks", "2", "--task-epochs", "1", "3"])
    epochs = []   # (the seed's ctx, made by run_method, holds the first two tasks)
    train = models.train
    monkeypatch.setattr(models, "train", lambda net, x, y, **kw: (epochs.append(kw["epochs"]), train(net, x, y, **kw))[1])
    rec, _ = methods.run_method("src", 0, cfg, ctx, {})
    assert epochs == [1, 3] and rec["tasks"] == [[0, 1], [2, 3]]
    assert [r["stage"] for r in rec["rows"]] == ["init", "train_1", "sleep_1", "train_2", "sleep_2", "final"]
    final = rec["rows"][-1]
    # the overall accuracy is over the two tasks' test images only: their mean weighted by their counts
    n1, n2 = [torch.isin(ctx.eval_y, torch.tensor(t)).sum().item() for t in ((0, 1), (2, 3))]
    assert abs(final["all"] - (n1 * final["task_1"] + n2 * final["task_2"]) / (n1 + n2)) < 1e-3


def test_each_sleep_records_its_analyses_and_the_accuracy_during_it(small):
    _, ctx = small
    cfg = config.resolve(config.DEFAULTS, ["--quick", "--device", "cpu", "--sleep-steps", "300", "--sleep-steps-increment",
                                           "100", "--methods", "src", "--sleep-window", "128", "--n-tasks", "2"])
    rec, _ = methods.run_method("src", 0, cfg, ctx, {})
    ctx = methods.seeded(ctx, 0, cfg)
    assert [a["task"] for a in rec["analysis"]] == list(range(1, len(ctx.tasks) + 1))
    rows = {r["stage"]: r for r in rec["rows"]}
    for a, s in zip(rec["analysis"], rec["sleep"]):
        after = torch.tensor(a["confusion_after"])
        assert after.sum() == len(ctx.eval_y)   # every evaluation image once; "all" counts the learnt classes' rows
        learnt = list(sum(map(tuple, rec["tasks"]), ()))
        right = after[learnt, learnt].sum().item()
        assert abs(100 * right / after[learnt].sum().item() - rows[f"sleep_{a['task']}"]["all"]) < 1e-3
        assert [d["step"] for d in s["accuracy_during"]][-2:] == [s["steps"] // 128 * 128, s["steps"]]
        assert abs(s["accuracy_during"][-1]["all"] - rows[f"sleep_{a['task']}"]["all"]) < 1e-9   # the slept network
        assert [sum(c) for c in s["window_spikes"]] == [sum(c) for c in a["spikes"]]


def test_cross_modal_pair_has_two_tasks_one_head_and_sleeps_on_the_first_only(monkeypatch):
    full = config.resolve(config.DEFAULTS, ["--dataset", "mnist-fashion", "--methods", "src"])
    assert (full.classes_per_task, full.n_per_task, full.sleep_data, full.rate) == (10, 0, "first", 227.437205)
    assert [full.sleep.length(k) for k in (1, 2)] == [255, 255]    # the script's lengths through uint8
    # (a 20-20 network: what is checked is which images each stage reads, not what it learns)
    cfg = config.resolve(config.DEFAULTS, ["--dataset", "mnist-fashion", "--quick", "--device", "cpu", "--methods",
                                           "control,src", "--sleep-steps", "50", "--hidden", "20", "20"])
    ctx = methods.prepare(cfg)
    assert ctx.tasks == (tuple(range(10)), tuple(range(10, 20))) and ctx.sizes[-1] == 10
    # the first 3000 training and 1000 test images of each dataset, MNIST's then Fashion's (classes 10 + label)
    assert len(ctx.train_y) == 6000 and (ctx.train_y[:3000] < 10).all() and (ctx.train_y[3000:] >= 10).all()
    assert len(ctx.eval_y) == 2000 and (ctx.eval_y >= 10).sum() == 1000
    mnist, fashion = data.load("mnist"), data.load("fashion-mnist")
    assert torch.equal(ctx.train_x[3000:3005], fashion[0][:5]) and torch.equal(ctx.train_y[3000:3005] - 10, fashion[1][:5])
    assert torch.equal(ctx.train_x[:5], mnist[0][:5])
    trained, slept = [], []
    train = models.train
    monkeypatch.setattr(models, "train", lambda net, x, y, **kw: (trained.append((y.max().item(), kw["n_classes"])), train(net, x, y, **kw))[1])
    monkeypatch.setattr(src, "sleep", lambda net, x, *a, **kw: (slept.append(x), (net.clone(), dict(alpha=[1.0] * 3, spikes=[[0]] * 4)))[1])
    rec, _ = methods.run_method("control", 0, cfg, ctx, {})
    assert [r["stage"] for r in rec["rows"]] == ["init", "train_2", "final"] and trained == [(9, 10)]   # Fashion only
    methods.run_method("src", 0, cfg, ctx, {})
    assert len(slept) == 2 and all(torch.equal(x, ctx.train_x[:3000]) for x in slept)   # MNIST's images, both sleeps
    # --sleep-after 2 (the cross-modal rehearsal script's): no sleep after task 1, and the stages say so
    after2 = config.resolve(config.DEFAULTS, ["--dataset", "mnist-fashion", "--quick", "--device", "cpu", "--methods", "src",
                                              "--sleep-steps", "50", "--sleep-after", "2", "--hidden", "20", "20"])
    rec, maps = methods.run_method("src", 0, after2, ctx, {})
    assert [r["stage"] for r in rec["rows"]] == ["init", "train_1", "train_2", "sleep_2", "final"] and len(slept) == 3
    monkeypatch.setattr(config, "INTERACTIVE", True)   # errors as exceptions
    with pytest.raises(config.ConfigError, match="--classes-per-task must be 10"):
        config.resolve(config.DEFAULTS, ["--dataset", "mnist-fashion", "--classes-per-task", "2", "--methods", "src"])
    with pytest.raises(config.ConfigError, match="--task-order must be fixed"):
        config.resolve(config.DEFAULTS, ["--dataset", "mnist-fashion", "--task-order", "random", "--methods", "src"])
    assert config.resolve(config.DEFAULTS, ["--dataset", "mnist-fashion", "--methods", "src,ewc"]).methods == ("src", "ewc")


def sequential_of(net, dropout=0.25):
    """The torch.nn.Sequential a user would build with a Net's weights (Flatten, Linear, ReLU, Dropout)."""
    layers = [torch.nn.Flatten()]
    for l, w in enumerate(net.W):
        n_in = w.shape[1] - net.bias
        linear = torch.nn.Linear(n_in, w.shape[0], bias=net.bias, dtype=w.dtype)
        with torch.no_grad():
            linear.weight.copy_(w[:, :n_in])
            if net.bias:
                linear.bias.copy_(w[:, -1])
        layers.append(linear)
        if l < len(net.W) - 1 or net.output == "relu":
            layers.append(torch.nn.ReLU())
        if l < len(net.W) - 1:
            layers.append(torch.nn.Dropout(dropout))
    return torch.nn.Sequential(*layers)


@pytest.mark.parametrize("bias, output, dtype", [("none", "linear-ce", "float32"), ("none", "relu-mse", "float64"),
                                                 ("ignore", "linear-ce", "float32"), ("current", "linear-ce", "float32"),
                                                 ("unit", "linear-ce", "float64")])
def test_sleep_model_sleeps_a_sequential_as_src_sleeps_the_same_net(bias, output, dtype):
    # A trained network (inverted dropout: torch's, whose evaluation mode is the plain network) as a Net and as
    # the Sequential a user builds from its weights: the same sleep gives the same weights and spikes.
    from src import sleep, sleep_model
    cfg = config.resolve(config.DEFAULTS, ["--quick", "--device", "cpu", "--sleep-steps", "300", "--sleep-steps-increment",
                                           "700", "--output", output,
                                           "--inverted-dropout", "--dtype", dtype] + (["--bias"] if bias != "none" else []))
    ctx = methods.prepare(cfg)
    net = methods.train_task(methods.initial_net(0, cfg, ctx), 1, 0, cfg, ctx)
    c = dataclasses.replace(cfg.sleep, bias=bias if bias != "none" else "ignore")
    x = ctx.train_x[ctx.train_y < 4][:600]
    model = sequential_of(net)
    before = [p.clone() for p in model.parameters()]
    want, want_info = sleep(net, x, c.length(2), torch.Generator().manual_seed(7), c, dropout=cfg.dropout)
    got, info = sleep_model(model, x.reshape(-1, 1, 28, 28), c, task=2, seed=7)
    assert info["spikes"] == want_info["spikes"] and info["alpha"] == want_info["alpha"]
    # the hidden layers fired and the weights moved: the comparison means something
    assert sum(map(sum, info["spikes"][1:])) > 0 and any(not torch.equal(a, b) for a, b in zip(want.W, net.W))
    tol = dict(rtol=0, atol=1e-12) if dtype == "float64" else dict(rtol=0, atol=0)
    for w, layer in zip(want.W, [m for m in got if isinstance(m, torch.nn.Linear)]):
        torch.testing.assert_close(layer.weight, w[:, :layer.in_features], **tol)
        if cfg.bias:
            torch.testing.assert_close(layer.bias, w[:, -1], **tol)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))   # the model given is untouched
    assert type(got) is type(model) and got is not model


@pytest.mark.parametrize("module, named", [(torch.nn.Conv2d(1, 4, 3), "Conv2d"), (torch.nn.BatchNorm1d(10), "BatchNorm1d"),
                                           (torch.nn.Tanh(), "Tanh")])
def test_sleep_model_refuses_what_it_cannot_sleep_in_one_line(module, named):
    from src import sleep_model
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10), module, torch.nn.Linear(10, 10))
    with pytest.raises(ValueError) as err:
        sleep_model(model, torch.rand(5, 784), config.preset_sleep("beyond-weights-only"), task=1, seed=0)
    assert named in str(err.value) and "module 2" in str(err.value) and "\n" not in str(err.value)


def test_sleep_model_takes_a_sleep_and_a_preset_is_built_by_config():
    from src import Sleep, sleep_model
    # a preset's Sleep is what --preset NAME sleeps with, on each dataset the preset has
    for name, dataset in (("beyond-weights-only", "mnist"), ("replica", "mnist"), ("original", "fashion-mnist")):
        cfg = config.resolve(config.DEFAULTS, ["--preset", name, "--dataset", dataset, "--methods", "src"]
                             + (["--protocol", "replica"] if name == "replica" else []))
        assert config.preset_sleep(name, dataset) == cfg.sleep and isinstance(cfg.sleep, Sleep)
    assert config.preset_sleep("original", "fashion-mnist").rate != config.preset_sleep("original").rate
    with pytest.raises(ValueError, match="'nope' is not a preset with sleep constants for mnist"):
        config.preset_sleep("nope")
    with pytest.raises(ValueError, match="'lwf' is not a preset with sleep constants"):   # a baseline's training
        config.preset_sleep("lwf")
    linear = torch.nn.Sequential(torch.nn.Linear(784, 10))
    with pytest.raises(ValueError) as err:   # a name: one line that says what to pass
        sleep_model(linear, torch.rand(5, 784), "original", task=1, seed=0)
    assert str(err.value) == ("constants must be a src.Sleep or 'auto': for the preset 'original' pass "
                              "config.preset_sleep('original')")
    with pytest.raises(ValueError, match="must be a src.Sleep or 'auto'; got dict"):
        sleep_model(linear, torch.rand(5, 784), dict(rate=1.0), task=1, seed=0)
