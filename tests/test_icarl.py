"""iCaRL's exemplar memory on toy cases computed by hand."""
import pytest
import torch

import icarl


def test_exemplars_per_class_shrink_as_classes_arrive():
    # memory 100, two classes per task: 50, 25, round(16.7) = 17, round(12.5) = 13 (half away), 10
    assert [icarl.per_class(100, k, 2) for k in range(1, 6)] == [50, 25, 17, 13, 10]
    # the first task keeps at most 5000 per class (the MATLAB's first-task memory of 10000 at 20000)
    assert icarl.per_class(20000, 1, 2) == 5000 and icarl.per_class(20000, 2, 2) == 5000


def test_herding_by_hand():
    phi = torch.tensor([[0, 0], [2, 0], [0, 2], [2, 2], [1, 1]], dtype=torch.float64)
    # mean mu = (1, 1); phi . mu = 0, 2, 2, 4, 2: the first pick is the smallest, image 0.
    # Pick 2: the mean of {0, j} nearest mu: j = 3 gives (1, 1), distance 0.
    # Pick 3: {0, 3, j}: j = 4 gives (1, 1) again. Pick 4: images 1 and 2 tie at (5/4, 3/4) and (3/4, 5/4),
    # both sqrt(2)/4 from mu: the lower index, 1.
    assert icarl.herding(phi, 4) == [0, 3, 4, 1]
    assert icarl.herding(phi, 5) == [0, 3, 4, 1, 2]
    with pytest.raises(ValueError, match="herding picks 1 to 5 exemplars"):
        icarl.herding(phi, 6)


def test_nearest_mean_of_exemplars_by_hand():
    means = {0: torch.tensor([0.0, 0.0]), 3: torch.tensor([4.0, 0.0]), 7: torch.tensor([0.0, 3.0])}
    test = torch.tensor([[1.0, 0.0], [3.0, 0.5], [0.5, 2.0], [2.0, 0.0]])
    # distances to (0, 0), (4, 0), (0, 3): row 3 is 2 from both 0 and 3: the first class listed, 0
    assert icarl.nme_predict(test, means).tolist() == [0, 3, 7, 0]


def test_random_exemplars_are_distinct_and_seed_determined():
    x = torch.zeros(30, 4)
    a = icarl.choose(None, x, 10, "random", 0.25, torch.Generator().manual_seed(1))
    b = icarl.choose(None, x, 10, "random", 0.25, torch.Generator().manual_seed(1))
    assert a == b and len(set(a)) == 10 and all(0 <= i < 30 for i in a)
