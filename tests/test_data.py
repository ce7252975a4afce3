"""tracecc.data: datasets, samplers, DataLoader (batching, shuffling, collate, the vectorised
get_batch path), random_split, the tracecc.utils.data alias and the progress bar."""

from __future__ import annotations

import io
from collections import namedtuple

import numpy as np
import pytest

import tracecc as tc
from tracecc.data import (
    ConcatDataset, DataLoader, Dataset, IterableDataset, Subset, TensorDataset, default_collate,
    progress, random_split,
)
from tracecc.runtime.errors import InvalidArgumentError, ShapeError


class Squares(Dataset):
    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return {"x": tc.tensor([float(i), float(i * i)]), "i": i, "name": f"s{i}"}


def test_utils_data_is_the_same_module():
    import tracecc.utils.data as alias
    from tracecc.utils.data import DataLoader as Loader

    assert alias is tc.data and Loader is DataLoader and tc.utils.data.TensorDataset is TensorDataset


def test_batches_cover_the_dataset_in_order():
    ds = TensorDataset(tc.arange(10).float(), tc.arange(10) * 2)
    loader = DataLoader(ds, batch_size=4)
    batches = list(loader)
    assert len(loader) == 3 and len(batches) == 3
    x, y = batches[0]
    np.testing.assert_array_equal(x.numpy(), [0, 1, 2, 3])
    np.testing.assert_array_equal(y.numpy(), [0, 2, 4, 6])
    assert batches[-1][0].shape == (2,)
    dropped = DataLoader(ds, batch_size=4, drop_last=True)
    assert len(dropped) == 2 and [b[0].shape[0] for b in dropped] == [4, 4]


def test_shuffle_is_seeded_and_visits_every_index_once():
    ds = TensorDataset(tc.arange(50))

    def order(loader):
        return np.concatenate([b[0].numpy() for b in loader])

    first = order(DataLoader(ds, batch_size=8, shuffle=True, generator=tc.Generator().manual_seed(3)))
    again = order(DataLoader(ds, batch_size=8, shuffle=True, generator=tc.Generator().manual_seed(3)))
    other = order(DataLoader(ds, batch_size=8, shuffle=True, generator=tc.Generator().manual_seed(4)))
    np.testing.assert_array_equal(first, again)
    assert sorted(first.tolist()) == list(range(50)) and not np.array_equal(first, other)
    assert not np.array_equal(first, np.arange(50))
    loader = DataLoader(ds, batch_size=50, shuffle=True, generator=tc.Generator().manual_seed(3))
    assert not np.array_equal(order(loader), order(loader))  # a new order each epoch
    tc.manual_seed(7)  # without a generator the default one decides
    a = order(DataLoader(ds, batch_size=8, shuffle=True))
    tc.manual_seed(7)
    np.testing.assert_array_equal(a, order(DataLoader(ds, batch_size=8, shuffle=True)))


def test_collate_of_dicts_numbers_strings_and_tuples():
    batch = next(iter(DataLoader(Squares(5), batch_size=3)))
    assert set(batch) == {"x", "i", "name"}
    np.testing.assert_array_equal(batch["x"].numpy(), [[0, 0], [1, 1], [2, 4]])
    assert batch["i"].dtype is tc.int64 and batch["name"] == ["s0", "s1", "s2"]
    assert default_collate([1.5, 2.0]).dtype is tc.float64
    assert default_collate([True, False]).dtype is tc.bool
    pair = default_collate([(1, np.zeros(2, np.float32)), (2, np.ones(2, np.float32))])
    assert isinstance(pair, list) and pair[1].shape == (2, 2) and pair[1].dtype is tc.float32
    Point = namedtuple("Point", "x y")
    p = default_collate([Point(1, 2.0), Point(3, 4.0)])
    assert isinstance(p, Point) and p.x.tolist() == [1, 3]
    with pytest.raises(InvalidArgumentError):
        default_collate([object(), object()])


def test_vectorised_batches_equal_item_by_item_collation():
    ds = TensorDataset(tc.randn(20, 3), tc.randint(0, 5, (20,)))
    gen = tc.Generator()
    fast = list(DataLoader(ds, batch_size=6, shuffle=True, generator=gen.manual_seed(1)))
    slow = list(DataLoader(ds, batch_size=6, shuffle=True, generator=gen.manual_seed(1),
                           collate_fn=lambda items: default_collate(items)))
    for (a, b), (c, d) in zip(fast, slow):
        np.testing.assert_array_equal(a.numpy(), c.numpy())
        np.testing.assert_array_equal(b.numpy(), d.numpy())
        assert a.dtype is c.dtype and b.dtype is d.dtype
    sub = Subset(ds, [5, 3, 19])
    (x, y), = DataLoader(sub, batch_size=3)
    np.testing.assert_array_equal(x.numpy(), ds.tensors[0].numpy()[[5, 3, 19]])


def test_custom_collate_no_batching_and_samplers():
    ds = TensorDataset(tc.arange(6))
    assert [b for b in DataLoader(ds, batch_size=2, collate_fn=len)] == [2, 2, 2]
    items = list(DataLoader(ds, batch_size=None))
    assert len(items) == 6 and items[0][0].ndim == 0
    batches = list(DataLoader(ds, batch_sampler=[[0, 5], [2]]))
    assert [b[0].tolist() for b in batches] == [[0, 5], [2]]
    with pytest.raises(InvalidArgumentError):
        DataLoader(ds, num_workers=-1)
    with pytest.raises(InvalidArgumentError):
        DataLoader(ds, batch_size=0)


def test_iterable_dataset_batches():
    class Stream(IterableDataset):
        def __iter__(self):
            return iter(range(7))

    assert [b.tolist() for b in DataLoader(Stream(), batch_size=3)] == [[0, 1, 2], [3, 4, 5], [6]]
    assert [b.tolist() for b in DataLoader(Stream(), batch_size=3, drop_last=True)] == [[0, 1, 2], [3, 4, 5]]


def test_subset_concat_and_random_split():
    ds = TensorDataset(tc.arange(10))
    parts = random_split(ds, [7, 3], generator=tc.Generator().manual_seed(0))
    assert [len(p) for p in parts] == [7, 3]
    seen = sorted(int(p[i][0]) for p in parts for i in range(len(p)))
    assert seen == list(range(10))
    again = random_split(ds, [7, 3], generator=tc.Generator().manual_seed(0))
    assert parts[0].indices == again[0].indices
    fractions = random_split(ds, [0.5, 0.3, 0.2])
    assert [len(p) for p in fractions] == [5, 3, 2]
    with pytest.raises(InvalidArgumentError):
        random_split(ds, [5, 6])
    both = ds + TensorDataset(tc.arange(100, 103))
    assert isinstance(both, ConcatDataset) and len(both) == 13
    assert int(both[11][0]) == 101 and int(both[-1][0]) == 102
    with pytest.raises(ShapeError):
        TensorDataset(tc.zeros(3), tc.zeros(4))


def test_progress_bar_prints_plain_lines_when_not_a_terminal():
    out = io.StringIO()
    items = list(progress(range(50), desc="train", file=out))
    assert items == list(range(50))
    lines = out.getvalue().splitlines()
    assert 5 <= len(lines) <= 11  # about one line per 10%, never one per item
    assert lines[-1].startswith("train: 100%") and "50/50" in lines[-1]
    assert "\r" not in out.getvalue()
    unknown = io.StringIO()
    list(progress(iter(range(5)), file=unknown))
    assert unknown.getvalue().strip().startswith("5 it")
    quiet = io.StringIO()
    list(progress(range(3), file=quiet, disable=True))
    assert quiet.getvalue() == ""
