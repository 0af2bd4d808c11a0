"""Stable rank, PCA maps and continual-learning metrics on cases with known answers."""
import numpy as np
import pytest
import torch

import analysis


def test_stable_rank_known_matrices():
    assert analysis.stable_rank(torch.eye(50)) == pytest.approx(50)
    u, v = np.random.default_rng(0).normal(size=(2, 100))
    assert analysis.stable_rank(np.outer(u, v)) == pytest.approx(1.0)
    a = np.random.default_rng(1).normal(size=(300, 200))
    s = np.linalg.svd(a, compute_uv=False)
    assert analysis.stable_rank(torch.tensor(a, dtype=torch.float32)) == pytest.approx((s ** 2).sum() / s[0] ** 2, rel=1e-5)
    small = np.random.default_rng(2).normal(size=(10, 300))
    s = np.linalg.svd(small, compute_uv=False)
    assert analysis.stable_rank(small) == pytest.approx((s ** 2).sum() / s[0] ** 2, rel=1e-10)
    assert analysis.stable_rank(np.zeros((4, 4))) == 0.0


def test_probe_set_is_class_balanced_and_ordered():
    y = np.array([3, 1, 0, 1, 0, 2, 3, 2, 0, 1, 2, 3])
    idx = analysis.probe_indices(y, 2, 4)
    assert y[idx].tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    assert idx.tolist() == [2, 4, 1, 3, 5, 7, 0, 6]


def test_pca_maps_share_a_basis_and_keep_small_layers_raw():
    rng = np.random.default_rng(0)
    before = [rng.normal(size=(40, 30)), rng.normal(size=(40, 10))]
    after = [before[0] + 0.01 * rng.normal(size=(40, 30)), rng.normal(size=(40, 10))]
    maps = analysis.pca_maps({"train_1": before, "sleep_1": after}, n_components=5)
    assert [m.shape for m in maps["train_1"]] == [(40, 5), (40, 10)]
    np.testing.assert_allclose(maps["sleep_1"][1], after[1], rtol=1e-6)        # output layer raw
    # one basis: a small change of the activations gives a small change of the maps
    assert np.abs(maps["sleep_1"][0] - maps["train_1"][0]).max() < 0.1


def test_cl_metrics_by_hand():
    # Sequential-style rows: the usual definitions (Lopez-Paz & Ranzato; Chaudhry et al.).
    stages = [("init", [10, 10, 10]), ("train_1", [90, 0, 0]), ("train_2", [60, 95, 0]), ("train_3", [30, 80, 99])]
    m = analysis.cl_metrics(stages, [30, 80, 99])
    assert m["acc"] == pytest.approx((30 + 80 + 99) / 3)
    assert m["bwt"] == pytest.approx(((30 - 90) + (80 - 95)) / 2)
    assert m["forgetting"] == pytest.approx(((90 - 30) + (95 - 80)) / 2)
    # forgetting uses the best earlier accuracy, BWT the one right after learning; the final stage is not
    # an "earlier" one, so a task that improves at the end has negative forgetting
    two = [("train_1", [50, 0]), ("train_2", [70, 90])]
    assert analysis.cl_metrics(two, [70, 90])["bwt"] == pytest.approx(20)
    assert analysis.cl_metrics(two, [70, 90])["forgetting"] == pytest.approx(-20)
    # SRC: the reference is the accuracy before the task's own sleep, so that sleep's loss counts; the
    # maximum runs over sleeps too
    src_rows = [("train_1", [99, 0]), ("sleep_1", [93, 5]), ("train_2", [40, 97]), ("sleep_2", [60, 90])]
    m = analysis.cl_metrics(src_rows, [60, 90])
    assert m["bwt"] == pytest.approx(60 - 99) and m["forgetting"] == pytest.approx(99 - 60)
    src_rows[1] = ("sleep_1", [100, 5])
    assert analysis.cl_metrics(src_rows, [60, 90])["forgetting"] == pytest.approx(100 - 60)
    # joint training has no per-task stage
    joint = analysis.cl_metrics([("init", [0, 0, 0]), ("train_all", [94, 96, 92])], [94, 96, 92])
    assert joint["acc"] == pytest.approx(94) and np.isnan(joint["bwt"]) and np.isnan(joint["forgetting"])


def test_mean_std_is_the_sample_std():
    mean, std = analysis.mean_std([43.5, 38.2, 40.7, 52.9, 49.6])
    assert mean == pytest.approx(44.98)
    d = np.array([43.5, 38.2, 40.7, 52.9, 49.6]) - 44.98
    assert std == pytest.approx(np.sqrt((d ** 2).sum() / 4))     # n - 1 = 4 in the denominator
    assert np.isnan(analysis.mean_std([7.0])[1])


def test_a_silent_layer_maps_to_zeros():
    # a layer whose activations are all equal (a network that went silent) maps to zeros, not an ARPACK error
    silent = {"train_1": [np.zeros((40, 50)), np.ones((40, 10))], "sleep_1": [np.zeros((40, 50)), np.ones((40, 10))]}
    maps = analysis.pca_maps(silent, n_components=5)
    assert (maps["sleep_1"][0] == 0).all() and maps["sleep_1"][0].shape == (40, 5)


def test_a_saturated_layer_maps_without_error():
    # a sleep that saturates a layer: activations near 1e22, whose float32 squares overflow (ARPACK failed on them)
    rng = np.random.default_rng(0)
    hot = (rng.random((400, 300)) * (rng.random(300) < 0.1)).astype(np.float32) * 1e22
    maps = analysis.pca_maps({"train_1": [hot, np.zeros((400, 10))], "sleep_1": [hot / 2, np.zeros((400, 10))]}, 10)
    assert maps["train_1"][0].shape == (400, 10) and np.isfinite(maps["train_1"][0]).all()
    # the two stages share one basis: halving the activations halves the (centred) map
    np.testing.assert_allclose(maps["sleep_1"][0] - maps["sleep_1"][0].mean(0),
                               (maps["train_1"][0] - maps["train_1"][0].mean(0)) / 2, rtol=1e-4, atol=1e-4 * np.abs(maps["train_1"][0]).max())
    assert analysis.stable_rank(hot.astype(np.float64)) >= 1


def test_capacity_counts_directions_and_measures_overlap_on_known_subspaces():
    # 8 images per task; centred, mutually orthogonal coefficient columns (a Hadamard matrix's, without its
    # all-ones column), scaled so that the variances along the task's directions are exactly 8 : 1 : 1
    h = np.array([[1]])
    for _ in range(3):
        h = np.block([[h, h], [h, -h]])
    coef = h[:, 1:4] * np.sqrt([8, 1.5, 0.5])
    e = np.eye(6)
    rot = np.cos(0.3) * e[0] + np.sin(0.3) * e[5]                 # task 3's first direction: 0.3 rad from e0
    spans = [e[[0, 1, 2]], e[[0, 3, 4]], np.stack([rot, e[3], e[4]])]
    acts = np.concatenate([coef @ span + 5.0 for span in spans])  # + an offset that centring removes
    labels = np.repeat([0, 1, 2], 8)
    (layer,) = analysis.capacity([acts], labels, [(0,), (1,), (2,)], variance=0.9)
    assert layer["dims"] == [2, 2, 2]      # 0.8 < 0.9 <= 0.95: two components; at 0.99, all three
    assert analysis.capacity([acts], labels, [(0,)], variance=0.99)[0]["dims"] == [3]
    ov = np.array(layer["overlap"])
    # kept subspaces: {e0, e1}, {e0, e3}, {rot, e3}; mean squared cosine over min(2, 2) angles
    np.testing.assert_allclose(np.diag(ov), 1, atol=1e-12)
    assert ov[0, 1] == pytest.approx(0.5)                        # one shared direction of two
    assert ov[0, 2] == pytest.approx(np.cos(0.3) ** 2 / 2)      # rot against e0, nothing against e1
    assert ov[1, 2] == pytest.approx((np.cos(0.3) ** 2 + 1) / 2)
    # a silent layer uses no direction, and its overlap is undefined
    silent = analysis.capacity([np.zeros((24, 6))], labels, [(0,), (1,)])[0]
    assert silent["dims"] == [0, 0] and np.isnan(silent["overlap"][0][1])


def test_every_table_prints_a_mean_and_its_std_one_way():
    assert analysis.text(45.04, 6.05) == "45.0 ± 6.0" and analysis.text(2.0, 0.44, sign=True) == "+2.0 ± 0.4"
    assert analysis.text(*analysis.mean_std([70.0])) == "70.0"   # one seed: no std
    assert analysis.text(float("nan"), 1.0) == "n/a" and analysis.text(-0.5, None, sign=True) == "-0.5"
