"""tracecc.vision: IDX reading on small files written here (both folder layouts, gzipped or
not), transforms, the batched path, download (from a local server, and failing fast when
offline), and the real MNIST files when present."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import os
import socket
import struct
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import tracecc as tc
from tracecc.data import DataLoader, default_collate
from tracecc.runtime.errors import DatasetError
from tracecc.vision import datasets, transforms

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared" / "data" / "mnist"
REAL_MNIST = Path(os.environ["TRACECC_DATA"]) if os.environ.get("TRACECC_DATA") else SHARED
needs_mnist = pytest.mark.skipif(not (REAL_MNIST / "t10k-labels-idx1-ubyte.gz").exists(),
                                 reason=f"real MNIST not found in {REAL_MNIST} (set TRACECC_DATA)")


def idx_bytes(array: np.ndarray) -> bytes:
    return struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape) \
        + array.astype(np.uint8).tobytes()


def write_mnist(folder: Path, n_train=12, n_test=5, gz=True, seed=0) -> dict:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {"train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28)),
              "train-labels-idx1-ubyte": rng.integers(0, 10, n_train),
              "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28)),
              "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test)}
    for name, a in arrays.items():
        data = idx_bytes(a)
        if gz:
            (folder / (name + ".gz")).write_bytes(gzip.compress(data))
        else:
            (folder / name).write_bytes(data)
    return arrays


@pytest.mark.parametrize("layout", ["raw", "flat", "flat-uncompressed"])
def test_mnist_reads_idx_files_in_either_layout(tmp_path, layout):
    folder = tmp_path / "MNIST" / "raw" if layout == "raw" else tmp_path
    arrays = write_mnist(folder, gz=layout != "flat-uncompressed")
    train = datasets.MNIST(tmp_path, train=True)
    test = datasets.MNIST(str(tmp_path), train=False)
    assert len(train) == 12 and len(test) == 5
    img, label = train[3]
    assert isinstance(img, np.ndarray) and img.dtype == np.uint8 and img.shape == (28, 28)
    np.testing.assert_array_equal(img, arrays["train-images-idx3-ubyte"][3])
    assert label == arrays["train-labels-idx1-ubyte"][3] and isinstance(label, int)
    assert train.data.shape == (12, 28, 28) and train.data.dtype is tc.uint8
    assert train.targets.dtype is tc.int64
    np.testing.assert_array_equal(test.targets.numpy(), arrays["t10k-labels-idx1-ubyte"])


def test_transforms_values():
    img = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    x = transforms.ToTensor()(img)
    assert x.shape == (1, 3, 4) and x.dtype is tc.float32
    np.testing.assert_allclose(x.numpy()[0], img / 255.0, rtol=1e-6)
    rgb = transforms.ToTensor()(np.zeros((5, 6, 3), np.uint8))
    assert rgb.shape == (3, 5, 6)
    norm = transforms.Normalize((0.5,), (0.5,))(x)
    np.testing.assert_allclose(norm.numpy()[0], (img / 255.0 - 0.5) / 0.5, rtol=1e-5, atol=1e-6)
    pipeline = transforms.Compose([transforms.ToTensor(), transforms.Lambda(lambda t: t * 2)])
    np.testing.assert_allclose(pipeline(img).numpy(), 2 * x.numpy())
    assert not pipeline.batchable
    three = transforms.Normalize((0.1, 0.2, 0.3), (1.0, 2.0, 4.0))(tc.ones(3, 2, 2))
    np.testing.assert_allclose(three.numpy()[:, 0, 0], [0.9, 0.4, 0.175], rtol=1e-6)
    with pytest.raises(tc.TraceccError):
        transforms.Normalize((0.5,), (0.5,))(tc.ones(1, 2, 2, dtype=tc.uint8))


def test_batched_transform_equals_item_by_item(tmp_path):
    write_mnist(tmp_path, n_train=30)
    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))])
    ds = datasets.MNIST(tmp_path, transform=transform)
    indices = [7, 0, 29, 3, 3]
    fast = ds.get_batch(indices)
    slow = default_collate([ds[i] for i in indices])
    assert fast[0].dtype is slow[0].dtype and fast[1].dtype is slow[1].dtype
    np.testing.assert_array_equal(fast[0].numpy(), slow[0].numpy())  # bit for bit
    np.testing.assert_array_equal(fast[1].numpy(), slow[1].numpy())
    loader = DataLoader(ds, batch_size=8, shuffle=True, generator=tc.Generator().manual_seed(0))
    images, labels = next(iter(loader))
    assert images.shape == (8, 1, 28, 28) and labels.shape == (8,)
    lam = datasets.MNIST(tmp_path, transform=transforms.Lambda(lambda a: tc.tensor(int(a.sum()))))
    assert lam.get_batch([0, 1]) is None  # no batch form: the loader goes item by item
    (sums, _), *_ = DataLoader(lam, batch_size=4)
    assert sums.shape == (4,) and sums[0].item() == int(lam._images[0].sum())


def test_missing_and_corrupt_files_give_clear_errors(tmp_path):
    with pytest.raises(DatasetError, match="MNIST/raw") as info:
        datasets.MNIST(tmp_path)
    assert "download=True" in str(info.value)
    write_mnist(tmp_path)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(gzip.decompress(path.read_bytes())[:-10]))
    with pytest.raises(DatasetError, match="truncated"):
        datasets.MNIST(tmp_path)
    path.write_bytes(b"not gzip at all")
    with pytest.raises(DatasetError, match="gzip"):
        datasets.MNIST(tmp_path)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_download_offline_fails_fast_with_where_to_put_the_files(tmp_path, monkeypatch):
    port = _closed_port()
    mirrors = [f"http://127.0.0.1:{port}/a/", f"http://127.0.0.1:{port}/b/"]
    monkeypatch.setattr(datasets.MNIST, "mirrors", mirrors)
    start = time.perf_counter()
    with pytest.raises(DatasetError) as info:
        datasets.MNIST(tmp_path, download=True)
    text = str(info.value)
    assert f"127.0.0.1:{port}/a/train-images-idx3-ubyte.gz" in text and "/b/" in text
    assert str(tmp_path / "MNIST" / "raw") in text and "f68b3c2dcbeaaa9fbdd348bbdeb94873" in text
    assert time.perf_counter() - start < 30  # generous: the point is "not minutes"
    assert not any((tmp_path / "MNIST" / "raw").glob("*.part"))


@pytest.fixture
def file_server(tmp_path):
    served = tmp_path / "served"
    served.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(served), **kwargs)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield served, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def test_download_fetches_checks_md5_and_falls_back_to_the_next_mirror(tmp_path, file_server, monkeypatch):
    served, url = file_server
    write_mnist(served, n_train=4, n_test=2)
    resources = [(p.name, hashlib.md5(p.read_bytes()).hexdigest()) for p in sorted(served.glob("*.gz"))]
    monkeypatch.setattr(datasets.MNIST, "resources", resources)
    monkeypatch.setattr(datasets.MNIST, "mirrors", [f"http://127.0.0.1:{_closed_port()}/", url])
    root = tmp_path / "root"
    ds = datasets.MNIST(root, train=False, download=True)
    assert len(ds) == 2
    assert sorted(p.name for p in (root / "MNIST" / "raw").iterdir()) == sorted(n for n, _ in resources)
    bad = [(name, "0" * 32) for name, _ in resources]
    monkeypatch.setattr(datasets.MNIST, "resources", bad)
    with pytest.raises(DatasetError, match="md5"):
        datasets.MNIST(tmp_path / "other", download=True)
    assert not list((tmp_path / "other" / "MNIST" / "raw").glob("*"))  # nothing half-written kept


@needs_mnist
def test_real_mnist_files():
    test = datasets.MNIST(REAL_MNIST, train=False)
    assert len(test) == 10000 and test.targets[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    np.testing.assert_array_equal(np.bincount(test.targets.numpy()),
                                  [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009])
    train = datasets.MNIST(REAL_MNIST, train=True)
    assert len(train) == 60000 and train.targets[:5].tolist() == [5, 0, 4, 1, 9]
    assert abs(float(train._images.mean()) - 33.32) < 0.01
