"""What the experiment measures besides accuracy: stable rank, PCA activation maps, capacity, continual-learning metrics."""
import numpy as np
import scipy.sparse.linalg


def stable_rank(w):
    """(||W||_F / ||W||_2)^2, in float64. The spectral norm comes from ARPACK (a few dozen matrix-vector
    products, deterministic start) instead of a full SVD, which would cost 0.3 s per 1200 x 1200 matrix."""
    a = np.asarray(w.detach().cpu().double() if hasattr(w, "detach") else w, dtype=np.float64)
    if a.ndim != 2 or a.size == 0:
        raise ValueError(f"stable rank needs a non-empty matrix; got shape {a.shape}")
    if not np.isfinite(a).all():
        return float("nan")
    fro2 = np.square(a).sum()
    if fro2 == 0:
        return 0.0
    if min(a.shape) <= 32:
        spec = np.linalg.norm(a, 2)
    else:
        try:
            spec = scipy.sparse.linalg.svds(a, k=1, v0=np.ones(min(a.shape)), return_singular_vectors=False)[0]
        except scipy.sparse.linalg.ArpackError:   # a degenerate matrix ARPACK cannot factor: the full SVD
            spec = np.linalg.norm(a, 2)
    return float(fro2 / spec ** 2)


def probe_indices(y, per_class, n_classes):
    """A fixed, class-balanced probe set: the first `per_class` test images of each class, ordered by class."""
    y = np.asarray(y)
    return np.concatenate([np.flatnonzero(y == c)[:per_class] for c in range(n_classes)])


def pca_maps(acts, n_components=10):
    """acts: {stage: [layer activations [n, units]]} of stages that share one map basis (for example the
    network before and after one sleep). Each hidden layer is reduced with one PCA fitted on all those
    stages together, so that their maps and differences are comparable; the output layer is kept raw.
    Returns {stage: [maps [n, components]]} in float32."""
    stages = list(acts)
    out = {s: [] for s in stages}
    n_layers = len(acts[stages[0]])
    for l in range(n_layers):
        blocks = [np.asarray(acts[s][l], dtype=np.float32) for s in stages]
        if l == n_layers - 1:
            maps = blocks
        elif not all(np.isfinite(b).all() for b in blocks):   # a diverged network: nothing to map
            maps = [np.full((len(b), n_components), np.nan, np.float32) for b in blocks]
        elif all(np.ptp(b, axis=0).max() == 0 for b in blocks) and np.ptp(np.concatenate(blocks), axis=0).max() == 0:
            maps = [np.zeros((len(b), n_components), np.float32) for b in blocks]   # a silent layer: no direction
        else:
            # ARPACK finds the leading components only: exact, and 10x faster than a full SVD of 1200 units
            from sklearn.decomposition import PCA   # here, not at the top: sklearn adds ~1 s to every script's start
            stacked = np.concatenate(blocks)
            if np.abs(stacked).max() > 1e15:   # a saturated layer: float32 squares would overflow (ARPACK fails)
                stacked, blocks = stacked.astype(np.float64), [b.astype(np.float64) for b in blocks]
            k = min(n_components, min(stacked.shape) - 1)
            try:
                pca = PCA(n_components=k, svd_solver="arpack", random_state=0).fit(stacked)
            except scipy.sparse.linalg.ArpackError:   # fewer directions than components (a nearly silent or
                pca = PCA(n_components=k, svd_solver="full").fit(stacked)   # saturated layer): the full SVD
            maps = [pca.transform(b) for b in blocks]
        for s, m in zip(stages, maps):
            out[s].append(m.astype(np.float32))
    return out


def principal_subspace(x, variance=0.9):
    """An orthonormal basis [units, k] of the fewest principal components of the rows of x (centred) that
    explain at least `variance` of their total variance; k = 0 when they have none (a silent layer)."""
    x = np.asarray(x, dtype=np.float64)
    x = x - x.mean(0)
    if not np.isfinite(x).all():
        return np.zeros((x.shape[1], 0))
    # from the eigenvectors of the n x n Gram matrix (n images < units): 5x faster than an SVD of x
    power, u = np.linalg.eigh(x @ x.T)
    power, u = power[::-1].clip(0), u[:, ::-1]
    if power.sum() <= 0:
        return np.zeros((x.shape[1], 0))
    k = int(np.searchsorted(np.cumsum(power) / power.sum(), variance - 1e-12) + 1)
    return x.T @ u[:, :k] / np.sqrt(power[:k])   # the right singular vectors of x


def overlap(u, v):
    """Overlap of two subspaces given by orthonormal bases: the mean squared cosine of their principal angles,
    ||u^T v||_F^2 / min(k_u, k_v); 1 when one contains the other, 0 when orthogonal (NaN if either is empty)."""
    k = min(u.shape[1], v.shape[1])
    return float(np.square(u.T @ v).sum() / k) if k else float("nan")


def capacity(acts, labels, tasks, variance=0.9):
    """How much of each layer the tasks use, from the activations of a class-balanced probe set.
    acts: [layer activations [n, units]]; labels [n]; tasks: the classes of each task.
    Returns one dict per layer: dims[t], the number of principal components of task t's activations needed
    for `variance` of their variance, and overlap[t][u], the overlap of tasks t's and u's subspaces."""
    labels = np.asarray(labels)
    out = []
    for a in acts:
        bases = [principal_subspace(np.asarray(a)[np.isin(labels, t)], variance) for t in tasks]
        out.append(dict(dims=[b.shape[1] for b in bases], overlap=[[overlap(u, v) for v in bases] for u in bases]))
    return out


def cl_metrics(stages, final):
    """Continual-learning metrics of one run, in percent, from the accuracy on each of T tasks.
    stages: [(name, [accuracy on tasks 1..T])] for every stage the method went through, in order (train_k is
    the stage right after training task k; SRC adds sleep_k after it, merging ends with merged); final:
    the final network's accuracy on each task.
      ACC = 1/T sum_j final[j]                                              (average accuracy)
      BWT = 1/(T-1) sum_{j<T} (final[j] - a_{train_j}[j])                   (backward transfer; Lopez-Paz & Ranzato 2017)
      F   = 1/(T-1) sum_{j<T} max_{train_j <= s < last} a_s[j] - final[j]   (average forgetting; Chaudhry et al. 2018)
    The reference of task j is its accuracy right after its training, before any sleep, so a drop during a
    task's own sleep counts as forgetting; F's maximum runs over every stage from train_j up to the last
    (the final network) excluded, sleeps included. For sequential training both are the usual definitions.
    For merging, train_j is the copy trained on task j. Without a train_j stage for every task (joint
    training) BWT and F are NaN."""
    final = np.asarray(final, dtype=np.float64)
    T = len(final)
    names = [name for name, _ in stages]
    acc = final.mean()
    if T < 2 or any(f"train_{j + 1}" not in names for j in range(T - 1)):
        return dict(acc=acc, bwt=np.nan, forgetting=np.nan)
    bwt, forgetting = [], []
    for j in range(T - 1):
        first = names.index(f"train_{j + 1}")
        after = [a[j] for _, a in stages[first:-1]]
        bwt.append(final[j] - after[0])
        forgetting.append(max(after) - final[j])
    return dict(acc=acc, bwt=float(np.mean(bwt)), forgetting=float(np.mean(forgetting)))


def text(mean, std=float("nan"), sign=False):
    """A mean and its sample std as every table prints them, to one decimal: the mean alone without a std,
    n/a without a mean; sign: the mean with its sign (a difference)."""
    if mean is None or np.isnan(mean):
        return "n/a"
    head = f"{mean:+.1f}" if sign else f"{mean:.1f}"
    return head if std is None or np.isnan(std) else f"{head} ± {std:.1f}"


def mean_std(values):
    """Mean and sample standard deviation (ddof 1) over seeds; the std is NaN for a single seed."""
    v = np.asarray(values, dtype=np.float64)
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else float("nan")
