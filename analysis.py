"""What the experiment measures besides accuracy: stable rank, PCA activation maps, continual-learning metrics."""
import numpy as np
import scipy.sparse.linalg
from sklearn.decomposition import PCA


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
        spec = scipy.sparse.linalg.svds(a, k=1, v0=np.ones(min(a.shape)), return_singular_vectors=False)[0]
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
        else:
            # ARPACK finds the leading components only: exact, and 10x faster than a full SVD of 1200 units
            stacked = np.concatenate(blocks)
            k = min(n_components, min(stacked.shape) - 1)
            pca = PCA(n_components=k, svd_solver="arpack", random_state=0).fit(stacked)
            maps = [pca.transform(b) for b in blocks]
        for s, m in zip(stages, maps):
            out[s].append(m.astype(np.float32))
    return out


def cl_metrics(R):
    """Continual-learning metrics from the accuracy matrix R[i, j] (percent): accuracy on task j once the
    method has finished task i; the last row is the final network. With T tasks:
      ACC = 1/T sum_j R[T, j]                                  (average accuracy)
      BWT = 1/(T-1) sum_{j<T} (R[T, j] - R[j, j])              (backward transfer; Lopez-Paz & Ranzato 2017)
      F   = 1/(T-1) sum_{j<T} max_{l<T} (R[l, j] - R[T, j])    (average forgetting; Chaudhry et al. 2018)
    BWT and F need all T rows; with fewer (joint training has one) they are NaN."""
    R = np.asarray(R, dtype=np.float64)
    T = R.shape[1]
    acc = R[-1].mean()
    if R.shape[0] != T or T < 2:
        return dict(acc=acc, bwt=np.nan, forgetting=np.nan)
    bwt = np.mean([R[-1, j] - R[j, j] for j in range(T - 1)])
    forgetting = np.mean([R[:-1, j].max() - R[-1, j] for j in range(T - 1)])
    return dict(acc=acc, bwt=bwt, forgetting=forgetting)
