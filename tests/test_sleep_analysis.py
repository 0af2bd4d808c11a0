"""The sleep's analyses on toy cases with known answers."""
import numpy as np

import sleep_analysis as sa


def test_confusion_and_each_class_accuracy_by_hand():
    m = sa.confusion([0, 1, 1, 2, 2, 0], [0, 1, 2, 2, 2, 1], 3)
    assert m.tolist() == [[1, 0, 0], [1, 1, 0], [0, 1, 2]]
    assert np.allclose(sa.per_class_accuracy(m), [100, 50, 200 / 3])
    # four classes on two outputs (as mnist-fashion's 20 on 10): class c is right at output c % 2
    pair = sa.confusion([0, 1, 0, 1, 1], [0, 1, 2, 3, 2], 4, 2)
    assert pair.shape == (4, 2) and np.allclose(sa.per_class_accuracy(pair), [100, 100, 50, 100])


def test_weight_changes_count_what_was_raised_and_lowered():
    before = [np.array([[0.0, 1.0], [2.0, 3.0]])]
    after = [np.array([[0.5, 1.0], [1.0, 2.5]])]
    (w,) = sa.weight_changes(before, after, bins=4)
    assert (w["raised"], w["lowered"], w["unchanged"]) == (1, 2, 1)
    assert w["raised_sum"] == 0.5 and w["lowered_sum"] == -1.5
    assert sum(w["before"]) == sum(w["after"]) == sum(w["change"]) == 4 and w["edges"][0] == 0.0 and w["edges"][-1] == 3.0
    assert (w["before"], w["after"], w["change"]) == ([1, 1, 1, 1], [1, 2, 0, 1], [1, 1, 1, 1])   # (0.75-wide bins; the changes 0.5-wide)
    # a layer's counts are those of its recorded edges, values on an edge included (the bin to its right, the last closed)
    rng = np.random.default_rng(0)
    a = np.round(rng.standard_normal(5000), 1)   # many values on the edges of 0.1-wide bins
    b = np.where(rng.random(5000) < 0.3, a + np.round(rng.standard_normal(5000), 1), a)
    (w,) = sa.weight_changes([a], [b], bins=40)
    assert w["edges"] == np.linspace(min(a.min(), b.min()), max(a.max(), b.max()), 41).tolist()   # (the edges as before)
    for counts, x, edges in (("before", a, "edges"), ("after", b, "edges"), ("change", b - a, "change_edges")):
        assert w[counts] == np.histogram(x, np.array(w[edges]))[0].tolist()


def test_reactivation_finds_the_units_of_a_class_that_fire_in_sleep():
    # three classes, unit k active for class k only; the sleep fires unit 2 (and a little unit 0)
    labels = np.array([0, 0, 1, 1, 2, 2])
    acts = [np.eye(3)[labels] * 2.0]
    counts = [np.zeros(5), np.array([1.0, 0.0, 8.0])]
    (r,) = sa.reactivation(acts, labels, counts, 3, top=1)
    assert np.allclose(r["top_ratio"], [1 / 3, 0, 8 / 3])               # its top unit's count over the mean, 3
    assert r["correlation"][2] > 0.9 and r["correlation"][1] < 0


def test_correlation_within_and_between_classes():
    labels = np.array([0, 0, 1, 1])
    a = np.array([[1.0, 0, 0, 2], [1.0, 0, 0, 2], [0, 3.0, 1, 0], [0, 3.0, 1, 0]])
    (c,) = sa.class_correlation([a], labels)
    assert np.isclose(c["within"], 1.0)
    u, v = a[0] - a[0].mean(), a[2] - a[2].mean()
    assert np.isclose(c["between"], u @ v / np.linalg.norm(u) / np.linalg.norm(v))
