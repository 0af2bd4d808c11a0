"""Robustness: does the sleep make a trained network more robust to blur, noise and FGSM (Tadros, Krishnan,
Ramyaa & Bazhenov, ICLR 2020; their MATLAB: tmtadros/Sleep-Robustness)?

Per seed, the network of their scripts (784-1200-1200-10, no biases, ReLU output on half the squared error,
dropout 0.2, lr 0.1, momentum 0.5, 2 epochs, batch 100) is trained once on all 60 000 training images (their
attack scripts'; the generalisation script trains on the first 50 000: here one training serves both), then:
- control: that network, no sleep;
- sleep: slept with their constants (constants.ROBUSTNESS["blurtuned"]): the scale factors from all training
  images, one training image per step for 27 105 steps (src.Sleep input "images");
- finetune: the control trained on for 2 epochs at lr 0.05 on all training images, the first 5 000 of them
  distorted (save_FGSM_results.m: each pixel moved by U(0, 0.1) times the FGSM sign of the control; for blur
  and noise, which the release has no script for, each image at a level drawn from the grid); each grid
  is scored on the network fine-tuned on its own distortion;
- distill-as-run: their defensive distillation as the code runs it: a misspelled field leaves the output a ReLU
  on the squared error, so the temperature is never used; the network trained on the labels, then trained on
  for 2 epochs on its own outputs (drawn in training mode, with dropout, as their nnff);
- distill-intended: the same with the misspelling fixed: a softmax at T = 50 on the cross-entropy (the network
  with its last weight matrix divided by T, trained as output "linear"), soft labels softmax(z / T), deployed
  at T = 1 (the matrix multiplied back by T);
- sleep-original, sleep-beyond-weights-only: the control slept as the class-IL presets sleep (their constants,
  the mean training image through the moving window, their first sleep's length: 15 000 and 5 000 steps).
Each is scored on the clean test images and along each grid: blur (imgaussfilt's kernel, 2 ceil(2 sigma) + 1
wide, edges replicated), Gaussian noise of variance v (imnoise's, clipped to [0, 1]) and FGSM
(x + eps sign(gradient of their loss), clipped to [0, 1]; white-box on each network, from the Adversarial
Robustness Toolbox).

Their other attacks, on request (--distortions deepfool jsma cw; Boundary is not done here): ART's DeepFool,
SaliencyMapMethod (JSMA) and CarliniL2Method with their parameters where ART has them (ATTACKS; adversaries
says where ART differs), white-box on each network, on the first n_attack test images (theirs: all 10 000).
Each records what an attack that searches each image's own adversary measures: accuracy on the adversaries,
the success (the share of the images classified right that it flips) and the median L2 and L0 of the
perturbation over those flipped (their save_*_results.m save the adversaries; no script that scores them
is released). Their attack scripts sleep with their second vector: the method sleep-attacks
(constants.ROBUSTNESS["attacks"], 3 365 steps), not a default one; finetune trains on the control's
adversaries of the first n_finetune_attack training images (theirs: 5 000).

Each (seed, method) is a job file of the study folder OUT/robustness (OUT/robustness_quick with --quick), its
attacks one of OUT/robustness/attacks; a finished job is skipped, so a stopped study resumes; the tables
(robustness.md, robustness_attacks.md) and one figure per distortion are rebuilt from the folder alone.

    python studies/robustness.py --run                      # five seeds (35 minutes on 2 partly shared cores)
    python studies/robustness.py --run --quick              # small sizes, seed 0, for CI (about a minute)
    python studies/robustness.py --png-dir png              # the table and figures from the finished jobs
    python studies/robustness.py --run --distortions deepfool jsma cw \
        --methods control sleep-attacks finetune distill-as-run distill-intended   # their attacks, five seeds
"""
import argparse
import dataclasses
import json
import math
import os
import signal
import sys

import project  # noqa: F401  (first: the root's library on the import path, studies/project.py)
import sweep  # first: the pinned code paths, and matplotlib's file backend
import config
import matplotlib.pyplot as plt
import numpy as np
import torch

import analysis
import constants
import data
import methods
import models
import runner
import src
import visualize

SIZES = (784, 1200, 1200, 10)
TRAIN = dict(epochs=2, batch_size=100, lr=0.1, momentum=0.5, dropout=0.2, n_classes=10)
FINETUNE_LR = 0.05
TEMPERATURE = 50
# the class-IL presets whose sleep is tried on this network too (config.preset_sleep: input the mean image
# of the training images through the moving window, for its first sleep's length)
PRESET_SLEEPS = ("original", "beyond-weights-only")
METHODS = ("control", "sleep", "finetune", "distill-as-run", "distill-intended") + tuple(f"sleep-{p}" for p in PRESET_SLEEPS)
# the sleep of their DeepFool, JSMA and CW scripts (their second vector): a method of its own, not a default one
SLEEP_ATTACKS = "sleep-attacks"
GRIDS = {"blur": [0.0001] + [0.5 * i for i in range(1, 9)],          # sigma (MNIST_generalization_test.m)
         "noise": [0.0, 0.1, 0.3, 0.5, 0.7, 0.9],                      # variance
         "fgsm": [round(0.005 * i, 3) for i in range(81)]}             # eps, 0:0.005:0.4 (MNIST_FGSM_test.m)
LEVEL = {"blur": "sigma", "noise": "variance", "fgsm": "eps"}
# their attacks that search each image's own adversary (Attacks/*.m), as ART's attacks with their parameters
# where ART has them: scored by how many images they flip and how far they move them, not along a grid
ATTACKS = {"deepfool": dict(max_iter=99, epsilon=0.05),      # DeepFool.m: while i < 100, each step x 1.05, no clip
           "jsma": dict(theta=0.1, gamma=round(500 / 784, 4)),   # SaliencyMap.m (0.1, 500, 7): 500 one-pixel steps
           "cw": dict(confidence=0.0, learning_rate=5e-3, initial_const=0.01, binary_search_steps=20,  # CarliniWagner.m
                      max_iter=10)}   # theirs 1 000 Adam steps per constant: 100 times the cost
NOT_DONE = ("boundary",)   # their boundary attack
ART = "adversarial-robustness-toolbox==1.20.1"      # requirements.txt's pin
# steps None: each sleep's own length; n_attack: the first test images attacked (theirs: all 10 000), and
# n_finetune_attack the first training images attacked to fine-tune on (theirs: 5 000)
FULL = dict(n_train=60000, n_test=10000, n_finetune=5000, steps=None, n_attack=100, n_finetune_attack=200)
QUICK = dict(n_train=6000, n_test=500, n_finetune=200, steps=3000, n_attack=20, n_finetune_attack=20)


# ---------------------------------------------------------------- the distortions

def blur(x, sigma):
    """MATLAB's imgaussfilt(image, sigma) of each square image (rows of x): a normalised Gaussian kernel
    2 ceil(2 sigma) + 1 wide along rows and along columns, the edges replicated. As a matrix B over one side
    (the taps past an edge land on the edge pixel): B image B^T."""
    side, r = math.isqrt(x.shape[1]), math.ceil(2 * sigma)
    t = torch.arange(-r, r + 1, dtype=torch.float64)
    k = torch.exp(-t ** 2 / (2 * sigma ** 2))
    B = torch.zeros(side, side, dtype=torch.float64)
    for i in range(side):   # row i: output pixel i's weights on the pixels of its row (or column)
        B[i].index_add_(0, (i + t.long()).clamp(0, side - 1), k / k.sum())
    B = B.to(x.dtype)
    return (B @ x.reshape(-1, side, side) @ B.T).reshape(len(x), -1).clamp(0, 1)   # their clip(): a no-op


def noise(x, variance, generator):
    """imnoise(image, 'gaussian', 0, variance): x + sqrt(variance) N(0, 1), clipped to [0, 1]."""
    return (x + math.sqrt(variance) * torch.randn(x.shape, generator=generator, dtype=x.dtype)).clamp(0, 1)


def attack_library():
    """The Adversarial Robustness Toolbox's attacks and classifier, or one line and exit 2 without it."""
    try:
        from art.attacks import evasion
        from art.estimators.classification import PyTorchClassifier
    except ImportError:
        config.fail(f"the attacks ({', '.join(('fgsm', *ATTACKS))}) need the Adversarial Robustness Toolbox: "
                    f"pip install {ART}", "robustness.py")
    return evasion, PyTorchClassifier


class Logits(torch.nn.Module):
    """A network in evaluation mode, its output before the output ReLU (what ART differentiates)."""

    def __init__(self, net, dropout):
        super().__init__()
        self.net, self.dropout = dataclasses.replace(net, output="linear"), dropout

    def forward(self, x):
        return models.forward(self.net, x, self.dropout)[-1]


class AuthorsLoss(torch.nn.Module):
    """A loss of the logits z whose gradient is their nnbp_adversary's error signal a - y: a the ReLU output
    without its derivative (their ReLU/MSE networks, as models.output_error) or the softmax (the intended
    distillation at T = 1, whose error signal is the cross-entropy's gradient)."""

    def __init__(self, output):
        super().__init__()
        self.output = output

    def forward(self, z, y):
        a = z.clamp_min(0) if self.output == "relu" else torch.softmax(z, 1)
        return ((a.detach() - y.to(z.dtype)) * z).sum()


def classifier(net, dropout, clip=True):
    """ART's view of a network: its logits in evaluation mode, their loss, images in [0, 1] (clip False: any
    image, as their DeepFool, which never clips)."""
    _, PyTorchClassifier = attack_library()
    return PyTorchClassifier(Logits(net, dropout), AuthorsLoss(net.output), input_shape=(net.W[0].shape[1],),
                             nb_classes=net.W[-1].shape[0], clip_values=(0.0, 1.0) if clip else None,
                             device_type="cpu")


def onehot(net, y):
    return torch.nn.functional.one_hot(y, net.W[-1].shape[0]).float().numpy()


def fgsm(net, x, y, eps, dropout):
    """ART's FGSM of a network against the true labels y: clip(x + eps sign(the gradient of their loss), 0, 1)
    (fast_gradient_sign_adversary.m, clip.m), eps a number."""
    if eps == 0:   # ART refuses a zero step; the formula gives the clean images
        return x.clone()
    evasion, _ = attack_library()
    attack = evasion.FastGradientMethod(classifier(net, dropout), norm=np.inf, eps=eps, eps_step=eps, batch_size=len(x))
    return torch.from_numpy(attack.generate(x.numpy(), y=onehot(net, y))).to(x.dtype)


def fgsm_signs(net, x, y, dropout):
    """sign(the gradient of their loss) of each image, from ART's gradient: their adversarialX, computed once
    for every eps (ART's FGSM computes the same gradient again for each)."""
    return torch.from_numpy(np.sign(classifier(net, dropout).loss_gradient(x.numpy(), onehot(net, y)))).to(x.dtype)


def perturbed(x, signs, eps):
    """Their formula, clip(x + eps signs, 0, 1): eps a number, or one per pixel ([n, pixels], zeros allowed,
    which ART's attack refuses)."""
    return (x + eps * signs).clamp(0, 1)


def fgsm_curve(net, x, y, grid):
    """Accuracy along the eps grid, each point perturbed(x, signs, eps) as their MNIST_FGSM_test.m, and the
    largest difference from ART's FGSM itself at the grid's largest eps (0 where the two agree)."""
    signs = fgsm_signs(net, x, y, TRAIN["dropout"])
    check = (fgsm(net, x, y, grid[-1], TRAIN["dropout"]) - perturbed(x, signs, grid[-1])).abs().max().item()
    return [accuracy(net, perturbed(x, signs, eps), y) for eps in grid], check


def adversaries(net, attack, x, y, dropout):
    """ART's attack of a network on the images x (true labels y), white-box, with their parameters (ATTACKS):
    - deepfool: DeepFool.m's steps to the linearised nearest boundary among all classes, from the predicted
      class, up to 99 steps, never clipped; theirs scales each step by 1.05, ART the sum of the steps
      (epsilon 0.05: the same on a linear network); theirs takes the output differences after the output
      ReLU and at the clean image at every step (their loss_deepfool gets x, not x_perturbed), ART the
      logits at the current image;
    - jsma: SaliencyMap.m (theta 0.1, 500 steps, 7 per pixel) targets the second most likely class, as here,
      and moves one pixel a step, up or down, by the saliency of the target against the other classes,
      until the label leaves the true one; ART's SaliencyMapMethod raises the two pixels of largest target
      gradient by theta a step until the target wins, a pixel until it reaches 1, at most gamma of the
      pixels (500 / 784: as many as their 500 steps could touch);
    - cw: CarliniWagner.m's untargeted L2 attack on the logits, with their confidence 0, initial constant
      0.01, learning rate 5e-3 and 20 binary-search steps; theirs runs 1 000 Adam steps per constant and
      multiplies it by 10 until an adversary is found, ART 10 gradient steps with a line search (its
      learning rate is the line search's first step) and doubles it; ART keeps the closest adversary
      found, theirs the last iterate."""
    evasion, _ = attack_library()
    art_net, p, n = classifier(net, dropout, clip=attack != "deepfool"), ATTACKS[attack], len(x)
    if attack == "deepfool":
        return torch.from_numpy(evasion.DeepFool(art_net, **p, nb_grads=net.W[-1].shape[0], batch_size=n,
                                                 verbose=False).generate(x.numpy())).to(x.dtype)
    if attack == "jsma":
        z = models.forward(dataclasses.replace(net, output="linear"), x, dropout)[-1]
        target = z.topk(2, 1).indices[:, 1]                  # the second most likely class
        return torch.from_numpy(evasion.SaliencyMapMethod(art_net, **p, batch_size=n, verbose=False).generate(
            x.numpy(), y=onehot(net, target))).to(x.dtype)
    return torch.from_numpy(evasion.CarliniL2Method(art_net, **p, targeted=False, batch_size=n, verbose=False)
                            .generate(x.numpy(), y=onehot(net, y))).to(x.dtype)


def attack_scores(net, x, y, adv):
    """What an attack did to a network: accuracy (%) on its adversaries; success (%): of the images it
    classified right, how many now carry another label (None if none was right); median_l2 and median_l0:
    the median size of the perturbation (L2 norm, pixels changed) over those flipped (None if none)."""
    right = models.predict(net, x, TRAIN["dropout"]) == y
    now = models.predict(net, adv, TRAIN["dropout"]) == y
    flipped = right & ~now
    d = (adv - x)[flipped]
    return dict(accuracy=100 * now.float().mean().item(),
                success=100 * flipped.sum().item() / right.sum().item() if right.any() else None,
                median_l2=d.norm(dim=1).median().item() if len(d) else None,
                median_l0=(d != 0).sum(1).float().median().item() if len(d) else None)


def distorted(kind, x, level, seed, index):
    """The test images x at one grid point (index) of a distortion, the same draws for every method."""
    if kind == "blur":
        return blur(x, level)
    return noise(x, level, methods.generator(seed, "distort", index))


# ---------------------------------------------------------------- the methods

def accuracy(net, x, y):
    return 100 * (models.predict(net, x, TRAIN["dropout"]) == y).float().mean().item()


def initial(seed, output="relu"):
    """Every method's initial weights: uniform in [-0.01, 0.01] (their nnsetup and rescaling)."""
    return models.init_net(SIZES, 0.01, methods.generator(seed, "init", 1), output=output)


def train(net, x, y, seed, k, **changed):
    models.train(net, x, y, **dict(TRAIN, **changed), generator=methods.generator(seed, "train", k))
    return net


def control(seed, folder, x, y):
    """The seed's trained network, kept in the study folder (every method starts from it)."""
    path = os.path.join(folder, f"seed{seed}_control.pt")
    if os.path.exists(path):
        W, vW = torch.load(path)
        return initial(seed).with_weights(W, vW)
    net = train(initial(seed), x, y, seed, 1)
    runner.write_atomic(path, lambda tmp: torch.save((net.W, net.vW), tmp))
    return net


def sleep_constants(method):
    """The constants of a sleeping method: "sleep", the robustness scripts' (their constants, training image
    t shown at step t); "sleep-attacks", the same with the vector of their DeepFool, JSMA and CW scripts;
    "sleep-NAME", the class-IL preset NAME's (config.preset_sleep), its first sleep's length."""
    if method in ("sleep", SLEEP_ATTACKS):
        return src.Sleep(**constants.ROBUSTNESS["blurtuned" if method == "sleep" else "attacks"])
    return config.preset_sleep(method[len("sleep-"):])


def slept(net, x, seed, method, steps=None):
    """The network slept with a method's constants, the scale factors from all training images (steps: a
    shorter sleep, for --quick)."""
    c = sleep_constants(method)
    steps = steps or c.steps
    return src.sleep(net, x, steps, methods.generator(seed, "sleep", 1), c, dropout=TRAIN["dropout"])[0]


def finetuned(net, kind, x, y, seed, size):
    """The control trained on (lr 0.05, 2 epochs, its momentum kept) on the training images, the first `size`
    distorted: FGSM with a step U(0, 0.1) per pixel (save_FGSM_results.m), blur or noise at a level drawn from
    their grid (GRIDS, whatever grid is scored) per image, or the control's adversaries of an attack (their
    save_deepfool/JSMA/CW_results.m)."""
    head = x[:size]
    if kind in ATTACKS:
        head = adversaries(net, kind, head, y[:size], TRAIN["dropout"])
        return train(net.clone(), torch.cat([head, x[size:]]), y, seed, 2, lr=FINETUNE_LR)
    gen = methods.generator(seed, "distort", 1000 + list(GRIDS).index(kind))
    if kind == "fgsm":
        signs = fgsm_signs(net, head, y[:size], TRAIN["dropout"])
        head = perturbed(head, signs, torch.rand(head.shape, generator=gen) / 10)
    else:
        levels = torch.randint(len(GRIDS[kind]), (size,), generator=gen)
        head = head.clone()
        for i, level in enumerate(GRIDS[kind]):
            at = levels == i
            head[at] = blur(head[at], level) if kind == "blur" else noise(head[at], level, gen)
    return train(net.clone(), torch.cat([head, x[size:]]), y, seed, 2, lr=FINETUNE_LR)


def distilled(seed, x, y, intended):
    """Their defensive distillation: the network trained on the labels, then on for 2 epochs on its own
    outputs, drawn in training mode (their nnff without net.testing). As run: ReLU/MSE throughout (the
    temperature set on a misspelled copy). Intended: softmax at T (the last matrix / T, output "linear"),
    soft labels softmax(z / T), deployed at T = 1."""
    net = initial(seed, "linear" if intended else "relu")
    if intended:
        net.W[-1] /= TEMPERATURE
    gen = methods.generator(seed, "train", 3)
    models.train(net, x, y, **TRAIN, generator=gen)
    with torch.no_grad():
        soft = torch.cat([models.forward(net, xb, TRAIN["dropout"], gen)[-1] for xb in x.split(10000)])
    soft = torch.softmax(soft, 1) if intended else soft
    models.train(net, x, soft, **TRAIN, generator=gen)
    if intended:
        net.W[-1] *= TEMPERATURE
    return net


def networks(seed, method, folder, train_set, kinds, n_finetune, steps):
    """A method's network for each distortion or attack kind (fine-tuning: one per kind, on its own images)."""
    x, y = train_set
    base = control(seed, folder, x, y)
    if method.startswith("sleep"):
        return dict.fromkeys(kinds, slept(base, x, seed, method, steps))
    if method == "finetune":
        return {kind: finetuned(base, kind, x, y, seed, n_finetune) for kind in kinds}
    if method.startswith("distill"):
        return dict.fromkeys(kinds, distilled(seed, x, y, method == "distill-intended"))
    return dict.fromkeys(kinds, base)


def job(seed, method, folder, train_set, test_set, grids, sizes):
    """One (seed, method): its network(s) scored on the clean test images and along each grid."""
    nets = networks(seed, method, folder, train_set, grids, sizes["n_finetune"], sizes["steps"])
    xt, yt = test_set
    first = nets.get("fgsm", next(iter(nets.values())))   # finetune: their script's network, when it is made
    curves, check = {}, {}
    for kind, levels in grids.items():
        if kind == "fgsm":
            curves[kind], check["fgsm_vs_art"] = fgsm_curve(nets[kind], xt, yt, levels)
        else:
            curves[kind] = [accuracy(nets[kind], distorted(kind, xt, level, seed, i), yt) for i, level in enumerate(levels)]
    return dict(seed=seed, method=method, clean=accuracy(first, xt, yt), grids=grids, curves=curves, **check)


def attack_job(seed, method, folder, train_set, test_set, attacks, sizes):
    """One (seed, method) under the attacks: its network(s) attacked on the first n_attack test images."""
    nets = networks(seed, method, folder, train_set, attacks, sizes["n_finetune_attack"], sizes["steps"])
    xt, yt = test_set[0][:sizes["n_attack"]], test_set[1][:sizes["n_attack"]]
    scores = {a: dict(clean=accuracy(nets[a], xt, yt),
                      **attack_scores(nets[a], xt, yt, adversaries(nets[a], a, xt, yt, TRAIN["dropout"])))
              for a in attacks}
    return dict(seed=seed, method=method, n_attack=len(xt), attacks=attacks, scores=scores)


# ---------------------------------------------------------------- the study folder

def job_file(folder, seed, method):
    return os.path.join(folder, f"seed{seed}_{method}.json")


def finished(folder, seed, method, grids):
    """A job's record when its file is there, whole, and has every asked grid as asked; else None."""
    try:
        with open(job_file(folder, seed, method)) as f:
            rec = json.load(f)
        return rec if all(rec["grids"].get(k) == v for k, v in grids.items()) else None
    except (OSError, ValueError, KeyError, AttributeError):
        return None


def attack_file(folder, seed, method):
    return os.path.join(folder, "attacks", f"seed{seed}_{method}.json")


def attacked(folder, seed, method, attacks, n):
    """An attack job's record when its file is there, whole, with every asked attack as asked on n test
    images; else None."""
    try:
        with open(attack_file(folder, seed, method)) as f:
            rec = json.load(f)
        return rec if rec["n_attack"] == n and all(rec["attacks"].get(a) == p for a, p in attacks.items()) else None
    except (OSError, ValueError, KeyError, AttributeError):
        return None


def records(folder):
    """Every job record in the study folder."""
    found = []
    for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
        if name.endswith(".json"):
            try:
                with open(os.path.join(folder, name)) as f:
                    found.append(json.load(f))
            except (OSError, ValueError):
                pass
    return found


def summary(recs, method, kind, grid):
    """[(level, (mean, sample std, n))] of one method along a grid, over the seeds whose job has that grid."""
    runs = [r["curves"][kind] for r in recs if r["method"] == method and r["grids"].get(kind) == grid]
    return [(level, (*analysis.mean_std(v), len(v))) for level, v in zip(grid, zip(*runs))] if runs else []


def paired(recs, kind, grid, method="sleep"):
    """[(level, (mean, 2 SE, n))] of method - control, seed by seed."""
    by = {(r["method"], r["seed"]): r["curves"][kind] for r in recs if r["grids"].get(kind) == grid}
    diffs = [np.subtract(by[(method, s)], by[("control", s)]) for m, s in by if m == method and ("control", s) in by]
    if len(diffs) < 2:
        return []
    d = np.array(diffs)
    return [(level, (m, 2 * sd / math.sqrt(len(d)), len(d))) for level, m, sd in zip(grid, d.mean(0), d.std(0, ddof=1))]


def verdict(diff):
    """How many levels a paired difference is above and below 0 beyond its 2 SE, of how many."""
    above = sum(m - se > 0 for _, (m, se, _) in diff)
    below = sum(m + se < 0 for _, (m, se, _) in diff)
    return f"above control beyond 2 SE at {above} of {len(diff)} levels, below at {below}"


def cell(value):
    return "" if value is None else f"{analysis.text(value[0], value[1])} (n={value[2]})"


def table(recs, grids, methods_asked):
    """Markdown: the clean accuracy of each method, then one table per distortion (every grid point; FGSM
    every 0.05), with each method - control seed by seed (mean ± 2 SE) and how many levels of the whole grid
    it is above or below the control beyond 2 SE."""
    lines = ["| method | clean test accuracy (%) |", "|---|---|"]
    for m in methods_asked:
        clean = [r["clean"] for r in recs if r["method"] == m]
        lines.append(f"| {m} | {cell((*analysis.mean_std(clean), len(clean)) if clean else None) or 'not run'} |")
    for kind, grid in grids.items():
        shown = [i for i, level in enumerate(grid) if kind != "fgsm" or round(level * 200) % 10 == 0]
        lines += ["", f"{kind}: accuracy (%) against {LEVEL[kind]}, mean ± sample std (n seeds)", "",
                  "| method | " + " | ".join(f"{grid[i]:g}" for i in shown) + " |", "|---|" + "---|" * len(shown)]
        for m in methods_asked:
            got = summary(recs, m, kind, grid)
            lines.append(f"| {m} | " + " | ".join(cell(got[i][1]) if got else "not run" for i in shown) + " |")
        said = []
        for m in methods_asked:
            diff = paired(recs, kind, grid, m) if m != "control" else []
            if diff:
                lines.append(f"| {m} − control (± 2 SE) | " + " | ".join(
                    f"{analysis.text(diff[i][1][0], sign=True)} ± {diff[i][1][1]:.1f}" for i in shown) + " |")
                said.append(f"- {m}: {verdict(diff)} (every level of the grid, n={diff[0][1][2]} seeds)")
        lines += [""] + said if said else []
    return lines


def attack_values(recs, method, attack, key, params):
    """{seed: value} of one score of a method under an attack, over the jobs that ran it as asked."""
    return {r["seed"]: r["scores"][attack][key] for r in recs if r["method"] == method
            and r["attacks"].get(attack) == params and r["scores"][attack][key] is not None}


def attack_table(recs, attacks, methods_asked):
    """Markdown: per attack, each method's clean accuracy on the attacked images, its accuracy on its own
    adversaries, the attack's success and the median perturbation it needed (mean ± sample std over seeds,
    the L2 to two decimals), and each method - control seed by seed (mean ± 2 SE)."""
    keys = {"clean": 1, "accuracy": 1, "success": 1, "median_l2": 2, "median_l0": 1}   # decimals

    def text(v, digits, paired):   # mean ± sample std (paired: signed mean ± 2 SE), the mean alone for one seed
        head = f"{np.mean(v):+.{digits}f}" if paired else f"{np.mean(v):.{digits}f}"
        if len(v) < 2:
            return head
        sd = np.std(v, ddof=1)
        return f"{head} ± {2 * sd / math.sqrt(len(v)) if paired else sd:.{digits}f}"

    lines = []
    for attack, params in attacks.items():
        n = sorted({r["n_attack"] for r in recs if attack in r["attacks"]})
        lines += [f"{attack} ({', '.join(f'{k} {v:g}' for k, v in params.items())}), on the first "
                  f"{' or '.join(map(str, n)) or 'n'} test images: mean ± sample std (n seeds)", "",
                  "| method | clean (%) | accuracy on its adversaries (%) | success (%) | median L2 | median L0 | n |",
                  "|---|---|---|---|---|---|---|"]
        base = {k: attack_values(recs, "control", attack, k, params) for k in keys}
        for m in methods_asked:
            got = {k: attack_values(recs, m, attack, k, params) for k in keys}
            if not got["clean"]:
                lines.append(f"| {m} | not run |" + " |" * 5)
                continue
            lines.append(f"| {m} | " + " | ".join(text(list(got[k].values()), d, False) if got[k] else "n/a"
                                                  for k, d in keys.items()) + f" | {len(got['clean'])} |")
            diffs = {k: [got[k][s] - base[k][s] for s in got[k] if s in base[k]] for k in keys}
            if m != "control" and len(diffs["clean"]) >= 2:
                lines.append(f"| {m} − control (± 2 SE) | " + " | ".join(
                    text(diffs[k], d, True) if len(diffs[k]) >= 2 else "n/a" for k, d in keys.items())
                    + f" | {len(diffs['clean'])} |")
        lines.append("")
    return lines


def figure(recs, kind, grid, methods_asked):
    """Accuracy against the distortion's level, one curve per method (error bars: sample std over seeds)."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for m in methods_asked:
        sweep.curve(ax, summary(recs, m, kind, grid), fmt="o-", markersize=3, label=m)
    ax.set_xlabel({"blur": "blur sigma (imgaussfilt)", "noise": "noise variance v (imnoise; their axis says std)",
                   "fgsm": "FGSM eps"}[kind])
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"MNIST, {kind}")
    ax.grid(alpha=0.3)
    if ax.lines or ax.containers:
        ax.legend(fontsize=8)
    else:
        visualize.say(ax, "no finished job\n--run runs them")
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------- the command line

def levels(p, values, ok, words):
    bad = [v for v in values if not ok(v)]
    if bad:
        config.fail(f"--{p} values must be {words}; got {bad[0]:g}", "robustness.py")
    return sorted(values)


def parse(argv):
    p = config.Parser(prog="robustness.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                      allow_abbrev=False)
    p.add_argument("--run", action="store_true", help="run the jobs first (finished jobs are skipped)")
    p.add_argument("--quick", action="store_true", help="small sizes for CI: " + ", ".join(f"{k} {v}" for k, v in QUICK.items()))
    p.add_argument("--seeds", nargs="+", type=int, help="default: 0 1 2 3 4 (with --quick: 0)")
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS + (SLEEP_ATTACKS,), metavar="METHOD",
                   help=f"default: {' '.join(METHODS)}; also {SLEEP_ATTACKS} (their attack scripts' sleep)")
    p.add_argument("--distortions", nargs="+", default=list(GRIDS), metavar="KIND",
                   help=f"default: {' '.join(GRIDS)}; the attacks {' '.join(ATTACKS)} on request, scored on the "
                        f"first n_attack test images (their {', '.join(NOT_DONE)} is not done here)")
    p.add_argument("--sigmas", nargs="+", type=float, default=GRIDS["blur"], help="blur's grid (> 0; default: theirs)")
    p.add_argument("--variances", nargs="+", type=float, default=GRIDS["noise"], help="noise variances (in [0, 1])")
    p.add_argument("--eps", nargs="+", type=float, default=GRIDS["fgsm"], help="FGSM's grid (in [0, 1]; default: theirs)")
    p.add_argument("--out", default="runs", help="the study folder is OUT/robustness (default: runs)")
    p.add_argument("--png-dir", default="", help="where the figures go (default: the study folder)")
    args = p.parse_args(argv)
    args.seeds = args.seeds or ([0] if args.quick else list(map(int, sweep.SEEDS)))
    for kind in args.distortions:
        if kind in NOT_DONE:
            config.fail(f"--distortions {kind}: their {kind} is not done here (only {', '.join((*GRIDS, *ATTACKS))})", p.prog)
        if kind not in GRIDS and kind not in ATTACKS:
            config.fail(f"--distortions: unknown distortion or attack {kind!r} (one of {', '.join((*GRIDS, *ATTACKS))})",
                        p.prog)
    asked = dict(blur=levels("sigmas", args.sigmas, lambda v: v > 0, "> 0"),
                 noise=levels("variances", args.variances, lambda v: 0 <= v <= 1, "in [0, 1]"),
                 fgsm=levels("eps", args.eps, lambda v: 0 <= v <= 1, "in [0, 1]"))
    args.grids = {k: asked[k] for k in GRIDS if k in args.distortions}
    args.attacks = {k: ATTACKS[k] for k in ATTACKS if k in args.distortions}
    if args.run and ("fgsm" in args.grids or args.attacks):
        attack_library()
    return args


def run_jobs(args, folder, sizes):
    """Every (seed, method) not finished, in turn, on the grids, then under the attacks (their own job
    files, in the folder's attacks/); Ctrl-C or SIGTERM stops with one line."""
    previous = signal.signal(signal.SIGTERM, runner.interrupt)
    done = {"grids": lambda s, m: finished(folder, s, m, args.grids) is not None,
            "attacks": lambda s, m: attacked(folder, s, m, args.attacks, sizes["n_attack"]) is not None}
    kinds = [k for k in done if getattr(args, k)]
    todo = [(s, m, kind) for kind in kinds for s in args.seeds for m in args.methods if not done[kind](s, m)]
    try:
        if todo:
            x, y, xt, yt = data.load("mnist")
            train_set, test_set = (x[:sizes["n_train"]], y[:sizes["n_train"]]), (xt[:sizes["n_test"]], yt[:sizes["n_test"]])
            if args.attacks:
                runner.writable(os.path.join(folder, "attacks"), "--out")
        for seed, method, kind in todo:
            if kind == "grids":
                print(f"== seed {seed}, {method}", flush=True)
                rec = job(seed, method, folder, train_set, test_set, args.grids, sizes)
                runner.write_text(job_file(folder, seed, method), json.dumps(rec, indent=1))
            else:
                print(f"== seed {seed}, {method}: {', '.join(args.attacks)}", flush=True)
                rec = attack_job(seed, method, folder, train_set, test_set, args.attacks, sizes)
                runner.write_text(attack_file(folder, seed, method), json.dumps(rec, indent=1))
    except KeyboardInterrupt:
        kept = sum(done[k](s, m) for k in kinds for s in args.seeds for m in args.methods)
        print(f"robustness.py: stopped; {kept} finished jobs kept; run the same command to resume", file=sys.stderr)
        raise SystemExit(130)
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv):
    args = parse(argv)
    folder = os.path.join(args.out, "robustness_quick" if args.quick else "robustness")
    sizes = QUICK if args.quick else FULL
    runner.writable(folder, "--out")
    if args.run:
        run_jobs(args, folder, sizes)
    png_dir = args.png_dir or folder
    if args.grids:
        recs = [r for r in records(folder) if r["seed"] in args.seeds]
        lines = table(recs, args.grids, args.methods)
        runner.write_text(os.path.join(folder, "robustness.md"), "\n".join(lines) + "\n")
        print("\n".join(lines))
        runner.writable(png_dir, "--png-dir")
        for kind, grid in args.grids.items():
            fig = figure(recs, kind, grid, args.methods)
            runner.write_atomic(os.path.join(png_dir, f"robustness_{kind}.png"), lambda tmp: fig.savefig(tmp, dpi=110), "--png-dir")
            plt.close(fig)
        print(f"table in {os.path.join(folder, 'robustness.md')}, figures robustness_{{{','.join(args.grids)}}}.png in {png_dir}")
    if args.attacks:
        recs = [r for r in records(os.path.join(folder, "attacks")) if r["seed"] in args.seeds]
        lines = attack_table(recs, args.attacks, args.methods)
        runner.write_text(os.path.join(folder, "robustness_attacks.md"), "\n".join(lines) + "\n")
        print("\n".join(lines))
        print(f"table in {os.path.join(folder, 'robustness_attacks.md')}")


if __name__ == "__main__":
    main(sys.argv[1:])
