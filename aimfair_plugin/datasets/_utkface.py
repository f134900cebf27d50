"""UTKFace from its file names ``[age]_[gender]_[race]_[date&time].jpg``."""

import re
import warnings
from pathlib import Path

import numpy as np
from sklearn.utils import Bunch

_NAME = re.compile(r"^(\d{1,3})_([01])_([0-4])_\d+.*\.(jpg|jpeg|png)$", re.IGNORECASE)
RACES = ("White", "Black", "Asian", "Indian", "Others")


def load_utkface(root):
    """UTKFace images as file paths; target Gender, protected White vs not.

    Parameters
    ----------
    root : str or Path
        Folder of UTKFace images (e.g. ``UTKFace/`` with the aligned and
        cropped ``*.jpg.chip.jpg`` files, or the in-the-wild ``*.jpg``).

    Returns
    -------
    data : sklearn.utils.Bunch
        ``X`` (str paths), ``y`` (gender: 0 male, 1 female), ``s`` (1 white,
        0 not), ``age``, ``race`` (0-4, see ``race_names``) and ``skipped``
        (file names that do not follow the naming scheme; a few such files
        exist in the official release and are left out with a warning).
        Use :func:`make_balanced_subset` with ``n=3200`` for the paper's
        balanced test set and :func:`make_biased_subset` with ``n=10000``
        for its biased training set.

    Examples
    --------
    >>> from aimfair_plugin.datasets import load_utkface
    >>> data = load_utkface('/data/UTKFace')  # doctest: +SKIP
    >>> sorted(set(data.y))  # doctest: +SKIP
    [0, 1]
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"Expected a folder of UTKFace images at {root}.")
    paths, fields, skipped = [], [], []
    for path in sorted(p for p in root.iterdir() if p.is_file()):
        match = _NAME.match(path.name)
        if match:
            paths.append(str(path))
            fields.append([int(match.group(i)) for i in (1, 2, 3)])
        else:
            skipped.append(path.name)
    if not paths:
        raise ValueError(
            f"No file in {root} is named like '[age]_[gender]_[race]_[date&time].jpg' (UTKFace naming)."
        )
    if skipped:
        warnings.warn(
            f"Skipped {len(skipped)} files in {root} that do not follow the UTKFace naming (first: {skipped[0]}).",
            UserWarning,
            stacklevel=2,
        )
    age, gender, race = np.array(fields).T
    return Bunch(
        X=np.array(paths),
        y=gender,
        s=(race == 0).astype(int),
        age=age,
        race=race,
        race_names=RACES,
        skipped=skipped,
        target_name="Gender (1 = female)",
        protected_name="White",
    )
