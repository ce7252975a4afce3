"""Fetching dataset files: try each mirror in turn with a short timeout, show progress,
check the md5, and write atomically (a partial download never looks like a real file)."""

from __future__ import annotations

import hashlib
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Sequence

from ..data.progress import Progress
from ..runtime.errors import DatasetError

# Offline machines must fail in seconds, not minutes.
TIMEOUT_S = 5.0


def md5_of(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch(filename: str, mirrors: Sequence[str], dest_dir: Path, md5: str | None,
          quiet: bool = False) -> Path:
    """Download filename from the first mirror that serves it with the right md5.
    Returns the path; raises DatasetError listing every mirror's failure otherwise."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    target = dest_dir / filename
    failures = []
    for mirror in mirrors:
        url = mirror.rstrip("/") + "/" + filename
        partial = target.with_name(target.name + ".part")
        try:
            _download(url, partial, filename, quiet)
            got = md5_of(partial)
            if md5 is not None and got != md5:
                failures.append(f"{url}: md5 {got} does not match the expected {md5}")
                continue
            os.replace(partial, target)
            return target
        except (urllib.error.URLError, OSError, ValueError) as e:
            reason = getattr(e, "reason", e)
            failures.append(f"{url}: {reason}")
        finally:
            if partial.exists():
                partial.unlink()
    raise DatasetError(f"could not download {filename}:\n    " + "\n    ".join(failures),
                       hint=f"without internet access, copy {filename} (md5 {md5}) into {dest_dir}")


def _download(url: str, dest: Path, label: str, quiet: bool) -> None:
    request = urllib.request.Request(url, headers={"User-Agent": "tracecc"})
    with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response, open(dest, "wb") as out:
        size = response.headers.get("Content-Length")
        with Progress(int(size) if size else None, desc=f"Downloading {label}", unit="B",
                      file=sys.stderr, disable=quiet) as bar:
            while True:
                block = response.read(1 << 16)
                if not block:
                    break
                out.write(block)
                bar.update(len(block))
