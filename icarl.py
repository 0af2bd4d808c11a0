"""iCaRL's exemplar memory, as the authors' MATLAB runs it (MNIST/run_icarl_mnist.m and its helpers).

A fixed memory of K training images is shared by the classes seen so far: after task k, each class keeps
round(K / (classes seen)) exemplars (the first task: at most 5000 each, as the script's K = 10000 for its
first task at memory 20000), chosen from all training images of the class by herding on the network's
last hidden layer, or at random; the earlier classes' sets are cut to their first exemplars. The
exemplars join the next task's training set, with one-hot or distilled targets, and classify by the
nearest mean of exemplars (NME).

Three details of the MATLAB are kept: the herding and the exemplar means use features computed with the
training-time dropout mask (the network is not switched to testing there), the first herding pick is the
image whose features have the *smallest* dot product with the class mean (an ascending sort), and the
distances are Euclidean on raw (unnormalised) features.
"""
import torch

from models import forward

FIRST_TASK_MAX = 5000   # exemplars per class after the first task, at most


def per_class(memory, k, classes_per_task):
    """Exemplars each class keeps after task k: round(memory / classes seen), half away from zero."""
    n = int(memory / (k * classes_per_task) + 0.5)
    return min(n, FIRST_TASK_MAX) if k == 1 else n


def features(net, x, dropout, generator=None, chunk=2000):
    """The last hidden layer's activations, in float64; with a generator in training mode (a dropout mask
    drawn from it, as the MATLAB's nnff without nn.testing), otherwise in evaluation mode."""
    return torch.cat([forward(net, xb, dropout, generator)[-2].double() for xb in x.split(chunk)])


def herding(phi, m):
    """Indices of m exemplars of one class chosen by herding on features phi [n, d]: each next pick brings
    the mean of the picks closest (Euclidean) to the class mean mu; ties go to the lowest index. The first
    pick is the image with the smallest phi . mu (as the MATLAB's ascending sort)."""
    if not 1 <= m <= len(phi):
        raise ValueError(f"herding picks 1 to {len(phi)} exemplars of this class; asked for {m}")
    mu = phi.mean(0)
    chosen = [int(torch.argmin(phi @ mu))]
    total = phi[chosen[0]].clone()
    norms = phi.square().sum(1)
    taken = torch.zeros(len(phi), dtype=torch.bool)
    taken[chosen[0]] = True
    for i in range(2, m + 1):
        # ||mu - (total + phi) / i||^2 without forming the n x d differences: the terms that vary with phi
        gap = mu - total / i
        dist = norms / i ** 2 - 2 / i * (phi @ gap)
        dist[taken] = float("inf")
        pick = int(torch.argmin(dist))
        chosen.append(pick)
        taken[pick] = True
        total += phi[pick]
    return chosen


def choose(net, x, m, how, dropout, generator):
    """Indices into x of m exemplars: 'herding' on training-mode features, or 'random' (a random permutation's
    first m)."""
    if how == "random":
        return torch.randperm(len(x), generator=generator)[:m].tolist()
    return herding(features(net, x, dropout, generator).cpu(), m)


def nme_predict(test_phi, means):
    """Class of each row of test_phi: the class whose exemplar mean (means: {class: mean [d]}) is nearest,
    in Euclidean distance (the first such class on ties)."""
    classes = list(means)
    dist = torch.cdist(test_phi, torch.stack([means[c] for c in classes]).to(test_phi))
    return torch.tensor(classes, device=test_phi.device)[dist.argmin(1)]
