"""The one image decoder: files -> float32 RGB ``(3, H, W)`` in [0, 1], resized by the package's one resize.

Every file the package reads goes through :func:`read_image`: real images given as paths, the files of
:class:`~aimfair_plugin.synth.ImageFolderProvider` and of the diffusers cache. So the same PNG becomes the
same pixels whichever door it comes through, and ``clf.predict_proba(paths)`` equals
``clf.predict_proba(read_images(paths, image_size=clf.image_size))`` exactly.
"""

import numbers

import numpy as np
from PIL import Image

from .._resize import resize_images

# What a missing, truncated or corrupted image file raises while it is read.
UNREADABLE = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)


def _size_pair(image_size):
    if image_size is None:
        return None
    if isinstance(image_size, numbers.Integral) and not isinstance(image_size, bool) and image_size >= 1:
        return (int(image_size), int(image_size))
    if (isinstance(image_size, (tuple, list)) and len(image_size) == 2
            and all(isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= 1 for v in image_size)):
        return (int(image_size[0]), int(image_size[1]))
    raise ValueError(f"image_size must be None, a positive int or a (height, width) pair, got {image_size!r}.")


def read_image(path, *, image_size=None):
    """Decode one image file completely as float32 RGB ``(3, H, W)`` in [0, 1].

    The file is decoded with PIL (grey, palette and RGBA images become RGB), scaled from 8 bits to [0, 1],
    and resized to ``image_size`` (an int for a square, or ``(height, width)``) with the package's
    antialiased bilinear resize (:func:`aimfair_plugin.datasets.resize_images`, the same one arrays go
    through); ``None`` keeps the file's size.

    Raises
    ------
    ValueError
        Naming the file, when it is missing, truncated or not an image.

    Parameters
    ----------
    path : str or Path
    image_size : int or (int, int), optional

    Returns
    -------
    image : ndarray of float32, shape (3, H, W)

    Examples
    --------
    >>> import numpy as np, tempfile
    >>> from aimfair_plugin.datasets import read_image, write_images
    >>> path = write_images(np.zeros((1, 3, 8, 8), dtype='float32'), tempfile.mkdtemp())[0]
    >>> read_image(path).shape
    (3, 8, 8)
    """
    size = _size_pair(image_size)
    try:
        with Image.open(path) as img:
            img.load()
            arr = np.asarray(img.convert("RGB"), dtype=np.float32) / np.float32(255.0)
    except UNREADABLE as exc:
        raise ValueError(f"Cannot read image {path}: {exc}") from exc
    arr = np.ascontiguousarray(arr.transpose(2, 0, 1))
    return arr if size is None else resize_images(arr[None], size)[0]


def read_images(paths, *, image_size=None):
    """Decode image files into one float32 array ``(n, 3, H, W)`` in [0, 1] (see :func:`read_image`).

    With ``image_size=None`` every file must have the size of the first. Memory is that of the result: files
    are decoded one at a time into it.

    Parameters
    ----------
    paths : array-like of str or Path
    image_size : int or (int, int), optional
        The size every image is resized to; None keeps the first file's size.

    Returns
    -------
    X : ndarray of float32, shape (n, 3, H, W)

    Examples
    --------
    >>> import numpy as np, tempfile
    >>> from aimfair_plugin.datasets import read_images, write_images
    >>> paths = write_images(np.zeros((3, 3, 8, 8), dtype='float32'), tempfile.mkdtemp())
    >>> read_images(paths, image_size=4).shape
    (3, 3, 4, 4)
    """
    paths = list(paths)
    if not paths:
        size = _size_pair(image_size)
        return np.empty((0, 3, *(size or (0, 0))), dtype=np.float32)
    first = read_image(paths[0], image_size=image_size)
    out = np.empty((len(paths), *first.shape), dtype=np.float32)
    out[0] = first
    for i, path in enumerate(paths[1:], start=1):
        image = read_image(path, image_size=image_size)
        if image.shape != first.shape:
            raise ValueError(
                f"Image {path} decodes to shape {image.shape}, the first file to {first.shape}; pass image_size "
                "to resize them to one size."
            )
        out[i] = image
    return out


def check_image_files(paths):
    """Check that every file exists and is a complete image without decoding its pixels.

    PIL's ``verify`` reads the file's structure and checksums (about 0.1 ms for a 224 px PNG, a fifteenth of
    decoding it), which catches missing, truncated and corrupted files.

    Raises
    ------
    ValueError
        Naming the first file that fails.

    Parameters
    ----------
    paths : array-like of str or Path
        The image files.

    Returns
    -------
    None

    Examples
    --------
    >>> import numpy as np, tempfile
    >>> from aimfair_plugin.datasets import check_image_files, write_images
    >>> paths = write_images(np.zeros((2, 3, 8, 8), dtype='float32'), tempfile.mkdtemp())
    >>> check_image_files(paths)
    """
    for path in paths:
        try:
            with Image.open(path) as img:
                img.verify()
        except UNREADABLE as exc:
            raise ValueError(f"Cannot read image {path}: {exc}") from exc


def write_images(X, folder, *, start=0):
    """Write float images ``(n, C, H, W)`` in [0, 1] as 8-bit PNG files ``{folder}/{start + i:05d}.png``.

    Each file is written atomically (an interruption leaves no partial file); values are clipped to [0, 1]
    and rounded, so :func:`read_image` gives back the pixels to within 1/255. Returns the paths as an array of
    ``str``, the form every estimator and provider takes image files in.

    Parameters
    ----------
    X : ndarray of shape (n, C, H, W)
        Float images in [0, 1] (C = 1 or 3).
    folder : str or Path
        Created when missing.
    start : int, default=0
        Index of the first file name.

    Returns
    -------
    paths : ndarray of str, shape (n,)

    Examples
    --------
    >>> import numpy as np, tempfile
    >>> from aimfair_plugin.datasets import read_images, write_images
    >>> paths = write_images(np.full((2, 3, 8, 8), 0.5, dtype='float32'), tempfile.mkdtemp())
    >>> read_images(paths).shape
    (2, 3, 8, 8)
    """
    from pathlib import Path

    from .._io import atomic_path

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, image in enumerate(np.asarray(X), start):
        path = folder / f"{i:05d}.png"
        with atomic_path(path) as tmp:
            pixels = (np.clip(image, 0, 1).transpose(1, 2, 0) * 255).round().astype(np.uint8)
            Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels).save(tmp, format="PNG")
        paths.append(str(path))
    return np.array(paths)
