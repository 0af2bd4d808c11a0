"""Baselines that keep class statistics instead of images or a network: what a storage-free sleep that
keeps class means must beat.

- nearest class mean (NCM): one mean image per class seen; an image goes to the nearest mean (Euclidean);
- streaming linear discriminant analysis (SLDA): the class means and one covariance shared by all classes,
  accumulated task by task (Hayes & Kanan 2020); an image goes to the class of the largest linear score
  w_c x + b_c with w_c = S^-1 mu_c, b_c = -mu_c S^-1 mu_c / 2 (equal priors), S the shared covariance shrunk
  towards the identity: (1 - s) S + s I.

Both read each task's training images once, when it arrives, and keep only the statistics (float64 here,
counted as float32 numbers in the bytes kept).
"""
import torch


class ClassStatistics:
    """Per-class sums and counts, and the sum of x x^T over every image seen (for the shared covariance)."""

    def __init__(self, n_pixels, n_classes, covariance=False):
        self.sums = torch.zeros(n_classes, n_pixels, dtype=torch.float64)
        self.counts = torch.zeros(n_classes, dtype=torch.float64)
        self.outer = torch.zeros(n_pixels, n_pixels, dtype=torch.float64) if covariance else None

    def add(self, x, y):
        """Fold in the images x [n, pixels] with labels y [n]."""
        x = x.to("cpu", torch.float64)
        self.sums.index_add_(0, y.cpu(), x)
        self.counts += torch.bincount(y.cpu(), minlength=len(self.counts)).double()
        if self.outer is not None:
            self.outer += x.T @ x

    def means(self):
        """[classes seen], [their mean images]."""
        seen = torch.nonzero(self.counts).flatten()
        return seen, self.sums[seen] / self.counts[seen, None]

    def covariance(self):
        """The within-class covariance shared by the classes: (sum x x^T - sum_c n_c mu_c mu_c^T) / n."""
        seen, mu = self.means()
        n = self.counts[seen]
        return (self.outer - (mu.T * n) @ mu) / n.sum()

    def kept_bytes(self):
        """Between tasks: the sums and counts of the classes seen (and the covariance), as float32 numbers."""
        seen = int((self.counts > 0).sum())
        pixels = self.sums.shape[1]
        return 4 * (seen * (pixels + 1) + (pixels * pixels if self.outer is not None else 0))


def over_seen(seen, scores, n_classes):
    """Scores [n, seen classes] spread over every class, -inf for the classes not seen."""
    out = scores.new_full((len(scores), n_classes), -torch.inf)
    out[:, seen] = scores
    return out


def ncm_scores(stats, x):
    """Minus the squared distance of each image to each class's mean image (-inf for a class not seen)."""
    seen, mu = stats.means()
    x = x.to("cpu", torch.float64)
    return over_seen(seen, -((x * x).sum(1, keepdim=True) - 2 * x @ mu.T + (mu * mu).sum(1)), len(stats.counts))


def ncm_predict(stats, x):
    """The class of the nearest mean image, over the classes seen."""
    return ncm_scores(stats, x).argmax(1)


def slda_scores(stats, x, shrinkage):
    """The LDA score of each class seen, with the shared covariance shrunk by `shrinkage` towards I."""
    seen, mu = stats.means()
    cov = stats.covariance()
    cov = (1 - shrinkage) * cov + shrinkage * torch.eye(len(cov), dtype=cov.dtype)
    w = torch.linalg.solve(cov, mu.T)                           # [pixels, classes]
    b = -0.5 * (mu * w.T).sum(1)
    return over_seen(seen, x.to("cpu", torch.float64) @ w + b, len(stats.counts))


def slda_predict(stats, x, shrinkage):
    """The class of the largest LDA score."""
    return slda_scores(stats, x, shrinkage).argmax(1)


def at_outputs(scores, outputs):
    """Class scores [n, classes] as output scores [n, outputs], each output the best of its classes (class c at
    output c % outputs: in domain-IL the classes of every task that share an output)."""
    at = torch.arange(scores.shape[1]) % outputs
    return scores.new_full((len(scores), outputs), -torch.inf).scatter_reduce(1, at.expand(len(scores), -1), scores, "amax")


class RidgeHead:
    """Analytic learning: a ridge-regression classifier on fixed features phi (here the last hidden layer of
    the network trained on task 1, then frozen), from G = sum phi^T phi and C = sum phi^T onehot(y) accumulated
    task by task: W = (G + ridge I)^-1 C, the same as one least-squares solve on every task's features at once."""

    def __init__(self, n_features, n_classes):
        self.G = torch.zeros(n_features, n_features, dtype=torch.float64)
        self.C = torch.zeros(n_features, n_classes, dtype=torch.float64)
        self.counts = torch.zeros(n_classes, dtype=torch.float64)

    def add(self, phi, y):
        phi, y = phi.to("cpu", torch.float64), y.cpu()
        self.G += phi.T @ phi
        self.C += phi.T @ torch.nn.functional.one_hot(y, self.C.shape[1]).double()
        self.counts += torch.bincount(y, minlength=len(self.counts)).double()

    def weights(self, ridge):
        return torch.linalg.solve(self.G + ridge * torch.eye(len(self.G), dtype=self.G.dtype), self.C)

    def kept_bytes(self):
        """Between tasks: G and C (and the frozen network, which is not counted here), as float32 numbers."""
        return 4 * (self.G.numel() + self.C.numel())


def ridge_scores(head, phi, ridge):
    """The ridge head's score of each class seen (-inf for the others)."""
    seen = torch.nonzero(head.counts).flatten()
    return over_seen(seen, (phi.to("cpu", torch.float64) @ head.weights(ridge))[:, seen], len(head.counts))


def ridge_predict(head, phi, ridge):
    """The class of the largest score among the classes seen."""
    return ridge_scores(head, phi, ridge).argmax(1)
