"""The figures of visualize.py read on their own: labelled axes, sleeps named, and empty panels (a silent or
broken layer) drawn with a note, never a warning."""
import warnings

import numpy as np
import pytest

import sleep_analysis
import visualize


@pytest.fixture
def drawn(monkeypatch):
    """The figures saved while a test runs, by file name (each still written, then inspected)."""
    figures, save = {}, visualize.save
    def keep(fig, path, dpi):
        figures[path.rsplit("/", 1)[-1]] = fig
        save(fig, path, dpi)
    monkeypatch.setattr(visualize, "save", keep)
    return figures


def panels(fig):
    """The axes of a figure but its colour bars."""
    return [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]


def notes(ax):
    return [t.get_text() for t in ax.texts]


def sleep_record(silent_from=None):
    """A job record of two sleeps (after tasks 1 and 2) of a 16-8-8-10 network on 10 classes, its analyses made by
    sleep_analysis.analyse; from sleep silent_from on, the hidden layer 2 and the output fire no spike."""
    rng = np.random.default_rng(0)
    shapes = [(8, 16), (8, 8), (10, 8)]
    labels = np.repeat(np.arange(10), 3)
    analyses, sleeps = [], []
    for k in (1, 2):
        before = [rng.normal(size=s) for s in shapes]
        after = [w + 0.01 * rng.normal(size=w.shape) for w in before]
        counts = [rng.integers(0, 20, n) for n in (16, 8, 8, 10)]
        if silent_from and k >= silent_from:
            counts[2], counts[3] = np.zeros(8, int), np.zeros(10, int)
        acts = [rng.random((30, n)) for n in (8, 8, 10)]
        pred = [rng.integers(0, 10, 30) for _ in range(2)]
        analyses.append(sleep_analysis.analyse(k, before, after, counts, acts, acts, labels,
                                               sleep_analysis.confusion(pred[0], labels, 10),
                                               sleep_analysis.confusion(pred[1], labels, 10), 10))
        sleeps.append(dict(task=k, steps=100 * k))
    return dict(method="src", seed=0, analysis=analyses, sleep=sleeps)


def test_the_confusion_matrices_have_class_ticks_axis_labels_and_a_colour_bar(drawn, tmp_path):
    visualize.sleep_figures(sleep_record(), str(tmp_path))
    fig = drawn["sleep_confusion_src.png"]
    matrices = [ax for ax in panels(fig) if ax.images]
    assert len(matrices) == 4    # before and after each of the two sleeps
    for ax in matrices:
        assert list(ax.get_xticks()) == list(range(10)) and list(ax.get_yticks()) == list(range(10))
        assert [t.get_text() for t in ax.get_xticklabels()] == [str(c) for c in range(10)]
        assert [t.get_text() for t in ax.get_yticklabels()] == [str(c) for c in range(10)]
        assert ax.get_xlabel() == "predicted class"
    assert {ax.get_ylabel() for ax in matrices} == {"true class", ""}
    assert {ax.get_title() for ax in matrices} == {"before sleep 1", "after sleep 1", "before sleep 2", "after sleep 2"}
    bars = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
    assert len(bars) == 1 and "true class" in bars[0].get_ylabel()
    assert bars[0].get_ylim() == (0, 100)    # percent of a class's images


def test_the_firing_and_weight_figures_label_every_axis_and_name_each_sleep(drawn, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        visualize.sleep_figures(sleep_record(silent_from=2), str(tmp_path))
    firing, weights = drawn["sleep_firing_src.png"], drawn["sleep_weights_src.png"]
    for fig in (firing, weights):
        for ax in panels(fig):
            assert ax.get_xlabel() and ax.get_ylabel() and ax.get_title(), ax.get_title()
    firing_axes = np.array(panels(firing)).reshape(4, 2)   # input, two hidden layers, output; one column per sleep
    for k, ax in enumerate(firing_axes[0], 1):
        assert f"sleep {k} (after task {k}" in ax.get_title() and f"{100 * k} steps" in ax.get_title()
    # sleep 2's second hidden layer and output are silent: empty panels that say so
    assert notes(firing_axes[2][1]) == ["hidden layer 2 silent"] and not firing_axes[2][1].patches
    assert notes(firing_axes[3][1]) == ["output silent"] and not firing_axes[3][1].patches
    assert firing_axes[2][0].patches and not notes(firing_axes[2][0])
    assert all("after task 2" in ax.get_title() for ax in panels(weights)[::3])   # the last sleep's weights
    colour_bars = [ax for ax in firing.axes if ax.get_label() == "<colorbar>"]
    assert len(colour_bars) == 2 and all(ax.get_ylabel() for ax in colour_bars)


def write_maps(path, maps, n_per_class=3, n_classes=10):
    np.savez(path, labels=np.repeat(np.arange(n_classes), n_per_class),
             **{f"{stage}/layer_{l + 1}": m.astype(np.float32) for stage, ms in maps.items() for l, m in enumerate(ms)})


def test_activation_maps_name_the_sleep_and_leave_broken_layers_empty_without_a_warning(drawn, tmp_path):
    rng = np.random.default_rng(1)
    ok = lambda: [rng.normal(size=(30, 4)), rng.normal(size=(30, 4)), rng.random((30, 10))]
    # sleep 2 breaks the network: layer 1 saturated (inf), layer 2 not a number, the output silent
    broken = [np.full((30, 4), np.inf), np.full((30, 4), np.nan), np.zeros((30, 10))]
    path = tmp_path / "src-seed0.npz"
    write_maps(path, {"train_1": ok(), "sleep_1": ok(), "train_2": ok(), "sleep_2": broken})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert visualize.plot_activations(str(path), "src", str(tmp_path / "activations_src.png"))
    axes = np.array(panels(drawn["activations_src.png"])).reshape(2, 9)   # two sleeps; 3 layers x before, after, change
    titles = [[ax.get_title() for ax in row] for row in axes]
    assert titles[1][:3] == ["layer 1, before sleep 2", "layer 1, after sleep 2", "layer 1, change in sleep 2"]
    assert titles[0][6:] == ["layer 3, before sleep 1", "layer 3, after sleep 1", "layer 3, change in sleep 1"]
    empty = {(1, 1): "layer 1 saturated", (1, 2): "layer 1 saturated", (1, 4): "layer 2: no finite values",
             (1, 5): "layer 2: no finite values", (1, 7): "layer 3 silent"}
    for (r, c), ax in np.ndenumerate(axes):
        assert notes(ax) == ([empty[r, c]] if (r, c) in empty else []), (r, c)
        assert bool(ax.images) != ((r, c) in empty), (r, c)
        assert ax.title.get_fontsize() >= 9 and ax.yaxis.label.get_fontsize() >= 8
    # an empty panel keeps its class ticks; in each row, a layer's maps with a drawn panel have a labelled colour
    # bar, its change another: 6 in sleep 1's row, 4 in sleep 2's (layers 1 and 2 changed to no finite value)
    assert [t.get_text() for t in axes[1][0].get_yticklabels()] == [str(c) for c in range(10)]
    bars = [ax for ax in drawn["activations_src.png"].axes if ax.get_label() == "<colorbar>"]
    assert len(bars) == 10 and all(ax.get_ylabel() for ax in bars)


def test_a_column_of_maps_with_nothing_finite_has_no_colour_bar_and_no_warning(drawn, tmp_path):
    path = tmp_path / "sequential-seed0.npz"
    write_maps(path, {f"train_{k}": [np.full((30, 4), np.nan), np.ones((30, 10))] for k in (1, 2)})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert visualize.plot_activations(str(path), "sequential", str(tmp_path / "activations_sequential.png"))
    fig = drawn["activations_sequential.png"]
    assert [notes(ax) for ax in panels(fig)] == [["layer 1: no finite values"], [], ["layer 1: no finite values"], []]
    assert [ax.get_ylabel() for ax in fig.axes if ax.get_label() == "<colorbar>"] == ["output activation"] * 2   # a row each
