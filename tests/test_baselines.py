"""The class-statistics baselines on toy data computed by hand."""
import numpy as np
import torch

import baselines

# two classes in 2-D: class 0 at (-2, 0), (2, 0), (0, 1) and class 1 at (1, 4), (3, 4), (2, 7)
X = torch.tensor([[-2.0, 0.0], [2.0, 0.0], [0.0, 1.0], [1.0, 4.0], [3.0, 4.0], [2.0, 7.0]])
Y = torch.tensor([0, 0, 0, 1, 1, 1])


def test_means_covariance_and_bytes_by_hand():
    stats = baselines.ClassStatistics(2, 3, covariance=True)
    stats.add(X[:4], Y[:4])   # streaming: two tasks' worth, in two parts
    stats.add(X[4:], Y[4:])
    seen, mu = stats.means()
    assert seen.tolist() == [0, 1] and mu.tolist() == [[0.0, 1 / 3], [2.0, 5.0]]
    # deviations: (-2, -1/3), (2, -1/3), (0, 2/3); (-1, -1), (1, -1), (0, 2): scatter / 6
    dev = np.array([[-2, -1 / 3], [2, -1 / 3], [0, 2 / 3], [-1, -1], [1, -1], [0, 2]])
    np.testing.assert_allclose(stats.covariance().numpy(), dev.T @ dev / 6, rtol=1e-12)
    assert stats.kept_bytes() == 4 * (2 * 3 + 4)   # two classes seen: 2 sums + a count each, and a 2 x 2 covariance
    assert baselines.ClassStatistics(2, 3).kept_bytes() == 0


def test_ncm_takes_the_nearest_mean():
    stats = baselines.ClassStatistics(2, 2)
    stats.add(X, Y)
    # (1, 2.6): 1 + 5.14 from (0, 1/3), 1 + 5.76 from (2, 5); (1.9, 2.9) is nearer (2, 5)
    assert baselines.ncm_predict(stats, torch.tensor([[1.0, 2.6], [1.9, 2.9]])).tolist() == [0, 1]


def test_slda_is_the_nearest_mean_in_the_shrunk_covariance_metric():
    stats = baselines.ClassStatistics(2, 2, covariance=True)
    stats.add(X, Y)
    gen = torch.Generator().manual_seed(0)
    queries = torch.rand(200, 2, generator=gen, dtype=torch.float64) * torch.tensor([8.0, 9.0]) - torch.tensor([3.0, 1.0])
    for s in (0.0, 0.3, 1.0):
        cov = (1 - s) * stats.covariance().numpy() + s * np.eye(2)
        mu = stats.means()[1].numpy()
        d = [np.einsum("ni,ij,nj->n", queries.numpy() - m, np.linalg.inv(cov), queries.numpy() - m) for m in mu]
        expected = np.argmin(d, axis=0)
        assert baselines.slda_predict(stats, queries, s).tolist() == expected.tolist()
    # the metric matters: somewhere the two classifiers disagree
    assert (baselines.slda_predict(stats, queries, 0.0) != baselines.ncm_predict(stats, queries)).any()


def test_the_ridge_head_accumulated_by_task_is_one_joint_least_squares_solve():
    gen = torch.Generator().manual_seed(1)
    phi, y = torch.rand(60, 5, generator=gen, dtype=torch.float64), torch.randint(0, 4, (60,), generator=gen)
    head = baselines.RidgeHead(5, 4)
    head.add(phi[:25], y[:25])
    head.add(phi[25:], y[25:])
    onehot = np.eye(4)[y.numpy()]
    # ridge as an augmented least-squares problem: [phi; sqrt(r) I] W = [Y; 0]
    r = 0.3
    A = np.vstack([phi.numpy(), np.sqrt(r) * np.eye(5)])
    B = np.vstack([onehot, np.zeros((5, 4))])
    np.testing.assert_allclose(head.weights(r).numpy(), np.linalg.lstsq(A, B, rcond=None)[0], rtol=1e-10, atol=1e-12)
    assert head.kept_bytes() == 4 * (25 + 20)
    # classes never seen get no vote, even where their (zero) score would be the largest
    only = baselines.RidgeHead(5, 4)
    only.add(phi[y < 2], y[y < 2])
    assert set(baselines.ridge_predict(only, -phi, r).tolist()) <= {0, 1}


def test_each_output_scores_as_its_best_class():
    # four classes on two outputs: classes 0 and 2 share output 0, classes 1 and 3 output 1; a class not seen is -inf
    scores = torch.tensor([[1.0, 5.0, 3.0, -torch.inf], [0.0, -1.0, 2.0, 4.0]])
    assert baselines.at_outputs(scores, 2).tolist() == [[3.0, 5.0], [2.0, 4.0]]
    assert torch.equal(baselines.at_outputs(scores, 4), scores)   # class-IL: an output per class, unchanged
