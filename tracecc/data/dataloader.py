"""DataLoader: batches from a dataset (torch.utils.data.DataLoader, num_workers=0).

Batches are built by the dataset's vectorised `get_batch` when it has one and the default
collate is in use (same values as collating items one by one, far fewer Python calls);
otherwise item by item through collate_fn.
"""

from __future__ import annotations

from typing import Callable, Iterator

from ..random import Generator
from ..runtime.errors import InvalidArgumentError
from .collate import default_collate, default_convert
from .dataset import IterableDataset
from .sampler import BatchSampler, RandomSampler, SequentialSampler


class DataLoader:
    def __init__(self, dataset, batch_size: int | None = 1, shuffle: bool | None = None,
                 sampler=None, batch_sampler=None, num_workers: int = 0,
                 collate_fn: Callable | None = None, pin_memory: bool = False, drop_last: bool = False,
                 timeout: float = 0, worker_init_fn=None, generator: Generator | None = None, *,
                 prefetch_factor=None, persistent_workers: bool = False):
        if num_workers != 0:
            raise InvalidArgumentError(f"DataLoader: num_workers={num_workers} is not supported; "
                                       f"tracecc loads in the main process (num_workers=0)",
                                       hint="MNIST-sized datasets batch in microseconds here: "
                                            "datasets with get_batch() are vectorised")
        self.dataset, self.batch_size, self.drop_last = dataset, batch_size, drop_last
        self.num_workers, self.pin_memory, self.timeout = 0, pin_memory, timeout
        self.generator = generator
        self._iterable = isinstance(dataset, IterableDataset)
        if self._iterable and (shuffle or sampler is not None or batch_sampler is not None):
            raise InvalidArgumentError("DataLoader with IterableDataset: expected unspecified "
                                       "shuffle, sampler and batch_sampler")
        if sampler is not None and shuffle:
            raise InvalidArgumentError("sampler option is mutually exclusive with shuffle")
        if batch_sampler is not None:
            if batch_size != 1 or shuffle or sampler is not None or drop_last:
                raise InvalidArgumentError("batch_sampler option is mutually exclusive with "
                                           "batch_size, shuffle, sampler, and drop_last")
            batch_size, drop_last = None, False
            self.batch_size, self.drop_last = None, False
        elif batch_size is None and drop_last:
            raise InvalidArgumentError("batch_size=None option disables auto-batching and is "
                                       "mutually exclusive with drop_last")
        if sampler is None and not self._iterable:
            sampler = RandomSampler(dataset, generator=generator) if shuffle else SequentialSampler(dataset)
        if batch_size is not None and batch_sampler is None and not self._iterable:
            batch_sampler = BatchSampler(sampler, batch_size, drop_last)
        self.sampler, self.batch_sampler = sampler, batch_sampler
        self._auto_collation = batch_sampler is not None or (self._iterable and batch_size is not None)
        self._default_collate = collate_fn is None
        if collate_fn is None:
            collate_fn = default_collate if self._auto_collation else default_convert
        self.collate_fn = collate_fn

    def __len__(self) -> int:
        if self._iterable:
            n = len(self.dataset)
            if self.batch_size is None:
                return n
            return n // self.batch_size if self.drop_last else -(-n // self.batch_size)
        return len(self.batch_sampler) if self.batch_sampler is not None else len(self.sampler)

    def __iter__(self) -> Iterator:
        if self._iterable:
            return self._iter_stream()
        if not self._auto_collation:
            return (self.collate_fn(self.dataset[i]) for i in self.sampler)
        return self._iter_batches()

    def _iter_batches(self):
        get_batch = getattr(self.dataset, "get_batch", None) if self._default_collate else None
        for indices in self.batch_sampler:
            batch = get_batch(indices) if get_batch is not None else None
            if batch is None:
                get_batch = None  # it can't for this dataset: don't ask again this pass
                batch = self.collate_fn([self.dataset[i] for i in indices])
            yield batch

    def _iter_stream(self):
        if self.batch_size is None:
            for sample in self.dataset:
                yield self.collate_fn(sample)
            return
        batch = []
        for sample in self.dataset:
            batch.append(sample)
            if len(batch) == self.batch_size:
                yield self.collate_fn(batch)
                batch = []
        if batch and not self.drop_last:
            yield self.collate_fn(batch)
