"""DataLoader: batches from a dataset, as torch.utils.data.DataLoader.

Batches are built by the dataset's vectorised `get_batch` when it has one and the default
collate is in use (same values as collating items one by one, far fewer Python calls);
otherwise item by item through collate_fn. With num_workers > 0 worker processes build
them (data/_worker.py) and the loader yields them in order.
"""

from __future__ import annotations

import multiprocessing
import queue
import time
import weakref
from typing import Callable, Iterator

from ..random import Generator, _rng
from ..runtime.errors import DataLoaderError, InvalidArgumentError
from . import _worker
from .collate import default_collate, default_convert
from .dataset import IterableDataset
from .sampler import BatchSampler, RandomSampler, SequentialSampler


class DataLoader:
    def __init__(self, dataset, batch_size: int | None = 1, shuffle: bool | None = None,
                 sampler=None, batch_sampler=None, num_workers: int = 0,
                 collate_fn: Callable | None = None, pin_memory: bool = False, drop_last: bool = False,
                 timeout: float = 0, worker_init_fn=None, multiprocessing_context=None,
                 generator: Generator | None = None, *, prefetch_factor=None,
                 persistent_workers: bool = False):
        if num_workers < 0:
            raise InvalidArgumentError("num_workers option should be non-negative; use "
                                       "num_workers=0 to disable multiprocessing")
        if timeout < 0:
            raise InvalidArgumentError("timeout option should be non-negative")
        if num_workers == 0 and (prefetch_factor is not None or persistent_workers):
            raise InvalidArgumentError("prefetch_factor and persistent_workers options need "
                                       "num_workers > 0 (worker processes)")
        self.dataset, self.batch_size, self.drop_last = dataset, batch_size, drop_last
        self.num_workers, self.pin_memory, self.timeout = num_workers, pin_memory, timeout
        self.worker_init_fn, self.multiprocessing_context = worker_init_fn, multiprocessing_context
        self.prefetch_factor = (2 if prefetch_factor is None else prefetch_factor) if num_workers else None
        self.persistent_workers, self._workers = persistent_workers, None
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
        if self.num_workers:
            if not self.persistent_workers:
                return _WorkersIter(self)
            if self._workers is None:
                self._workers = _WorkersIter(self)
            else:
                self._workers.new_pass()
            return self._workers
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


_END = object()


class _WorkersIter:
    """One pass over the data through worker processes (persistent workers: every pass).

    Task n goes to worker n % num_workers (an IterableDataset: to the next worker whose
    stream has not ended); prefetch_factor tasks per worker are in flight; results are
    yielded in task order, whatever order they arrive in."""

    def __init__(self, loader: DataLoader):
        self.loader, n = loader, loader.num_workers
        ctx = loader.multiprocessing_context
        ctx = ctx if isinstance(ctx, multiprocessing.context.BaseContext) else multiprocessing.get_context(ctx)
        self.epoch = -1
        self._reset()  # the sampler draws its order first: the same batches as num_workers=0
        seed = int(_rng(loader.generator).integers(0, 2 ** 62))  # worker i: seed + i, as torch
        state = dict(dataset=loader.dataset, iterable=loader._iterable,
                     auto_collation=loader._auto_collation, default_collate=loader._default_collate,
                     collate_fn=loader.collate_fn, batch_size=loader.batch_size,
                     drop_last=loader.drop_last)
        self.results = ctx.Queue()
        self.tasks = [ctx.Queue() for _ in range(n)]
        self.workers = [ctx.Process(target=_worker.worker_loop, daemon=True,
                                    args=(state, self.tasks[i], self.results, i, n, seed + i,
                                          loader.worker_init_fn)) for i in range(n)]
        for w in self.workers:
            w.start()
        self._shutdown = weakref.finalize(self, _stop_workers, self.workers, self.tasks, self.results)
        self._fill()

    def new_pass(self):
        self._reset()
        self._fill()

    def _reset(self):
        self.epoch += 1  # results of an unfinished earlier pass are dropped on arrival
        self.sent = self.next_out = 0
        self.arrived: dict = {}
        self.worker_of: dict = {}
        self.live = set(range(self.loader.num_workers))  # IterableDataset: streams not ended
        self.turn = 0
        self.indices = None if self.loader._iterable else iter(
            self.loader.batch_sampler if self.loader._auto_collation else self.loader.sampler)
        self.next_task = None if self.indices is None else next(self.indices, _END)

    def _fill(self):
        for _ in range(self.loader.prefetch_factor * len(self.workers)):
            self._send()

    def _send(self):
        if self.indices is None:  # each worker streams its own copy: the next live one
            if not self.live:
                return
            while self.turn % len(self.workers) not in self.live:
                self.turn += 1
            worker, task = self.turn % len(self.workers), None
            self.turn += 1
        else:
            task = self.next_task
            if task is _END:
                return
            self.next_task = next(self.indices, _END)
            worker = self.sent % len(self.workers)
        self.tasks[worker].put((self.epoch, self.sent, task))
        self.worker_of[self.sent] = worker
        self.sent += 1

    def __iter__(self):
        return self

    def __len__(self):
        return len(self.loader)

    def __next__(self):
        while self.next_out < self.sent:
            out = self._receive(self.next_out)
            worker = self.worker_of.pop(self.next_out)
            self.next_out += 1
            if isinstance(out, _worker.StreamEnd):
                self.live.discard(worker)
            self._send()
            if isinstance(out, _worker.StreamEnd):
                continue
            if isinstance(out, _worker._Failure):
                self._end()
                out.reraise()
            return _worker.from_wire(out)
        self._end()
        raise StopIteration

    def _receive(self, number):
        timeout = self.loader.timeout
        deadline = time.monotonic() + timeout if timeout else None
        while number not in self.arrived:
            try:
                epoch, n, out = self.results.get(timeout=min(timeout or 0.5, 0.5))
            except queue.Empty:
                dead = [w for w in self.workers if not w.is_alive()]
                if dead:
                    self._shutdown()
                    raise DataLoaderError(f"DataLoader worker (pid {dead[0].pid}) exited "
                                          f"unexpectedly with exit code {dead[0].exitcode}") from None
                if deadline is not None and time.monotonic() > deadline:
                    self._shutdown()
                    raise DataLoaderError(f"DataLoader timed out after {timeout} seconds waiting "
                                          f"for batch {number}") from None
                continue
            if epoch == self.epoch:
                self.arrived[n] = out
        return self.arrived.pop(number)

    def _end(self):
        if not self.loader.persistent_workers:
            self._shutdown()


def _stop_workers(workers, tasks, results):
    for q in tasks:
        q.put(_worker.STOP)
    deadline = time.monotonic() + 1.0  # workers finish their current batch first, or are killed
    for w in workers:
        w.join(timeout=max(0.0, deadline - time.monotonic()))
        if w.is_alive():
            w.terminate()
    for q in tasks + [results]:
        q.cancel_join_thread()  # don't block exit on batches nobody will read
        q.close()
