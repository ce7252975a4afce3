"""On-disk cache of compiled objects, so a new process skips code generation.

Key: sha256 over (IR text hash, target triple/cpu/features, llvmlite version, tracecc
version, entry format version), so any change to what would be generated is a miss.

Location: $TRACECC_CACHE_DIR, else $XDG_CACHE_HOME/tracecc, else ~/.cache/tracecc; entries
live in its `llvm/` folder as `<key>.o`. TRACECC_CACHE=0 turns the cache off.

Entry layout: MAGIC (8 bytes) | format version (u32) | payload length (u64) |
sha256(payload) (32 bytes) | payload, where payload = key (u32 length + utf-8) | object.
A reader checks all of it, so a truncated, corrupt or mismatched entry reads as a miss and
is deleted; it is never loaded. Writers write a unique temporary file and rename it over
the entry (atomic on POSIX), so concurrent processes writing the same key never expose a
partial file: the last rename wins and both wrote the same bytes.

Size: at most TRACECC_CACHE_MAX_MB (default 512) megabytes. A hit marks its entry as
recently used (its modification time); every PRUNE_EVERY stores, and on the first store of
a process, a store that finds the folder over the limit deletes the least recently used
entries down to PRUNE_TO of it. Entries are small (1-10 KB a graph), but every change to
the code generator or its inputs makes new ones and leaves the old ones unused.

I/O errors never break compilation: a cache that cannot be read or written is skipped
(one warning). `info()` and `clear()` back the `tracecc cache info|clear` command.
"""

from __future__ import annotations

import hashlib
import os
import struct
import sys
import tempfile
import warnings
from functools import lru_cache
from pathlib import Path

from ..runtime.errors import CacheError

MAGIC = b"TRCCOBJ\x01"
FORMAT_VERSION = 1
_HEADER = struct.Struct("<8sIQ32s")  # magic, format version, payload length, sha256(payload)
_SUFFIX = ".o"

DEFAULT_MAX_MB = 512
PRUNE_EVERY = 32  # stores between two looks at the folder's size (a listing costs ~ms)
PRUNE_TO = 0.8  # of the limit: some room before the next prune

_warned = False
stats = {"hits": 0, "misses": 0, "corrupt": 0, "stores": 0, "evicted": 0}


def enabled() -> bool:
    return os.environ.get("TRACECC_CACHE", "1") not in ("0", "false", "off", "")


def cache_dir() -> Path:
    """The cache root: TRACECC_CACHE_DIR, else XDG_CACHE_HOME/tracecc, else ~/.cache/tracecc."""
    root = os.environ.get("TRACECC_CACHE_DIR")
    if root:
        return Path(root).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "tracecc"


def _entries_dir() -> Path:
    return cache_dir() / "llvm"


def max_bytes() -> int:
    """The size limit: TRACECC_CACHE_MAX_MB megabytes (default 512)."""
    raw = os.environ.get("TRACECC_CACHE_MAX_MB", "")
    try:
        mb = float(raw) if raw else DEFAULT_MAX_MB
    except ValueError:
        raise CacheError(f"TRACECC_CACHE_MAX_MB must be a number of megabytes, got {raw!r}") from None
    return max(0, int(mb * 1e6))


@lru_cache(maxsize=None)
def tracecc_version() -> str:
    # the package root is always imported before tracecc.codegen; importlib.metadata costs ~10 ms
    v = getattr(sys.modules.get("tracecc"), "__version__", None)
    if v:
        return v
    try:
        from importlib.metadata import version

        return version("tracecc")
    except Exception:  # not installed (running from a bare checkout)
        return "0+unknown"


def make_key(ir_text: str, target_key: str) -> str:
    """Cache key of an IR text compiled for a target (jit.HostTarget.key())."""
    h = hashlib.sha256()
    for part in (hashlib.sha256(ir_text.encode()).hexdigest(), target_key,
                 f"tracecc-{tracecc_version()}", f"format-{FORMAT_VERSION}"):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()


def _path(key: str) -> Path:
    if len(key) != 64 or any(c not in "0123456789abcdef" for c in key):
        raise CacheError(f"malformed cache key {key!r}", hint="build keys with make_key()")
    return _entries_dir() / (key + _SUFFIX)


def encode(key: str, obj: bytes) -> bytes:
    k = key.encode()
    payload = struct.pack("<I", len(k)) + k + obj
    return _HEADER.pack(MAGIC, FORMAT_VERSION, len(payload), hashlib.sha256(payload).digest()) + payload


def decode(key: str, data: bytes) -> bytes | None:
    """The object stored in `data`, or None if it is truncated, corrupt or for another key."""
    if len(data) < _HEADER.size:
        return None
    magic, version, length, digest = _HEADER.unpack_from(data)
    payload = data[_HEADER.size:]
    if magic != MAGIC or version != FORMAT_VERSION or length != len(payload):
        return None
    if hashlib.sha256(payload).digest() != digest:
        return None
    (klen,) = struct.unpack_from("<I", payload)
    if payload[4:4 + klen] != key.encode():
        return None
    return payload[4 + klen:]


def _warn(what: str, e: OSError) -> None:
    global _warned
    if not _warned:
        _warned = True
        warnings.warn(f"tracecc compile cache disabled for this operation: cannot {what} "
                      f"({e}); set TRACECC_CACHE_DIR to a writable folder", RuntimeWarning, stacklevel=3)


def load(key: str) -> bytes | None:
    """The cached object for `key`, or None (miss; a bad entry is deleted and counted)."""
    if not enabled():
        return None
    path = _path(key)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        stats["misses"] += 1
        return None
    except OSError as e:
        _warn(f"read {path}", e)
        stats["misses"] += 1
        return None
    obj = decode(key, data)
    if obj is None:
        stats["corrupt"] += 1
        stats["misses"] += 1
        try:
            path.unlink()
        except OSError:
            pass
        return None
    stats["hits"] += 1
    try:
        os.utime(path)  # recently used: the last entries pruning deletes
    except OSError:
        pass
    return obj


def store(key: str, obj: bytes) -> bool:
    """Write an entry atomically (temp file + rename). Returns False if it could not."""
    if not enabled():
        return False
    path = _path(key)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{key[:16]}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            f.write(encode(key, obj))
        os.replace(tmp, path)
        tmp = None
        stats["stores"] += 1
        if (stats["stores"] - 1) % PRUNE_EVERY == 0:
            prune()
        return True
    except OSError as e:
        _warn(f"write {path}", e)
        return False
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass


def _files() -> list[Path]:
    d = _entries_dir()
    if not d.is_dir():
        return []
    return [p for p in d.iterdir() if p.is_file() and (p.suffix == _SUFFIX or p.name.endswith(".tmp"))]


def prune(limit: int | None = None) -> int:
    """If the entries take more than `limit` bytes (default max_bytes()), delete the least
    recently used down to PRUNE_TO of it. Returns how many were deleted."""
    limit = max_bytes() if limit is None else limit
    entries = []
    for p in _files():
        if p.suffix == _SUFFIX:
            try:
                st = p.stat()
            except OSError:  # deleted by another process meanwhile
                continue
            entries.append((st.st_mtime, st.st_size, p))
    total = sum(size for _, size, _ in entries)
    if total <= limit:
        return 0
    removed = 0
    for _, size, p in sorted(entries, key=lambda e: e[0]):
        if total <= limit * PRUNE_TO:
            break
        try:
            p.unlink()
        except OSError:
            continue
        total -= size
        removed += 1
    stats["evicted"] += removed
    return removed


def info() -> dict:
    """Where the cache is, how many entries and bytes it holds, and this process's counters."""
    files = [p for p in _files() if p.suffix == _SUFFIX]
    size = 0
    for p in files:
        try:
            size += p.stat().st_size
        except OSError:
            pass
    return {"dir": str(_entries_dir()), "enabled": enabled(), "entries": len(files), "bytes": size,
            "max_bytes": max_bytes(), **stats}


def clear() -> int:
    """Delete every cache entry (and stale temporary files); returns how many were removed.

    Only files this module writes are touched, never anything else in the folder."""
    removed = 0
    for p in _files():
        try:
            p.unlink()
            removed += 1
        except FileNotFoundError:
            pass
        except OSError as e:
            raise CacheError(f"cannot remove cache entry {p}: {e}",
                             hint="check the permissions of the cache folder") from None
    return removed
