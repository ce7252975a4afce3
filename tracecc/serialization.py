"""tracecc.save / tracecc.load: state dicts and nested containers of tensors, in a file
format that never executes code when read (no pickle).

Layout (all integers little-endian):

    magic   b"TRACECC\\0"                   8 bytes
    version u32                             format version (1)
    hlen    u64                             length of the JSON header
    header  JSON, utf-8                     the object's structure, tensors by reference
    padding zeros up to a 64-byte boundary
    payload raw little-endian tensor bytes, each tensor 64-byte aligned
    digest  sha256 of everything above      32 bytes

The header is a tree of tagged nodes: {"t": "dict", "items": [[key, value], ...]} (keys
are str, int, float, bool or None), "odict", "list", "tuple", "tensor" (dtype, shape,
offset into the payload, requires_grad, and whether it is an nn.Parameter), and plain
JSON for str/int/float/bool/None. A tensor saved twice is stored once and loads as one
object. Loading checks magic, version, lengths and the digest before reading anything, so
a truncated or tampered file is a clear SerializationError, never a wrong tensor.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import struct
from collections import OrderedDict
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from ._tensor import Tensor, _make
from .runtime import dtypes
from .runtime.errors import SerializationError

MAGIC = b"TRACECC\0"
VERSION = 1
ALIGN = 64
_PREFIX = struct.Struct("<8sIQ")
_DIGEST_LEN = 32
_KEY_TYPES = (str, int, float, bool, type(None))


def _aligned(n: int) -> int:
    return -(-n // ALIGN) * ALIGN


# ---------------------------------------------------------------- save
class _Writer:
    def __init__(self):
        self.blobs: list[bytes] = []
        self.size = 0
        self.tensor_ids: dict[int, int] = {}  # id(tensor) -> index in self.tensors
        self.tensors: list[dict] = []
        self.keep_alive: list = []  # ids stay unique while we hold the objects

    def node(self, obj, where: str):
        if isinstance(obj, Tensor):
            return self.tensor(obj, where)
        if obj is None or isinstance(obj, (bool, str)):
            return obj
        if isinstance(obj, int):
            return obj
        if isinstance(obj, float):
            return obj if math.isfinite(obj) else {"t": "float", "v": repr(obj)}
        if isinstance(obj, (np.integer, np.floating, np.bool_)):
            return self.node(obj.item(), where)
        if isinstance(obj, np.ndarray):
            return {"t": "ndarray", "v": self.tensor(_make(np.ascontiguousarray(obj)), where)}
        if isinstance(obj, dtypes.DType):
            return {"t": "dtype", "v": obj.name}
        if isinstance(obj, dict):
            items = []
            for key, value in obj.items():
                if not isinstance(key, _KEY_TYPES):
                    raise SerializationError(f"save: {where} has a key of type {type(key).__name__}; "
                                             f"keys must be str, int, float, bool or None")
                items.append([key, self.node(value, f"{where}[{key!r}]")])
            return {"t": "odict" if isinstance(obj, OrderedDict) else "dict", "items": items}
        if isinstance(obj, (list, tuple)):
            kind = "list" if isinstance(obj, list) else "tuple"
            return {"t": kind, "items": [self.node(v, f"{where}[{i}]") for i, v in enumerate(obj)]}
        raise SerializationError(
            f"save: cannot save {where}, an object of type {type(obj).__name__}",
            hint="tracecc.save stores tensors, numbers, strings, None, dtypes and dicts/lists/"
                 "tuples of them (e.g. model.state_dict(), optimizer.state_dict()); no pickling")

    def tensor(self, t: Tensor, where: str):
        known = self.tensor_ids.get(id(t))
        if known is not None:
            return {"t": "ref", "v": known}
        data = t._value(f"tracecc.save of {where}")
        raw = np.ascontiguousarray(data).astype(data.dtype.newbyteorder("<"), copy=False).tobytes()
        offset = _aligned(self.size)
        if offset > self.size:
            self.blobs.append(b"\0" * (offset - self.size))
        self.blobs.append(raw)
        self.size = offset + len(raw)
        entry = {"t": "tensor", "dtype": t.dtype.name, "shape": list(t.shape), "offset": offset,
                 "nbytes": len(raw), "requires_grad": bool(t.requires_grad),
                 "parameter": type(t).__name__ == "Parameter"}
        self.tensor_ids[id(t)] = len(self.tensors)
        self.tensors.append(entry)
        self.keep_alive.append(t)
        return entry


def save(obj: Any, f: str | os.PathLike | BinaryIO) -> None:
    """Write obj (state dicts, optimizer state, nested dicts/lists/tuples of tensors and
    numbers) to a path or a binary file object."""
    writer = _Writer()
    tree = writer.node(obj, "obj")
    header = json.dumps({"root": tree}, separators=(",", ":")).encode("utf-8")
    head = _PREFIX.pack(MAGIC, VERSION, len(header)) + header
    head += b"\0" * (_aligned(len(head)) - len(head))
    digest = hashlib.sha256(head)
    for blob in writer.blobs:
        digest.update(blob)
    if isinstance(f, (str, os.PathLike)):
        path = Path(f)
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as out:
            _write(out, head, writer.blobs, digest.digest())
        os.replace(tmp, path)  # never leave a half-written checkpoint under the real name
    else:
        _write(f, head, writer.blobs, digest.digest())


def _write(out: BinaryIO, head: bytes, blobs: list[bytes], digest: bytes) -> None:
    out.write(head)
    for blob in blobs:
        out.write(blob)
    out.write(digest)


# ---------------------------------------------------------------- load
def load(f: str | os.PathLike | BinaryIO, map_location=None, weights_only: bool = True,
         **kwargs) -> Any:
    """Read what save() wrote. map_location may only name the cpu; weights_only is accepted
    for compatibility (this format holds nothing but data anyway)."""
    if map_location not in (None, "cpu") and str(map_location) != "cpu":
        from .runtime.device import check_device
        check_device(map_location)
    if isinstance(f, (str, os.PathLike)):
        name = str(f)
        with open(f, "rb") as stream:
            blob = stream.read()
    else:
        name = getattr(f, "name", "<stream>")
        blob = f.read()
    return _Reader(blob, name).load()


class _Reader:
    def __init__(self, blob: bytes, name: str):
        self.blob, self.name = blob, name
        self.tensors: list = []

    def fail(self, what: str, hint: str | None = None) -> SerializationError:
        return SerializationError(f"load: {self.name}: {what}",
                                  hint=hint or "the file is truncated or was modified after it "
                                               "was saved; save it again")

    def load(self):
        blob = self.blob
        if len(blob) < _PREFIX.size + _DIGEST_LEN:
            raise self.fail(f"too short to be a tracecc file ({len(blob)} bytes)")
        magic, version, hlen = _PREFIX.unpack_from(blob)
        if magic != MAGIC:
            raise self.fail("not a tracecc file (bad magic bytes)",
                            hint="tracecc.load reads files written by tracecc.save; PyTorch "
                                 "checkpoints (pickle) are not read, by design")
        if version != VERSION:
            raise self.fail(f"unsupported format version {version} (this tracecc reads {VERSION})")
        payload_start = _aligned(_PREFIX.size + hlen)
        if payload_start + _DIGEST_LEN > len(blob):
            raise self.fail("the header runs past the end of the file")
        body, digest = blob[:-_DIGEST_LEN], blob[-_DIGEST_LEN:]
        if hashlib.sha256(body).digest() != digest:
            raise self.fail("checksum mismatch")
        try:
            header = json.loads(blob[_PREFIX.size:_PREFIX.size + hlen].decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise self.fail(f"unreadable header ({e})") from None
        self.payload = memoryview(body)[payload_start:]
        if not isinstance(header, dict) or "root" not in header:
            raise self.fail("malformed header")
        return self.node(header["root"])

    def node(self, n):
        if n is None or isinstance(n, (bool, int, float, str)):
            return n
        if not isinstance(n, dict) or "t" not in n:
            raise self.fail(f"malformed header entry {str(n)[:80]}")
        kind = n["t"]
        if kind in ("dict", "odict"):
            pairs = [(self.key(k), self.node(v)) for k, v in n["items"]]
            return OrderedDict(pairs) if kind == "odict" else dict(pairs)
        if kind == "list":
            return [self.node(v) for v in n["items"]]
        if kind == "tuple":
            return tuple(self.node(v) for v in n["items"])
        if kind == "tensor":
            return self.tensor(n)
        if kind == "ref":
            if not isinstance(n["v"], int) or not 0 <= n["v"] < len(self.tensors):
                raise self.fail(f"bad tensor reference {n['v']!r}")
            return self.tensors[n["v"]]
        if kind == "float":
            if n["v"] not in ("nan", "inf", "-inf"):
                raise self.fail(f"bad float {n['v']!r}")
            return float(n["v"])
        if kind == "ndarray":
            return self.node(n["v"]).numpy(force=True)
        if kind == "dtype":
            return dtypes.get_dtype(n["v"])
        raise self.fail(f"unknown entry type {kind!r}")

    def key(self, k):
        if not isinstance(k, _KEY_TYPES):
            raise self.fail(f"bad dictionary key {k!r}")
        return k

    def tensor(self, n: dict) -> Tensor:
        try:
            dtype = dtypes.get_dtype(n["dtype"])
            shape = tuple(int(d) for d in n["shape"])
            offset, nbytes = int(n["offset"]), int(n["nbytes"])
        except (KeyError, TypeError, ValueError):
            raise self.fail(f"malformed tensor entry {str(n)[:80]}") from None
        if any(d < 0 for d in shape) or nbytes != math.prod(shape) * dtype.itemsize:
            raise self.fail(f"tensor entry of shape {list(shape)} and dtype {dtype.name} claims "
                            f"{nbytes} bytes")
        if offset < 0 or offset + nbytes > len(self.payload):
            raise self.fail(f"tensor data at {offset}..{offset + nbytes} lies outside the payload "
                            f"({len(self.payload)} bytes)")
        raw = self.payload[offset:offset + nbytes]
        array = np.frombuffer(raw, dtype=dtype.np.newbyteorder("<"), count=math.prod(shape))
        array = array.astype(dtype.np, copy=True).reshape(shape)  # own, writable, native order
        t = _make(array, dtype)
        if n.get("parameter"):
            from .nn.parameter import Parameter
            t = Parameter(t, requires_grad=bool(n.get("requires_grad", True)))
        elif n.get("requires_grad"):
            t.requires_grad_(True)
        self.tensors.append(t)
        return t


__all__ = ["save", "load"]
