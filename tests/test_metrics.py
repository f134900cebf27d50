import warnings

import numpy as np
import pandas as pd
import pytest
import sklearn
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, recall_score
from sklearn.model_selection import GridSearchCV, StratifiedKFold

from aimfair_plugin.metrics import fairness_report, fairness_scorer, group_accuracy_table

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from aif360.sklearn import metrics as aif


# Hand-made example: 20 samples, 5 per (y, s) cell.
Y = np.repeat([0, 0, 1, 1], 5)
S = np.tile(np.repeat([0, 1], 5), 2)
# Cell (0,0): 4/5 correct, (0,1): 2/5, (1,0): 5/5, (1,1): 3/5.
P = np.concatenate([[0, 0, 0, 0, 1], [0, 0, 1, 1, 1], [1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])


def test_report_against_hand_computed_values():
    report = fairness_report(Y, P, sensitive_features=S)
    cells = np.array([80.0, 40.0, 100.0, 60.0])
    assert report["ACC"] == pytest.approx(70.0)
    assert report["WST"] == pytest.approx(40.0)
    assert report["STD"] == pytest.approx(np.sqrt(((cells - cells.mean()) ** 2).mean()))
    # TPR s0 = 1.0, s1 = 0.6 -> 40; FPR s0 = 0.2, s1 = 0.6 -> 40; TNR gap 40.
    assert report["EO"] == pytest.approx(40.0)
    assert report["AOD"] == pytest.approx(40.0)
    assert report["EOD"] == pytest.approx(40.0)
    # Accuracy s0 = 9/10, s1 = 5/10.
    assert report["AD"] == pytest.approx(40.0)
    # Selection rate s0 = 6/10, s1 = 6/10; TPR ratio 0.6 / 1.0.
    assert report["DP_ratio"] == pytest.approx(1.0)
    assert report["EOp_ratio"] == pytest.approx(0.6)


def test_eo_mean_is_the_papers_averaged_sum():
    y = np.repeat([0, 0, 1, 1], 4)
    s = np.tile(np.repeat([0, 1], 4), 2)
    p = np.array([0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 0, 0, 0])
    # TPR gap |1.0 - 0.25| = 75, FPR gap |0 - 0.25| = 25.
    assert fairness_report(y, p, sensitive_features=s)["EO"] == pytest.approx(75.0)
    assert fairness_report(y, p, sensitive_features=s, agg="mean")["EO"] == pytest.approx(50.0)


def test_group_accuracy_table_layout():
    table = group_accuracy_table(Y, P, sensitive_features=S)
    assert table.index.name == "y" and table.columns.name == "s"
    np.testing.assert_allclose(table.to_numpy(), [[80.0, 40.0], [100.0, 60.0]])
    # the report hands back the same table from its own frame, and the same report
    report, cells = fairness_report(Y, P, sensitive_features=S, return_cells=True)
    pd.testing.assert_frame_equal(cells, table)
    pd.testing.assert_series_equal(report, fairness_report(Y, P, sensitive_features=S))


@pytest.mark.parametrize("seed", range(5))
def test_report_matches_aif360(seed):
    rng = np.random.RandomState(seed)
    n = 500
    y = rng.randint(0, 2, n)
    s = rng.randint(0, 2, n)
    flip = rng.rand(n) < np.where(s == 1, 0.35, 0.1)
    p = np.where(flip, 1 - y, y)
    report = fairness_report(y, p, sensitive_features=s)
    yt = pd.Series(y, index=pd.Index(s, name="s"))
    kw = dict(prot_attr="s", priv_group=1)
    assert report["AOD"] / 100 == pytest.approx(aif.average_odds_error(yt, p, **kw))
    assert report["EOD"] / 100 == pytest.approx(abs(aif.equal_opportunity_difference(yt, p, **kw)))
    assert report["AD"] / 100 == pytest.approx(abs(aif.difference(accuracy_score, yt, p, **kw)))
    tpr_gap = abs(aif.difference(recall_score, yt, p, **kw))
    fpr_gap = abs(aif.difference(aif.specificity_score, yt, p, **kw))
    assert report["EO"] / 100 == pytest.approx(max(tpr_gap, fpr_gap))
    dir_ = aif.disparate_impact_ratio(yt, p, **kw)
    assert report["DP_ratio"] == pytest.approx(min(dir_, 1 / dir_))
    eop = aif.ratio(recall_score, yt, p, **kw)
    assert report["EOp_ratio"] == pytest.approx(min(eop, 1 / eop))
    cells = [accuracy_score(y[(y == a) & (s == b)], p[(y == a) & (s == b)]) for a in (0, 1) for b in (0, 1)]
    assert report["WST"] / 100 == pytest.approx(min(cells))
    assert report["STD"] / 100 == pytest.approx(np.std(cells))


def test_bad_input_errors():
    with pytest.raises(ValueError, match="same length"):
        fairness_report(Y, P[:-1], sensitive_features=S)
    with pytest.raises(ValueError, match="y_true contains NaN"):
        fairness_report(np.where(Y == 1, np.nan, 0.0), P, sensitive_features=S)
    with pytest.raises(ValueError, match="y_pred must be one-dimensional"):
        fairness_report(Y, np.column_stack([P, P]), sensitive_features=S)
    with pytest.raises(ValueError, match="sensitive_features contains NaN"):
        fairness_report(Y, P, sensitive_features=np.column_stack([S, np.where(S == 1, np.nan, 1.0)]))
    with pytest.raises(ValueError, match="agg"):
        fairness_report(Y, P, sensitive_features=S, agg="min")
    with pytest.raises(ValueError, match="metric"):
        fairness_scorer("F1")


def test_empty_cell_gives_documented_nan():
    keep = ~((Y == 1) & (S == 1))
    with pytest.warns(UserWarning, match=r"\(1, 1\)"):
        report = fairness_report(Y[keep], P[keep], sensitive_features=S[keep])
    assert report[["WST", "EO", "STD", "AOD", "EOD", "EOp_ratio"]].isna().all()
    assert report["ACC"] == pytest.approx(100 * 11 / 15)
    assert np.isnan(group_accuracy_table(Y[keep], P[keep], sensitive_features=S[keep]).loc[1, 1])
    with pytest.warns(UserWarning):
        _, cells = fairness_report(Y[keep], P[keep], sensitive_features=S[keep], return_cells=True)
    pd.testing.assert_frame_equal(cells, group_accuracy_table(Y[keep], P[keep], sensitive_features=S[keep]))


def test_scorer_in_grid_search_routes_sensitive_features_to_the_scorer_only():
    rng = np.random.RandomState(0)
    n = 600
    s = rng.randint(0, 2, n)
    X = np.c_[rng.randn(n, 2), s + 0.1 * rng.randn(n)]
    y = ((X[:, 0] + 1.5 * (s - 0.5) + 0.5 * rng.randn(n)) > 0).astype(int)
    with sklearn.config_context(enable_metadata_routing=True):
        search = GridSearchCV(
            LogisticRegression(), {"C": [1e-3, 1.0]}, scoring=fairness_scorer("EO"), cv=3
        ).fit(X, y, sensitive_features=s)
    scores = search.cv_results_["mean_test_score"]
    # EO is lower-is-better, so the scorer negates it.
    assert (scores <= 0).all()
    expected = []
    for C in (1e-3, 1.0):
        eos = []
        for train, test in StratifiedKFold(3).split(X, y):
            pred = LogisticRegression(C=C).fit(X[train], y[train]).predict(X[test])
            eos.append(fairness_report(y[test], pred, sensitive_features=s[test])["EO"])
        expected.append(-np.mean(eos))
    np.testing.assert_allclose(scores, expected)


def test_wst_scorer_is_higher_is_better():
    clf = LogisticRegression().fit(np.c_[Y], Y)
    with sklearn.config_context(enable_metadata_routing=True):
        assert fairness_scorer("WST")(clf, np.c_[Y], Y, sensitive_features=S) == pytest.approx(100.0)


def test_three_classes_three_groups_against_hand_computations():
    rng = np.random.RandomState(0)
    y, s = rng.randint(0, 3, 600), rng.randint(0, 3, 600)
    p = np.where(rng.uniform(size=600) < 0.2 + 0.2 * s, (y + 1) % 3, y)  # group 2 is wrong most often
    report = fairness_report(y, p, sensitive_features=s)
    cells = [accuracy_score(y[(y == a) & (s == b)], p[(y == a) & (s == b)]) for a in range(3) for b in range(3)]
    assert report["WST"] / 100 == pytest.approx(min(cells))
    assert report["STD"] / 100 == pytest.approx(np.std(cells))
    group_acc = [accuracy_score(y[s == b], p[s == b]) for b in range(3)]
    assert report["AD"] / 100 == pytest.approx(max(group_acc) - min(group_acc))

    def rates(c):  # one-vs-rest TPR, FPR and selection rate of class c in each group
        t, q = y == c, p == c
        return ([q[t & (s == b)].mean() for b in range(3)], [q[~t & (s == b)].mean() for b in range(3)],
                [q[s == b].mean() for b in range(3)])

    tpr_gap = np.mean([np.ptp(rates(c)[0]) for c in range(3)])
    fpr_gap = np.mean([np.ptp(rates(c)[1]) for c in range(3)])
    assert report["EOD"] / 100 == pytest.approx(tpr_gap)
    assert report["EO"] / 100 == pytest.approx(max(tpr_gap, fpr_gap))
    assert report["AOD"] / 100 == pytest.approx((tpr_gap + fpr_gap) / 2)
    assert report["DP_ratio"] == pytest.approx(np.mean([min(r[2]) / max(r[2]) for r in map(rates, range(3))]))
    table = group_accuracy_table(y, p, sensitive_features=s)
    assert table.shape == (3, 3) and table.to_numpy().min() / 100 == pytest.approx(min(cells))


def test_intersections_of_several_attributes_are_the_groups():
    rng = np.random.RandomState(1)
    y, a, b = rng.randint(0, 2, 400), rng.randint(0, 2, 400), rng.choice(["x", "y", "z"], 400)
    p = np.where(rng.uniform(size=400) < 0.3, 1 - y, y)
    joint = np.array([f"{u} & {v}" for u, v in zip(a, b)])
    by_frame = fairness_report(y, p, sensitive_features=pd.DataFrame({"a": a, "b": b}))
    by_joint = fairness_report(y, p, sensitive_features=joint)
    pd.testing.assert_series_equal(by_frame, by_joint)
    table = group_accuracy_table(y, p, sensitive_features=pd.DataFrame({"a": a, "b": b}))
    assert table.shape == (2, 6)  # two classes x six intersections


def test_binary_labels_other_than_0_1_use_the_larger_as_positive():
    labels = np.array(["no", "yes"])
    groups = np.array(["f", "m"])
    named = fairness_report(labels[Y], labels[P], sensitive_features=groups[S])
    pd.testing.assert_series_equal(named, fairness_report(Y, P, sensitive_features=S))
