"""The batchnorm suite: its jobs, and its evidence tables against hand-computed pairs."""

import json

import numpy as np
import pandas as pd
import pytest

from aimfair_bench.domain_gap import batchnorm_tables
from aimfair_bench.runner import make_jobs
from aimfair_bench.suites import build_suite


def test_batchnorm_suite_runs_every_strategy_under_each_setting():
    jobs = make_jobs(build_suite("batchnorm"))
    per = {(j.method, j.params.get("bn_statistics")) for j in jobs}
    for method in ("linear_probe", "full", "aimfair", "normalized", "random_matched", "auto_rgn"):
        assert {(method, b) for b in ("finetune", "real", "eval")} <= per
    assert {("synthetic_only", "finetune"), ("synthetic_only", "real")} <= per
    assert {j.finetune["finetune_lr"] for j in jobs if j.method == "full"} == {0.001}
    assert {j.seed for j in jobs} == {0, 1, 2, 3, 4} and len({j.task["name"] for j in jobs}) == 4


def test_batchnorm_tables_pair_settings_and_erm_by_seed():
    rows = []
    for seed, (erm, finetune, real) in enumerate([(50, 10, 70), (60, 20, 80), (40, 0, 60)]):
        for method, bn, wst in (("erm", None, erm), ("full", "finetune", finetune), ("full", "real", real)):
            params = {} if bn is None else {"bn_statistics": bn}
            rows.append({"task": "coloured MNIST, style shift 1.5", "method": method, "seed": seed, "WST": wst,
                         "ACC": 80.0, "params": json.dumps(params)})
    means, paired = batchnorm_tables(pd.DataFrame(rows))
    real = means[(means["method"] == "full") & (means["bn_statistics"] == "real")].iloc[0]
    assert real["WST_mean"] == pytest.approx(70.0) and real["WST_count"] == 3
    diff = paired[(paired["setting"] == "real") & (paired["versus"] == "finetune")].iloc[0]
    assert diff["mean_diff"] == pytest.approx(60.0) and diff["n_seeds"] == 3
    assert diff["ci_low"] == pytest.approx(60.0) and diff["ci_high"] == pytest.approx(60.0)  # constant gap
    vs_erm = paired[(paired["setting"] == "real") & (paired["versus"] == "ERM")].iloc[0]
    assert vs_erm["mean_diff"] == pytest.approx(20.0) and vs_erm["level"] == 1.5


def test_batchnorm_suite_guards_the_default_criterion_with_each_label_free_score():
    jobs = make_jobs(build_suite("batchnorm"))
    guarded = {j.params["selection_score"] for j in jobs if j.params.get("validate_on") == "val_train"}
    assert guarded == {"accuracy", "worst_class_accuracy", "pseudo_group", "synthetic_worst_group",
                       "probe_worst_group", "probe_mean_group"}
    with_bn = {j.params["selection_score"] for j in jobs if j.params.get("batchnorm_variants")}
    assert with_bn == {"probe_worst_group", "probe_mean_group", "worst_group"}
    assert {j.method for j in jobs if j.params.get("validate_on")} == {"normalized", "normalized_guarded"}
    assert {j.params["validate_on"] for j in jobs if j.method == "normalized_guarded"} == {"val"}
    assert any(j.method == "jtt" for j in jobs)


def test_batchnorm_tables_compare_guards_and_the_default_against_every_run():
    rows = []
    for seed, (jtt, real, guard) in enumerate([(50, 70, 75), (60, 80, 80), (40, 60, 68)]):
        for method, params, wst in (("erm", {}, 30), ("jtt", {"upweight": 20}, jtt),
                                    ("normalized", {"bn_statistics": "real"}, real),
                                    ("normalized", {"bn_statistics": "real", "validate_on": "val_train",
                                                    "selection_score": "accuracy"}, guard)):
            rows.append({"task": "coloured MNIST, style shift 0.5", "method": method, "seed": seed, "WST": wst,
                         "ACC": 80.0, "params": json.dumps(params)})
    means, paired = batchnorm_tables(pd.DataFrame(rows))
    assert set(means["bn_statistics"]) == {"", "real", "guard accuracy"}
    guard = paired[(paired["setting"] == "guard accuracy") & (paired["versus"] == "real")].iloc[0]
    assert guard["mean_diff"] == pytest.approx((5 + 0 + 8) / 3)
    default = paired[paired["setting"] == "real (default)"].set_index("versus")["mean_diff"]
    assert default["jtt"] == pytest.approx(20.0) and default["normalized guard accuracy"] == pytest.approx(-13 / 3)


def test_the_package_default_is_derived_from_the_mitigator_signature():
    from aimfair_bench.domain_gap import DEFAULT_RUN
    from aimfair_bench.methods import METHODS, mitigator_defaults, package_default_method

    assert package_default_method() == "normalized"
    assert METHODS["normalized"].params == {"criterion": mitigator_defaults()["criterion"]}
    assert DEFAULT_RUN == ("normalized", "real")


def _recorded_fits(monkeypatch):
    """The benchmark's mitigator replaced by one that records each ``fit(X, y, **kwargs)`` call in the list returned."""
    from aimfair_bench import methods as bench_methods

    calls = []

    class Recorder:
        def fit(self, X, y, **kwargs):
            calls.append((X, y, kwargs))
            return self

    monkeypatch.setattr(bench_methods, "mitigator", lambda *a, **k: Recorder())
    return calls


def test_the_group_labelled_guard_reads_the_validation_split_with_its_group_labels(monkeypatch):
    from types import SimpleNamespace

    from aimfair_bench.methods import METHODS, fit_finetune, visible_data

    method = METHODS["normalized_guarded"]
    assert method.group_labels == "validation" and method.params["selection_score"] == "worst_group"
    job = next(j for j in make_jobs(build_suite("batchnorm")) if j.method == "normalized_guarded")
    data = {k: k for k in ("X_train", "y_train", "s_train", "X_val", "y_val", "s_val", "X_val_train", "y_val_train",
                           "s_val_train", "X_test", "y_test", "s_test")}
    seen = visible_data(job, data)
    assert "s_val" in seen and "s_train" not in seen and "X_test" not in seen
    calls = _recorded_fits(monkeypatch)
    fit_finetune(method, job, SimpleNamespace(**data), "cache")
    assert calls == [("X_train", "y_train", {"X_val": "X_val", "y_val": "y_val", "sensitive_features_val": "s_val"})]
    with pytest.raises(ValueError, match="group_labels='validation'"):  # a label-free method cannot ask for them
        fit_finetune(METHODS["normalized"], job.__class__(**{**job.__dict__, "method": "normalized"}),
                     SimpleNamespace(**data), "cache")


def test_the_guard_on_training_and_held_out_images_reads_no_group_label(monkeypatch):
    from types import SimpleNamespace

    from aimfair_bench.methods import METHODS, fit_finetune

    job = next(j for j in make_jobs(build_suite("panel")) if j.params.get("validate_on") == "train+val_train")
    data = SimpleNamespace(X_train=np.zeros((3, 1)), y_train=np.array([0, 1, 0]), X_val_train=np.ones((2, 1)),
                           y_val_train=np.array([1, 1]))
    calls = _recorded_fits(monkeypatch)
    fit_finetune(METHODS[job.method], job, data, "cache")
    (X, y, kwargs), = calls
    assert X is data.X_train and sorted(kwargs) == ["X_val", "y_val"]  # no sensitive_features_val
    np.testing.assert_array_equal(kwargs["X_val"], [[0], [0], [0], [1], [1]])
    np.testing.assert_array_equal(kwargs["y_val"], [0, 1, 0, 1, 1])


def test_the_guard_probe_is_scored_on_the_true_groups_the_method_never_saw():
    from types import SimpleNamespace

    from aimfair_bench.methods import held_out_split
    from aimfair_bench.report import records_frame
    from aimfair_bench.runner import probe_record

    job = next(j for j in make_jobs(build_suite("panel")) if j.params.get("validate_on") == "train+val_train")
    data = SimpleNamespace(X_train=np.zeros((4, 1)), y_train=np.zeros(4), s_train=np.array([0, 0, 0, 1]),
                           X_val_train=np.zeros((2, 1)), y_val_train=np.zeros(2), s_val_train=np.array([0, 1]))
    assert held_out_split("val_train", data)[2] is data.s_val_train
    hidden = SimpleNamespace(**{k: v for k, v in vars(data).items() if not k.startswith("s_")})
    assert held_out_split("train+val_train", hidden)[2] is None  # a label-free method's view has no groups
    probe = {"synthetic_accuracy": 0.9, "chance": 0.5, "reliable": True, "real_accuracy": None,
             "groups": np.array([0, 0, 1, 1, 0, 0])}  # truth 0 0 0 1 | 0 1: 4 of 6 right
    record = probe_record(probe, job, data)
    assert "groups" not in record and record["real_accuracy"] == pytest.approx(4 / 6)
    # recall of group 0: 3 of 4, of group 1: 1 of 2
    assert record["real_balanced_accuracy"] == pytest.approx((3 / 4 + 1 / 2) / 2)
    assert probe_record(None, job, data) is None
    base = {"suite": "s", "task": "t", "method": "m", "method_name": "M", "variant": "", "seed": 0, "n_train": 1,
            "n_test": 1, "wall_s": 0.0, "device": "cpu", "settings_hash": "h", "metrics": {"WST": 50.0}}
    frame = records_frame([{**base, "guard": {"probe": record}}, base])
    assert frame["probe_real_accuracy"].iloc[0] == pytest.approx(4 / 6) and np.isnan(frame["probe_real_accuracy"].iloc[1])
