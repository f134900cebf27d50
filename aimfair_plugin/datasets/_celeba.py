"""CelebA from its official on-disk layout (images are returned as paths, loaded lazily)."""

from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.utils import Bunch

SPLITS = {"train": 0, "valid": 1, "test": 2}


def _read_attributes(path):
    if not path.is_file():
        raise FileNotFoundError(f"Expected the CelebA attribute file {path} (official list_attr_celeba.txt).")
    with open(path) as fh:
        header = fh.readline().strip()
        names = fh.readline().split()
        rows = [line.split() for line in fh if line.strip()]
    if not header.isdigit() or not names:
        raise ValueError(
            f"{path}: expected a count on line 1 and the attribute names on line 2 (official CelebA format)."
        )
    bad = [r[0] for r in rows if len(r) != len(names) + 1]
    if bad:
        raise ValueError(
            f"{path}: {len(bad)} rows do not have a file name plus {len(names)} values (first: {bad[0]})."
        )
    table = pd.DataFrame([r[1:] for r in rows], index=[r[0] for r in rows], columns=names).astype(int)
    if not table.isin([-1, 1]).all().all():
        raise ValueError(f"{path}: attribute values must be -1 or 1.")
    if len(table) != int(header):
        raise ValueError(f"{path}: line 1 announces {header} images but {len(table)} rows follow.")
    return (table == 1).astype(int)


def _read_partition(path):
    if not path.is_file():
        raise FileNotFoundError(f"Expected the CelebA partition file {path} (official list_eval_partition.txt).")
    part = pd.read_csv(path, sep=r"\s+", header=None, names=["file", "partition"], index_col=0)
    if not part["partition"].isin(SPLITS.values()).all():
        raise ValueError(f"{path}: partitions must be 0 (train), 1 (valid) or 2 (test).")
    return part["partition"]


def load_celeba(root, *, target="Smiling", protected="Male", split="train"):
    """CelebA images as file paths, with a binary target and protected attribute.

    Parameters
    ----------
    root : str or Path
        Folder holding ``img_align_celeba/``, ``list_attr_celeba.txt`` and
        ``list_eval_partition.txt`` (the official layout).
    target, protected : str
        Names of two of the 40 CelebA attributes (e.g. ``"Smiling"``,
        ``"Male"``, ``"Young"``); value 1 means the attribute is present.
    split : {"train", "valid", "test", "all"}, default="train"

    Returns
    -------
    data : sklearn.utils.Bunch
        ``X`` (ndarray of str paths), ``y``, ``s`` (int 0/1), ``filenames``
        and ``attributes`` (DataFrame of all 40 attributes as 0/1).
        Combine with :func:`make_biased_subset` for the paper's 20,000-image
        biased training subset.

    Examples
    --------
    >>> from aimfair_plugin.datasets import load_celeba
    >>> data = load_celeba('/data/celeba', target='Smiling', protected='Male')  # doctest: +SKIP
    >>> data.X[0]  # image paths, decoded lazily by the estimators  # doctest: +SKIP
    '/data/celeba/img_align_celeba/000001.jpg'
    """
    root = Path(root)
    if split not in (*SPLITS, "all"):
        raise ValueError(f"split must be one of {[*SPLITS, 'all']}, got {split!r}.")
    image_dir = root / "img_align_celeba"
    if not image_dir.is_dir():
        raise FileNotFoundError(f"Expected the CelebA image folder {image_dir}.")
    attributes = _read_attributes(root / "list_attr_celeba.txt")
    for role, name in (("target", target), ("protected", protected)):
        if name not in attributes.columns:
            raise ValueError(f"Unknown {role} attribute {name!r}; CelebA has {list(attributes.columns)}.")
    if target == protected:
        raise ValueError(f"target and protected must differ, both are {target!r}.")
    partition = _read_partition(root / "list_eval_partition.txt")
    missing = attributes.index.difference(partition.index)
    if len(missing):
        raise ValueError(f"{len(missing)} images of list_attr_celeba.txt have no partition (first: {missing[0]}).")
    if split != "all":
        attributes = attributes[partition.loc[attributes.index].to_numpy() == SPLITS[split]]
    present = {p.name for p in image_dir.iterdir()}
    absent = [f for f in attributes.index if f not in present]
    if absent:
        raise FileNotFoundError(f"{len(absent)} listed images are missing from {image_dir} (first: {absent[0]}).")
    filenames = attributes.index.to_numpy(dtype=str)
    return Bunch(
        X=np.array([str(image_dir / f) for f in filenames]),
        y=attributes[target].to_numpy(),
        s=attributes[protected].to_numpy(),
        filenames=filenames,
        attributes=attributes.reset_index(drop=True),
        target_name=target,
        protected_name=protected,
    )
