"""Colour real grey-scale images so that colour becomes a protected attribute.

Shared by the coloured MNIST and coloured Fashion-MNIST builders: a grey image
``g`` in [0, 1] becomes RGB ``g * stroke + (1 - g) * background`` where either
the background (default) or the stroke colour encodes ``s``.
"""

import numbers

import numpy as np
from sklearn.utils import Bunch, check_random_state

from .._resize import resize_images
from ._bias import CELLS, cell_shares, shares_to_counts

# s = 0 -> dark red, s = 1 -> dark blue backgrounds behind a white stroke; in
# "stroke" mode the stroke carries a bright red / blue on black.
BACKGROUND_COLORS = np.array([[0.55, 0.08, 0.08], [0.08, 0.12, 0.55]], dtype=np.float32)
STROKE_COLORS = np.array([[1.0, 0.25, 0.2], [0.25, 0.45, 1.0]], dtype=np.float32)
WHITE = np.ones(3, dtype=np.float32)
BLACK = np.zeros(3, dtype=np.float32)


def binarize_target(labels, target):
    """Binary target from class labels.

    ``target`` is an int threshold (labels >= target are class 1) or a
    collection of the labels that form class 1.

    Parameters
    ----------
    labels : array-like of int or str
        The class labels.
    target : int or collection
        An int threshold (labels >= target are class 1) or the labels that form class 1.

    Returns
    -------
    y : ndarray of int
        0/1, one per label.

    Raises
    ------
    ValueError
        When one class would be empty.

    Examples
    --------
    >>> import numpy as np
    >>> from aimfair_plugin.datasets import binarize_target
    >>> binarize_target(np.array([3, 7, 5]), 5).tolist()
    [0, 1, 1]
    """
    labels = np.asarray(labels)
    if isinstance(target, numbers.Integral):
        if not labels.min() < target <= labels.max():
            raise ValueError(
                f"target={target} leaves one class empty: labels range from {labels.min()} to {labels.max()}."
            )
        return (labels >= target).astype(int)
    try:
        positive = np.asarray(list(target))
    except TypeError:
        raise ValueError(f"target must be an int threshold or a collection of labels, got {target!r}.") from None
    unknown = np.setdiff1d(positive, labels)
    if positive.size == 0 or unknown.size or np.isin(labels, positive).all():
        raise ValueError(
            f"target={target!r} must name some but not all of the labels {np.unique(labels).tolist()}."
        )
    return np.isin(labels, positive).astype(int)


def colorize(gray, s, *, color_by="background"):
    """RGB float32 images ``(N, 3, H, W)`` from grey images ``(N, H, W)`` in [0, 1].

    Parameters
    ----------
    gray : ndarray of shape (N, H, W)
        Grey images in [0, 1] (white strokes on black).
    s : array-like of int, shape (N,)
        The protected attribute: 0 gives the red colour, 1 the blue (``BACKGROUND_COLORS``).
    color_by : {"background", "foreground"}, default="background"
        Whether the colour fills the background or the stroke.

    Returns
    -------
    X : ndarray of float32, shape (N, 3, H, W)

    Examples
    --------
    >>> import numpy as np
    >>> from aimfair_plugin.datasets import colorize
    >>> colorize(np.zeros((2, 28, 28), dtype='float32'), np.array([0, 1])).shape
    (2, 3, 28, 28)
    """
    s = np.asarray(s, dtype=int)
    if color_by == "background":
        stroke, background = np.broadcast_to(WHITE, (len(s), 3)), BACKGROUND_COLORS[s]
    elif color_by == "stroke":
        stroke, background = STROKE_COLORS[s], np.broadcast_to(BLACK, (len(s), 3))
    else:
        raise ValueError(f"color_by must be 'background' or 'stroke', got {color_by!r}.")
    g = gray[:, None, :, :]
    rgb = g * stroke[:, :, None, None] + (1.0 - g) * background[:, :, None, None]
    return rgb.astype(np.float32)


def resize_gray(gray, image_size):
    """Antialiased bilinear resize of ``(N, H, W)`` grey images to a square size.

    Parameters
    ----------
    gray : ndarray of shape (N, H, W)
    image_size : int
        The side of the square result.

    Returns
    -------
    resized : ndarray of float32, shape (N, image_size, image_size)

    Examples
    --------
    >>> import numpy as np
    >>> from aimfair_plugin.datasets import resize_gray
    >>> resize_gray(np.zeros((2, 28, 28), dtype='float32'), 32).shape
    (2, 32, 32)
    """
    if image_size == gray.shape[-1] and image_size == gray.shape[-2]:
        return gray
    if not isinstance(image_size, numbers.Integral) or image_size < 8:
        raise ValueError(f"image_size must be an int >= 8, got {image_size!r}.")
    return resize_images(gray[:, None], (image_size, image_size))[:, 0]


def draw_split(binary_target, available, counts, rng):
    """Pick images for each (y, s) cell from the available ones.

    Returns the chosen image indices and the protected value assigned to each;
    any image can be coloured either way, so only the class sizes constrain it.
    """
    indices, protected = [], []
    for cls in (0, 1):
        n0, n1 = counts[CELLS.index((cls, 0))], counts[CELLS.index((cls, 1))]
        pool = np.flatnonzero((binary_target == cls) & available)
        if len(pool) < n0 + n1:
            raise ValueError(
                f"Class y={cls} needs {n0 + n1} images but only {len(pool)} are available; "
                "lower n_train / n_test."
            )
        picked = rng.choice(pool, size=n0 + n1, replace=False)
        indices.append(picked)
        protected.append(np.repeat([0, 1], [n0, n1]))
    indices, protected = np.concatenate(indices), np.concatenate(protected)
    order = rng.permutation(len(indices))
    return indices[order], protected[order]


def build_colored_dataset(
    train_pool,
    test_pool,
    *,
    n_train,
    n_test,
    minority_share,
    bias_type,
    target,
    image_size,
    color_by,
    random_state,
    name,
):
    """Biased coloured training split and balanced coloured test split.

    ``train_pool`` and ``test_pool`` are ``(gray_images_uint8, labels)``; when
    both are the same object the two splits are drawn without overlap.
    ``source_index_train`` / ``source_index_test`` give each image's row in its pool.
    """
    rng = check_random_state(random_state)
    shares = cell_shares(minority_share, bias_type)
    for label, n in (("n_train", n_train), ("n_test", n_test)):
        if not isinstance(n, numbers.Integral) or n < 4:
            raise ValueError(f"{label} must be an int >= 4, got {n!r}.")
    shared_pool = train_pool is test_pool
    splits = {}
    taken = None
    for split, pool, n, split_shares in (
        ("test", test_pool, n_test, np.full(4, 0.25)),
        ("train", train_pool, n_train, shares),
    ):
        images, labels = pool
        binary = binarize_target(labels, target)
        available = np.ones(len(labels), dtype=bool)
        if shared_pool and taken is not None:
            available[taken] = False
        idx, s = draw_split(binary, available, shares_to_counts(split_shares, n), rng)
        taken = idx
        gray = resize_gray(images[idx].astype(np.float32) / 255.0, image_size)
        splits[split] = (colorize(gray, s, color_by=color_by), binary[idx], s, np.asarray(labels)[idx], idx)
    return Bunch(
        X_train=splits["train"][0],
        y_train=splits["train"][1],
        s_train=splits["train"][2],
        labels_train=splits["train"][3],
        X_test=splits["test"][0],
        y_test=splits["test"][1],
        s_test=splits["test"][2],
        labels_test=splits["test"][3],
        source_index_train=splits["train"][4],
        source_index_test=splits["test"][4],
        cell_shares=dict(zip(CELLS, shares)),
        target_names=["y=0", "y=1"],
        protected_names=["red", "blue"],
        DESCR=(
            f"Coloured {name}: target from labels {target!r}, protected attribute = {color_by} colour "
            f"(s=0 red, s=1 blue). Train: {n_train} images, bias_type={bias_type!r}, cell shares "
            f"{np.round(shares, 4).tolist()} for (y,s)={list(CELLS)}. Test: {n_test} images balanced "
            "over the four cells. Train and test share no source image."
        ),
    )
