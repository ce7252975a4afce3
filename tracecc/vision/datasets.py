"""MNIST (torchvision.datasets.MNIST): the standard IDX files, read with numpy.

Files are looked up in root/MNIST/raw (torchvision's layout) and in root itself, gzipped
or not. download=True fetches what is missing from the usual mirrors (md5-checked) into
root/MNIST/raw. Samples are (image, label): a uint8 numpy array (28, 28) where
torchvision gives a PIL image (ToTensor treats both alike), and an int.
"""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Callable

import numpy as np

from .._tensor import Tensor
from ..creation import from_numpy
from ..runtime.errors import DatasetError
from . import download as _download


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (optionally gzipped) as a numpy array: big-endian header with a type code
    and the dimensions, then the raw values."""
    raw = path.read_bytes()
    if path.suffix == ".gz":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as e:
            raise DatasetError(f"{path} is not a valid gzip file ({e})",
                               hint="delete it and download it again") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DatasetError(f"{path}: not an IDX file (bad magic number)")
    types = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    if raw[2] not in types:
        raise DatasetError(f"{path}: unknown IDX type code 0x{raw[2]:02x}")
    ndim = raw[3]
    header = 4 + 4 * ndim
    shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    dtype = np.dtype(types[raw[2]])
    expected = header + int(np.prod(shape)) * dtype.itemsize
    if len(raw) != expected:
        raise DatasetError(f"{path}: expected {expected} bytes for an IDX array of shape "
                           f"{list(shape)}, found {len(raw)} (truncated or corrupt)",
                           hint="delete it and download it again")
    return np.frombuffer(raw, dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


class MNIST:
    """60,000 training and 10,000 test images of handwritten digits, 28x28, labels 0-9."""

    mirrors = ["https://ossci-datasets.s3.amazonaws.com/mnist/",
               "http://yann.lecun.com/exdb/mnist/"]
    resources = [
        ("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
        ("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432"),
        ("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
        ("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c"),
    ]
    classes = ["0 - zero", "1 - one", "2 - two", "3 - three", "4 - four", "5 - five", "6 - six",
               "7 - seven", "8 - eight", "9 - nine"]

    def __init__(self, root: str | Path, train: bool = True, transform: Callable | None = None,
                 target_transform: Callable | None = None, download: bool = False):
        self.root = Path(root).expanduser()
        self.train, self.transform, self.target_transform = train, transform, target_transform
        prefix = "train" if train else "t10k"
        images_name, labels_name = f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte"
        images_path, labels_path = self._find(images_name), self._find(labels_name)
        if (images_path is None or labels_path is None) and download:
            self.download()
            images_path, labels_path = self._find(images_name), self._find(labels_name)
        if images_path is None or labels_path is None:
            missing = [n for n, p in ((images_name, images_path), (labels_name, labels_path)) if p is None]
            raise DatasetError(f"{type(self).__name__}: dataset not found: no "
                               f"{' or '.join(m + '[.gz]' for m in missing)} in {self.raw_folder} "
                               f"or {self.root}",
                               hint="pass download=True, or copy the four IDX .gz files into "
                                    f"{self.raw_folder}")
        images, labels = read_idx(images_path), read_idx(labels_path)
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise DatasetError(f"{type(self).__name__}: images {list(images.shape)} and labels "
                               f"{list(labels.shape)} do not match")
        images.setflags(write=False)  # samples are views: nobody may change the dataset
        self._images = images
        self._labels = labels.astype(np.int64)
        self.data = from_numpy(images)  # uint8 (N, 28, 28), as torchvision's .data
        self.targets = from_numpy(self._labels)

    @property
    def raw_folder(self) -> Path:
        return self.root / type(self).__name__ / "raw"

    def _find(self, name: str) -> Path | None:
        for folder in (self.raw_folder, self.root):
            for candidate in (folder / (name + ".gz"), folder / name):
                if candidate.is_file():
                    return candidate
        return None

    def download(self) -> None:
        """Fetch each missing file into raw_folder (md5-checked)."""
        for filename, md5 in self.resources:
            if self._find(filename.removesuffix(".gz")) is None:
                _download.fetch(filename, self.mirrors, self.raw_folder, md5)

    def __len__(self) -> int:
        return len(self._labels)

    def __getitem__(self, index: int):
        img, target = self._images[index], int(self._labels[index])
        if self.transform is not None:
            img = self.transform(img)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return img, target

    def get_batch(self, indices) -> list[Tensor] | None:
        """[images, labels] for these indices in one step, equal to default_collate of the
        items; None when the transform can't work on a whole batch."""
        transform = self.transform
        batchable = transform is None or getattr(transform, "batchable", False)
        if self.target_transform is not None or not batchable:
            return None
        idx = np.asarray(indices, dtype=np.int64)
        images = self._images[idx]
        batch = transform.apply_batch(images) if transform is not None else from_numpy(images)
        return [batch, from_numpy(self._labels[idx])]

    def __repr__(self) -> str:
        lines = [f"Dataset {type(self).__name__}", f"    Number of datapoints: {len(self)}",
                 f"    Root location: {self.root}", f"    Split: {'Train' if self.train else 'Test'}"]
        if self.transform is not None:
            transform = repr(self.transform).replace("\n", "\n    ")
            lines.append("    StandardTransform\n    Transform: " + transform)
        return "\n".join(lines)

