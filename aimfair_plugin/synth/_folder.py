"""ImageFolderProvider: synthetic images someone generated elsewhere, in ``{root}/{y}_{s}/*.png``."""

import numbers
import os
from numbers import Integral
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval

from .._resize import resize_images
from ._base import SyntheticDataProvider, check_group_counts

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
READ_CHUNK = 256  # images decoded at full size before one batched resize


def read_image(path):
    """Decode one image completely as float32 RGB ``(3, H, W)`` in [0, 1].

    Raises ``OSError`` for a missing, truncated or unreadable file (the whole
    file is decoded, so a cut-off PNG does not pass).
    """
    with Image.open(path) as img:
        img.load()
        arr = np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0
    return arr.transpose(2, 0, 1)


def read_images(paths, size):
    """Read image files into one float32 ``(N, 3, *size)`` array, resizing in chunks."""
    out = np.empty((len(paths), 3, *size), dtype=np.float32)
    for start in range(0, len(paths), READ_CHUNK):
        chunk = [read_image(p) for p in paths[start : start + READ_CHUNK]]
        same = all(a.shape == chunk[0].shape for a in chunk)
        if same:
            out[start : start + len(chunk)] = resize_images(np.stack(chunk), size)
        else:
            for i, arr in enumerate(chunk):
                out[start + i] = resize_images(arr[None], size)[0]
    return out


def check_image_shape(image_shape, image_size):
    """``(3, H, W)`` from a requested shape or the provider's default square size."""
    if image_shape is None:
        if not isinstance(image_size, numbers.Integral) or image_size < 8:
            raise ValueError(f"image_size must be an int >= 8, got {image_size!r}.")
        return (3, int(image_size), int(image_size))
    if len(image_shape) != 3 or image_shape[0] != 3 or min(image_shape[1:]) < 1:
        raise ValueError(f"Generated images are RGB; image_shape must be (3, H, W), got {image_shape!r}.")
    return tuple(int(v) for v in image_shape)


class ImageFolderProvider(SyntheticDataProvider):
    """Synthetic images from folders, one per (y, s) cell: ``{root}/{y}_{s}/*.png``.

    This is the layout of the upstream AIM-Fair code and of
    :class:`DiffusersProvider`'s cache, so images generated on another
    machine can be copied in and used directly.

    Parameters
    ----------
    root : str or Path
    image_size : int, default=224
        Side of the returned images when ``sample`` gets no ``image_shape``.
    replace : bool, default=False
        Draw with replacement when a cell holds fewer images than requested;
        False raises instead, naming the folder.
    extensions : tuple of str
        File suffixes counted as images.
    """

    _parameter_constraints = {"root": [str, os.PathLike], "image_size": [Interval(Integral, 8, None, closed="left")],
                              "replace": ["boolean"], "extensions": [tuple, list, set, frozenset]}

    def __init__(self, root, *, image_size=224, replace=False, extensions=IMAGE_EXTENSIONS):
        self.root = root
        self.image_size = image_size
        self.replace = replace
        self.extensions = extensions

    def cell_files(self, cell):
        """Sorted image paths of one cell's folder."""
        folder = Path(self.root) / f"{cell[0]}_{cell[1]}"
        if not folder.is_dir():
            raise ValueError(
                f"No folder {folder} for cell (y={cell[0]}, s={cell[1]}); ImageFolderProvider expects "
                f"{Path(self.root)}/{{y}}_{{s}}/*.png."
            )
        suffixes = {e.lower() for e in self.extensions}
        return sorted(p for p in folder.iterdir() if p.suffix.lower() in suffixes and p.is_file())

    def sample(self, group_counts, *, image_shape=None, random_state=None):
        self._validate_params()
        check_group_counts(group_counts)
        shape = check_image_shape(image_shape, self.image_size)
        rng = check_random_state(random_state)
        paths, ys, ss = [], [], []
        for cell, count in sorted(group_counts.items()):
            if not count:
                continue
            files = self.cell_files(cell)
            if len(files) < count and not self.replace:
                raise ValueError(
                    f"{Path(self.root) / f'{cell[0]}_{cell[1]}'} holds {len(files)} images, {count} requested; "
                    "generate more or pass replace=True."
                )
            if not files:
                raise ValueError(f"{Path(self.root) / f'{cell[0]}_{cell[1]}'} holds no image.")
            chosen = rng.choice(len(files), size=int(count), replace=len(files) < count)
            paths += [files[i] for i in chosen]
            ys += [cell[0]] * int(count)
            ss += [cell[1]] * int(count)
        try:
            X = read_images(paths, shape[1:])
        except OSError as exc:
            raise ValueError(f"Cannot read a synthetic image under {self.root}: {exc}") from exc
        return X, np.asarray(ys, dtype=int), np.asarray(ss, dtype=int)
