"""ImageFolderProvider: synthetic images someone generated elsewhere, in ``{root}/{y}_{s}/*.png``."""

import numbers
import os
from numbers import Integral
from pathlib import Path

import numpy as np
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval

from ..datasets import check_image_files
from ._base import SyntheticDataProvider, check_group_counts

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


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

    ``sample`` returns image **paths** (a 1-D array of ``str``), not pixels:
    the mitigator and every estimator decode them batch by batch at the size
    they train on (with :func:`aimfair_plugin.datasets.read_image`, the
    decoder real image paths go through), so memory does not grow with the
    number of images. ``read_images(X, image_size=...)`` turns them into an
    array where one is needed. Every returned file is checked to be a
    complete image (without decoding it) before ``sample`` returns.

    Parameters
    ----------
    root : str or Path
    image_size : int, default=224
        Side of the images when ``sample`` gets no ``image_shape`` (checked
        as a shape; the files are decoded at the consumer's size).
    replace : bool, default=False
        Draw with replacement when a cell holds fewer images than requested;
        False raises instead, naming the folder.
    extensions : tuple of str
        File suffixes counted as images.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from aimfair_plugin.datasets import write_images
    >>> from aimfair_plugin.synth import ImageFolderProvider
    >>> root = tempfile.mkdtemp()
    >>> for y in (0, 1):
    ...     for s in (0, 1):
    ...         _ = write_images(np.full((3, 3, 8, 8), 0.5, 'float32'), os.path.join(root, f'{y}_{s}'))
    ...
    >>> X, y, s = ImageFolderProvider(root, image_size=8).sample({(0, 0): 1, (0, 1): 1, (1, 0): 1, (1, 1): 1}, random_state=0)
    >>> len(X), y.tolist(), s.tolist()
    (4, [0, 0, 1, 1], [0, 1, 0, 1])
    """

    _parameter_constraints = {"root": [str, os.PathLike], "image_size": [Interval(Integral, 8, None, closed="left")],
                              "replace": ["boolean"], "extensions": [tuple, list, set, frozenset]}

    def __init__(self, root, *, image_size=224, replace=False, extensions=IMAGE_EXTENSIONS):
        self.root = root
        self.image_size = image_size
        self.replace = replace
        self.extensions = extensions

    def available_cells(self):
        """The cells with a ``{y}_{s}`` folder under ``root`` (an empty set when ``root`` does not exist)."""
        root = Path(self.root)
        cells = set()
        for folder in (root.iterdir() if root.is_dir() else ()):
            parts = folder.name.split("_")
            if folder.is_dir() and len(parts) == 2 and all(p.isdigit() for p in parts):
                cells.add((int(parts[0]), int(parts[1])))
        return cells

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
        check_group_counts(group_counts)  # a missing folder: cell_files says which and the layout
        check_image_shape(image_shape, self.image_size)  # refuses a non-RGB request
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
            paths += [str(files[i]) for i in chosen]
            ys += [cell[0]] * int(count)
            ss += [cell[1]] * int(count)
        check_image_files(dict.fromkeys(paths))  # each file once: raises naming a missing or truncated one
        return np.asarray(paths, dtype=str), np.asarray(ys, dtype=int), np.asarray(ss, dtype=int)
