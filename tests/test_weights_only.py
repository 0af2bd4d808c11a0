"""The leads of weights_only.py that work from the weights alone: weight aligning and dreams."""
from types import SimpleNamespace

import torch

import models
import weights_only


def test_align_gives_the_newest_classes_the_earlier_classes_mean_norm():
    net = models.init_net((6, 5, 6), 0.5, torch.Generator().manual_seed(0), output="linear")
    net.W[-1][4:] *= 3.0                                   # the newest task's classes (4, 5) dominate
    ctx = SimpleNamespace(tasks=[(0, 1), (2, 3), (4, 5)])
    before = net.W[-1].clone()
    weights_only.align(net, 3, ctx)
    norms = net.W[-1].norm(dim=1)
    assert torch.allclose(norms[4:].mean(), norms[:4].mean())
    assert torch.equal(net.W[-1][:4], before[:4])                         # the earlier rows are untouched
    ratio = net.W[-1][4:] / before[4:]
    assert torch.allclose(ratio, ratio[0, 0].expand_as(ratio))             # one factor for the newest rows
    assert ratio[0, 0] < 1
    weights_only.align(net, 1, ctx)                                       # task 1: no earlier class, no change
    assert torch.allclose(net.W[-1].norm(dim=1), norms)


def test_dreams_are_images_the_network_classifies_as_their_class():
    g = torch.Generator().manual_seed(1)
    net = models.init_net((16, 32, 6), 0.5, g, output="linear")
    classes = (1, 3, 4)
    x = weights_only.dreams(net, classes, 0.0, torch.Generator().manual_seed(2), steps=200)
    assert x.shape == (3, 16) and x.min() >= 0 and x.max() <= 1
    logits = models.forward(net, x, 0.0)[-1][:, list(classes)]
    assert logits.argmax(1).tolist() == [0, 1, 2]
