"""Atomic file writes: a reader (or a crashed writer) never sees a half-written file.

Everything the package writes that another process may read while it is written (caches, prompt files,
manifests, generated images, benchmark records) goes through :func:`atomic_write`: the content goes to a
temporary file in the same folder, which then replaces the target in one ``os.replace``. The temporary file is
made by ``tempfile.mkstemp``, so its name is unique to the call: two threads or processes writing the same
target never share one (the last ``os.replace`` wins, and each reader sees one whole file).
"""

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path):
    """Yield a temporary path next to ``path``; on success it replaces ``path``, on error it is removed.

    Parameters
    ----------
    path : str or Path
        The file to write.

    Yields
    ------
    tmp : Path
        Write here; it is renamed to ``path`` when the block succeeds.

    Examples
    --------
    >>> import tempfile, os
    >>> from aimfair_plugin.utils import atomic_path
    >>> path = os.path.join(tempfile.mkdtemp(), 'out.txt')
    >>> with atomic_path(path) as tmp:
    ...     _ = open(tmp, 'w').write('done')
    ...
    >>> open(path).read()
    'done'
    """
    path = Path(path)
    handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    tmp = Path(name)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write(path, data):
    """Write ``data`` (str as UTF-8, or bytes) to ``path`` atomically; returns the path.

    Parameters
    ----------
    path : str or Path
    data : str or bytes

    Returns
    -------
    path : Path

    Examples
    --------
    >>> import tempfile, os
    >>> from aimfair_plugin.utils import atomic_write
    >>> path = os.path.join(tempfile.mkdtemp(), 'out.txt')
    >>> _ = atomic_write(path, b'done')
    >>> open(path).read()
    'done'
    """
    with atomic_path(path) as tmp:
        if isinstance(data, bytes):
            tmp.write_bytes(data)
        else:
            tmp.write_text(data, encoding="utf-8")
    return Path(path)
