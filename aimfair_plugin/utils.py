"""Helpers the package and its benchmarks share: device resolution, atomic file writes, loader workers, an
in-process cache."""

from ._device import autocast, resolve_device
from ._io import atomic_path, atomic_write
from .estimators._cache import ProcessCache
from .estimators._data import resolve_num_workers

__all__ = ["ProcessCache", "atomic_path", "atomic_write", "autocast", "resolve_device", "resolve_num_workers"]
