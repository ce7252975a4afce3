"""The examples run as documented, at tiny sizes: a few steps each, eager and compiled
agreeing. MNIST comes from a tiny IDX set written here (learnable: each digit is a bright
block at its own place), so no test needs the real files or the network."""

from __future__ import annotations

import gzip
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"


def write_idx(path: Path, array: np.ndarray) -> None:
    """An IDX file, gzipped: magic (0, 0, type 0x08 = uint8, ndim), big-endian dims, data."""
    header = bytes([0, 0, 0x08, array.ndim]) + np.array(array.shape, ">u4").tobytes()
    path.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes()))


def write_tiny_mnist(root: Path, n_train: int = 192, n_test: int = 96, splits=("train", "t10k")) -> Path:
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        if prefix not in splits:
            continue
        labels = rng.integers(0, 10, n)
        images = rng.integers(0, 60, (n, 28, 28))
        for i, d in enumerate(labels):  # digit d: a bright 8x8 block at row 2 + 2d
            images[i, 2 + 2 * d:10 + 2 * d, 10:18] = 255
        write_idx(root / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(root / f"{prefix}-labels-idx1-ubyte.gz", labels)
    return root


def run_example(*args, timeout: int = 300) -> str:
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", TRACECC_OFFLINE="1")
    env.pop("TRACECC_DUMP_DIR", None)
    env.pop("TRACECC_LOGS", None)
    done = subprocess.run([sys.executable, *map(str, args)], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout)
    assert done.returncode == 0, f"{args} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def tiny_mnist(tmp_path_factory) -> Path:
    return write_tiny_mnist(tmp_path_factory.mktemp("mnist"))


def _accuracies(out: str) -> list[float]:
    return [float(a) for a in re.findall(r"test accuracy: ([\d.]+)%", out)]


# ---------------------------------------------------------------- make demo
def test_demo_trains_eager_and_compiled_alike(tiny_mnist, tmp_path):
    dump = tmp_path / "dump"
    out = run_example(EXAMPLES / "demo.py", "--data", tiny_mnist, "--epochs", "3", "--batch-size", "32",
                      "--lr", "0.1", "--dump", dump)
    assert "data: real MNIST from" in out and "192 training, 96 test images" in out
    eager, compiled = _accuracies(out)
    assert eager == compiled  # same seed, same batches: the same model up to float rounding
    assert eager > 50, out  # the tiny set is learnable, so training did something
    assert re.search(r"losses: first 18 steps within .*: agree \(rtol", out), out
    assert "(all 18 steps: largest difference" in out
    speedup = re.search(r"compiled is ([\d.]+)x faster", out)
    assert speedup and float(speedup.group(1)) > 0
    written = re.search(r"IR dump of the compiled step written to (\S+)/", out).group(1)
    assert Path(written).parent == dump
    assert (Path(written) / "000_traced.ir").read_text().startswith("# traced train_step")
    assert list(Path(written).glob("*_kernels.kir"))


def test_demo_falls_back_to_the_test_split_and_says_so(tmp_path):
    root = write_tiny_mnist(tmp_path / "only_test", n_test=200, splits=("t10k",))
    out = run_example(EXAMPLES / "demo.py", "--data", root, "--epochs", "1", "--batch-size", "40",
                      "--offline", "--dump", tmp_path / "dump")
    assert "MNIST not found" in out
    assert "ONLY THE MNIST TEST SPLIT" in out and "160 training, 40 test images" in out
    assert len(_accuracies(out)) == 2


def test_demo_without_any_data_trains_on_labelled_synthetic_digits(tmp_path):
    out = run_example(EXAMPLES / "demo.py", "--data", tmp_path / "empty", "--epochs", "1",
                      "--lr", "0.1", "--offline", "--dump", tmp_path / "dump")
    assert "SYNTHETIC digits" in out and "not MNIST" in out
    assert "6000 training, 1000 test images" in out
    eager, compiled = _accuracies(out)
    assert eager == compiled and eager > 50  # 10 classes: chance is 10%


def test_synthetic_digits_are_balanced_and_normalised():
    sys.path.insert(0, str(EXAMPLES))
    try:
        import demo
    finally:
        sys.path.remove(str(EXAMPLES))
    images, labels = demo.synthetic_digits(500, seed=3).tensors
    assert tuple(images.shape) == (500, 1, 28, 28)
    assert -1.0 <= float(images.min()) and float(images.max()) <= 1.0
    counts = np.bincount(labels.numpy(), minlength=10)
    assert counts.min() > 25  # every digit present
    assert len(demo.FONT) == 10 and all(len(g) == 35 for g in demo.FONT)


# ---------------------------------------------------------------- the classic example
def test_mnist_mlp_example_compiled_with_a_dump(tiny_mnist, tmp_path):
    out = run_example(EXAMPLES / "mnist_mlp.py", "--data", tiny_mnist, "--epochs", "1",
                      "--compile", "--dump", tmp_path / "dump")
    assert "training step compiled" in out and "Accuracy on test data" in out
    assert list((tmp_path / "dump").glob("train_step_*/000_traced.ir"))


# ---------------------------------------------------------------- CNN
def _loss_difference(out: str) -> float:
    return float(re.search(r"largest loss difference: (\S+)", out).group(1))


def test_mnist_cnn_eager_and_compiled_agree(tiny_mnist):
    out = run_example(EXAMPLES / "mnist_cnn.py", "--data", tiny_mnist, "--compare", "3", "--width", "4",
                      "--batch-size", "16")
    rows = re.findall(r"^\s+\d+\s+([\d.]+)\s+([\d.]+)$", out, re.M)
    assert len(rows) == 3
    assert _loss_difference(out) < 1e-4, out
    assert re.search(r"step time \(median\): eager [\d.]+ ms, compiled [\d.]+ ms", out)


def test_mnist_cnn_trains_compiled_and_tests(tiny_mnist):
    out = run_example(EXAMPLES / "mnist_cnn.py", "--data", tiny_mnist, "--train-limit", "64", "--width", "4",
                      "--batch-size", "32", "--compile")
    assert "64 training, 96 test images" in out and "compiled" in out
    assert re.search(r"Accuracy on test data: [\d.]+%", out)


# ---------------------------------------------------------------- transformer
TINY_GPT = ["--d-model", "16", "--heads", "2", "--layers", "1", "--block-size", "16", "--batch-size", "4"]


def test_char_transformer_eager_and_compiled_agree():
    out = run_example(EXAMPLES / "char_transformer.py", "--compare", "3", *TINY_GPT)
    assert "characters of tracecc's own code and docs" in out
    assert _loss_difference(out) < 1e-4, out


def test_char_transformer_trains_compiled_and_samples():
    out = run_example(EXAMPLES / "char_transformer.py", "--steps", "4", "--sample", "30", "--compile",
                      *TINY_GPT)
    assert "4 steps, compiled" in out and "loss on held-out text" in out
    sample = out.split("--- sampled at temperature 0.8 after 'def ' ---\n", 1)[1]
    assert sample.startswith("def ") and len(sample.rstrip("\n")) >= 34


def test_repository_text_is_printable_and_stable():
    sys.path.insert(0, str(EXAMPLES))
    try:
        import char_transformer
    finally:
        sys.path.remove(str(EXAMPLES))
    text = char_transformer.repository_text()
    assert len(text) > 100_000 and "import tracecc" in text
    assert all(c == "\n" or " " <= c <= "~" or c == "?" for c in set(text))
    assert text == char_transformer.repository_text()
