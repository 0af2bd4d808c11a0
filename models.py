"""The bias-free ReLU MLP of the paper, trained as the authors' DeepLearnToolbox fork trains it.

A network is a list of weight matrices W[l] of shape [out, in] (no biases),
their momentum buffers, and three choices of architecture. The buffers belong to
the network, as in the original: they carry over from task to task and across
sleep. With biases (bias=True, not in the original) each W[l] has one more
column, [out, in + 1], the weights of an input that is always 1: the biases are
then trained, penalised, merged and carried exactly like the weights.

Two details of the original matter for SRC and are reproduced by default:
- dropout is not inverted: training multiplies hidden activations by a 0/1
  mask, evaluation multiplies them by (1 - dropout); the sleep's scale factors
  see the evaluation-mode activations (inverted=True: torch's inverted dropout,
  the mask divided by 1 - dropout in training and nothing in evaluation);
- the output is a ReLU trained on half the squared error, yet backpropagation
  treats it as linear: the output error signal is (output - target) with no
  ReLU derivative (output="linear": logits trained with softmax cross-entropy,
  whose error signal is softmax(output) - target).
"""
import dataclasses
import math
from dataclasses import dataclass

import codepath  # noqa: F401  (before torch: the pinned code paths and threads)
import torch
from tqdm.auto import tqdm


@dataclass
class Net:
    W: list                 # weight matrices, [out, in]
    vW: list                # momentum buffers, same shapes
    output: str = "relu"    # "relu" (half squared error, the original) or "linear" (softmax cross-entropy)
    inverted: bool = False  # inverted dropout (torch's) instead of the original's mask / x (1 - dropout)
    bias: bool = False      # the last column of each W[l] is the layer's bias

    def clone(self):
        return self.with_weights([w.clone() for w in self.W], [v.clone() for v in self.vW])

    def with_weights(self, W, vW):
        """The same architecture with other weights and buffers."""
        return dataclasses.replace(self, W=W, vW=vW)

    def weights_only(self):
        """The weight matrices without their bias columns (views)."""
        return [w[..., :-1] for w in self.W] if self.bias else list(self.W)

    def inputs(self, a):
        """A layer's input as its W[l] reads it: the activations below, and a column of ones with biases."""
        return torch.cat([a, a.new_ones(*a.shape[:-1], 1)], -1) if self.bias else a


def init_net(sizes, init_scale, generator, dtype=torch.float32, device="cpu", init="uniform", output="relu",
             inverted=False, bias=False):
    """Momentum zero; sizes like (784, 1200, 1200, 10). Weights uniform in [-init_scale, init_scale]
    (init "uniform", the original) or in [-1/sqrt(fan_in), 1/sqrt(fan_in)] (init "torch": the bound of
    PyTorch's default initialisation of a Linear layer without bias). bias: a zero bias column after the
    same weights (the same draws as without biases)."""
    if len(sizes) < 2 or min(sizes) < 1:
        raise ValueError(f"sizes must list at least an input and an output width, all >= 1; got {sizes}")
    if init not in ("uniform", "torch") or output not in ("relu", "linear"):
        raise ValueError(f"init must be 'uniform' or 'torch' and output 'relu' or 'linear'; got {init!r}, {output!r}")
    bound = lambda n_in: init_scale if init == "uniform" else 1 / math.sqrt(n_in)
    W = [((torch.rand(n_out, n_in, generator=generator, dtype=dtype) - 0.5) * 2 * bound(n_in)).to(device)
         for n_in, n_out in zip(sizes[:-1], sizes[1:])]
    if bias:
        W = [torch.cat([w, w.new_zeros(len(w), 1)], 1) for w in W]
    return Net(W, [torch.zeros_like(w) for w in W], output, inverted, bias)


def stack(nets):
    """Several networks of one architecture as one: each weight and buffer gets a leading dimension, [B, out, in].
    forward, sgd_step and train take it as they take one network: every network trains on the same minibatches
    and dropout masks, the element-wise work is done for all at once, and each matrix product is the one the
    network makes alone (per_network), so each gives the numbers it gives alone, to the bit (tests/test_models.py).
    Not for fisher, predict, SI's path or a penalty's anchors: they take one network."""
    return nets[0].with_weights([torch.stack(ws) for ws in zip(*(n.W for n in nets))],
                                [torch.stack(vs) for vs in zip(*(n.vW for n in nets))])


def unstack(net):
    """The networks of a stack (views of its weights and buffers)."""
    return [net.with_weights([w[b] for w in net.W], [v[b] for v in net.vW]) for b in range(len(net.W[0]))]


def per_network(*tensors):
    """Each network's slice of these tensors, network by network: for a stack the B slices of each [B, ...] tensor
    (a tensor without the leading dimension is every network's), for one network the tensors themselves. The
    products go through it one network at a time: a batched BLAS call can round otherwise than the call alone."""
    B = max((len(t) for t in tensors if t.ndim == 3), default=None)
    return [tensors] if B is None else [tuple(t[b] if t.ndim == 3 else t for t in tensors) for b in range(B)]


def matmul(a, b):
    """a @ b, for a stack one product per network (per_network)."""
    if a.ndim == b.ndim == 2:
        return a @ b
    pairs = per_network(a, b)
    out = a.new_empty(len(pairs), a.shape[-2], b.shape[-1])
    for o, (a_b, b_b) in zip(out, pairs):
        torch.matmul(a_b, b_b, out=o)
    return out


def merge(nets):
    """Element-wise average of the weights of several networks (model merging)."""
    return nets[0].with_weights([torch.stack(ws).mean(0) for ws in zip(*(n.W for n in nets))],
                                [torch.zeros_like(w) for w in nets[0].W])


def forward(net, x, dropout, generator=None):
    """Post-activations [a_1, ..., a_L] of every layer (the last: ReLU outputs, or logits for output "linear").

    With a generator: training mode, hidden activations multiplied by a 0/1
    mask that keeps each unit with probability 1 - dropout (inverted: and
    divided by 1 - dropout). Without one: evaluation mode, hidden activations
    multiplied by 1 - dropout (inverted: left as they are).
    """
    acts = []
    a = x
    last = len(net.W) - 1
    for l, w in enumerate(net.W):
        a = matmul(net.inputs(a), w.mT)
        if l < last or net.output == "relu":
            a = a.clamp_min_(0)
        if l < last and dropout > 0:
            if generator is None:
                a = a if net.inverted else a * (1 - dropout)
            else:   # the 0/1 mask, made in place as floats: rand > dropout (one for every network of a stack)
                a = a.mul_(torch.rand(a.shape[-2:], generator=generator, dtype=a.dtype, device=a.device).gt_(dropout))
                if net.inverted:
                    a = a.div_(1 - dropout)
        acts.append(a)
    return acts


def output_error(net, out, target):
    """The error signal at the output and the loss: (out - target) and 1/2 sum (out - target)^2 for the
    original's ReLU output (no ReLU derivative), softmax(out) - target and the cross-entropy for logits."""
    if net.output == "relu":
        d = out - target
        return d, 0.5 * d.square().sum(-1)
    log_p = torch.log_softmax(out, -1)
    return log_p.exp() - target, -(target * log_p).sum(-1)


def distillation_error(net, out, old, classes, strength, temperature):
    """Learning without Forgetting's term, its error signal at the output and its loss: the outputs `old` of
    the network before this task, on the same images, as soft targets for the earlier tasks' `classes` (a
    boolean mask over the outputs). Logits: strength T^2 KL(softmax(old/T) || softmax(out/T)) over those
    classes, whose gradient is strength T (softmax(out/T) - softmax(old/T)); the original's ReLU output:
    strength 1/2 sum (out - old)^2 over them (error signal strength (out - old), no ReLU derivative, as its
    own loss)."""
    d = torch.zeros_like(out)
    if net.output == "relu":
        diff = out[..., classes] - old[..., classes]
        d[..., classes] = strength * diff
        return d, 0.5 * strength * diff.square().sum(-1)
    log_q = torch.log_softmax(out[..., classes] / temperature, -1)
    log_p = torch.log_softmax(old[..., classes] / temperature, -1)
    d[..., classes] = strength * temperature * (log_q.exp() - log_p.exp())
    return d, strength * temperature ** 2 * (log_p.exp() * (log_p - log_q)).sum(-1)


def sgd_step(net, x, target, *, lr, momentum, dropout, generator, penalty=None, path=None, distill=None):
    """One minibatch of the original's backprop and SGD; returns the minibatch's mean loss (output_error's,
    plus the distillation's with distill; a list, one per network, for a stack).

    penalty: (omega, anchor, strength) adds strength * omega * (W - anchor) to the gradient (EWC, SI).
    path: accumulators that receive g * v, with g the gradient of the loss alone and -v the weight change
    (SI's path integral of -g dW).
    distill: (old outputs of these images, mask of the earlier classes, strength, temperature): LwF's term.
    """
    if path is not None and net.W[0].ndim == 3:
        raise ValueError("path (SI's accumulators) takes one network, not a stack")
    acts = [x] + forward(net, x, dropout, generator)
    d, loss = output_error(net, acts[-1], target)   # the original's ReLU output: no ReLU derivative here
    if distill is not None:
        d_old, loss_old = distillation_error(net, acts[-1], *distill)
        d, loss = d + d_old, loss + loss_old
    m = x.shape[-2]
    loss = loss.sum(-1) / m   # one per network of a stack
    inverted_scale = 1 / (1 - dropout) if net.inverted and dropout > 0 else None
    for l in reversed(range(len(net.W))):
        # ReLU derivative and dropout mask at once: acts[l] is 0 wherever either is
        w_in = net.W[l][..., :acts[l].shape[-1]]   # without the bias column
        d_below = matmul(d, w_in).masked_fill_(acts[l] == 0, 0) if l > 0 else None
        if d_below is not None and inverted_scale:
            d_below.mul_(inverted_scale)
        v, a_in = net.vW[l], net.inputs(acts[l])
        if path is None:   # v = momentum v + lr g with g = d^T a / m, in one BLAS call (per network of a stack)
            for v_b, d_b, a_b in per_network(v, d, a_in):
                torch.addmm(v_b, d_b.T, a_b, beta=momentum, alpha=lr / m, out=v_b)
        else:
            g = d.T @ a_in / m
            v.mul_(momentum).add_(g, alpha=lr)
        if penalty is not None:
            omega, anchor, strength = penalty
            v.add_(omega[l] * (net.W[l] - anchor[l]), alpha=lr * strength)
        net.W[l].sub_(v)                       # W = W - v
        if path is not None:
            path[l].add_(g * v)
        d = d_below
    return loss.tolist()


def train(net, x, y, *, epochs, batch_size, lr, momentum, dropout, n_classes, generator, penalty=None, path=None,
          distill=None, progress=False, desc="train"):
    """Train in place on (x, y) with the original's SGD; reshuffled each epoch. Returns the mean loss per epoch
    (for a stack, models.stack: each epoch's list, one per network).
    y: class labels, or target rows [n, n_classes] (for example distilled ones).
    distill: (old outputs [n, n_classes] of the images x, mask of the earlier classes, strength, temperature)."""
    if len(x) == 0 or len(x) != len(y):
        raise ValueError(f"training needs as many labels as images, at least one; got {len(x)} images, {len(y)} labels")
    target = y.to(x.dtype) if y.is_floating_point() else torch.nn.functional.one_hot(y, n_classes).to(x.dtype)
    losses = []   # (float64 sums of the float32 losses, one per network of a stack)
    bar = tqdm(total=epochs * -(-len(x) // batch_size), desc=desc, disable=not progress, leave=False)
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=generator, device=x.device)
        total = 0.0
        for idx in perm.split(batch_size):
            loss = sgd_step(net, x[idx], target[idx], lr=lr, momentum=momentum, dropout=dropout, generator=generator,
                            penalty=penalty, path=path, distill=None if distill is None else (distill[0][..., idx, :], *distill[1:]))
            total = total + torch.tensor(loss, dtype=torch.float64) * len(idx)
            bar.update()
        losses.append((total / len(x)).tolist())
    bar.close()
    return losses


@torch.no_grad()
def fisher(net, x, y, dropout, n_classes, chunk=1000):
    """Diagonal empirical Fisher information of the loss (EWC): the mean over images of the squared
    per-image gradient, in evaluation mode. The per-image gradient of W_l is the outer product d_l a_(l-1),
    so the sum of its squares over a batch is one product: (d_l^2)^T (a_(l-1)^2)."""
    F = [torch.zeros_like(w) for w in net.W]
    for xb, yb in zip(x.split(chunk), y.split(chunk)):
        acts = [xb] + forward(net, xb, dropout)
        d, _ = output_error(net, acts[-1], torch.nn.functional.one_hot(yb, n_classes).to(xb.dtype))
        for l in reversed(range(len(net.W))):
            F[l] += d.square().T @ net.inputs(acts[l]).square()
            if l > 0:   # evaluation mode: a = (1 - dropout) relu(z) (inverted: relu(z)), so da/dz = that factor [z > 0]
                d = (d @ net.weights_only()[l]) * (acts[l] > 0) * (1 if net.inverted else 1 - dropout)
    return [f / len(x) for f in F]


@torch.no_grad()
def predict(net, x, dropout, chunk=2000):
    """Class predictions: argmax over all outputs (the first maximum on ties, as MATLAB's max)."""
    return torch.cat([forward(net, xb, dropout)[-1].argmax(1) for xb in x.split(chunk)])


def task_il(scores, y, tasks, target=None, outputs_of=tuple):
    """Task-incremental accuracy in percent: each image of a learnt task classified among its own task's outputs
    only (as if the task label were given), over the images of all the tasks. scores: [images, outputs], larger is
    more likely (outputs, logits, negative distances); y, target: as accuracy's; outputs_of(task): its outputs
    (data.Tasks.task_outputs; by default its classes)."""
    allowed = torch.zeros(max(max(t) for t in tasks) + 1, scores.shape[1], dtype=torch.bool, device=scores.device)
    for t in tasks:
        allowed[torch.tensor(t)[:, None], torch.tensor(outputs_of(t))[None]] = True
    learnt = torch.isin(y, torch.tensor(sum(map(tuple, tasks), ()), device=y.device))
    target = (y if target is None else target)[learnt]
    pred = scores[learnt].masked_fill(~allowed[y[learnt]], -torch.inf).argmax(1)
    return 100 * (pred == target).float().mean().item()


def accuracy(pred, y, tasks, target=None):
    """Accuracy in percent of predictions over all classes, on each task's images and on the images of all the
    tasks (those of classes no task has, with --n-tasks, are not scored). y: the images' classes; target: the
    outputs they should give, when not their classes (mnist-fashion: class % 10)."""
    correct = pred == (y if target is None else target)
    per_task = [100 * correct[torch.isin(y, torch.tensor(t, device=y.device))].float().mean().item() for t in tasks]
    learnt = torch.isin(y, torch.tensor(sum(map(tuple, tasks), ()), device=y.device))
    return per_task, 100 * correct[learnt].float().mean().item()
