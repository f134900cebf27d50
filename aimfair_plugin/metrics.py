"""Fairness metrics of the AIM-Fair, FairIF and FADM papers, built on fairlearn's ``MetricFrame``.

All metrics are for a binary target ``y`` and a binary protected attribute
``s``. The (y, s) cell accuracies are ``MetricFrame(accuracy_score)`` grouped
by both columns; the group differences are fairlearn's own metrics.
"""

import warnings

import numpy as np
import pandas as pd
import sklearn
from fairlearn.metrics import MetricFrame, false_positive_rate, selection_rate, true_positive_rate
from sklearn.metrics import accuracy_score, make_scorer

from .datasets import CELLS

REPORT_METRICS = ("ACC", "WST", "EO", "STD", "AD", "AOD", "EOD", "DP_ratio", "EOp_ratio")
HIGHER_IS_BETTER = {"ACC": True, "WST": True, "EO": False, "STD": False, "AD": False, "AOD": False,
                    "EOD": False, "DP_ratio": True, "EOp_ratio": True}
# Metrics that need every (y, s) cell to be present in y_true.
_CELL_METRICS = ("WST", "EO", "STD", "AOD", "EOD", "EOp_ratio")

_MSG_LENGTH = "y_true, y_pred and sensitive_features must have the same length, got {}."
_MSG_BINARY = "{} must hold only the values 0 and 1 (binary task), got {}."
_MSG_EMPTY = (
    "The (y, s) cells {} are empty in y_true: {} are undefined and reported as NaN. "
    "Evaluate on data with all four cells (e.g. a balanced test set)."
)


def _as_binary(name, values):
    arr = np.asarray(values)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}.")
    if arr.dtype.kind == "f" and np.isnan(arr).any():
        raise ValueError(f"{name} contains NaN.")
    if not np.isin(arr, (0, 1)).all():
        raise ValueError(_MSG_BINARY.format(name, np.unique(arr)[:10].tolist()))
    return arr.astype(int)


def _validate(y_true, y_pred, sensitive_features):
    """One shared validator: equal lengths, binary y, y_pred and sensitive features."""
    lengths = [len(np.asarray(v)) for v in (y_true, y_pred, sensitive_features)]
    if len(set(lengths)) != 1:
        raise ValueError(_MSG_LENGTH.format(lengths))
    if lengths[0] == 0:
        raise ValueError("Cannot compute fairness metrics on empty inputs.")
    return (
        _as_binary("y_true", y_true),
        _as_binary("y_pred", y_pred),
        _as_binary("sensitive_features", sensitive_features),
    )


def _cell_frame(y_true, y_pred, s):
    return MetricFrame(
        metrics=accuracy_score,
        y_true=y_true,
        y_pred=y_pred,
        sensitive_features=pd.DataFrame({"y": y_true, "s": s}),
    )


def group_accuracy_table(y_true, y_pred, *, sensitive_features):
    """Accuracy of each (target, protected) cell in the paper's 2x2 layout.

    Parameters
    ----------
    y_true, y_pred : array-like of shape (n_samples,), binary 0/1
    sensitive_features : array-like of shape (n_samples,), binary 0/1

    Returns
    -------
    table : pandas.DataFrame
        Rows ``y`` = 0, 1 (target), columns ``s`` = 0, 1 (protected), values in
        percent; an empty cell is NaN.

    Examples
    --------
    >>> from aimfair_plugin.metrics import group_accuracy_table
    >>> group_accuracy_table([0, 0, 1, 1], [0, 1, 1, 1], sensitive_features=[0, 1, 0, 1])
    s      0      1
    y
    0  100.0    0.0
    1  100.0  100.0
    """
    y_true, y_pred, s = _validate(y_true, y_pred, sensitive_features)
    by_cell = _cell_frame(y_true, y_pred, s).by_group.reindex(pd.MultiIndex.from_tuples(CELLS, names=["y", "s"]))
    return 100.0 * by_cell.unstack("s")


def fairness_report(y_true, y_pred, *, sensitive_features, agg="max"):
    """Utility and fairness of binary predictions, as in the AIM-Fair tables.

    Parameters
    ----------
    y_true, y_pred : array-like of shape (n_samples,), binary 0/1
    sensitive_features : array-like of shape (n_samples,), binary 0/1
        The protected attribute; it never needs to be seen at training time.
    agg : {"max", "mean"}, default="max"
        How ``EO`` combines the true-positive-rate gap and the false-positive-
        rate gap: ``"max"`` is fairlearn's ``equalized_odds_difference``;
        ``"mean"`` is the averaged sum of Eq. (9) in the AIM-Fair paper.

    Returns
    -------
    report : pandas.Series
        In percent:

        - ``ACC`` overall accuracy;
        - ``WST`` worst (y, s)-cell accuracy (Eq. 10);
        - ``EO`` equalized odds difference (see ``agg``);
        - ``STD`` population standard deviation (ddof=0) of the four cell
          accuracies (Eq. 11);
        - ``AD`` accuracy difference between the protected groups (FairIF Eq. 3);
        - ``AOD`` average odds difference, mean of the TPR and TNR gaps (FairIF Eq. 4);
        - ``EOD`` equal opportunity difference, the TPR gap (FairIF Eq. 5).

        As fractions in [0, 1] (FADM Eqs. 12-13):

        - ``DP_ratio`` min/max of the groups' positive-prediction rates;
        - ``EOp_ratio`` min/max of the groups' true-positive rates.

        When a (y, s) cell is empty in ``y_true`` the metrics that need it
        (WST, EO, STD, AOD, EOD, EOp_ratio) are NaN and a ``UserWarning``
        says which cells are missing.

    Examples
    --------
    >>> from aimfair_plugin.metrics import fairness_report
    >>> float(fairness_report([0, 0, 1, 1], [0, 1, 1, 1], sensitive_features=[0, 1, 0, 1])["WST"])
    0.0
    """
    if agg not in ("max", "mean"):
        raise ValueError(f"agg must be 'max' or 'mean', got {agg!r}.")
    y_true, y_pred, s = _validate(y_true, y_pred, sensitive_features)
    # MetricFrame lists empty cells of the (y, s) product as NaN; reindex for cells absent altogether.
    cells = _cell_frame(y_true, y_pred, s).by_group.reindex(pd.MultiIndex.from_tuples(CELLS))
    missing = [cell for cell, value in cells.items() if np.isnan(value)]
    report = pd.Series(np.nan, index=list(REPORT_METRICS), dtype=float, name="fairness_report")
    report["ACC"] = 100.0 * accuracy_score(y_true, y_pred)
    # One MetricFrame by group for every group difference and ratio (fairlearn's equalized_odds_difference,
    # equal_opportunity_difference/ratio and demographic_parity_ratio each build the same frame for one metric:
    # their values are this frame's differences and ratios).
    by_group = None
    if len(np.unique(s)) == 2:
        by_group = MetricFrame(metrics={"acc": accuracy_score, "sel": selection_rate, "tpr": true_positive_rate,
                                        "fpr": false_positive_rate},
                               y_true=y_true, y_pred=y_pred, sensitive_features=s)
        difference, ratio = by_group.difference(), by_group.ratio()
        report["AD"] = 100.0 * difference["acc"]
        report["DP_ratio"] = ratio["sel"]
    if missing:
        warnings.warn(_MSG_EMPTY.format(missing, ", ".join(_CELL_METRICS)), UserWarning, stacklevel=2)
        return report
    report["WST"] = 100.0 * worst_group_accuracy(y_true, y_pred, np.column_stack([y_true, s]), cells=CELLS)
    report["STD"] = 100.0 * np.std(cells.to_numpy(), ddof=0)
    odds = difference[["tpr", "fpr"]]
    report["EO"] = 100.0 * (max(odds) if agg == "max" else odds.mean())
    report["AOD"] = 100.0 * odds.mean()
    report["EOD"] = 100.0 * difference["tpr"]
    report["EOp_ratio"] = ratio["tpr"]
    return report


def worst_group_accuracy(y_true, y_pred, groups, *, cells=None):
    """The lowest accuracy over groups of examples: the package's one worst-group rule.

    Every worst-group number in the package is this function: ``WST`` of :func:`fairness_report` (groups are the
    (y, s) cells), the mitigator's held-out candidate scores and the benchmark's per-epoch validation scores.

    Parameters
    ----------
    y_true, y_pred : array-like of shape (n_samples,)
    groups : array-like of shape (n_samples,) or (n_samples, n_columns)
        The group of each example; with several columns a group is one combination of their values (an
        intersection, as ``MetricFrame`` groups several sensitive features).
    cells : iterable, optional
        The groups that must be present: when one of them has no example the result is NaN (the rule for an
        empty group: a worst case that cannot be computed is not replaced by the worst of the others). Without
        ``cells`` the groups are the values ``groups`` holds, none of which can be empty.

    Returns
    -------
    accuracy : float
        In [0, 1], or NaN (an empty group of ``cells``, or no examples at all).

    Examples
    --------
    >>> from aimfair_plugin.metrics import worst_group_accuracy
    >>> worst_group_accuracy([0, 0, 1, 1], [0, 1, 1, 1], [0, 1, 0, 1])
    0.5
    >>> worst_group_accuracy([0, 1], [0, 1], [[0, 0], [1, 0]], cells=[(0, 0), (0, 1), (1, 0), (1, 1)])
    nan
    """
    accuracies = group_accuracies(y_true, y_pred, groups)
    if not accuracies:
        return float("nan")
    if cells is not None and any((tuple(c) if isinstance(c, (list, tuple)) else c) not in accuracies for c in cells):
        return float("nan")
    return float(min(accuracies.values()))


def group_accuracies(y_true, y_pred, groups):
    """The accuracy of each group present, ``{group: accuracy}`` (a group of several columns is a tuple).

    Parameters
    ----------
    y_true, y_pred : array-like of shape (n_samples,)
    groups : array-like of shape (n_samples,) or (n_samples, n_columns)

    Returns
    -------
    accuracies : dict

    Examples
    --------
    >>> from aimfair_plugin.metrics import group_accuracies
    >>> group_accuracies([0, 0, 1, 1], [0, 1, 1, 1], ['a', 'a', 'b', 'b'])
    {'a': 0.5, 'b': 1.0}
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    groups = np.asarray(groups)
    keys = groups.tolist() if groups.ndim == 1 else [tuple(row) for row in groups.tolist()]
    if not (len(y_true) == len(y_pred) == len(keys)):
        raise ValueError(_MSG_LENGTH.format([len(y_true), len(y_pred), len(keys)]))
    codes, index = {}, np.empty(len(keys), dtype=np.intp)
    for i, key in enumerate(keys):
        index[i] = codes.setdefault(key, len(codes))
    correct = np.bincount(index, weights=(y_true == y_pred), minlength=len(codes))
    sizes = np.bincount(index, minlength=len(codes))
    return {key: float(correct[code] / sizes[code]) for key, code in codes.items()}


def _report_metric(y_true, y_pred, *, sensitive_features, metric, agg):
    with warnings.catch_warnings():
        # A CV fold without some cell scores NaN; GridSearchCV reports that itself.
        warnings.simplefilter("ignore", UserWarning)
        return fairness_report(y_true, y_pred, sensitive_features=sensitive_features, agg=agg)[metric]


def fairness_scorer(metric="WST", *, agg="max"):
    """A scikit-learn scorer for one :func:`fairness_report` metric.

    The scorer needs the protected attribute, which reaches it through
    scikit-learn metadata routing, never through ``fit``. Turn routing on
    once with ``sklearn.set_config(enable_metadata_routing=True)`` and pass
    ``sensitive_features=s`` to ``GridSearchCV.fit`` (or ``cross_validate``
    ``params=``): the scorer requests it, estimators do not.

    Parameters
    ----------
    metric : str, default="WST"
        One of ``ACC, WST, EO, STD, AD, AOD, EOD, DP_ratio, EOp_ratio``.
        Metrics where lower is better are negated, following scikit-learn's
        "greater is better" convention for scorers.
    agg : {"max", "mean"}, default="max"
        Passed to :func:`fairness_report` (affects ``EO``).

    Returns
    -------
    scorer : callable ``scorer(estimator, X, y, *, sensitive_features)``

    Examples
    --------
    >>> import sklearn
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn.model_selection import GridSearchCV
    >>> from aimfair_plugin.metrics import fairness_scorer
    >>> sklearn.set_config(enable_metadata_routing=True)  # doctest: +SKIP
    >>> search = GridSearchCV(LogisticRegression(), {"C": [0.1, 1.0]},
    ...                       scoring=fairness_scorer("WST"))  # doctest: +SKIP
    >>> search.fit(X, y, sensitive_features=s)  # doctest: +SKIP
    """
    if metric not in REPORT_METRICS:
        raise ValueError(f"metric must be one of {REPORT_METRICS}, got {metric!r}.")
    if agg not in ("max", "mean"):
        raise ValueError(f"agg must be 'max' or 'mean', got {agg!r}.")
    scorer = make_scorer(
        _report_metric, greater_is_better=HIGHER_IS_BETTER[metric], metric=metric, agg=agg
    )
    # Requests can only be recorded while routing is on; the request stays on the
    # scorer, so building it does not depend on the caller's global config.
    with sklearn.config_context(enable_metadata_routing=True):
        return scorer.set_score_request(sensitive_features=True)
