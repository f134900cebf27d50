"""Image inputs: validation of arrays and path lists, and the torch Dataset that loads them lazily."""

import multiprocessing
import numbers
import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from .._resize import resize_images
from ..datasets import read_image

_MSG_IMAGES = (
    "X must be a float array of images with shape (n_samples, channels, height, width) or a 1-D array "
    "of image file paths; got {}."
)


# Channel counts an image array may have on axis 1 (grey, RGB, RGBA).
_CHANNELS = (1, 3, 4)


def check_images(X, *, tabular=False):
    """Validate images; return ``(X, is_paths)``.

    Arrays must be channel-first ``(n, C, H, W)`` and are returned as float32
    in the value range the network trains on:

    - float arrays are taken as they are (the package's datasets and every
      synthetic-data provider give [0, 1]) and must be finite;
    - ``uint8`` arrays are 8-bit images and are divided by 255, so they match
      the [0, 1] images of files and providers;
    - other integer arrays are refused (their scale is ambiguous);
    - a 3-D ``(n, H, W)`` array (grey images without a channel axis) and a
      channel-last ``(n, H, W, C)`` array are refused with the transpose that
      fixes them, instead of being read with the wrong axes.

    Path arrays are returned as an object array of ``str``; nothing is read
    from disk here. With ``tabular=True`` X must instead be a 2-D numeric
    feature matrix.
    """
    X = np.asarray(X)
    if tabular:
        if X.ndim != 2 or X.dtype.kind not in "fiub":
            raise ValueError(f"A tabular model needs a 2-D numeric feature matrix, got dtype {X.dtype}, shape {X.shape}.")
        X = X.astype(np.float32)
        if not np.isfinite(X).all():
            raise ValueError("X contains NaN or infinite values.")
        return X, False
    if X.ndim == 1 and X.dtype.kind in "USO":
        if not all(isinstance(p, (str, np.str_)) for p in X):
            raise ValueError(_MSG_IMAGES.format("a 1-D array whose items are not all strings"))
        return X.astype(str), True
    if X.ndim == 3 and X.dtype.kind in "fiu":
        raise ValueError(
            f"X has shape {X.shape}: grey images without a channel axis. Add one with X[:, None] "
            "(shape (n, 1, H, W)), or repeat it to RGB with np.repeat(X[:, None], 3, axis=1)."
        )
    if X.ndim != 4 or X.dtype.kind not in "fiu":
        raise ValueError(_MSG_IMAGES.format(f"dtype {X.dtype}, shape {X.shape}"))
    if X.shape[1] not in _CHANNELS and X.shape[-1] in _CHANNELS:
        raise ValueError(
            f"X has shape {X.shape}, which looks channel-last (n, H, W, C); the networks read channel-first "
            "(n, C, H, W). Use X.transpose(0, 3, 1, 2)."
        )
    if X.dtype == np.uint8:
        return X.astype(np.float32) / 255.0, False
    if X.dtype.kind in "iu":
        raise ValueError(
            f"X has integer dtype {X.dtype}; give 8-bit images as uint8 (scaled to [0, 1]) or floats in [0, 1]."
        )
    X = X.astype(np.float32, copy=False)
    if not np.isfinite(X).all():
        raise ValueError("X contains NaN or infinite pixel values.")
    return X, False


@dataclass(frozen=True, eq=False)
class ImageInput:
    """Checked images and how to read them: what travels together from ``fit`` to every dataset built on it.

    ``X`` is a float32 array ``(n, C, H, W)`` (or a tabular ``(n, d)`` matrix) or a 1-D array of file paths;
    ``is_paths`` says which; ``size`` is the ``(height, width)`` images are decoded or resized to (None: as
    they are).
    """

    X: np.ndarray
    is_paths: bool
    size: tuple = None

    @classmethod
    def check(cls, X, size=None):
        """:func:`check_images` on ``X``, with ``size`` checked by :func:`check_image_size`."""
        X, is_paths = check_images(X)
        return cls(X, is_paths, check_image_size(size))

    def __len__(self):
        return len(self.X)

    def __getitem__(self, index):
        """The images at ``index`` (an index array or a slice), read the same way."""
        return ImageInput(self.X[index], self.is_paths, self.size)

    @property
    def shape(self):
        """``(C, H, W)`` of the images the network sees (``(d,)`` for a feature matrix)."""
        return image_shape(self.X, self.is_paths, self.size)

    def value_range(self):
        """``(min, max)`` of the pixel values; ``(0.0, 1.0)`` for files, which are always decoded to [0, 1]."""
        return value_range(self.X, self.is_paths)

    def dataset(self, y=None, **options):
        """An ``ImageDataset`` of these images (``options``: sample_weight, augment, extras)."""
        return ImageDataset(self.X, y, is_paths=self.is_paths, size=self.size, **options)


def value_range(X, is_paths):
    """``(min, max)`` of an image array; ``(0.0, 1.0)`` for paths, which are always decoded to [0, 1]."""
    if is_paths:
        return 0.0, 1.0
    return float(X.min()), float(X.max())


def check_image_size(image_size):
    if image_size is None:
        return None
    if isinstance(image_size, numbers.Integral) and image_size >= 8:
        return (int(image_size), int(image_size))
    if (
        isinstance(image_size, (tuple, list))
        and len(image_size) == 2
        and all(isinstance(v, numbers.Integral) and v >= 8 for v in image_size)
    ):
        return tuple(int(v) for v in image_size)
    raise ValueError(f"image_size must be None, an int >= 8 or a (height, width) pair, got {image_size!r}.")


def load_image(path, size=None):
    """One image file as a float32 tensor ``(3, H, W)`` in [0, 1], through the package's one decoder."""
    return torch.from_numpy(read_image(path, image_size=size))


def image_shape(X, is_paths, size):
    """``(C, H, W)`` of the images the network sees."""
    if is_paths:
        first = load_image(X[0], size)
        return tuple(first.shape)
    if X.ndim == 2:
        return (X.shape[1],)
    c, h, w = X.shape[1:]
    return (c, *(size or (h, w)))


def resolve_num_workers(num_workers, is_paths):
    """DataLoader workers: an int is taken as given; ``"auto"`` decodes files in ``min(4, cores - 1)`` worker
    processes (at least 1) and reads arrays in the main process (0), where workers would only copy them.

    Parameters
    ----------
    num_workers : int or "auto"
    is_paths : bool
        Whether the images are files.

    Returns
    -------
    num_workers : int

    Examples
    --------
    >>> from aimfair_plugin.utils import resolve_num_workers
    >>> resolve_num_workers('auto', is_paths=False)
    0
    """
    if num_workers != "auto":
        return int(num_workers)
    if not is_paths:
        return 0
    return max(1, min(4, (os.cpu_count() or 1) - 1))


def loader_options(num_workers, dataset, device, *, persistent=True):
    """``DataLoader`` keyword arguments for ``dataset``: workers (see :func:`resolve_num_workers`), pinned
    memory for CUDA, and workers kept alive across epochs unless the loader makes one pass
    (``persistent=False``)."""
    workers = resolve_num_workers(num_workers, getattr(dataset, "is_paths", False))
    options = {"num_workers": workers, "pin_memory": str(device).startswith("cuda")}
    if workers:
        options.update(persistent_workers=persistent, prefetch_factor=4)
        # Fork where the platform has it: the default context inside a joblib/loky worker (a benchmark job)
        # cannot start processes, and fork needs no pickling of the dataset.
        if "fork" in multiprocessing.get_all_start_methods():
            options["multiprocessing_context"] = "fork"
    return options


class WorkerInvariantLoader(DataLoader):
    """A ``DataLoader`` whose shuffling does not depend on ``num_workers``.

    A fresh loader iterator draws one number from torch's global generator (the workers' base seed); a
    persistent multi-process iterator is reused from the second epoch on and draws nothing, which would shift
    every later shuffle. This loader makes the same draw on reuse, so a seeded fit without augmentation gives
    the same model with 0 or N workers (augmentation itself runs in the workers, with their own seeds).
    """

    def __iter__(self):
        if self.persistent_workers and self.num_workers > 0 and self._iterator is not None:
            torch.empty((), dtype=torch.int64).random_(generator=self.generator)
        return super().__iter__()


def random_shift_flip(x, *, max_shift=0.125, flip=True):
    """Light augmentation: random translation (edge padding) and horizontal flip."""
    _, h, w = x.shape
    ph, pw = max(1, int(round(h * max_shift))), max(1, int(round(w * max_shift)))
    padded = F.pad(x[None], (pw, pw, ph, ph), mode="replicate")[0]
    top = int(torch.randint(0, 2 * ph + 1, ()))
    left = int(torch.randint(0, 2 * pw + 1, ()))
    x = padded[:, top : top + h, left : left + w]
    if flip and bool(torch.rand(()) < 0.5):
        x = x.flip(-1)
    return x


class ImageDataset(Dataset):
    """Images from an array or from file paths, with labels and optional per-sample values.

    Items are ``(x, y)``, or ``({"X": x, "sample_weight": w, **extras}, y)``
    when weights or extras are given: skorch passes the dict to the net, whose
    loss hook reads each sample's weight (and, for some baselines, its index
    or group) while ``infer`` gives the module only ``X``.
    """

    def __init__(self, X, y=None, *, sample_weight=None, is_paths=False, size=None, augment=False, extras=None):
        self.X, self.is_paths, self.size, self.augment = X, is_paths, size, augment
        self.y = np.zeros(len(X), dtype=np.int64) if y is None else np.asarray(y, dtype=np.int64)
        self.sample_weight = None if sample_weight is None else np.asarray(sample_weight, dtype=np.float32)
        self.extras = dict(extras or {})

    def __len__(self):
        return len(self.X)

    def __getitem__(self, i):
        if self.is_paths:
            x = load_image(self.X[i], self.size)
        else:
            x = torch.from_numpy(self.X[i])
            if self.size is not None:
                x = resize_images(x[None], self.size)[0]
        if self.augment:
            x = random_shift_flip(x)
        if self.sample_weight is None and not self.extras:
            return x, self.y[i]
        item = {"X": x, **{name: values[i] for name, values in self.extras.items()}}
        if self.sample_weight is not None:
            item["sample_weight"] = self.sample_weight[i]
        return item, self.y[i]
