"""DataLoader(num_workers > 0): worker processes load batches of indices and the loader
yields them in order, the same batches as num_workers=0; each worker is seeded (base seed
+ worker id) and runs worker_init_fn; persistent_workers keeps them across passes; an
error in a worker is raised in the main process naming the worker and the sample index.
Datasets are tiny: the cost is starting the processes (fork: milliseconds)."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

import tracecc as tc
from tracecc.data import DataLoader, Dataset, IterableDataset, TensorDataset, get_worker_info
from tracecc.runtime.errors import DataLoaderError, InvalidArgumentError


class Squares(Dataset):
    """(i*i, i, id of the worker that loaded it); sample `bad` raises, `crash` kills the worker."""

    def __init__(self, n=23, bad=None, crash=None, sleep=0.0):
        self.n, self.bad, self.crash, self.sleep = n, bad, crash, sleep

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        if i == self.bad:
            raise KeyError(f"no sample {i}")
        if i == self.crash:
            os._exit(3)
        time.sleep(self.sleep)
        info = get_worker_info()
        return np.float32(i * i), i, -1 if info is None else info.id


class Counting(IterableDataset):
    """0..9, split between workers by get_worker_info() (as torch's docs shard)."""

    def __iter__(self):
        info = get_worker_info()
        start, step = (0, 1) if info is None else (info.id, info.num_workers)
        return iter(range(start, 10, step))


def _values(loader):
    return [[t.tolist() for t in batch[:2]] for batch in loader]


@pytest.mark.parametrize("kw", [dict(batch_size=4), dict(batch_size=4, shuffle=True, drop_last=True),
                                dict(batch_size=None)], ids=["in order", "shuffled", "unbatched"])
def test_workers_give_the_batches_of_the_main_process_in_order(kw):
    tc.manual_seed(5)
    main = list(DataLoader(Squares(), num_workers=0, **kw))
    tc.manual_seed(5)
    workers = list(DataLoader(Squares(), num_workers=3, **kw))
    if kw["batch_size"] is None:  # samples, not batches
        assert [s[:2] for s in workers] == [s[:2] for s in main] and {s[2] for s in workers} == {0, 1, 2}
        return
    assert _values(workers) == _values(main)
    assert [b[2].tolist() for b in workers][:4] == [[0] * 4, [1] * 4, [2] * 4, [0] * 4]  # round robin
    assert all(b[2].tolist() == [-1] * len(b[2]) for b in main)
    assert workers[0][0].dtype is tc.float32 and workers[0][1].dtype is tc.int64


def test_iterable_dataset_interleaves_workers_as_torch():
    loader = DataLoader(Counting(), batch_size=2, num_workers=2)
    assert [b.tolist() for b in loader] == [[0, 2], [1, 3], [4, 6], [5, 7], [8], [9]]
    assert list(DataLoader(Counting(), batch_size=None, num_workers=3)) == list(range(10))


def test_error_in_a_worker_names_worker_and_index_and_keeps_its_type():
    loader = DataLoader(Squares(bad=17), batch_size=4, num_workers=2)
    with pytest.raises(KeyError) as err:
        list(loader)
    text = str(err.value)
    assert "DataLoader worker process 0" in text and "sample index 17" in text
    assert "no sample 17" in text and "__getitem__" in text  # the worker's traceback


def test_worker_init_fn_seeds_and_worker_info():
    def draw_seeds(loader):
        return list(loader)  # batch_size=None: each sample as the dataset gives it

    class Seeds(Dataset):
        def __len__(self):
            return 4

        def __getitem__(self, i):
            info = get_worker_info()
            return [info.id, info.num_workers, info.seed % 1000, tc.randint(0, 10**6, ()).item(),
                    int(os.environ.get("TC_TEST_INIT", -1))]

    def init(worker_id):
        os.environ["TC_TEST_INIT"] = str(10 + worker_id)  # in the worker process only

    tc.manual_seed(1)
    first = draw_seeds(DataLoader(Seeds(), batch_size=None, num_workers=2, worker_init_fn=init))
    tc.manual_seed(1)
    again = draw_seeds(DataLoader(Seeds(), batch_size=None, num_workers=2, worker_init_fn=init))
    assert first == again  # reproducible from tracecc.manual_seed
    assert [s[0] for s in first] == [0, 1, 0, 1] and all(s[1] == 2 for s in first)
    assert [s[4] for s in first] == [10, 11, 10, 11] and "TC_TEST_INIT" not in os.environ
    assert (first[1][2] - first[0][2]) % 1000 == 1  # seeds base + worker id
    assert first[0][3] != first[1][3]  # different random streams per worker


def test_persistent_workers_survive_passes_and_restart_cleanly():
    loader = DataLoader(Squares(), batch_size=5, num_workers=2, persistent_workers=True)
    first = _values(loader)
    it = loader._workers
    pids = [w.pid for w in it.workers]
    partial = iter(loader)
    next(partial)  # abandon a pass half way: its late batches must not leak into the next
    assert _values(loader) == first and loader._workers is it
    assert [w.pid for w in it.workers] == pids and all(w.is_alive() for w in it.workers)
    non_persistent = DataLoader(Squares(), batch_size=5, num_workers=2)
    list(non_persistent)


def test_a_dead_worker_and_a_timeout_are_clear_errors():
    with pytest.raises(DataLoaderError, match="exited unexpectedly with exit code 3"):
        list(DataLoader(Squares(crash=2), batch_size=4, num_workers=1))
    with pytest.raises(DataLoaderError, match="timed out after 0.2 seconds"):
        list(DataLoader(Squares(sleep=0.5), batch_size=1, num_workers=1, timeout=0.2))


def test_spawned_workers_get_the_dataset_by_pickle():
    ds = TensorDataset(tc.arange(10).float(), tc.arange(10))
    loader = DataLoader(ds, batch_size=3, num_workers=1, multiprocessing_context="spawn")
    assert [b[1].tolist() for b in loader] == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9]]


def test_bad_options():
    with pytest.raises(InvalidArgumentError, match="non-negative"):
        DataLoader(Squares(), num_workers=-1)
    with pytest.raises(InvalidArgumentError, match="num_workers > 0"):
        DataLoader(Squares(), persistent_workers=True)
    with pytest.raises(InvalidArgumentError, match="num_workers > 0"):
        DataLoader(Squares(), prefetch_factor=4)
