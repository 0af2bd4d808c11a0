# %%
"""Tables and figures of a run folder, rebuilt from its job files alone (jobs/*.json, jobs/*.npz).

    python visualize.py runs/mnist-original-1a2b3c4d            # tables into the run folder, figures into RUN_DIR/png
    python visualize.py RUN_DIR --png-dir png                    # figures into the repository's png/ (the README's)

results.csv       accuracy on each task and on all test images, per method, seed and stage (for SRC also the
                  synthetic_k networks: the weights before task k's training plus the change of sleep k; for
                  iCaRL also "METHOD (NME)": the nearest-mean-of-exemplars accuracy of its stages)
stable_rank.csv   stable rank of each layer, per method, seed and stage
capacity.csv      per method, seed and stage, for each layer: the principal components each task's probe images need
                  for 90 % of their activations' variance, and the mean overlap of the tasks' subspaces (analysis.capacity)
summary.csv, .md  per method: n seeds, mean ± sample std (ddof 1) of the final accuracies, ACC, BWT, forgetting
accuracy.png      per-task and overall test accuracy after every stage, one panel per method (mean ± std over seeds)
stable_rank.png   stable rank of each layer's weights after every stage (mean ± std over seeds)
capacity.png      capacity.csv's measures after every stage, for the methods of CAPACITY_FIGURE (mean ± std over seeds)
activations_<method>.png   PCA activation maps of a class-ordered probe set (first seed of the run)
sleep_<analysis>_<method>.png   what each sleep did (sleep_analysis.py; first seed of the run): confusion before and
                  after and each class's change; weights before/after, their changes, raised vs lowered; the
                  sleep's firing (input map, hidden and output counts); reactivation and the within- and
                  between-class correlation of activations (and the accuracy during sleep with --sleep-window)
"""
import argparse
import multiprocessing
import os
import textwrap
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor

import codepath  # first: the pinned code paths and threads (numpy's among them)
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

import results
import runner
import sleep_analysis
from config import Parser, fail
from runner import write_atomic


# %% Figures


def save(fig, path, dpi):
    """The figure as a PNG, written whole or not at all."""
    write_atomic(path, lambda tmp: fig.savefig(tmp, dpi=dpi, format="png"), "--png-dir")
    plt.close(fig)


def band(ax, x, runs, **kw):
    """Mean line with a ± sample std band over seeds."""
    runs = np.asarray(runs)
    mean = runs.mean(0)
    std = runs.std(0, ddof=1) if len(runs) > 1 else 0
    line, = ax.plot(x, mean, marker="o", markersize=3, **kw)
    if len(runs) > 1:
        ax.fill_between(x, mean - std, mean + std, color=line.get_color(), alpha=0.2, linewidth=0)


def along(ax, order, stages, runs, label, **kw):
    """A method's values at its stages on the x axis `order` (runs: [seed, stage]), as band draws them. A method
    of one stage besides the shared init (parallel: train all; the control: the last task alone) is that one
    point, ± std as a bar, and a dotted line at its level across the axis, labelled: a line from init would
    cross stages it never had."""
    own = [s for s in stages if s != "init"]
    if len(own) != 1:
        band(ax, [order.index(s) for s in stages], runs, label=label, **kw)
        return
    values = np.asarray(runs)[:, stages.index(own[0])]
    mean, x = values.mean(), order.index(own[0])
    point, = ax.plot([x], [mean], marker="D", markersize=5, linestyle="none", color=kw.get("color"),
                     label=f"{label} ({own[0].replace('_', ' ')} only)")
    if len(values) > 1:
        std = values.std(ddof=1)
        ax.vlines(x, mean - std, mean + std, color=point.get_color())
    ax.axhline(mean, color=point.get_color(), linestyle=":", linewidth=1)


def plot_accuracy(table, cols, path, names=None, overall_label="all classes"):
    """Accuracy after every stage, one panel per method; names: the task columns' legend labels."""
    methods = list(table)
    ncols = len(methods) if len(methods) <= 4 else -(-len(methods) // 2)
    nrows = -(-len(methods) // ncols)
    fig, axes = fixed_grid(nrows, ncols, (3.6, 2.45), gaps=(0.3, 1.2), margins=(0.7, 2.5, 0.35, 0.9), sharey=True)
    for ax in axes.flat[len(methods):]:
        ax.set_visible(False)
    for ax, method in zip(axes.flat, methods):
        stages = [s for s in table[method] if not s.startswith("synthetic_")]
        runs = np.array([table[method][s] for s in stages]).transpose(1, 0, 2)   # [seed, stage, column]
        synthetic = [s for s in table[method] if s.startswith("synthetic_")]
        if synthetic:   # drawn at the sleep it belongs to
            x = [stages.index(s.replace("synthetic_", "sleep_")) for s in synthetic]
            ax.plot(x, [np.mean(table[method][s], 0)[-1] for s in synthetic], "x", color="dimgrey", markersize=9, mew=2.5, zorder=5,
                    label=f"synthetic: before training\n+ sleep's change ({overall_label})")
        for c, col in enumerate(cols):
            overall = col == "all"
            label = overall_label if overall else names[c] if names else col.replace("task_", "task ")
            band(ax, range(len(stages)), runs[:, :, c], label=label,
                 color="black" if overall else None, linewidth=2.5 if overall else 1.2)
        ax.set_xticks(range(len(stages)), [s.replace("_", " ") for s in stages], rotation=60, fontsize=8)
        ax.set_title(f"{method} ({len(runs)} seed{'s' if len(runs) > 1 else ''})")
        ax.set_ylim(-2, 102)
        ax.grid(alpha=0.3)
    for row in axes:
        row[0].set_ylabel("test accuracy (%)")
    legend = {}   # every line's label once, whichever panel has it
    for ax in axes.flat:
        legend.update({label: h for h, label in zip(*ax.get_legend_handles_labels())})
    axes[0][-1].legend(legend.values(), legend.keys(), fontsize=8, loc="center left", bbox_to_anchor=(1.03, 0.5))
    save(fig, path, 110)


def plot_stable_rank(table, cols, path):
    # one x axis for all methods: the longest stage list, then the stages only others have (merged, train all)
    order = max((list(st) for st in table.values()), key=len)
    order += [s for st in table.values() for s in st if s not in order]
    fig, axes = fixed_grid(1, len(cols), (4.0, 2.55), gaps=(0.85, 0), margins=(0.75, 0.2, 0.35, 0.95))
    for c, (ax, col) in enumerate(zip(axes[0], cols)):
        for method, stages in table.items():
            along(ax, order, list(stages), np.array([stages[s] for s in stages]).transpose(1, 0, 2)[:, :, c], method)
        ax.set_xticks(range(len(order)), [s.replace("_", " ") for s in order], rotation=60, fontsize=8)
        ax.set_title(f"stable rank, {col.replace('_', ' ')}")
        ax.set_ylabel("stable rank ||W||_F^2 / ||W||_2^2")
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=8)
    save(fig, path, 110)


CAPACITY_FIGURE = ("sequential", "merging", "src", "icarl", "icarl-src")   # EWC and SI only in capacity.csv


def plot_capacity(table, cols, path):
    """One row per layer: for each method of CAPACITY_FIGURE in the run, the components each task needs (one line
    per task); in the last column, the mean overlap of the tasks' subspaces for every one of them."""
    methods = [m for m in CAPACITY_FIGURE if m in table]
    layers = list(dict.fromkeys(c.split("_task_")[0] for c in cols if "_task_" in c))
    order = max((list(table[m]) for m in methods), key=len)   # one x axis, as in plot_stable_rank
    order += [s for m in methods for s in table[m] if s not in order]
    fig, axes = fixed_grid(len(layers), len(methods) + 1, (3.35, 1.95), gaps=(0.6, 1.0), margins=(0.6, 0.15, 0.3, 0.85))
    for r, layer in enumerate(layers):
        for c, method in enumerate(methods + ["overlap"]):
            ax = axes[r][c]
            shown = methods if method == "overlap" else [method]
            for m in shown:
                stages = list(table[m])
                runs = np.array([table[m][s] for s in stages]).transpose(1, 0, 2)   # [seed, stage, column]
                if method == "overlap":
                    along(ax, order, stages, runs[:, :, cols.index(f"{layer}_overlap")], m)
                else:
                    for col in [c for c in cols if c.startswith(layer + "_task_")]:
                        along(ax, order, stages, runs[:, :, cols.index(col)], col.split("_", 2)[2].replace("_", " "),
                              linewidth=1.2)
            ax.set_xticks(range(len(order)), [s.replace("_", " ") for s in order], rotation=60, fontsize=7)
            what = "mean overlap of task subspaces" if method == "overlap" else f"{method}: components for 90 % variance"
            ax.set_title(f"{layer.replace('_', ' ')}, {what}", fontsize=9)
            ax.set_ylabel("mean squared cosine" if method == "overlap" else "principal components", fontsize=8)
            ax.grid(alpha=0.3)
            if r == 0:
                ax.legend(fontsize=7)
    save(fig, path, 100)


def say(ax, note):
    """A short note in the middle of a panel left empty (a silent layer, a map with no finite value), without
    the ticks of an axis that has no data."""
    ax.text(0.5, 0.5, note, transform=ax.transAxes, ha="center", va="center", fontsize=9, color="dimgrey")
    ax.set(xticks=[], yticks=[])


def empty_note(m, layer, change=False):
    """Why a map has nothing to draw, '' when it has: no finite value (a sleep that broke the network; infinite:
    a saturated layer, beyond the job file's float16) or, but for a change, nothing but zeros (a silent layer:
    pca_maps gives it a zero map)."""
    if not np.isfinite(m).any():
        return f"{layer} saturated" if np.isinf(m).any() else f"{layer}: no finite values"
    return "" if change or m.any() else f"{layer} silent"


def finite(maps):
    """The finite values of some maps, flat (a colour scale ignores the others)."""
    return np.concatenate([m[np.isfinite(m)] for m in maps])


def heat(ax, m, labels, title, limits, note="", output=False, classes=True, columns=True):
    """A heat map of one layer's map, class boundaries as white lines and the classes on the y axis; limits
    (low, high) shared by the maps of one colour bar; a difference (limits a number) in a diverging colour map
    centred on 0; values that are not finite in grey; output: the output layer's map (units, not components).
    With a note (empty_note) the panel is drawn empty and says why. classes, columns: whether the panel labels its
    y (classes) and x axis (without: no ticks either, as a panel beside or above one that does). Returns the
    image, for the colour bar, or None for an empty panel."""
    image = None
    bounds = np.flatnonzero(np.diff(labels)) + 0.5
    if note:   # imshow of a map with no finite value warns, and would show one flat colour as if it were data
        say(ax, note)
        ax.set(xlim=(-0.5, m.shape[1] - 0.5), ylim=(len(labels) - 0.5, -0.5))
    else:
        name, (low, high) = ("RdBu_r", (-limits, limits)) if np.isscalar(limits) else ("viridis", limits)
        image = ax.imshow(np.ma.masked_invalid(m), aspect="auto", interpolation="nearest",
                          cmap=plt.get_cmap(name).with_extremes(bad="lightgrey"), vmin=low, vmax=high)
        ax.hlines(bounds, -0.5, m.shape[1] - 0.5, color="white", linewidth=0.5)
    ax.set_title(title, fontsize=9)
    ax.tick_params(labelsize=7, length=2, pad=1)
    ax.set_xticks(range(0, m.shape[1], max(1, m.shape[1] // 5)) if columns else [])
    if columns:
        ax.set_xlabel("output" if output else "component", fontsize=8, labelpad=1)
    centres = (np.concatenate([[-0.5], bounds]) + np.concatenate([bounds, [len(labels) - 0.5]])) / 2
    if classes:
        ax.set_yticks(centres, [str(int(c)) for c in labels[np.round(centres + 0.5).astype(int).clip(0, len(labels) - 1)]])
        ax.set_ylabel("class", fontsize=8, labelpad=1)
    else:
        ax.set_yticks([])
    return image


def panel_grid(n_rows, n_layers, groups, title_lines):
    """The activation figure's axes, placed by hand in inches (matplotlib's constrained layout measures every tick
    label of every panel and colour bar: most of the figure's time): n_rows x n_layers blocks, each block the
    panels of `groups` (lists of panel indices), every group followed by its colour bar. Returns the figure, the
    panels [row, layer * panels per layer + k] and the colour bars {(row, layer, first panel of its group)}."""
    panel, height, gap, bar, bar_gap = 2.3, 1.75, 0.12, 0.1, 0.07   # a panel, the gap between two, a colour bar
    bar_room, class_room = 0.62, 0.5     # right of a colour bar: its ticks and label; left of a layer: the classes
    title_room, row_room, bottom = 0.2 * title_lines + 0.2, 0.3, 0.45   # the suptitle, a panel's title, the x axis
    per_layer = sum(len(g) for g in groups)
    block = class_room + sum(len(g) * panel + (len(g) - 1) * gap + bar_gap + bar + bar_room for g in groups)
    width, full = n_layers * block, title_room + n_rows * (row_room + height) + bottom
    fig = plt.figure(figsize=(width, full))
    axes, bars = np.empty((n_rows, n_layers * per_layer), dtype=object), {}
    box = lambda x, y, w, h, **kw: fig.add_axes((x / width, 1 - (y + h) / full, w / width, h / full), **kw)
    for r in range(n_rows):
        y = title_room + r * (row_room + height) + row_room
        for l in range(n_layers):
            x = l * block + class_room
            for g in groups:
                for k in g:
                    axes[r, l * per_layer + k] = box(x, y, panel, height)
                    x += panel + gap
                x += bar_gap - gap
                bars[r, l, g[0]] = box(x, y + 0.05 * height, bar, 0.9 * height, label="<colorbar>")
                x += bar + bar_room
    return fig, axes, bars


def read_maps(npz_path):
    """A job's activation maps, {stage: {layer: map}}, and the probe images' labels; a damaged file is a one-line
    error that names it."""
    try:
        z = np.load(npz_path)
        labels = z["labels"]
    except Exception as err:   # a truncated or foreign file: BadZipFile, pickled data refused, no labels, ...
        fail(f"{npz_path} is damaged ({type(err).__name__}): delete it and its .json, and run the experiment's "
             "command again (or add --force)", "visualize.py")
    maps = defaultdict(dict)
    for key in z.files:
        if key != "labels":
            stage, layer = key.split("/")
            maps[stage][layer] = z[key].astype(np.float32)
    return dict(maps), labels


def plot_activations(npz_path, method, path):
    """SRC: per sleep k, each layer before sleep k, after it and the change. Other methods: each stage's maps.
    Returns whether the job had maps to draw."""
    return draw_activations(*read_maps(npz_path), method, path)


def draw_activations(maps, labels, method, path):
    """plot_activations's figure, from read_maps's maps and labels."""
    if not maps:
        return False
    layers = sorted(next(iter(maps.values())))
    befores = [s for s in maps if s.startswith("train_")]
    if any(s.startswith("sleep_") for s in maps):
        rows = [(s, s.replace("train_", "sleep_")) for s in befores]
        kinds = ["before", "after", "change"]
    else:
        rows, kinds = [(s, None) for s in maps], [""]
    # each row has colour scales of its own: a stage's maps can be far fainter than another's (merging's merged
    # network), which a scale over every stage draws as if empty. In a row, a layer's maps before and after share
    # one scale, its change another (a colour bar right of them); of finite values only.
    groups = [range(min(2, len(kinds)))] + ([[2]] if "change" in kinds else [])
    K, L = len(kinds), len(layers)
    title = (f"{method}: activations of {len(labels)} test images, ordered by class (rows)\n{{}} PCA components "
             f"(columns; the output layer raw){{}}; each row has colour scales of its own" +
             ("\nrow k: each layer before and after sleep k, which follows the training of task k" if kinds[0] else ""))
    fig, axes, bars = panel_grid(len(rows), L, groups, title.count("\n") + 1)
    with np.errstate(invalid="ignore", over="ignore"):   # a broken sleep's maps: inf - inf is a nan, drawn grey
        panels = {(r, l): [maps[before][layer]] if after is None else
                  [maps[before][layer], maps[after][layer], maps[after][layer] - maps[before][layer]]
                  for r, (before, after) in enumerate(rows) for l, layer in enumerate(layers)}
    when = dict(before="before sleep {}", after="after sleep {}", change="change in sleep {}")
    for (r, l), ms in panels.items():
        before, after = rows[r]
        layer = layers[l].replace("_", " ")
        for ks in groups:
            change = kinds[ks[0]] == "change"
            v = finite([ms[k] for k in ks])
            if change:
                limits = float(np.abs(v).max()) if v.size and np.abs(v).max() > 0 else 1.0
            else:
                limits = (float(v.min()), float(v.max())) if v.size else (0.0, 1.0)
            drawn = [heat(axes[r][l * K + k], ms[k], labels, f"{layer}, " + (when[kinds[k]].format(
                before.replace("train_", "")) if kinds[k] else before.replace("_", " ")), limits,
                empty_note(ms[k], layer, change), l == L - 1, classes=k == 0, columns=r == len(rows) - 1) for k in ks]
            image = next((i for i in drawn if i is not None), None)
            cax = bars[r, l, ks[0]]
            if image is None:   # empty panels have no scale
                cax.remove()
            else:
                what = "change" if change else "output activation" if l == L - 1 else "value on the component"
                bar = fig.colorbar(image, cax=cax, label=what)
                bar.ax.yaxis.set_major_locator(plt.MaxNLocator(4))
                bar.ax.tick_params(labelsize=6, length=2)
                bar.ax.yaxis.label.set_size(7)
    n_components = next(iter(maps.values()))[layers[0]].shape[1]
    grey = any(not np.isfinite(m).all() and np.isfinite(m).any() for ms in panels.values() for m in ms)
    fig.suptitle(title.format(n_components, "; grey: not finite" if grey else ""), fontsize=10, y=1 - 0.08 / fig.get_figheight())
    save(fig, path, 100)
    return True


def figures(run_dir, png_dir, processes=codepath.CORES):
    """Every figure of a run folder, from all its jobs (its tables written first); returns the paths written.
    Each figure is drawn on its own, over `processes` processes (default: the cores this process may use; after a
    run's jobs they are idle, and drawing is single-threaded): the same files whatever their number."""
    first = {}
    for method, seed in sorted(results.jobs_in(run_dir), key=lambda job: job[1]):
        first.setdefault(method, runner.job_path(run_dir, method, seed) + ".npz")
    os.makedirs(png_dir, exist_ok=True)
    table, cols = results.read_table(os.path.join(run_dir, "results.csv"), skip=("task_il",))   # the figure: class-IL
    names = results.task_names(results.read_jobs(run_dir), len(cols) - 1, results.run_field(run_dir, "dataset"))[0]
    png = lambda name: os.path.join(png_dir, name)
    drawings = [(plot_accuracy, (table, cols, png("accuracy.png"), [n.replace("T", "task ", 1) + ("" if "(" in n else " learnt")
                                                                   for n in names],
                                 "every task" if results.run_field(run_dir, "scenario") == "domain" else "all classes"),
                 png("accuracy.png"))]
    if os.path.exists(os.path.join(run_dir, "stable_rank.csv")):
        drawings.append((plot_stable_rank, (*results.read_table(os.path.join(run_dir, "stable_rank.csv")),
                                            png("stable_rank.png")), png("stable_rank.png")))
    capacity = results.read_table(os.path.join(run_dir, "capacity.csv")) if os.path.exists(os.path.join(run_dir, "capacity.csv")) else ({}, [])
    if any(m in capacity[0] for m in CAPACITY_FIGURE):
        drawings.append((plot_capacity, (*capacity, png("capacity.png")), png("capacity.png")))
    for method, path in first.items():   # read here: a damaged file stops the figures before they start
        drawings.append((draw_activations, (*read_maps(path), method, png(f"activations_{method}.png")),
                         png(f"activations_{method}.png")))
    slept = {}
    for r in results.read_jobs(run_dir):   # the first seed of each method that recorded its sleeps' analyses
        if r.get("analysis"):
            slept.setdefault(r["method"], r)
    drawings += [(sleep_figures, (rec, png_dir), None) for rec in slept.values()]
    if processes > 1 and len(drawings) > 1:   # forked: the data are already here; the last (the largest) first
        with ProcessPoolExecutor(min(processes, len(drawings)), mp_context=multiprocessing.get_context("fork")) as pool:
            pending = {i: pool.submit(draw, drawings[i]) for i in reversed(range(len(drawings)))}
            drawn = [pending[i].result() for i in range(len(drawings))]
    else:
        drawn = [draw(d) for d in drawings]
    return [p for written in drawn for p in written]


def draw(drawing):
    """One entry of figures(): (function, arguments, the file it writes, or None for a function that returns the
    files it wrote); returns the files written (none where a job had no activation maps)."""
    function, args, path = drawing
    done = function(*args)
    return done if path is None else [path] if done is not False else []


@plt.rc_context({"axes.titlesize": 10, "axes.labelsize": 9, "xtick.labelsize": 8, "ytick.labelsize": 8, "legend.fontsize": 8})
def sleep_figures(rec, png_dir):
    """The four figures of what each sleep of one job did (its rec["analysis"]); returns the paths written.
    Sleep k is the one right after the training of task k."""
    sleeps, method = rec["analysis"], rec["method"]
    K, paths = len(sleeps), []
    classes = lambda n: range(0, n, 1 if n <= 10 else 2)   # a tick per class; every other one of 20 (mnist-fashion)
    # confusion matrices (rows: true class, normalised to percent) and the change of each class's accuracy
    fig, axes = fixed_grid(3, K, (2.2, 2.0), gaps=(0.75, 0.85), margins=(0.75, 1.0, 0.75, 0.55))
    for j, a in enumerate(sleeps):
        for i, key in enumerate(("confusion_before", "confusion_after")):
            m = np.asarray(a[key], dtype=float)
            image = axes[i][j].imshow(100 * m / np.maximum(m.sum(1, keepdims=True), 1), cmap="Blues", vmin=0, vmax=100,
                                      aspect="auto")
            axes[i][j].set_xticks(classes(m.shape[1]))
            axes[i][j].set_yticks(classes(m.shape[0]))
            axes[i][j].set(title=f"{'before' if i == 0 else 'after'} sleep {a['task']}", xlabel="predicted class",
                           ylabel="true class" if j == 0 else "")
        change = np.asarray(a["class_accuracy_change"])
        axes[2][j].bar(range(len(change)), change, color=np.where(change >= 0, "tab:blue", "tab:red"))
        axes[2][j].axhline(0, color="k", linewidth=0.5)
        axes[2][j].set_xticks(classes(len(change)))
        axes[2][j].set(title=f"change in sleep {a['task']}", xlabel="true class",
                       ylabel="accuracy change (points)" if j == 0 else "")
    fig.colorbar(image, cax=bar_beside(fig, axes[:2, -1]), label="% of the true class's images")
    paths.append(finish(fig, f"{method}: confusion before and after each sleep (sleep k: after the training of task k), "
                             f"each class's change (seed {rec['seed']})", os.path.join(png_dir, f"sleep_confusion_{method}.png")))
    # weights: before/after the last sleep, the changes of every sleep, raised against lowered
    L, last = len(sleeps[0]["weights"]), sleeps[-1]["task"]
    fig, axes = fixed_grid(L, 3, (3.4, 2.0), gaps=(0.85, 0.8))
    for l in range(L):
        w = sleeps[-1]["weights"][l]
        for key, color in (("before", "tab:gray"), ("after", "tab:blue")):
            axes[l][0].stairs(w[key], w["edges"], color=color, label=f"{key} sleep {last}")
        for a in sleeps:
            w = a["weights"][l]
            if w["raised"] + w["lowered"]:   # a sleep that changed nothing in the layer has no spread to draw
                axes[l][1].stairs(w["change"], w["change_edges"], label=f"sleep {a['task']}")
        x = np.arange(K)
        axes[l][2].bar(x - 0.2, [a["weights"][l]["raised"] for a in sleeps], 0.4, color="tab:blue", label="raised")
        axes[l][2].bar(x + 0.2, [a["weights"][l]["lowered"] for a in sleeps], 0.4, color="tab:red", label="lowered")
        axes[l][2].set_xticks(x, [f"sleep {a['task']}" for a in sleeps])
        axes[l][0].set(title=f"layer {l + 1}: before and after sleep {last} (after task {last})",
                       xlabel="weight", ylabel="weights per bin", yscale="log")
        axes[l][1].set(title=f"layer {l + 1}: change in sleep k (after task k)",
                       xlabel="change of a weight in the sleep", ylabel="weights per bin", yscale="log")
        axes[l][2].set(title=f"layer {l + 1}: weights raised or lowered", xlabel="sleep k (after task k)",
                       ylabel="weights changed")
    for ax in axes[0]:
        ax.legend()
    paths.append(finish(fig, f"{method}: each layer's weights and what the sleeps changed (seed {rec['seed']})",
                        os.path.join(png_dir, f"sleep_weights_{method}.png")))
    # firing: the input's spike counts as an image, hidden counts as histograms, output counts per class
    n_layers, steps = len(sleeps[0]["spikes"]), {s["task"]: s["steps"] for s in rec["sleep"]}
    fig, axes = fixed_grid(n_layers, K, (2.0, 1.75), gaps=(1.35, 0.95), margins=(0.75, 1.0, 1.0, 0.55))
    for j, a in enumerate(sleeps):
        counts = [np.asarray(c) for c in a["spikes"]]
        side = int(round(np.sqrt(len(counts[0]))))
        image = axes[0][j].imshow(counts[0].reshape(side, side), cmap="magma")
        fig.colorbar(image, cax=bar_beside(fig, [axes[0][j]]), label="spikes in the sleep")
        axes[0][j].set(title=f"sleep {a['task']} (after task {a['task']}, {steps[a['task']]} steps)\ninput: spikes per pixel",
                       xlabel="pixel column", ylabel="pixel row")
        for l in range(1, n_layers - 1):
            if counts[l].any():
                axes[l][j].hist(counts[l], bins=30, color="tab:blue", log=True)
                axes[l][j].xaxis.set_major_locator(plt.MaxNLocator(integer=True))   # spike counts are whole
            else:   # every unit at 0: one bar, on a log axis with nothing to compare
                say(axes[l][j], f"hidden layer {l} silent")
            axes[l][j].set(title=f"hidden layer {l}: spikes per unit", xlabel="spikes of a unit in the sleep", ylabel="units")
        if counts[-1].any():
            axes[-1][j].bar(range(len(counts[-1])), counts[-1], color="tab:green")
        else:
            say(axes[-1][j], "output silent")
        axes[-1][j].set_xticks(range(len(counts[-1])))
        axes[-1][j].set(title="output: spikes per class", xlabel="output class", ylabel="spikes in the sleep")
    paths.append(finish(fig, f"{method}: firing during each sleep (seed {rec['seed']})",
                        os.path.join(png_dir, f"sleep_firing_{method}.png")))
    # reactivation, class correlation, and the accuracy during sleep when it was recorded
    during = [s for s in rec["sleep"] if s.get("accuracy_during")]
    fig, axes = fixed_grid(3, L + bool(during), (2.9, 1.75), gaps=(0.7, 0.75))
    for l in range(L):
        for a in sleeps:
            r = a["reactivation"][l]
            axes[0][l].plot(r["correlation"], "o-", markersize=3, label=f"sleep {a['task']}")
            axes[1][l].plot(r["top_ratio"], "o-", markersize=3)
        axes[0][l].set_title(f"layer {l + 1}: corr(class's mean activation, sleep firing)", fontsize=7)
        axes[1][l].set_title(f"layer {l + 1}: firing of a class's top {sleep_analysis.TOP_UNITS} units / mean", fontsize=7)
        for when, line in (("before", "--"), ("after", "-")):
            for kind, color in (("within", "tab:blue"), ("between", "tab:red")):
                axes[2][l].plot([a["task"] for a in sleeps], [a[f"correlation_{when}"][l][kind] for a in sleeps], line,
                                marker="o", markersize=3, color=color, label=f"{kind} classes, {when} sleep")
        axes[2][l].set_title(f"layer {l + 1}: mean correlation of two images", fontsize=7)
        axes[2][l].set_xlabel("sleep")
        axes[1][l].set_xlabel("class")
    axes[0][0].legend(fontsize=6)
    axes[2][0].legend(fontsize=6)
    if during:
        for s in during:
            axes[0][-1].plot([0] + [d["step"] for d in s["accuracy_during"]],
                             [np.nan] + [d["all"] for d in s["accuracy_during"]], label=f"sleep {s['task']}")
        axes[0][-1].set(title="accuracy during sleep", xlabel="step", ylabel="accuracy (%)")
        axes[0][-1].legend(fontsize=6)
        for s in during:   # each window's spikes over its steps (the last window may be shorter)
            ends = np.array([d["step"] for d in s["accuracy_during"]])
            total = np.sum(s["window_spikes"][1:], 0)
            axes[1][-1].plot(ends, total / np.diff(ends, prepend=0), label=f"sleep {s['task']}")
        axes[1][-1].set(title="spikes per step (hidden and output)", xlabel="step")
        axes[2][-1].set_visible(False)
    paths.append(finish(fig, f"{method}: reactivation and correlation of activations (seed {rec['seed']})",
                        os.path.join(png_dir, f"sleep_reactivation_{method}.png")))
    return paths


def fixed_grid(n_rows, n_cols, panel, gaps=(0.75, 0.8), margins=(0.75, 0.35, 0.75, 0.55), **kw):
    """plt.subplots with its room given in inches, not measured (matplotlib's layout engines measure every tick
    label of every panel: most of a figure's time): panel (width, height), gaps (between columns, between
    rows: a panel's labels and title), margins (left, right, top: the suptitle, bottom); kw: plt.subplots's."""
    (w, h), (w_gap, h_gap), (left, right, top, bottom) = panel, gaps, margins
    width, height = left + n_cols * w + (n_cols - 1) * w_gap + right, top + n_rows * h + (n_rows - 1) * h_gap + bottom
    return plt.subplots(n_rows, n_cols, figsize=(width, height), squeeze=False, **kw, gridspec_kw=dict(
        left=left / width, right=1 - right / width, top=1 - top / height, bottom=bottom / height,
        wspace=w_gap / w, hspace=h_gap / h))


def bar_beside(fig, axes, gap=0.1, width=0.12):
    """Axes for a colour bar right of `axes` (stacked panels: it spans them), gap and width in inches."""
    boxes, inch = [ax.get_position() for ax in axes], 1 / fig.get_figwidth()
    low, high = min(b.y0 for b in boxes), max(b.y1 for b in boxes)
    return fig.add_axes((max(b.x1 for b in boxes) + gap * inch, low, width * inch, high - low), label="<colorbar>")


def finish(fig, title, path):
    """Title and save a figure (its room given by fixed_grid); the title broken into lines as wide as the figure
    (one sleep's figure is one panel wide)."""
    lines = textwrap.wrap(title, int(11 * fig.get_figwidth()))
    height, top = fig.get_figheight(), max(ax.get_position().y1 for ax in fig.axes)
    need = 0.45 + 0.2 * len(lines)   # the title's lines above the top row's own titles
    if need > (1 - top) * height:   # a taller figure, every axes where it was from the bottom, in inches
        taller = (height + need - (1 - top) * height) / height
        fig.set_figheight(height * taller)
        for ax in fig.axes:
            box = ax.get_position()
            ax.set_position((box.x0, box.y0 / taller, box.width, box.height / taller))
    fig.suptitle("\n".join(lines), fontsize=11, y=1 - 0.1 / fig.get_figheight(), va="top")
    save(fig, path, 90)
    return path


def main(run_dir, png_dir=None):
    """Rebuild every table and figure of a run folder from its job files."""
    results.tables(run_dir)
    return figures(run_dir, png_dir or os.path.join(run_dir, "png"))


# %%
if __name__ == "__main__":
    parser = Parser(prog="visualize.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", help="a run folder written by mnist_exp.py")
    parser.add_argument("--png-dir", default=None, help="where the figures go (default: RUN_DIR/png)")
    args = parser.parse_args()
    if not os.path.isdir(os.path.join(args.run_dir, "jobs")):
        fail(f"{args.run_dir} is not a run folder (it has no jobs/): give a folder that mnist_exp.py wrote", "visualize.py")
    results.read_jobs(args.run_dir)   # every job file checked before anything is written
    runner.writable(args.png_dir or os.path.join(args.run_dir, "png"), "--png-dir")
    written = main(args.run_dir, args.png_dir)
    print(f"tables in {args.run_dir}: results.csv, stable_rank.csv, capacity.csv, summary.csv, summary.md")
    print("figures: " + ", ".join(written))
