"""Reuse of pre-trained models (and their real-data gradients) across fits on the same data.

``GridSearchCV`` over ``top_k`` clones the mitigator for every candidate; all
candidates of one fold pre-train the same model on the same data. The cache
key is a fingerprint of the training data plus every pre-training parameter,
so a hit returns exactly what a new pre-training would compute (on the CPU,
where training is deterministic for a fixed seed).
"""

import copy
import hashlib
import os
import pickle
from collections import OrderedDict
from pathlib import Path

import numpy as np

from .._io import atomic_write


def fingerprint(*parts):
    """Stable hex digest of arrays, strings and plain Python values."""
    digest = hashlib.sha1()
    for part in parts:
        if isinstance(part, np.ndarray):
            arr = np.ascontiguousarray(part)
            digest.update(f"{arr.dtype}{arr.shape}".encode())
            digest.update(arr.tobytes() if arr.dtype.kind != "O" else repr(arr.tolist()).encode())
        else:
            digest.update(repr(part).encode())
        digest.update(b"\x00")
    return digest.hexdigest()


def pretraining_fingerprint(estimator, X, y):
    """Cache key of ``estimator.fit(X, y)``: the data plus every constructor parameter.

    Shared by :class:`SelectiveFinetuneMitigator` and the benchmark runner, so
    a benchmark's ERM run and every fine-tuning run of the same seed reuse one
    pre-trained model.
    """
    return fingerprint("pretrain", X, y, sorted(estimator.get_params().items()))


class ProcessCache:
    """In-process least-recently-used cache holding deep copies."""

    def __init__(self, max_entries=8):
        self.max_entries = max_entries
        self._items = OrderedDict()

    def get(self, key):
        if key not in self._items:
            return None
        self._items.move_to_end(key)
        return copy.deepcopy(self._items[key])

    def put(self, key, value):
        self._items[key] = copy.deepcopy(value)
        self._items.move_to_end(key)
        while len(self._items) > self.max_entries:
            self._items.popitem(last=False)

    def clear(self):
        self._items.clear()


class DiskCache:
    """Pickle files in a folder, written atomically (temp file + rename); shared across processes."""

    def __init__(self, location):
        self.location = Path(location)

    def get(self, key):
        path = self.location / f"{key}.pkl"
        if not path.is_file():
            return None
        with open(path, "rb") as fh:
            return pickle.load(fh)

    def put(self, key, value):
        self.location.mkdir(parents=True, exist_ok=True)
        atomic_write(self.location / f"{key}.pkl", pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))


PROCESS_CACHE = ProcessCache()


def resolve_cache(memory):
    """``"process"`` -> the shared in-process cache, a path -> a folder cache, None -> no caching."""
    if memory is None:
        return None
    if isinstance(memory, str) and memory == "process":
        return PROCESS_CACHE
    if isinstance(memory, (str, os.PathLike)):
        return DiskCache(memory)
    location = getattr(memory, "location", None)  # a joblib.Memory
    if location is not None:
        return DiskCache(location)
    raise ValueError(f"memory must be 'process', None, a folder path or a joblib.Memory, got {memory!r}.")


def cached(cache, key, compute):
    """Return ``(value, hit)``: the cached value under ``key``, or ``compute()`` stored under it."""
    if cache is None:
        return compute(), False
    value = cache.get(key)
    if value is not None:
        return value, True
    value = compute()
    cache.put(key, value)
    return value, False
