"""What the MNIST examples share: where the data is looked for, and the MNIST datasets with
the usual ToTensor + Normalize transform. Import it after setting OPENBLAS_NUM_THREADS: it
loads numpy (through tracecc)."""

import os
from pathlib import Path

from tracecc.vision import datasets, transforms

REPO = Path(__file__).resolve().parent.parent
SHARED_MNIST = REPO.parent / "shared" / "data" / "mnist"  # beside the checkout


def data_roots(flag=None) -> list:
    """Every place MNIST may be, in order: --data alone if given, else $TRACECC_DATA (if
    set), ../shared/data/mnist beside the checkout, ./data."""
    if flag:
        return [Path(flag)]
    found = [Path(os.environ["TRACECC_DATA"])] if os.environ.get("TRACECC_DATA") else []
    return found + [SHARED_MNIST, REPO / "data"]


def find_data(flag=None) -> str:
    """The one folder to use: --data or $TRACECC_DATA as given, else ../shared/data/mnist if
    it exists, else ./data (where MNIST is downloaded if missing)."""
    if flag:
        return flag
    if os.environ.get("TRACECC_DATA"):
        return os.environ["TRACECC_DATA"]
    return str(SHARED_MNIST) if SHARED_MNIST.is_dir() else str(REPO / "data")


def mnist_transform(mean: float = 0.5, std: float = 0.5):
    return transforms.Compose([transforms.ToTensor(), transforms.Normalize((mean,), (std,))])


def mnist(root, mean: float = 0.5, std: float = 0.5, download: bool = True):
    """(train_set, test_set): MNIST under root, each image normalised as (x - mean) / std."""
    transform = mnist_transform(mean, std)
    return (datasets.MNIST(root=root, train=True, download=download, transform=transform),
            datasets.MNIST(root=root, train=False, download=download, transform=transform))
