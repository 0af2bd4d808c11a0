"""Data: files verified, tasks split as the original (first n images of each digit pair, in dataset order)."""
import errno
import os
import pathlib
import shutil

import pytest
import torch

import data


def test_class_tasks():
    assert data.class_tasks() == ((0, 1), (2, 3), (4, 5), (6, 7), (8, 9))
    assert data.class_tasks(10, 5) == ((0, 1, 2, 3, 4), (5, 6, 7, 8, 9))
    with pytest.raises(ValueError):
        data.class_tasks(10, 3)


def test_task_indices_keep_dataset_order():
    y = torch.tensor([3, 0, 1, 2, 1, 0, 3, 1])
    assert data.task_indices(y, (0, 1)).tolist() == [1, 2, 4, 5, 7]
    assert data.task_indices(y, (0, 1), limit=3).tolist() == [1, 2, 4]
    assert data.task_indices(y, (2, 3)).tolist() == [0, 3, 6]


@pytest.fixture(scope="module")
def mnist():
    return data.load("mnist")


def test_mnist_is_the_original(mnist):
    train_x, train_y, test_x, test_y = mnist
    assert train_x.shape == (60000, 784) and test_x.shape == (10000, 784)
    assert train_x.dtype == torch.float32 and train_x.min() == 0 and train_x.max() == 1
    assert torch.bincount(train_y).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert torch.bincount(test_y).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_task_training_sets(mnist):
    train_x, train_y, _, _ = mnist
    for classes in data.class_tasks():
        idx = data.task_indices(train_y, classes, 5000)
        assert len(idx) == 5000 and set(train_y[idx].tolist()) == set(classes)
        assert (idx.diff() > 0).all()
        # the first 5000 of the pair: every earlier image of these digits is included
        assert torch.isin(train_y[:idx[-1] + 1], torch.tensor(classes)).sum() == 5000
    assert data.task_indices(train_y, (0, 1)).numel() == 5923 + 6742


def test_corrupt_file_is_a_clear_error(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    (raw / "train-labels-idx1-ubyte").write_bytes(b"not mnist")
    with pytest.raises(data.DataError, match="Delete them"):
        data.ensure_files("mnist", str(tmp_path))


def test_missing_data_without_network_says_what_to_do(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("no network")
    monkeypatch.setitem(data.DATASETS["mnist"], "torchvision", "NoSuchDataset")   # torchvision's download fails
    monkeypatch.setitem(data.FALLBACKS, "mnist", offline)
    with pytest.raises(data.DataError, match="--data-dir"):
        data.ensure_files("mnist", str(tmp_path))
    with pytest.raises(data.DataError, match="unknown dataset"):
        data.ensure_files("cifar", str(tmp_path))
    assert not any(name.endswith(".part") for _, _, files in os.walk(tmp_path) for name in files)


def test_a_folder_in_place_of_a_data_file_is_named(tmp_path):
    (tmp_path / "MNIST" / "raw" / "t10k-images-idx3-ubyte").mkdir(parents=True)
    with pytest.raises(data.DataError) as info:
        data.ensure_files("mnist", str(tmp_path))
    assert str(info.value).startswith(f"{tmp_path / 'MNIST' / 'raw' / 't10k-images-idx3-ubyte'} is not a file (a folder?)")
    assert "move it away" in str(info.value) and "torchvision" not in str(info.value)


def full_disk(*args):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_full_disk_while_fetching_names_the_file_and_leaves_nothing_partial(tmp_path, monkeypatch):
    import torchvision
    raw = tmp_path / "MNIST" / "raw"

    def fetched(tmp):   # the fallback's four files, in its temporary folder
        for name in data.FILES:
            (pathlib.Path(tmp) / name).write_bytes(b"idx")
        return {name: os.path.join(tmp, name) for name in data.FILES}

    def copy_until_full(source, target):
        pathlib.Path(target).write_bytes(b"i")
        full_disk()

    monkeypatch.setitem(data.DATASETS["mnist"], "torchvision", "NoSuchDataset")   # offline: the fallback
    monkeypatch.setitem(data.FALLBACKS, "mnist", fetched)
    monkeypatch.setattr(shutil, "copyfile", copy_until_full)
    with pytest.raises(data.DataError) as info:
        data.ensure_files("mnist", str(tmp_path))
    assert str(info.value).startswith(f"cannot write {raw / 'train-images-idx3-ubyte'} (No space left on device): free some space")
    assert os.listdir(raw) == []   # the .part file is gone

    def torchvision_on_a_full_disk(root, **kwargs):   # a partial file, then the error
        (raw / "train-labels-idx1-ubyte").write_bytes(b"partial")
        full_disk()

    monkeypatch.setattr(torchvision.datasets, "FullDisk", torchvision_on_a_full_disk, raising=False)
    monkeypatch.setitem(data.DATASETS["mnist"], "torchvision", "FullDisk")
    with pytest.raises(data.DataError) as info:
        data.ensure_files("mnist", str(tmp_path))
    assert str(info.value).startswith(f"cannot write {raw} (No space left on device): free some space")
    assert os.listdir(raw) == []   # torchvision's partial file is gone


@pytest.mark.skipif(shutil.which("apt-get") is None and not os.path.exists(os.path.join(data.DEFAULT_DATA_DIR, "FashionMNIST")),
                    reason="Fashion-MNIST comes from Debian's package here: needs apt-get")
def test_fashion_mnist_is_balanced_and_verified():
    train_x, train_y, test_x, test_y = data.load("fashion-mnist")
    assert train_x.shape == (60000, 784) and test_x.shape == (10000, 784)
    assert torch.bincount(train_y).tolist() == [6000] * 10 and torch.bincount(test_y).tolist() == [1000] * 10
    assert not torch.equal(train_x[:100], data.load("mnist")[0][:100])


def test_data_dir_inside_the_dataset_folder_gets_a_hint(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    (raw / "train-images-idx3-ubyte").write_bytes(b"x")
    for slip in (raw, tmp_path / "MNIST"):
        with pytest.raises(data.DataError, match=f"--data-dir {tmp_path}$"):
            data.ensure_files("mnist", str(slip))


def test_idx_shape_comes_from_the_header(tmp_path):
    path = tmp_path / "images"
    header = bytes([0, 0, 8, 3]) + (2).to_bytes(4, "big") + (3).to_bytes(4, "big") + (4).to_bytes(4, "big")
    path.write_bytes(header + bytes(range(24)))
    x = data._read_idx(str(path))
    assert x.shape == (2, 3, 4) and x[1, 2, 3].item() == 23


def test_holdout_takes_the_last_of_each_class():
    y = torch.tensor([3, 0, 1, 0, 1, 0, 3, 1])
    assert torch.nonzero(data.holdout_mask(y, 1)).flatten().tolist() == [5, 6, 7]
    assert torch.nonzero(data.holdout_mask(y, 0)).flatten().tolist() == []
    with pytest.raises(data.DataError, match="--validation 2"):
        data.holdout_mask(y, 2)   # class 3 has only two samples


def test_an_empty_data_dir_variable_counts_as_unset():
    import subprocess
    import sys
    code = "import data, os; print(data.DEFAULT_DATA_DIR == os.path.join(os.path.dirname(data.__file__), 'data'))"
    out = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, SRC_DATA_DIR=""), capture_output=True, text=True,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert out.stdout.strip() == "True", out.stderr
