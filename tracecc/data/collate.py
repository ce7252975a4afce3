"""default_collate: a list of samples -> one batch, as torch.utils.data.default_collate.

Tensors are stacked, numpy arrays become stacked tensors, Python ints/floats/bools become
int64/float64/bool tensors, strings stay a list, and dicts, namedtuples, tuples and lists
are collated field by field (tuples come back as lists, as in PyTorch).
"""

from __future__ import annotations

import collections.abc
import numbers

import numpy as np

from .. import _functions as T
from .._tensor import Tensor
from ..creation import as_tensor, tensor
from ..runtime import dtypes
from ..runtime.errors import InvalidArgumentError


def default_collate(batch: list):
    elem = batch[0]
    if isinstance(elem, Tensor):
        return T.stack(batch, 0)
    if isinstance(elem, np.ndarray):
        if elem.dtype.kind in "OSU":
            raise InvalidArgumentError(f"default_collate: batch must contain tensors, numpy arrays, "
                                       f"numbers, dicts or lists; found an array of {elem.dtype}")
        return as_tensor(np.stack(batch))
    if isinstance(elem, np.generic):
        return as_tensor(np.array(batch))
    if isinstance(elem, bool):
        return tensor(batch, dtype=dtypes.bool_)
    if isinstance(elem, int):
        return tensor(batch, dtype=dtypes.int64)
    if isinstance(elem, numbers.Real):
        return tensor(batch, dtype=dtypes.float64)
    if isinstance(elem, (str, bytes)):
        return batch
    if isinstance(elem, collections.abc.Mapping):
        return {key: default_collate([d[key] for d in batch]) for key in elem}
    if isinstance(elem, tuple) and hasattr(elem, "_fields"):  # namedtuple
        return type(elem)(*(default_collate(list(field)) for field in zip(*batch)))
    if isinstance(elem, collections.abc.Sequence):
        if any(len(sample) != len(elem) for sample in batch):
            raise InvalidArgumentError("default_collate: each element in list of batch should be "
                                       "of equal size")
        return [default_collate(list(field)) for field in zip(*batch)]
    raise InvalidArgumentError(f"default_collate: batch must contain tensors, numpy arrays, numbers, "
                               f"dicts or lists; found {type(elem).__name__}")


def default_convert(data):
    """What DataLoader does with samples when batch_size is None: arrays become tensors."""
    if isinstance(data, np.ndarray) and data.dtype.kind not in "OSU":
        return as_tensor(data)
    if isinstance(data, collections.abc.Mapping):
        return {k: default_convert(v) for k, v in data.items()}
    if isinstance(data, tuple) and hasattr(data, "_fields"):
        return type(data)(*(default_convert(d) for d in data))
    if isinstance(data, (list, tuple)):
        return type(data)(default_convert(d) for d in data)
    return data
