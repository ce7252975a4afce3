"""DataLoader worker processes (num_workers > 0), as torch.utils.data's.

The main process sends each worker tasks (epoch, task number, indices) on the worker's own
queue, round robin; workers load and collate the batch and put (epoch, task number, batch)
on one shared result queue; the main process yields batches in task order. A task that
fails comes back as a _Failure naming the worker and the sample index, and is raised in
the main process with the worker's traceback. Tensors travel as numpy arrays.
"""

from __future__ import annotations

import collections.abc
import os
import pickle
import queue
import random
import traceback
from dataclasses import dataclass
from typing import Any

import numpy as np

STOP = None  # sent on a worker's task queue: exit


@dataclass(frozen=True)
class WorkerInfo:
    """What get_worker_info() returns inside a worker (None in the main process)."""
    id: int
    num_workers: int
    seed: int
    dataset: Any


_worker_info: WorkerInfo | None = None


def get_worker_info() -> WorkerInfo | None:
    return _worker_info


# ---------------------------------------------------------------- tensors over the queue
@dataclass(frozen=True)
class _WireTensor:
    array: np.ndarray
    dtype: str


def to_wire(obj):
    """obj with every Tensor replaced by its values (views and history don't pickle)."""
    from .._tensor import Tensor
    if isinstance(obj, Tensor):
        return _WireTensor(np.ascontiguousarray(obj.detach().numpy()), obj.dtype.name)
    return _map(to_wire, obj)


def from_wire(obj):
    if isinstance(obj, _WireTensor):
        from ..creation import from_numpy
        from ..runtime.dtypes import get_dtype
        t = from_numpy(obj.array)
        return t if t.dtype is get_dtype(obj.dtype) else t.to(obj.dtype)
    return _map(from_wire, obj)


def _map(fn, obj):
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):  # namedtuple
        return type(obj)(*(fn(x) for x in obj))
    if isinstance(obj, (list, tuple)):
        return type(obj)(fn(x) for x in obj)
    if isinstance(obj, collections.abc.Mapping):
        return {k: fn(v) for k, v in obj.items()}
    return obj


# ---------------------------------------------------------------- failures
class _Failure:
    """An exception raised in a worker, carried to the main process."""

    def __init__(self, worker_id: int, what: str, exc: BaseException):
        self.worker_id, self.what = worker_id, what
        self.text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        self.type_name = type(exc).__name__
        try:  # a class defined inside a function cannot be sent: RuntimeError then
            self.exc_type = pickle.loads(pickle.dumps(type(exc)))
        except Exception:
            self.exc_type = RuntimeError

    def reraise(self):
        msg = (f"Caught {self.type_name} in DataLoader worker process {self.worker_id} while "
               f"loading {self.what}.\nOriginal traceback (in the worker):\n{self.text}")
        try:
            exc = self.exc_type(msg)
        except Exception:  # an exception type that takes other arguments
            exc = RuntimeError(msg)
        raise exc from None


# ---------------------------------------------------------------- the worker's loop
class _Fetcher:
    """Loads one task: a batch of indices (map-style) or the next batch (iterable)."""

    def __init__(self, loader_state: dict):
        self.__dict__.update(loader_state)
        self.stream = None

    def fetch(self, indices):
        if self.iterable:
            return self._next_from_stream()
        if not self.auto_collation:
            self.current = indices
            return self.collate_fn(self.dataset[indices])
        get_batch = getattr(self.dataset, "get_batch", None) if self.default_collate else None
        self.current = f"batch {list(indices)}"
        batch = get_batch(indices) if get_batch is not None else None
        if batch is not None:
            return batch
        items = []
        for i in indices:
            self.current = i
            items.append(self.dataset[i])
        self.current = f"batch {list(indices)} (collate_fn)"
        return self.collate_fn(items)

    def _next_from_stream(self):
        if self.stream is None:
            self.stream = iter(self.dataset)
        self.current = "the next sample of its IterableDataset"
        if self.batch_size is None:
            return self.collate_fn(next(self.stream))
        batch = []
        for sample in self.stream:
            batch.append(sample)
            if len(batch) == self.batch_size:
                break
        if not batch or (len(batch) < self.batch_size and self.drop_last):
            raise StopIteration
        return self.collate_fn(batch)


class StreamEnd:
    """A worker's IterableDataset ran out: no batch for this task."""


def worker_loop(loader_state: dict, tasks, results, worker_id: int, num_workers: int, seed: int,
                worker_init_fn):
    global _worker_info
    from .. import random as tc_random
    tc_random.manual_seed(seed)  # each worker its own stream, as torch seeds base_seed + id
    random.seed(seed)
    _worker_info = WorkerInfo(worker_id, num_workers, seed, loader_state["dataset"])
    fetcher = _Fetcher(loader_state)
    init_failure = None
    if worker_init_fn is not None:
        try:
            worker_init_fn(worker_id)
        except Exception as e:
            init_failure = _Failure(worker_id, "worker_init_fn", e)
    epoch, parent = None, os.getppid()
    while True:
        try:
            task = tasks.get(timeout=5.0)
        except queue.Empty:
            if os.getppid() != parent:  # the main process died without stopping us
                break
            continue
        if task is STOP:
            break
        task_epoch, number, indices = task
        if task_epoch != epoch:  # a new pass over the data (persistent workers)
            epoch, fetcher.stream = task_epoch, None
        if init_failure is not None:
            results.put((task_epoch, number, init_failure))
            continue
        fetcher.current = indices
        try:
            out = to_wire(fetcher.fetch(indices))
        except StopIteration:
            out = StreamEnd()
        except Exception as e:
            what = fetcher.current
            out = _Failure(worker_id, f"sample index {what}" if isinstance(what, int) else str(what), e)
        results.put((task_epoch, number, out))
