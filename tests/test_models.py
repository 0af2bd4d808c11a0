"""The bias-free MLP: shapes, dropout scaling, the loss, the original's backprop and SGD with momentum."""
import numpy as np
import pytest
import torch

import models


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_paper_network_shapes_init_and_no_biases():
    net = models.init_net((784, 1200, 1200, 10), 0.01, gen())
    assert [tuple(w.shape) for w in net.W] == [(1200, 784), (1200, 1200), (10, 1200)]
    assert all(w.dtype == torch.float32 for w in net.W)
    assert all(w.abs().max() <= 0.01 and w.abs().max() > 0.0099 for w in net.W)
    assert abs(net.W[1].mean().item()) < 1e-4 and all((v == 0).all() for v in net.vW)
    # no bias: a zero input gives exactly zero everywhere
    assert all((a == 0).all() for a in models.forward(net, torch.zeros(3, 784), 0.25))
    with pytest.raises(ValueError):
        models.init_net((784,), 0.01, gen())


@pytest.mark.parametrize("bias, output, hidden, batch", [(False, "relu", (64, 32), 100), (True, "linear", (64, 32), 100),
                                                        (False, "relu", (20, 20), 10), (True, "linear", (20, 20), 3)])
def test_a_stack_trains_each_network_to_the_bits_it_reaches_alone(bias, output, hidden, batch):
    # three networks as one stack (models.stack): the same minibatches and dropout masks, and each network's
    # weights, buffers and losses the same to the bit as when it trains alone (with LwF's term), at shapes where
    # a batched BLAS call rounds otherwise than the call alone (20 units, minibatches of 10 or 3)
    nets = [models.init_net((784, *hidden, 10), 0.05, gen(s), bias=bias, output=output) for s in range(3)]
    for s, net in enumerate(nets):   # different buffers left over from an earlier task
        net.vW = [torch.rand(v.shape, generator=gen(10 + s)) * 1e-3 for v in net.vW]
    x, y = torch.rand(250, 784, generator=gen(4)), torch.randint(10, (250,), generator=gen(5))
    kw = dict(epochs=2, batch_size=batch, lr=0.05, momentum=0.5, dropout=0.2, n_classes=10,
              distill=(torch.rand(250, 10, generator=gen(6)), torch.arange(10) < 6, 0.7, 2.0))
    alone = [net.clone() for net in nets]
    losses = [models.train(net, x, y, generator=gen(7), **kw) for net in alone]
    stack = models.stack(nets)
    assert [tuple(w.shape) for w in stack.W] == [(3, hidden[0], 784 + bias), (3, hidden[1], hidden[0] + bias), (3, 10, hidden[1] + bias)]
    together = models.train(stack, x, y, generator=gen(7), **kw)
    assert together == [list(epoch) for epoch in zip(*losses)] and losses[0] != losses[1]
    for net, one in zip(alone, models.unstack(stack)):
        assert all(torch.equal(a, b) for a, b in zip(net.W + net.vW, one.W + one.vW))
    assert not torch.equal(alone[0].W[0], alone[1].W[0])
    with pytest.raises(ValueError, match="path"):   # SI's accumulators are one network's
        models.sgd_step(stack, x[:4], torch.zeros(4, 10), lr=0.1, momentum=0.0, dropout=0.0, generator=None,
                        path=[torch.zeros_like(w) for w in stack.W])


def toy():
    W = [torch.tensor([[1.0, -2.0], [0.5, 1.0], [-1.0, 0.25]], dtype=torch.float64),
         torch.tensor([[1.0, 2.0, -1.0], [-0.5, 1.0, 1.0]], dtype=torch.float64)]
    return models.Net(W, [torch.zeros_like(w) for w in W])


def test_dropout_is_not_inverted():
    net, x = toy(), torch.tensor([[1.0, 0.5]], dtype=torch.float64)
    h, out = models.forward(net, x, dropout=0.25)
    # evaluation: hidden = 0.75 relu(W1 x) = 0.75 [0, 1, 0]; output (no dropout) = relu(W2 h)
    assert h.tolist() == [[0.0, 0.75, 0.0]]
    assert out.tolist() == [[1.5, 0.75]]
    # training: a 0/1 mask keeps each unit with probability 0.75, no rescaling
    big = models.init_net((50, 4000, 10), 0.01, gen())
    x = torch.rand(20, 50, generator=gen(1))
    full = (x @ big.W[0].T).clamp_min(0)
    h = models.forward(big, x, 0.25, generator=gen(2))[0]
    kept = h != 0
    assert torch.equal(h[kept], full[kept])
    assert abs(kept.sum().item() / (full != 0).sum().item() - 0.75) < 0.01


def test_one_sgd_step_by_hand():
    # Input x = [1, 0.5], target class 1. Forward without dropout:
    #   z1 = W1 x = [0, 1, -0.875], h = relu = [0, 1, 0];  out = relu(W2 h) = relu([2, 1]) = [2, 1]
    #   error d2 = out - target = [2, 0]; loss = 0.5 (4 + 0) = 2
    #   dW2 = d2 h^T = [[0, 2, 0], [0, 0, 0]]
    #   d1 = (W2^T d2) * (h > 0) = [2, 4, -2] * [0, 1, 0] = [0, 4, 0];  dW1 = d1 x^T = [[0, 0], [4, 2], [0, 0]]
    net = toy()
    net.vW[0] += 0.2                                    # a momentum buffer left over from earlier batches
    before = [w.clone() for w in net.W]
    loss = models.sgd_step(net, torch.tensor([[1.0, 0.5]], dtype=torch.float64),
                           torch.tensor([[0.0, 1.0]], dtype=torch.float64), lr=0.1, momentum=0.5, dropout=0.0, generator=gen())
    assert loss == pytest.approx(2.0)
    dW1 = torch.tensor([[0, 0], [4, 2], [0, 0]], dtype=torch.float64)
    dW2 = torch.tensor([[0, 2, 0], [0, 0, 0]], dtype=torch.float64)
    v1, v2 = 0.5 * 0.2 + 0.1 * dW1, 0.1 * dW2          # v = 0.5 v + 0.1 g
    torch.testing.assert_close(net.vW[0], v1)
    torch.testing.assert_close(net.vW[1], v2)
    torch.testing.assert_close(net.W[0], before[0] - v1)   # W = W - v
    torch.testing.assert_close(net.W[1], before[1] - v2)


def test_output_error_ignores_the_output_relu():
    # Output 0 has a negative pre-activation (ReLU output 0) but target 1: autograd through the ReLU gives it
    # no gradient; the original's backprop still pulls it up with error (0 - 1).
    net = toy()
    net.W[1][0] = torch.tensor([-1.0, -1.0, -1.0], dtype=torch.float64)
    x, t = torch.tensor([[1.0, 0.5]], dtype=torch.float64), torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    w_before = net.W[1][0].clone()
    models.sgd_step(net, x, t, lr=0.1, momentum=0.0, dropout=0.0, generator=gen())
    assert net.W[1][0, 1] > w_before[1]                    # h_1 = 1 > 0, so it moved: -lr * (0 - 1) * 1
    torch.testing.assert_close(net.W[1][0, 1], w_before[1] + 0.1)


@pytest.mark.parametrize("dropout", [0.0, 0.25])
def test_backprop_equals_autograd_with_a_straight_through_output(dropout):
    net = models.init_net((30, 40, 20, 10), 0.3, gen(), dtype=torch.float64)
    x, y = torch.rand(16, 30, generator=gen(1), dtype=torch.float64), torch.randint(10, (16,), generator=gen(2))
    target = torch.nn.functional.one_hot(y, 10).double()
    # autograd reference: ReLU output in the forward pass, identity in the backward pass
    Ws = [w.clone().requires_grad_() for w in net.W]
    g = gen(3)
    a = x
    for l, w in enumerate(Ws):
        z = a @ w.T
        if l < len(Ws) - 1:
            a = z.clamp_min(0)
            if dropout:
                a = a * (torch.rand(a.shape, generator=g, dtype=a.dtype) > dropout)
        else:
            a = z + (z.clamp_min(0) - z).detach()
    (0.5 * (a - target).square().sum() / len(x)).backward()
    models.sgd_step(net, x, target, lr=1.0, momentum=0.0, dropout=dropout, generator=gen(3))
    for w, w0 in zip(net.W, Ws):
        torch.testing.assert_close(w, w0.detach() - w0.grad)


def test_train_is_reproducible_and_carries_momentum():
    x, y = torch.rand(250, 20, generator=gen(1)), torch.randint(10, (250,), generator=gen(2))
    kw = dict(epochs=2, batch_size=100, lr=0.1, momentum=0.5, dropout=0.25, n_classes=10)
    a, b = models.init_net((20, 30, 10), 0.1, gen()), models.init_net((20, 30, 10), 0.1, gen())
    losses = models.train(a, x, y, generator=gen(5), **kw)
    models.train(b, x, y, generator=gen(5), **kw)
    assert len(losses) == 2 and all(torch.equal(u, v) for u, v in zip(a.W, b.W))
    assert all(v.abs().sum() > 0 for v in a.vW)
    with pytest.raises(ValueError, match="labels"):
        models.train(a, x, y[:5], generator=gen(), **kw)


def test_training_learns_a_task():
    gen0 = gen()
    centers = torch.randn(2, 40, generator=gen0)
    y = torch.randint(2, (600,), generator=gen0)
    x = (centers[y] + 0.3 * torch.randn(600, 40, generator=gen0)).clamp(0, 1)
    net = models.init_net((40, 64, 10), 0.01, gen0)
    losses = models.train(net, x, y, epochs=5, batch_size=50, lr=0.1, momentum=0.5, dropout=0.25, n_classes=10, generator=gen0)
    assert losses[-1] < losses[0]
    per_task, overall = models.accuracy(models.predict(net, x, 0.25), y, [(0, 1)])
    assert overall > 95 and per_task == [overall]


def test_ties_go_to_the_first_output_and_merge_averages():
    net = models.Net([torch.zeros(10, 4)], [torch.zeros(10, 4)])
    assert models.predict(net, torch.rand(5, 4), 0.25).tolist() == [0] * 5     # all outputs 0: class 0, like MATLAB
    a, b = toy(), toy()
    b.W = [2 * w for w in b.W]
    merged = models.merge([a, b])
    assert all(torch.allclose(m, 1.5 * w) for m, w in zip(merged.W, a.W))
    per_task, overall = models.accuracy(models.predict(net, torch.rand(4, 4), 0.25), torch.tensor([0, 1, 2, 3]), [(0, 1), (2, 3)])
    assert per_task == [50.0, 0.0] and overall == 25.0
    # only the tasks learnt are scored (--n-tasks): classes 2 and 3 are not in the overall accuracy
    assert models.accuracy(torch.tensor([0, 0, 0, 0]), torch.tensor([0, 1, 2, 3]), [(0, 1)]) == ([50.0], 50.0)


def test_penalty_and_path_by_hand():
    # No error signal (output equals target): the only gradient is the penalty strength * omega * (W - anchor).
    net = models.Net([torch.tensor([[0.5, -0.5]], dtype=torch.float64)], [torch.zeros(1, 2, dtype=torch.float64)])
    x, target = torch.tensor([[1.0, 0.0]], dtype=torch.float64), torch.tensor([[0.5]], dtype=torch.float64)
    omega, anchor = [torch.tensor([[2.0, 3.0]], dtype=torch.float64)], [torch.tensor([[0.0, 0.0]], dtype=torch.float64)]
    path = [torch.zeros(1, 2, dtype=torch.float64)]
    models.sgd_step(net, x, target, lr=0.1, momentum=0.5, dropout=0.0, generator=gen(),
                    penalty=(omega, anchor, 10.0), path=path)
    v = 0.1 * 10.0 * torch.tensor([[2 * 0.5, 3 * -0.5]], dtype=torch.float64)
    torch.testing.assert_close(net.vW[0], v)
    torch.testing.assert_close(net.W[0], torch.tensor([[0.5, -0.5]], dtype=torch.float64) - v)
    assert (path[0] == 0).all()          # the loss gradient is zero: no path integral
    # with an error and no penalty, the path receives g * v = g * (lr g) for the first step
    net = toy()
    path = [torch.zeros_like(w) for w in net.W]
    models.sgd_step(net, torch.tensor([[1.0, 0.5]], dtype=torch.float64), torch.tensor([[0.0, 1.0]], dtype=torch.float64),
                    lr=0.1, momentum=0.5, dropout=0.0, generator=gen(), path=path)
    dW2 = torch.tensor([[0, 2, 0], [0, 0, 0]], dtype=torch.float64)
    torch.testing.assert_close(path[1], 0.1 * dW2 * dW2)


def test_fisher_is_the_mean_squared_per_image_gradient():
    net = models.init_net((6, 5, 4), 0.5, gen(), dtype=torch.float64)
    x, y = torch.rand(7, 6, generator=gen(1), dtype=torch.float64), torch.randint(4, (7,), generator=gen(2))
    F = models.fisher(net, x, y, dropout=0.25, n_classes=4, chunk=3)
    expected = [torch.zeros_like(w) for w in net.W]
    for xi, yi in zip(x, y):                     # autograd, one image at a time, evaluation mode
        Ws = [w.clone().requires_grad_() for w in net.W]
        h = 0.75 * (xi @ Ws[0].T).clamp_min(0)
        z = h @ Ws[1].T
        out = z + (z.clamp_min(0) - z).detach()  # the original's linear treatment of the output
        (0.5 * (out - torch.nn.functional.one_hot(yi, 4)).square().sum()).backward()
        for e, w in zip(expected, Ws):
            e += w.grad.square() / len(x)
    for f, e in zip(F, expected):
        torch.testing.assert_close(f, e)


def test_torch_default_init_bound():
    net = models.init_net((784, 400, 10), 0.01, gen(), init="torch")
    for w, fan_in in zip(net.W, (784, 400)):
        bound = 1 / np.sqrt(fan_in)
        assert w.abs().max() <= bound and w.abs().max() > 0.99 * bound


@pytest.mark.parametrize("dropout", [0.0, 0.25])
def test_linear_output_cross_entropy_and_inverted_dropout_equal_autograd(dropout):
    # The replica's training: logits, softmax cross-entropy averaged over the batch, torch's inverted dropout.
    net = models.init_net((30, 40, 20, 10), 0.3, gen(), dtype=torch.float64, output="linear", inverted=True)
    x, y = torch.rand(16, 30, generator=gen(1), dtype=torch.float64), torch.randint(10, (16,), generator=gen(2))
    Ws = [w.clone().requires_grad_() for w in net.W]
    g = gen(3)
    a = x
    for l, w in enumerate(Ws):
        a = a @ w.T
        if l < len(Ws) - 1:
            a = a.clamp_min(0)
            if dropout:
                a = a * (torch.rand(a.shape, generator=g, dtype=a.dtype) > dropout) / (1 - dropout)
    loss = torch.nn.functional.cross_entropy(a, y)
    loss.backward()
    target = torch.nn.functional.one_hot(y, 10).double()
    reported = models.sgd_step(net, x, target, lr=1.0, momentum=0.0, dropout=dropout, generator=gen(3))
    assert reported == pytest.approx(loss.item(), rel=1e-12)
    for w, w0 in zip(net.W, Ws):
        torch.testing.assert_close(w, w0.detach() - w0.grad)


def test_inverted_dropout_leaves_evaluation_unscaled():
    net, x = toy(), torch.tensor([[1.0, 0.5]], dtype=torch.float64)
    net.inverted = True
    h, out = models.forward(net, x, dropout=0.25)
    assert h.tolist() == [[0.0, 1.0, 0.0]] and out.tolist() == [[2.0, 1.0]]
    net.output = "linear"                       # logits: no ReLU at the output
    net.W[1][1] = torch.tensor([-0.5, -1.0, 1.0], dtype=torch.float64)
    assert models.forward(net, x, dropout=0.25)[1].tolist() == [[2.0, -1.0]]


def test_fisher_of_logits_is_the_mean_squared_per_image_gradient():
    net = models.init_net((6, 5, 4), 0.5, gen(), dtype=torch.float64, output="linear", inverted=True)
    x, y = torch.rand(7, 6, generator=gen(1), dtype=torch.float64), torch.randint(4, (7,), generator=gen(2))
    F = models.fisher(net, x, y, dropout=0.25, n_classes=4, chunk=3)
    expected = [torch.zeros_like(w) for w in net.W]
    for xi, yi in zip(x, y):                     # autograd, one image at a time, evaluation mode (inverted: unscaled)
        Ws = [w.clone().requires_grad_() for w in net.W]
        out = (xi @ Ws[0].T).clamp_min(0) @ Ws[1].T
        torch.nn.functional.cross_entropy(out[None], yi[None]).backward()
        for e, w in zip(expected, Ws):
            e += w.grad.square() / len(x)
    for f, e in zip(F, expected):
        torch.testing.assert_close(f, e)


def test_bias_is_the_weight_of_an_always_one_input_trained_like_a_weight():
    # one ReLU output unit: z = 0.5 x1 - 0.5 x2 + b with b = 0.2; x = (1, 0.4): z = 0.5 - 0.2 + 0.2 = 0.5
    W = torch.tensor([[0.5, -0.5, 0.2]], dtype=torch.float64)
    net = models.Net([W.clone()], [torch.zeros_like(W)], bias=True)
    x = torch.tensor([[1.0, 0.4]], dtype=torch.float64)
    assert models.forward(net, x, 0.0)[-1].item() == pytest.approx(0.5)
    # half squared error against target 0: d = 0.5; gradient (d x1, d x2, d 1) = (0.5, 0.2, 0.5); lr 0.1, no momentum
    models.sgd_step(net, x, torch.zeros(1, 1, dtype=torch.float64), lr=0.1, momentum=0.0, dropout=0.0, generator=gen())
    torch.testing.assert_close(net.W[0], W - 0.1 * torch.tensor([[0.5, 0.2, 0.5]], dtype=torch.float64))
    assert [tuple(w.shape) for w in net.weights_only()] == [(1, 2)]
    # a network with zero biases computes what the bias-free one computes, from the same draws
    plain, biased = models.init_net((6, 5, 4), 0.5, gen(3)), models.init_net((6, 5, 4), 0.5, gen(3), bias=True)
    assert all(torch.equal(w, wb[:, :-1]) and (wb[:, -1] == 0).all() for w, wb in zip(plain.W, biased.W))
    xb = torch.rand(7, 6, generator=gen(4))
    torch.testing.assert_close(models.forward(plain, xb, 0.25)[-1], models.forward(biased, xb, 0.25)[-1])
    # the Fisher information of a bias is the mean squared error signal (its input is 1)
    F = models.fisher(net, x, torch.tensor([0]), 0.0, 1)
    d = models.forward(net, x, 0.0)[-1].item() - 1.0
    assert F[0][0, -1].item() == pytest.approx(d * d)


@pytest.mark.parametrize("taught", ["earlier", "all"])
@pytest.mark.parametrize("output", ["linear", "relu"])
def test_lwf_distillation_equals_autograd(output, taught):
    # LwF: the new labels' loss plus strength x the distillation towards the old outputs on the taught outputs,
    # the earlier classes' or all ten (logits: T^2 KL(softmax(old/T) || softmax(out/T)) over them; ReLU output:
    # 1/2 squared error, straight through)
    net = models.init_net((30, 40, 10), 0.3, gen(), dtype=torch.float64, output=output)
    x, y = torch.rand(16, 30, generator=gen(1), dtype=torch.float64), torch.randint(4, 6, (16,), generator=gen(2))
    old = torch.randn(16, 10, generator=gen(4), dtype=torch.float64)
    earlier = torch.arange(10) < 4 if taught == "earlier" else torch.ones(10, dtype=torch.bool)
    strength, T = 1.7, 2.5
    Ws = [w.clone().requires_grad_() for w in net.W]
    z = (x @ Ws[0].T).clamp_min(0) @ Ws[1].T
    target = torch.nn.functional.one_hot(y, 10).double()
    if output == "linear":
        p = torch.softmax(old[:, earlier] / T, 1)
        kl = (p * (p.log() - torch.log_softmax(z[:, earlier] / T, 1))).sum(1)
        loss = torch.nn.functional.cross_entropy(z, y, reduction="none") + strength * T ** 2 * kl
    else:
        out = z + (z.clamp_min(0) - z).detach()
        loss = 0.5 * (out - target).square().sum(1) + 0.5 * strength * (out - old)[:, earlier].square().sum(1)
    loss.mean().backward()
    reported = models.sgd_step(net, x, target, lr=1.0, momentum=0.0, dropout=0.0, generator=gen(3),
                               distill=(old, earlier, strength, T))
    assert reported == pytest.approx(loss.mean().item(), rel=1e-12)
    for w, w0 in zip(net.W, Ws):
        torch.testing.assert_close(w, w0.detach() - w0.grad)
    # the term pulls only the taught outputs: the other classes' rows of W2 move as without it
    plain = models.init_net((30, 40, 10), 0.3, gen(), dtype=torch.float64, output=output)
    models.sgd_step(plain, x, target, lr=1.0, momentum=0.0, dropout=0.0, generator=gen(3))
    torch.testing.assert_close(net.W[1][~earlier], plain.W[1][~earlier])
    assert not torch.allclose(net.W[1][earlier], plain.W[1][earlier])


def test_task_il_scores_each_image_among_its_own_tasks_outputs():
    # Four images, tasks (0, 1) and (2, 3). Class-IL (argmax over all outputs) gets only image 3 right; given the
    # task, image 0 picks 0 over 1 (output 2 is out of its task), image 1 picks 0 (wrong), image 2 picks 2 over 3.
    scores = torch.tensor([[0.5, 0.1, 0.9, 0.0], [0.3, 0.2, 0.8, 0.0], [0.9, 0.0, 0.4, 0.3], [0.0, 0.1, 0.2, 0.7]])
    y = torch.tensor([0, 1, 2, 3])
    assert models.accuracy(scores.argmax(1), y, [(0, 1), (2, 3)]) == ([0.0, 50.0], 25.0)
    assert models.task_il(scores, y, [(0, 1), (2, 3)]) == 75.0
    # images of classes no task has are not scored
    assert models.task_il(scores, torch.tensor([0, 1, 9, 3]), [(0, 1), (2, 3)]) == pytest.approx(200 / 3)
    # a pair of datasets (class c is output c % 4): a task that spans every output is scored as class-IL
    assert models.task_il(scores, torch.tensor([4, 5, 6, 7]), [(0, 1, 2, 3), (4, 5, 6, 7)], torch.tensor([0, 1, 2, 3]),
                          lambda t: tuple(c % 4 for c in t)) == 25.0
