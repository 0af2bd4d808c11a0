"""The Patches toy task: the images by hand, the drives and weight groups, one trial end to end."""
import torch

import patches


def test_images_share_the_overlap_and_own_disjoint_unique_pixels():
    X = patches.patches(11, 12, torch.Generator().manual_seed(0))
    assert X.shape == (4, 121) and set(X.unique().tolist()) == {0.0, 1.0}
    assert X.sum(1).tolist() == [20.0] * 4                        # floor(121 / 6) = 20 pixels on in each
    own, shared = patches.groups(X)
    assert shared.sum() == 12 and all(o.sum() == 8 for o in own)
    assert not (own[0] & own[2]).any() and not (own[1] & own[3]).any()
    same = patches.patches(10, 16, torch.Generator().manual_seed(0))   # from floor(100 / 6) = 16 on: one image
    assert (same == same[0]).all() and same[0].sum() == 16


def test_drives_and_weight_groups_by_hand():
    X = torch.tensor([[1, 1, 0, 0, 0], [1, 0, 1, 0, 0], [1, 0, 0, 1, 0], [1, 0, 0, 0, 1]], dtype=torch.float64)
    W = torch.arange(20, dtype=torch.float64).reshape(4, 5)
    # image 1: shared pixel 0, own pixel 1. Own output 0: W[0,0] + W[0,1] = 1. Task 2: max(10, 15) + max(11, 16) = 31
    assert patches.drives(W, X) == (1.0, 31.0)
    g = patches.weight_groups(W, X)
    assert g["task 1"]["task 1's own pixels"] == [1.0, 7.0] and g["task 1"]["shared pixels"] == [0.0, 5.0]
    assert g["task 2"]["the other task's pixels"] == [11.0, 12.0, 16.0, 17.0]


def test_a_trial_learns_each_task_and_records_the_stages():
    r = patches.trial("softmax", 12, 0)
    assert list(r["accuracy"]) == ["task 1", "task 2", "sleep"] and len(r["alpha"]) == 1
    assert r["accuracy"]["task 1"] == 50.0            # task 1's two images right, task 2's not yet
    assert r["accuracy"]["task 2"] >= 50.0 and sum(r["output_spikes"]) > 0
