"""Fashion-MNIST from its IDX files, and a coloured, biased variant for scale runs."""

import gzip
from pathlib import Path

import numpy as np
from sklearn.utils import Bunch

from ._colored import build_colored_dataset

DEFAULT_FASHION_MNIST_PATH = Path("/usr/share/datasets/fashion-mnist")
_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def _open(path):
    for candidate in (path.with_name(path.name + ".gz"), path):
        if candidate.is_file():
            return gzip.open(candidate, "rb") if candidate.suffix == ".gz" else open(candidate, "rb")
    raise FileNotFoundError(
        f"Expected the Fashion-MNIST IDX file {path.name}(.gz) in {path.parent}. On Debian/Ubuntu: "
        "`apt-get install dataset-fashion-mnist`, or pass path= to the folder holding the four IDX files."
    )


def read_idx(path):
    """Read an IDX file (optionally gzipped) into a numpy array."""
    with _open(Path(path)) as fh:
        raw = fh.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError(f"{path} is not an unsigned-byte IDX file (bad magic number).")
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    offset = 4 + 4 * ndim
    expected = int(np.prod(shape))
    if len(raw) - offset != expected:
        raise ValueError(f"{path} is truncated: header says {expected} bytes of data, found {len(raw) - offset}.")
    return np.frombuffer(raw, dtype=np.uint8, offset=offset).reshape(shape)


def load_fashion_mnist(path=None):
    """Fashion-MNIST (60,000 train + 10,000 test grey 28x28 images).

    Parameters
    ----------
    path : str or Path, optional
        Folder with ``{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]``;
        default: the Debian ``dataset-fashion-mnist`` location.

    Returns
    -------
    data : sklearn.utils.Bunch
        ``images_train`` (uint8, (60000, 28, 28)), ``labels_train``,
        ``images_test``, ``labels_test``.

    Examples
    --------
    >>> from aimfair_plugin.datasets import load_fashion_mnist
    >>> data = load_fashion_mnist()  # Debian's dataset-fashion-mnist  # doctest: +SKIP
    """
    folder = Path(path) if path is not None else DEFAULT_FASHION_MNIST_PATH
    out = {}
    for split, (images_name, labels_name) in _FILES.items():
        images = read_idx(folder / images_name)
        labels = read_idx(folder / labels_name).astype(int)
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise ValueError(
                f"Fashion-MNIST {split} split in {folder}: expected images (N, 28, 28) and N labels, "
                f"got {images.shape} and {labels.shape}."
            )
        out[f"images_{split}"], out[f"labels_{split}"] = images, labels
    return Bunch(**out)


def make_colored_fashion_mnist(
    *,
    path=None,
    n_train=60000,
    n_test=10000,
    minority_share=0.1,
    bias_type="correlation",
    target=5,
    image_size=28,
    color_by="background",
    random_state=None,
):
    """Coloured, biased Fashion-MNIST built like :func:`make_colored_mnist`.

    Training images come from the official training split, test images from
    the official test split (balanced over the four (y, s) cells). With the
    default ``target=5`` class 1 is {sandal, shirt, sneaker, bag, ankle boot}.
    Parameters are those of :func:`make_colored_mnist` plus ``path`` (see
    :func:`load_fashion_mnist`).

    Parameters
    ----------
    path : str or Path, optional
        Folder of the IDX files (see :func:`load_fashion_mnist`).
    n_train, n_test : int, default=60000, 10000
        Sizes of the biased training split and of the balanced test split.
    minority_share : float, default=0.1
        Share of the rare colour within each class (see :func:`make_colored_mnist`).
    bias_type : {"correlation", "group_size", "class_size"}, default="correlation"
    target : int, default=5
        Fashion-MNIST classes >= ``target`` are class 1.
    image_size : int, default=28
    color_by : {"background", "foreground"}, default="background"
    random_state : int, RandomState or None

    Returns
    -------
    data : sklearn.utils.Bunch
        As :func:`make_colored_mnist`'s.

    Examples
    --------
    >>> from aimfair_plugin.datasets import make_colored_fashion_mnist
    >>> data = make_colored_fashion_mnist(n_train=5000, minority_share=0.04, random_state=0)  # doctest: +SKIP
    >>> data.X_train.shape  # doctest: +SKIP
    (5000, 3, 28, 28)
    """
    data = load_fashion_mnist(path)
    return build_colored_dataset(
        (data.images_train, data.labels_train),
        (data.images_test, data.labels_test),
        n_train=n_train,
        n_test=n_test,
        minority_share=minority_share,
        bias_type=bias_type,
        target=target,
        image_size=image_size,
        color_by=color_by,
        random_state=random_state,
        name="Fashion-MNIST",
    )
