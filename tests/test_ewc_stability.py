"""studies/ewc_stability.py: the bound on EWC's strength under SGD with momentum, checked against the project's own
training step on a weight that only the penalty moves."""
import pytest
import torch

import ewc_stability
import models


def pulled(strength, fisher=1.0, lr=0.1, momentum=0.5, steps=100):
    """|W - W*| after `steps` of models.sgd_step on a one-weight network whose data gives no gradient (input 0,
    target 0), so that only EWC's pull strength F (W - W*) moves it, from 1 away."""
    net = models.Net([torch.ones(1, 1, dtype=torch.float64)], [torch.zeros(1, 1, dtype=torch.float64)])
    nothing = torch.zeros(1, 1, dtype=torch.float64)
    penalty = ([torch.full((1, 1), fisher, dtype=torch.float64)], [torch.zeros(1, 1, dtype=torch.float64)], strength)
    for _ in range(steps):
        models.sgd_step(net, nothing, nothing, lr=lr, momentum=momentum, dropout=0.0, generator=None, penalty=penalty)
    return net.W[0].abs().item()


def test_the_bound_is_two_times_one_plus_momentum_over_lr_times_the_largest_fisher_entry():
    fisher = [torch.tensor([[1e-4, 2e-5]]), torch.tensor([[4e-4]])]
    assert ewc_stability.bound(fisher, lr=0.1, momentum=0.5) == pytest.approx(3 / (0.1 * 4e-4))


def test_the_penalty_alone_settles_below_the_bound_and_diverges_above_it():
    most = ewc_stability.bound([torch.tensor([[2.0]])], lr=0.1, momentum=0.5)   # 15
    assert most == pytest.approx(15.0)
    assert pulled(0.97 * most, fisher=2.0) < 1e-3      # lr lambda F = 2.91: the weight returns to W*
    assert pulled(1.03 * most, fisher=2.0) > 1e3       # 3.09: each step overshoots further (|z| = 1.16 a step)
    assert pulled(0.5 * most, fisher=2.0) < 1e-3


def test_a_report_seed_is_refused(in_process):
    done = in_process("studies/ewc_stability.py", "--seed", "3")
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == "ewc_stability.py: error: --seed 3 is a report seed; give a tuning seed (not 0-9; the default is 100)\n"
