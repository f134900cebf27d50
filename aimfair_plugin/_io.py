"""Atomic file writes: a reader (or a crashed writer) never sees a half-written file.

Everything the package writes that another process may read while it is written (caches, prompt files,
manifests, generated images, benchmark records) goes through :func:`atomic_write`: the content goes to a
temporary file in the same folder, which then replaces the target in one ``os.replace``.
"""

import os
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path):
    """Yield a temporary path next to ``path``; on success it replaces ``path``, on error it is removed."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write(path, data):
    """Write ``data`` (str as UTF-8, or bytes) to ``path`` atomically; returns the path."""
    with atomic_path(path) as tmp:
        if isinstance(data, bytes):
            tmp.write_bytes(data)
        else:
            tmp.write_text(data, encoding="utf-8")
    return Path(path)
