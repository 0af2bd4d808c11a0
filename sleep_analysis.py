"""What one sleep does to the network: the analyses of the authors' utils/ helpers, recorded for every sleep.

From the network before and after sleep k, the sleep's spike counts and the probe images' activations
(the class-balanced test images of analysis.probe_indices) before and after it:
- confusion matrices before and after, and the change of each class's accuracy (confmat.m,
  change_in_performance.m);
- each layer's weights before and after, their changes, and how many the sleep raised and lowered
  (plot_weight_distributions.m);
- the spike count of every input, hidden and output neuron (plot_firing_rates.m);
- reactivation: for each class, how strongly the units most active for its images fire during the sleep,
  against the layer's mean, and the correlation of the class's mean activations with the layer's sleep
  firing (compute_neural_reactivation.m, digit_reactivation.m);
- the mean correlation of the activations of two images of the same class and of different classes, before
  and after (compute_activation_correlation.m);
- with --sleep-window N, the spikes of each layer per window of N steps and the test accuracy at the end
  of every window (sleepnn_old_verbose.m tests every 20 steps).
Most of the MATLAB helpers run the network in training mode (dropout on, a random mask); here every
activation is the evaluation-mode one (no mask, scaled by 1 - dropout), as the accuracy is measured.
"""
import numpy as np

TOP_UNITS = 10   # a class's most active units, per layer, whose sleep firing is compared with the layer's


def confusion(pred, y, n_classes, outputs=None):
    """[true class, predicted output] counts (outputs: the network's, when fewer than the classes: mnist-fashion's
    20 classes on 10 outputs, class c right at output c % outputs)."""
    out = np.zeros((n_classes, outputs or n_classes), dtype=np.int64)
    np.add.at(out, (np.asarray(y), np.asarray(pred)), 1)
    return out


def per_class_accuracy(matrix):
    """Accuracy in percent of each class (row) of a confusion matrix, right at output class % outputs; nan
    for a class with no image."""
    m = np.asarray(matrix, dtype=np.float64)
    right = m[np.arange(len(m)), np.arange(len(m)) % m.shape[1]]
    with np.errstate(invalid="ignore", divide="ignore"):
        return 100 * right / m.sum(1)


def weight_changes(before, after, bins=40):
    """Per layer: how many weights the sleep raised, lowered or left, their summed change each way, and
    histograms of the weights before and after (shared edges) and of the changes (numpy's equal-width bins: a
    layer whose weights are all one value gets the range value ± 0.5)."""
    out = []
    for w0, w1 in zip(before, after):
        a, b = np.asarray(w0, dtype=np.float64).ravel(), np.asarray(w1, dtype=np.float64).ravel()
        d = b - a
        low, high = min(a.min(), b.min()), max(a.max(), b.max())
        span = max(abs(d.min()), abs(d.max())) or 1.0
        # bins and a range (numpy's equal-width path, the counts of the edges np.linspace gives, 5x faster than the edges)
        count = lambda x, lo, hi: np.histogram(x, bins, (lo, hi))
        (n_a, edges), (n_b, _), (n_d, change_edges) = count(a, low, high), count(b, low, high), count(d, -span, span)
        out.append(dict(raised=int((d > 0).sum()), lowered=int((d < 0).sum()), unchanged=int((d == 0).sum()),
                        raised_sum=float(d[d > 0].sum()), lowered_sum=float(d[d < 0].sum()), edges=edges.tolist(),
                        before=n_a.tolist(), after=n_b.tolist(), change_edges=change_edges.tolist(), change=n_d.tolist()))
    return out


def _corr(u, v):
    """Pearson correlation of two vectors; nan when either is constant."""
    u, v = u - u.mean(), v - v.mean()
    norm = np.sqrt((u * u).sum() * (v * v).sum())
    return float((u * v).sum() / norm) if norm > 0 else float("nan")


def reactivation(acts, labels, counts, n_classes, top=TOP_UNITS):
    """Per layer (acts[l], without the input, and counts[l + 1], after the input's): for each class, the mean sleep spike count
    of its `top` most active units (by mean activation on its images) over the layer's mean count (nan when
    the layer did not fire), and the correlation of its mean activations with the layer's spike counts."""
    labels = np.asarray(labels)
    out = []
    for a, c in zip(acts, counts[1:]):
        a, c = np.asarray(a, dtype=np.float64), np.asarray(c, dtype=np.float64)
        means = np.stack([a[labels == k].mean(0) for k in range(n_classes)])
        best = np.argsort(-means, axis=1, kind="stable")[:, :min(top, a.shape[1])]
        ratio = c[best].mean(1) / c.mean() if c.mean() > 0 else np.full(n_classes, np.nan)
        out.append(dict(top_ratio=ratio.tolist(), correlation=[_corr(m, c) for m in means]))
    return out


def class_correlation(acts, labels):
    """Per layer: the mean correlation of two probe images' activations, of the same class
    and of different classes (pairs of distinct images; images whose activations are constant are left out)."""
    labels = np.asarray(labels)
    out = []
    for a in acts:
        z = np.asarray(a, dtype=np.float64)
        z = z - z.mean(1, keepdims=True)
        norm = np.linalg.norm(z, axis=1)
        keep = norm > 0
        z, y = z[keep] / norm[keep, None], labels[keep]
        c = z @ z.T
        same = y[:, None] == y[None, :]
        off = ~np.eye(len(y), dtype=bool)
        out.append(dict(within=float(c[same & off].mean()) if (same & off).any() else float("nan"),
                        between=float(c[~same].mean()) if (~same).any() else float("nan")))
    return out


def analyse(k, before, after, counts, acts_before, acts_after, labels, confusion_before, confusion_after, n_classes):
    """Every analysis of sleep k, as JSON-ready numbers: before/after are the networks' weight lists, counts
    the sleep's spike counts per layer (the input's first), acts_* the probe images' activations per layer
    (models.forward's, without the input) and labels their classes."""
    acc0, acc1 = per_class_accuracy(confusion_before), per_class_accuracy(confusion_after)
    return dict(task=k, confusion_before=np.asarray(confusion_before).tolist(), confusion_after=np.asarray(confusion_after).tolist(),
                class_accuracy_change=(acc1 - acc0).tolist(), weights=weight_changes(before, after),
                spikes=[np.asarray(c).tolist() for c in counts],
                reactivation=reactivation(acts_before, labels, counts, n_classes),
                correlation_before=class_correlation(acts_before, labels),
                correlation_after=class_correlation(acts_after, labels))
