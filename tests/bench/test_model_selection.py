"""Model selection on validation data (never on test), selected.csv, and paired differences with t intervals."""

import numpy as np
import pytest
from scipy import stats
from test_runner import fake_record

from aimfair_bench.report import records_frame, summarise
from aimfair_bench.selection import (
    PAIRED_COLUMNS,
    SELECTED_COLUMNS,
    paired_frame,
    paired_sentences,
    select_variants,
    selected_frame,
    t_interval,
)


def runs():
    """ERM, full fine-tuning and AIM-Fair in two variants whose test and validation rankings disagree."""
    records = []
    for seed, (erm, full, a1, a2) in enumerate([(50, 80, 70, 90), (60, 84, 75, 93), (55, 82, 71, 88)]):
        records += [
            fake_record("erm", seed, 80, erm, val_acc=95, val_wst=erm),
            fake_record("full", seed, 90, full, val_acc=91, val_wst=full - 5),
            # k=40: the better test WST, but the worse validation WST and the better validation ACC
            fake_record("aimfair", seed, 85, a2, "top_k=40", val_acc=93, val_wst=60),
            fake_record("aimfair", seed, 88, a1, "top_k=55", val_acc=90, val_wst=80),
        ]
    frame = records_frame(records)
    return frame, summarise(frame)


def test_selection_reads_validation_metrics_only():
    frame, summary = runs()
    group = select_variants(summary, "group_val").set_index("method")
    label_free = select_variants(summary, "label_free").set_index("method")
    assert group.loc["aimfair", "variant"] == "top_k=55"  # validation WST 80 > 60, although test WST is lower
    assert label_free.loc["aimfair", "variant"] == "top_k=40"  # validation ACC 93 > 90
    assert list(group.index) == ["erm", "full", "aimfair"] and set(group["rule"]) == {"group_val"}
    with pytest.raises(ValueError, match="Unknown selection rule"):
        select_variants(summary, "test")
    with pytest.raises(ValueError, match="no validation metrics"):
        select_variants(summary.drop(columns=[c for c in summary if c.endswith("val_group_WST_mean")]), "group_val")


def test_selected_csv_has_one_row_per_task_method_rule():
    _, summary = runs()
    selected = selected_frame(summary)
    assert list(selected.columns[: len(SELECTED_COLUMNS)]) == SELECTED_COLUMNS
    assert len(selected) == 3 * 2
    row = selected[(selected["method"] == "aimfair") & (selected["rule"] == "group_val")].iloc[0]
    assert row["WST_mean"] == pytest.approx(np.mean([70, 75, 71]))
    assert row["WST_std"] == pytest.approx(np.std([70, 75, 71], ddof=1))
    assert row["n_seeds"] == 3 and row["val_group_WST"] == 80


def test_t_interval_matches_a_hand_computation():
    d = np.array([2.0, 4.0, 9.0])
    mean, low, high = t_interval(d)
    half = 4.302652729911275 * np.std(d, ddof=1) / np.sqrt(3)  # t_{0.975, 2}
    assert mean == pytest.approx(5.0) and low == pytest.approx(5 - half) and high == pytest.approx(5 + half)
    assert stats.t.ppf(0.975, 2) == pytest.approx(4.302652729911275)
    assert np.isnan(t_interval([1.0])[1]) and t_interval([1.0])[0] == 1.0


def test_paired_differences_are_per_seed_between_the_selected_variants():
    frame, summary = runs()
    paired = paired_frame(frame, summary)
    assert list(paired.columns[: len(PAIRED_COLUMNS)]) == PAIRED_COLUMNS
    row = paired[(paired["method_key"] == "aimfair") & (paired["reference"] == "Fully Fine-Tuning")
                 & (paired["rule"] == "group_val") & (paired["metric"] == "WST")].iloc[0]
    diffs = np.array([70, 75, 71]) - np.array([80, 84, 82])
    mean, low, high = t_interval(diffs)
    assert (row["mean_diff"], row["ci_low"], row["ci_high"]) == pytest.approx((mean, low, high))
    assert row["n_seeds"] == 3 and row["variant"] == "top_k=55"
    label_free = paired[(paired["method_key"] == "aimfair") & (paired["reference"] == "ERM")
                        & (paired["rule"] == "label_free") & (paired["metric"] == "ACC")].iloc[0]
    assert label_free["mean_diff"] == pytest.approx(85 - 80) and label_free["variant"] == "top_k=40"
    # no method is compared with itself; every (method, reference, rule) has WST, ACC and EO
    assert not ((paired["method"] == paired["reference"])).any()
    assert (paired.groupby(["method", "reference", "rule"]).size() == 3).all()
    sentences = paired_sentences(paired)
    assert any(s.startswith("t, group_val: AIM-Fair vs full fine-tuning, WST: -10.0 [") for s in sentences)
    assert all("over 3 seeds" in s for s in sentences)
