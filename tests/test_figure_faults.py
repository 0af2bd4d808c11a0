"""The figures draw what the runs hold: each row of activation maps on its own colour scale, a method of one stage
(parallel) as a point at that stage, and a sweep with nothing run says so in its axes."""
import dataclasses
from collections import defaultdict

import numpy as np
import pytest

import visualize
from test_figures import drawn, panels, write_maps  # noqa: F401  (drawn: the fixture)


def test_each_row_of_activation_maps_has_a_colour_scale_of_its_own(drawn, tmp_path):
    # merging's merged network: its activations a fiftieth of the copies' (drawn on their scale, it looks empty)
    rng = np.random.default_rng(2)
    copy = lambda: [3 * rng.normal(size=(30, 4)), 1.7 * rng.random((30, 10))]
    maps = {"train_1": copy(), "train_2": copy()}
    maps["merged"] = [m / 50 for m in maps["train_2"]]
    write_maps(tmp_path / "merging-seed0.npz", maps)
    assert visualize.plot_activations(str(tmp_path / "merging-seed0.npz"), "merging", str(tmp_path / "a.png"))
    fig = drawn["a.png"]
    axes = np.array(panels(fig)).reshape(3, 2)   # train 1, train 2, merged; layer 1, the output
    for r, stage in enumerate(maps):
        for l, m in enumerate(maps[stage]):
            (image,) = axes[r][l].images
            assert image.get_clim() == pytest.approx((m.min(), m.max()), rel=1e-6), (stage, l)
    assert axes[2][1].images[0].get_clim()[1] < 0.04 < 1 < axes[1][1].images[0].get_clim()[1]
    bars = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
    assert len(bars) == 6 and all(ax.get_ylabel() for ax in bars)   # one per panel, each labelled
    assert "each row has colour scales of its own" in fig._suptitle.get_text()


def test_a_sleeps_maps_before_and_after_share_their_rows_scale_and_its_change_has_another(drawn, tmp_path):
    rng = np.random.default_rng(3)
    one = lambda scale: [scale * rng.normal(size=(30, 4)), scale * rng.random((30, 10))]
    maps = {"train_1": one(1), "sleep_1": one(2), "train_2": one(100), "sleep_2": one(50)}
    write_maps(tmp_path / "src-seed0.npz", maps)
    assert visualize.plot_activations(str(tmp_path / "src-seed0.npz"), "src", str(tmp_path / "a.png"))
    axes = np.array(panels(drawn["a.png"])).reshape(2, 6)   # two sleeps; 2 layers x before, after, change
    for r, (before, after) in enumerate((("train_1", "sleep_1"), ("train_2", "sleep_2"))):
        for l in range(2):
            both = np.concatenate([maps[before][l].ravel(), maps[after][l].ravel()])
            change = np.abs(maps[after][l] - maps[before][l]).max()
            clims = [axes[r][3 * l + k].images[0].get_clim() for k in range(3)]
            assert clims[0] == clims[1] == pytest.approx((both.min(), both.max()), rel=1e-6), (r, l)
            assert clims[2] == pytest.approx((-change, change), rel=1e-6), (r, l)


def stable_rank_table(parallel=True):
    """A stable-rank table of two seeds: sequential through two tasks, and parallel (init, then train all)."""
    table = defaultdict(dict)
    for k, stage in enumerate(("init", "train_1", "train_2")):
        table["sequential"][stage] = [[10.0 - k, 5.0 - k], [12.0 - k, 5.0 - k]]
    if parallel:
        table["parallel"] = {"init": [[10.0, 5.0], [12.0, 5.0]], "train_all": [[4.0, 2.0], [6.0, 2.0]]}
    return table, ["layer_1", "layer_2"]


def test_parallel_is_one_point_at_its_own_stage_in_the_stable_rank_figure(drawn, tmp_path):
    visualize.plot_stable_rank(*stable_rank_table(), str(tmp_path / "stable_rank.png"))
    for c, ax in enumerate(drawn["stable_rank.png"].axes):
        ticks = [t.get_text() for t in ax.get_xticklabels()]
        assert ticks == ["init", "train 1", "train 2", "train all"]
        lines = {line.get_label(): line for line in ax.lines}
        point = lines["parallel (train all only)"]
        assert list(point.get_xdata()) == [3] and point.get_ydata()[0] == pytest.approx([5.0, 2.0][c])
        level = [line for line in ax.lines if line.get_linestyle() == ":"]   # its level across the axis, its colour
        assert len(level) == 1 and list(level[0].get_ydata()) == [point.get_ydata()[0]] * 2
        assert level[0].get_color() == point.get_color()
        assert list(lines["sequential"].get_xdata()) == [0, 1, 2]   # a method of its stages stays a line
        assert not any(label.startswith("parallel") and label != "parallel (train all only)" for label in lines)


def test_a_one_stage_method_in_the_capacity_figure_is_a_point_too(drawn, tmp_path, monkeypatch):
    # (no method of one stage is in CAPACITY_FIGURE today; one named there is drawn as in the stable-rank figure)
    monkeypatch.setattr(visualize, "CAPACITY_FIGURE", ("sequential", "parallel"))
    table = {m: {s: [[d, d + 1, 0.5]] for s, d in stages.items()} for m, stages in
             (("sequential", {"init": 9.0, "train_1": 2.0, "train_2": 3.0}), ("parallel", {"init": 9.0, "train_all": 4.0}))}
    visualize.plot_capacity(table, ["layer_1_task_1", "layer_1_task_2", "layer_1_overlap"], str(tmp_path / "c.png"))
    seq, par, overlap = drawn["c.png"].axes
    assert [list(line.get_xdata()) for line in par.lines if line.get_linestyle() != ":"] == [[3], [3]]   # tasks 1, 2
    assert [line.get_label() for line in par.lines if line.get_linestyle() != ":"] == \
        ["task 1 (train all only)", "task 2 (train all only)"]
    assert [list(line.get_xdata()) for line in seq.lines] == [[0, 1, 2], [0, 1, 2]]
    points = {line.get_label(): list(line.get_xdata()) for line in overlap.lines if line.get_linestyle() != ":"}
    assert points == {"sequential": [0, 1, 2], "parallel (train all only)": [3]}


def test_a_sweep_with_nothing_run_says_so_in_its_figure(tmp_path, monkeypatch, capsys):
    import replay
    import sweep
    figures = []
    keep = lambda results: figures.append(replay.figure(results)) or figures[-1]
    monkeypatch.chdir(tmp_path)
    sweep.main(dataclasses.replace(replay.SWEEP, figure=keep), ["--fractions", "0", "0.05"])
    (ax,) = figures[0].axes
    assert [t.get_text() for t in ax.texts] == ["no row has a finished job\nin runs: --run runs them"]
    assert (tmp_path / "runs" / "replay" / "replay.png").exists()
    assert "| 0 % | not run | not run |" in capsys.readouterr().out
    # once a row has finished, its points and no note
    import config
    folder = tmp_path / "runs" / config.run_name(config.resolve(config.DEFAULTS, replay.options("0")))
    folder.mkdir(parents=True)
    (folder / "summary.csv").write_text("method,n,all_mean,all_std\nsequential,5,19.3,0.1\nsrc,5,45.0,6.1\n")
    sweep.main(dataclasses.replace(replay.SWEEP, figure=keep), ["--fractions", "0", "0.05"])
    (ax,) = figures[1].axes
    assert not ax.texts and ax.lines
