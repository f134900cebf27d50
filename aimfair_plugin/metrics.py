"""Fairness metrics of the AIM-Fair, FairIF and FADM papers, built on fairlearn's ``MetricFrame``.

The papers' metrics are for a binary target ``y`` and a binary protected attribute ``s``; every function here
also takes a target with more classes and a protected attribute with more values, or several attributes at
once (their intersections, as ``MetricFrame`` groups several sensitive features). The (class, group) cell
accuracies are ``MetricFrame(accuracy_score)`` grouped by both; the group differences are fairlearn's
``difference`` and ``ratio`` of per-group rates. With a binary target the rates are of its positive class (the
larger label, 1 for 0/1 labels); with more classes each rate-based metric is computed one-vs-rest for every
class and averaged over the classes (macro average). Binary 0/1 inputs give exactly the papers' numbers.
"""

import warnings

import numpy as np
import pandas as pd
import sklearn
from fairlearn.metrics import MetricFrame, false_positive_rate, selection_rate, true_positive_rate
from sklearn.metrics import accuracy_score, make_scorer

REPORT_METRICS = ("ACC", "WST", "EO", "STD", "AD", "AOD", "EOD", "DP_ratio", "EOp_ratio")
HIGHER_IS_BETTER = {"ACC": True, "WST": True, "EO": False, "STD": False, "AD": False, "AOD": False,
                    "EOD": False, "DP_ratio": True, "EOp_ratio": True}
# Metrics that need every (class, group) cell to be present in y_true.
_CELL_METRICS = ("WST", "EO", "STD", "AOD", "EOD", "EOp_ratio")
_MSG_LENGTH = "y_true, y_pred and sensitive_features must have the same length, got {}."
_MSG_EMPTY = (
    "The (y, s) cells {} are empty in y_true: {} are undefined and reported as NaN. "
    "Evaluate on data with every cell (e.g. a balanced test set)."
)
INTERSECTION = " & "  # joins the values of several sensitive features into one group label


def _labels(name, values):
    arr = np.asarray(values)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}.")
    if arr.dtype.kind == "f" and np.isnan(arr).any():
        raise ValueError(f"{name} contains NaN.")
    return arr.astype(int) if arr.dtype.kind in "biu" or (arr.dtype.kind == "f" and np.all(arr == np.round(arr))) \
        else arr


def intersect_groups(sensitive_features):
    """One group label per example: the value of a single sensitive feature, or the intersection of several
    (a 2-D array or a DataFrame, one column per feature) as ``"a & b"``.

    Parameters
    ----------
    sensitive_features : array-like of shape (n_samples,) or (n_samples, n_features), or a DataFrame

    Returns
    -------
    groups : ndarray of shape (n_samples,)

    Examples
    --------
    >>> from aimfair_plugin.metrics import intersect_groups
    >>> intersect_groups([[0, 'x'], [1, 'y']]).tolist()
    ['0 & x', '1 & y']
    """
    frame = pd.DataFrame(sensitive_features) if np.ndim(sensitive_features) == 2 else None
    if frame is None or frame.shape[1] == 1:
        return _labels("sensitive_features", sensitive_features)
    if frame.isna().to_numpy().any():
        raise ValueError("sensitive_features contains NaN.")
    return np.asarray([INTERSECTION.join(map(str, row)) for row in frame.itertuples(index=False)], dtype=object)


def _values(arr):
    """The values of a label array in sorted order; 0/1 (or a subset) always gives both 0 and 1."""
    values = np.unique(arr)
    if arr.dtype.kind in "biu" and np.isin(values, (0, 1)).all():
        return np.array([0, 1])
    return values


def _validate(y_true, y_pred, sensitive_features):
    """One shared validator: equal lengths, 1-D labels; returns ``(y_true, y_pred, groups, classes, group
    values)``."""
    groups = intersect_groups(sensitive_features)
    lengths = [len(np.asarray(y_true)), len(np.asarray(y_pred)), len(groups)]
    if len(set(lengths)) != 1:
        raise ValueError(_MSG_LENGTH.format(lengths))
    if lengths[0] == 0:
        raise ValueError("Cannot compute fairness metrics on empty inputs.")
    y_true, y_pred = _labels("y_true", y_true), _labels("y_pred", y_pred)
    classes = _values(np.concatenate([y_true, y_pred]) if y_true.dtype == y_pred.dtype else y_true)
    return y_true, y_pred, groups, classes, _values(groups)


def _cell_accuracies(y_true, y_pred, groups, classes, values):
    """Accuracy of every (class, group) cell of ``classes x values`` (NaN where y_true has none), a Series."""
    frame = MetricFrame(metrics=accuracy_score, y_true=y_true, y_pred=y_pred,
                        sensitive_features=pd.DataFrame({"y": y_true, "s": groups}))
    return frame.by_group.reindex(pd.MultiIndex.from_product([classes, values], names=["y", "s"]))


def group_accuracy_table(y_true, y_pred, *, sensitive_features):
    """Accuracy of each (target, protected) cell: the paper's 2x2 layout, or classes x groups.

    Parameters
    ----------
    y_true, y_pred : array-like of shape (n_samples,)
    sensitive_features : array-like of shape (n_samples,) or (n_samples, n_features)
        Several columns: one column per intersection of their values.

    Returns
    -------
    table : pandas.DataFrame
        Rows ``y`` (target classes), columns ``s`` (protected groups), values in percent; an empty cell is NaN.

    Examples
    --------
    >>> from aimfair_plugin.metrics import group_accuracy_table
    >>> group_accuracy_table([0, 0, 1, 1], [0, 1, 1, 1], sensitive_features=[0, 1, 0, 1])
    s      0      1
    y
    0  100.0    0.0
    1  100.0  100.0
    """
    y_true, y_pred, groups, classes, values = _validate(y_true, y_pred, sensitive_features)
    return 100.0 * _cell_accuracies(y_true, y_pred, groups, classes, values).unstack("s")


def _rate_gaps(y_true, y_pred, groups, classes):
    """Per positive class (the binary target's larger label; every class one-vs-rest otherwise): fairlearn's
    group ``difference`` and ``ratio`` of the TPR, FPR and selection rate, averaged over those classes; and of
    the accuracy (``acc``; with two classes the one-vs-rest accuracy is the accuracy, so one frame does both)."""
    binary = len(classes) == 2
    positives = classes[-1:] if binary else classes
    differences, ratios = [], []
    for positive in positives:
        metrics = {"sel": selection_rate, "tpr": true_positive_rate, "fpr": false_positive_rate,
                   **({"acc": accuracy_score} if binary else {})}
        frame = MetricFrame(metrics=metrics, y_true=(y_true == positive).astype(int),
                            y_pred=(y_pred == positive).astype(int), sensitive_features=groups)
        differences.append(frame.difference())
        ratios.append(frame.ratio())
    return pd.concat(differences, axis=1).mean(axis=1), pd.concat(ratios, axis=1).mean(axis=1)


def fairness_report(y_true, y_pred, *, sensitive_features, agg="max", return_cells=False):
    """Utility and fairness of predictions, as in the AIM-Fair tables.

    Parameters
    ----------
    y_true, y_pred : array-like of shape (n_samples,)
        Binary in the papers; more classes are allowed (see the module docstring).
    sensitive_features : array-like of shape (n_samples,) or (n_samples, n_features)
        The protected attribute (two or more values), or several (their intersections are the groups); it never
        needs to be seen at training time.
    agg : {"max", "mean"}, default="max"
        How ``EO`` combines the true-positive-rate gap and the false-positive-
        rate gap: ``"max"`` is fairlearn's ``equalized_odds_difference``;
        ``"mean"`` is the averaged sum of Eq. (9) in the AIM-Fair paper.
    return_cells : bool, default=False
        Also return :func:`group_accuracy_table`'s table, from the ``MetricFrame`` the report's cell metrics are
        computed with (one frame fewer than calling both).

    Returns
    -------
    report : pandas.Series
        In percent:

        - ``ACC`` overall accuracy;
        - ``WST`` worst (class, group)-cell accuracy (Eq. 10);
        - ``EO`` equalized odds difference (see ``agg``);
        - ``STD`` population standard deviation (ddof=0) of the cell accuracies (Eq. 11);
        - ``AD`` accuracy difference between the protected groups (FairIF Eq. 3; largest minus smallest);
        - ``AOD`` average odds difference, mean of the TPR and TNR gaps (FairIF Eq. 4);
        - ``EOD`` equal opportunity difference, the TPR gap (FairIF Eq. 5).

        As fractions in [0, 1] (FADM Eqs. 12-13):

        - ``DP_ratio`` min/max of the groups' positive-prediction rates;
        - ``EOp_ratio`` min/max of the groups' true-positive rates.

        Gaps and ratios are over all groups (largest minus smallest, smallest over largest); with more than two
        classes they are one-vs-rest per class, averaged. When a cell is empty in ``y_true`` the metrics that
        need it (WST, EO, STD, AOD, EOD, EOp_ratio) are NaN and a ``UserWarning`` says which cells are missing.
    cells : pandas.DataFrame
        Only with ``return_cells=True``: the cell accuracies in percent, exactly :func:`group_accuracy_table`.

    Examples
    --------
    >>> from aimfair_plugin.metrics import fairness_report
    >>> float(fairness_report([0, 0, 1, 1], [0, 1, 1, 1], sensitive_features=[0, 1, 0, 1])["WST"])
    0.0
    >>> report = fairness_report([0, 1, 2, 0, 1, 2], [0, 1, 2, 0, 2, 2], sensitive_features=['a', 'a', 'a', 'b', 'b', 'b'])
    >>> round(float(report["WST"]), 1), round(float(report["AD"]), 1)
    (0.0, 33.3)
    >>> report, cells = fairness_report([0, 0, 1, 1], [0, 1, 1, 1], sensitive_features=[0, 1, 0, 1], return_cells=True)
    >>> cells.loc[0, 1]
    np.float64(0.0)
    """
    if agg not in ("max", "mean"):
        raise ValueError(f"agg must be 'max' or 'mean', got {agg!r}.")
    y_true, y_pred, groups, classes, values = _validate(y_true, y_pred, sensitive_features)
    # MetricFrame lists empty cells of the (y, s) product as NaN; reindex for cells absent altogether.
    cells = _cell_accuracies(y_true, y_pred, groups, classes, values)
    missing = [cell for cell, value in cells.items() if np.isnan(value)]
    report = pd.Series(np.nan, index=list(REPORT_METRICS), dtype=float, name="fairness_report")
    report["ACC"] = 100.0 * accuracy_score(y_true, y_pred)
    if len(np.unique(groups)) >= 2:
        difference, ratio = _rate_gaps(y_true, y_pred, groups, classes)
        if "acc" not in difference:  # more than two classes: the accuracy is not one-vs-rest
            difference["acc"] = MetricFrame(metrics=accuracy_score, y_true=y_true, y_pred=y_pred,
                                            sensitive_features=groups).difference()
        report["AD"] = 100.0 * difference["acc"]
        report["DP_ratio"] = ratio["sel"]
    table = 100.0 * cells.unstack("s") if return_cells else None
    if missing:
        warnings.warn(_MSG_EMPTY.format(missing, ", ".join(_CELL_METRICS)), UserWarning, stacklevel=2)
        return (report, table) if return_cells else report
    report["WST"] = 100.0 * worst_group_accuracy(y_true, y_pred, np.array(list(zip(y_true, groups)), dtype=object),
                                                 cells=list(cells.index))
    report["STD"] = 100.0 * np.std(cells.to_numpy(), ddof=0)
    odds = difference[["tpr", "fpr"]]
    report["EO"] = 100.0 * (max(odds) if agg == "max" else odds.mean())
    report["AOD"] = 100.0 * odds.mean()
    report["EOD"] = 100.0 * difference["tpr"]
    report["EOp_ratio"] = ratio["tpr"]
    return (report, table) if return_cells else report


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
    return float(min(accuracies.values())) if _covers_cells(accuracies, cells) else float("nan")


def _covers_cells(accuracies, cells=None):
    """Whether per-group ``accuracies`` (:func:`group_accuracies`) can stand for a worst or mean over groups: at
    least one group, and every group of ``cells`` (when given) present. The one rule for an empty group: a
    score over groups with one of them empty is NaN, never computed from the others."""
    if not accuracies:
        return False
    return cells is None or all((tuple(c) if isinstance(c, (list, tuple)) else c) in accuracies for c in cells)


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
