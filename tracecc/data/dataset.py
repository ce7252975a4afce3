"""Datasets: Dataset, TensorDataset, Subset, ConcatDataset, random_split (torch.utils.data).

A dataset may also offer `get_batch(indices)`: the batch exactly as default_collate would
build it from [dataset[i] for i in indices], made in one vectorised step, or None when it
can't (say, a transform that only works per item). DataLoader uses it when it can; it is
how a whole MNIST batch gets ToTensor + Normalize in one operation instead of 64.
"""

from __future__ import annotations

import bisect
import math
from typing import Sequence

from .. import _functions as T
from .._tensor import Tensor
from ..creation import tensor
from ..random import randperm
from ..runtime import dtypes
from ..runtime.errors import InvalidArgumentError, ShapeError


class Dataset:
    """Map-style dataset: __getitem__(index) and __len__."""

    def __getitem__(self, index):
        raise NotImplementedError(f"{type(self).__name__} must implement __getitem__")

    def __add__(self, other: "Dataset") -> "ConcatDataset":
        return ConcatDataset([self, other])


class IterableDataset(Dataset):
    """A stream of samples: __iter__ instead of __getitem__."""

    def __iter__(self):
        raise NotImplementedError(f"{type(self).__name__} must implement __iter__")


class TensorDataset(Dataset):
    """Sample i is (t[i] for t in tensors); all tensors share their first dimension."""

    def __init__(self, *tensors: Tensor):
        if not tensors:
            raise InvalidArgumentError("TensorDataset needs at least one tensor")
        n = tensors[0].shape[0]
        if any(t.shape[0] != n for t in tensors):
            raise ShapeError("Size mismatch between tensors: "
                             + ", ".join(str(list(t.shape)) for t in tensors))
        self.tensors = tensors

    def __getitem__(self, index):
        return tuple(t[index] for t in self.tensors)

    def __len__(self) -> int:
        return self.tensors[0].shape[0]

    def get_batch(self, indices: Sequence[int]):
        idx = tensor(list(indices), dtype=dtypes.int64)
        # default_collate turns a batch of tuples into a list of stacked fields
        return [T.index_select(t, 0, idx) for t in self.tensors]


class Subset(Dataset):
    def __init__(self, dataset: Dataset, indices: Sequence[int]):
        self.dataset, self.indices = dataset, indices

    def __getitem__(self, idx):
        if isinstance(idx, list):
            return [self.dataset[self.indices[i]] for i in idx]
        return self.dataset[self.indices[idx]]

    def __len__(self) -> int:
        return len(self.indices)

    def get_batch(self, indices: Sequence[int]):
        inner = getattr(self.dataset, "get_batch", None)
        return inner([self.indices[i] for i in indices]) if inner else None


class ConcatDataset(Dataset):
    def __init__(self, datasets):
        self.datasets = list(datasets)
        if not self.datasets:
            raise InvalidArgumentError("ConcatDataset: datasets should not be an empty iterable")
        self.cumulative_sizes, total = [], 0
        for d in self.datasets:
            total += len(d)
            self.cumulative_sizes.append(total)

    def __len__(self) -> int:
        return self.cumulative_sizes[-1]

    def __getitem__(self, idx: int):
        if idx < 0:
            if -idx > len(self):
                raise IndexError("absolute value of index should not exceed dataset length")
            idx += len(self)
        which = bisect.bisect_right(self.cumulative_sizes, idx)
        start = self.cumulative_sizes[which - 1] if which else 0
        return self.datasets[which][idx - start]


def random_split(dataset: Dataset, lengths: Sequence, generator=None) -> list[Subset]:
    """Split into non-overlapping Subsets of the given lengths (or fractions summing to 1,
    the remainder spread round-robin as PyTorch does)."""
    n = len(dataset)
    if math.isclose(sum(lengths), 1) and sum(lengths) <= 1:
        counts = [int(math.floor(n * frac)) for frac in lengths]
        for i in range(n - sum(counts)):
            counts[i % len(counts)] += 1
        lengths = counts
    if sum(lengths) != n:
        raise InvalidArgumentError(f"random_split: sum of input lengths ({sum(lengths)}) does not "
                                   f"equal the length of the input dataset ({n})")
    order = randperm(n, generator=generator).tolist()
    subsets, offset = [], 0
    for length in lengths:
        subsets.append(Subset(dataset, order[offset:offset + length]))
        offset += length
    return subsets
