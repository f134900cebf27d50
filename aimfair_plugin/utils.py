"""Helpers the package and its benchmarks share: device resolution, atomic file writes, loader workers."""

from ._device import autocast, resolve_device
from ._io import atomic_path, atomic_write
from .estimators._data import resolve_num_workers

__all__ = ["atomic_path", "atomic_write", "autocast", "resolve_device", "resolve_num_workers"]
