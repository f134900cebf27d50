"""The defaults panel: its suite, the stand-in providers' gaps, and its tables against hand computations."""

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.utils import Bunch

from aimfair_bench._standin import heldout_provider, low_resolution
from aimfair_bench.pages import write_page
from aimfair_bench.panel import DEFAULT_SETTING, LABELLED_GUARD, LABELS, panel_setting, panel_tables
from aimfair_bench.runner import make_jobs
from aimfair_bench.suites import LABELLED_GUARDS, LAST_EPOCH_GUARD_SCORES, LAST_EPOCH_GUARDS, PANEL_LRS, build_suite


def test_panel_suite_covers_four_families_with_the_grid_and_the_guards():
    suite = build_suite("panel")
    families = {t["family"] for t in suite.tasks}
    assert len(families) == 4 and len(suite.tasks) == 7 and suite.seeds == (0, 1, 2, 3, 4)
    kinds = {(t["dataset"], t["provider"]["kind"], t["provider"].get("gap")) for t in suite.tasks}
    assert ("coloured_fashion", "heldout", "resolution") in kinds and ("coloured_mnist", "heldout", "stroke") in kinds
    jobs = make_jobs(suite)
    assert not any(j.checkpoints for j in jobs)  # the panel compares what each method returns
    task = suite.tasks[0]["name"]
    settings = {panel_setting(j.method, j.params, j.finetune.get("finetune_lr")) for j in jobs
                if j.task["name"] == task and j.seed == 0}
    fixed = {f"{bn}, lr {lr:g}" for bn in ("finetune", "real", "eval") for lr in PANEL_LRS}
    assert fixed <= settings and DEFAULT_SETTING in fixed
    assert {"ERM", "full fine-tuning", LABELLED_GUARD, "guard probe_worst_group"} <= settings
    assert {f"guard {score}, last epoch" for score in LAST_EPOCH_GUARD_SCORES} <= settings
    assert {f"guard mean_group{LABELS}", f"guard worst_group, last epoch{LABELS}"} <= settings
    assert len(settings) == len(jobs) / len(suite.tasks) / len(suite.seeds)  # every run has its own name
    guarded = [j for j in jobs if j.method == "normalized_guarded"]
    assert {j.params["validate_on"] for j in guarded} == {"val"}


def test_the_holdout_panel_uses_families_the_panel_does_not_have():
    panel, holdout = build_suite("panel"), build_suite("panel-holdout")
    assert not {t["name"] for t in holdout.tasks} & {t["name"] for t in panel.tasks}
    assert not {t["family"] for t in holdout.tasks} & {t["family"] for t in panel.tasks}
    kinds = {(t["dataset"], t["provider"]["kind"], t["provider"].get("gap")) for t in holdout.tasks}
    assert ("coloured_mnist", "heldout", "resolution") in kinds  # a (data, gap) pair the panel does not have
    small = [t for t in holdout.tasks if t["n_train"] == 800]
    assert len(small) == 1 and small[0]["minority_share"] == 0.02
    jobs = make_jobs(holdout)
    settings = {panel_setting(j.method, j.params, j.finetune.get("finetune_lr")) for j in jobs if j.seed == 0}
    assert DEFAULT_SETTING in settings and LABELLED_GUARD in settings and "full fine-tuning" in settings
    label_free = {s for s in settings if s.startswith("guard ") and not s.endswith(LABELS)}
    assert {f"guard {score}, last epoch" for score in LAST_EPOCH_GUARD_SCORES} <= label_free
    assert all(", last epoch" in s for s in label_free)  # only the last-epoch ones
    assert len(jobs) == 2 * (11 + len(LABELLED_GUARDS) + len(LAST_EPOCH_GUARDS)) * 5


def test_low_resolution_removes_fine_detail_and_keeps_flat_regions():
    checker = (np.indices((28, 28)).sum(0) % 2).astype(np.float32)[None]  # one-pixel detail
    flat = np.full((1, 28, 28), 0.3, dtype=np.float32)
    blocky = low_resolution(np.concatenate([checker, flat]), 7)
    assert blocky.shape == (2, 28, 28)
    assert np.abs(blocky[0] - 0.5).max() < 0.1  # the detail averaged away
    np.testing.assert_allclose(blocky[1], 0.3, atol=1e-6)


def test_heldout_provider_rejects_an_unknown_gap():
    data = Bunch(source_index_train=np.arange(10), source_index_test=np.arange(10, 20))
    with pytest.raises(ValueError, match="gap must be one of"):
        heldout_provider(data, gap="texture")


def _frame(rows):
    records = []
    for task, seed, method, params, lr, wst in rows:
        records.append({"task": task, "method": method, "seed": seed, "WST": wst, "ACC": 80.0,
                        "params": json.dumps(params), "finetune_lr": lr})
    return pd.DataFrame(records)


def _runs():
    """Two tasks, three seeds: ERM, full, two fixed variants, one label-free guard, the labelled guard."""
    rows = []
    table = {  # task -> setting -> WST per seed
        "a": {"erm": (40, 50, 60), "full": (60, 70, 80), "real": (70, 80, 90), "finetune": (60, 62, 64),
              "guard": (69, 79, 89), "labelled": (68, 78, 88)},
        "b": {"erm": (10, 20, 30), "full": (50, 50, 50), "real": (40, 41, 42), "finetune": (70, 70, 70),
              "guard": (66, 66, 66), "labelled": (69, 69, 69)},
    }
    for task, runs in table.items():
        for seed in range(3):
            rows += [(task, seed, "erm", {}, None, runs["erm"][seed]),
                     (task, seed, "full", {"strategy": "full"}, 0.003, runs["full"][seed]),
                     (task, seed, "normalized", {"bn_statistics": "real"}, 0.003, runs["real"][seed]),
                     (task, seed, "normalized", {"bn_statistics": "finetune"}, 0.003, runs["finetune"][seed]),
                     (task, seed, "normalized", {"bn_statistics": "real", "validate_on": "val_train",
                                                 "selection_score": "probe_worst_group"}, 0.003, runs["guard"][seed]),
                     (task, seed, "normalized_guarded", {"bn_statistics": "real", "validate_on": "val"}, 0.003,
                      runs["labelled"][seed])]
    return _frame(rows)


def test_panel_tables_against_hand_computations():
    means, paired, verdict, by_family = panel_tables(_runs(), {"a": "family A", "b": "family B"})
    assert DEFAULT_SETTING == "real, lr 0.003"
    real_a = means[(means["task"] == "a") & (means["setting"] == "real, lr 0.003")].iloc[0]
    assert real_a["WST_mean"] == pytest.approx(80.0) and real_a["WST_count"] == 3 and real_a["family"] == "family A"
    pairs = paired.set_index(["task", "setting", "versus"])
    # best fixed in hindsight: "real" on a (80 > 62), "finetune" on b (70 > 41)
    assert pairs.loc[("a", "guard probe_worst_group", "best fixed"), "versus_setting"] == "real, lr 0.003"
    assert pairs.loc[("b", "guard probe_worst_group", "best fixed"), "versus_setting"] == "finetune, lr 0.003"
    vs_erm = pairs.loc[("a", "real, lr 0.003", "ERM")]
    assert vs_erm["mean_diff"] == pytest.approx(30.0) and vs_erm["ci_low"] == pytest.approx(30.0)  # constant
    assert pairs.loc[("b", "guard probe_worst_group", "best fixed"), "mean_diff"] == pytest.approx(-4.0)
    assert pairs.loc[("b", "finetune, lr 0.003", "default"), "mean_diff"] == pytest.approx(29.0)
    assert ("a", "real, lr 0.003", "default") not in pairs.index  # the default is not compared with itself
    v = verdict.set_index("setting")
    # the guard: gains 29 (a) and 46 (b) over ERM, shortfalls 1 (a) and 4 (b): meets the bars
    assert v.loc["guard probe_worst_group", "worst_gain_over_ERM"] == pytest.approx(29.0)
    assert v.loc["guard probe_worst_group", "worst_shortfall_to_best_fixed"] == pytest.approx(4.0)
    assert v.loc["guard probe_worst_group", "meets_bars"]
    # real: shortfall 29 on b; finetune: shortfall 18 on a; the labelled guard: 2 and 1, within its bar of 3
    assert v.loc["real, lr 0.003", "worst_task_shortfall"] == "b" and not v.loc["real, lr 0.003", "meets_bars"]
    assert v.loc[LABELLED_GUARD, "meets_bars"] and v.loc[LABELLED_GUARD, "group_labels"]
    assert v["chosen"].sum() == 1 and v.loc["guard probe_worst_group", "chosen"]  # smallest worst shortfall
    _, _, check, _ = panel_tables(_runs(), {"a": "family A", "b": "family B"}, choose=False)  # held-out families
    assert "chosen" not in check and check.equals(verdict.drop(columns=["chosen"]))
    # one task per family: the per-family verdict is the per-task one, its columns named for families
    assert list(by_family["worst_family_shortfall"]) == list(verdict["worst_task_shortfall"].map(
        {"a": "family A", "b": "family B"}))
    assert "chosen" not in by_family


def test_the_family_verdict_averages_a_familys_tasks_before_the_bars():
    # both tasks in one family: real 80 and 41 (mean 60.5), finetune 62 and 70 (66: the family's best fixed),
    # the guard 79 and 66 (72.5), ERM 50 and 20 (35), the labelled guard 78 and 69 (73.5)
    _, _, by_task, by_family = panel_tables(_runs(), {"a": "F", "b": "F"})
    v = by_family.set_index("setting")
    assert v.loc["real, lr 0.003", "mean_WST"] == pytest.approx(60.5)
    assert v.loc["real, lr 0.003", "worst_shortfall_to_best_fixed"] == pytest.approx(5.5)
    assert not v.loc["real, lr 0.003", "meets_bars"]  # 5.5 > 5 on the family; 29 on task b alone
    assert by_task.set_index("setting").loc["real, lr 0.003", "worst_shortfall_to_best_fixed"] == pytest.approx(29.0)
    assert v.loc["guard probe_worst_group", "worst_shortfall_to_best_fixed"] == pytest.approx(-6.5)
    assert v.loc["guard probe_worst_group", "worst_gain_over_ERM"] == pytest.approx(37.5)
    assert v.loc[LABELLED_GUARD, "group_labels"] and v.loc[LABELLED_GUARD, "meets_bars"]
    assert set(v["worst_family_shortfall"]) == {"F"}


def test_panel_pages_one_summary_and_one_per_family(tmp_path):
    means, paired, verdict, by_family = panel_tables(_runs(), {"a": "family A", "b": "family B"})
    results = tmp_path / "panel"
    (results / "records" / "a").mkdir(parents=True)
    (results / "records" / "a" / "seed0.json").write_text(json.dumps(
        {"finished": "2026-12-04T07:00:00+00:00", "device": "cpu", "torch": "2.13.0+cpu"}))
    for table, name in ((means, "panel_means.csv"), (paired, "panel_paired.csv"), (verdict, "panel_verdict.csv"),
                        (by_family, "panel_family_verdict.csv")):
        table.to_csv(results / name, index=False)
    summary = write_page(results, tmp_path / "docs", "panel", "Panel", measured_at="abc").read_text()
    assert "Which setting to make the default" in summary and "guard probe_worst_group" in summary
    assert "The same bars per family" not in summary  # one task per family: per family is per task
    _, _, _, together = panel_tables(_runs(), {"a": "family A", "b": "family A"})  # two tasks in one family
    together.to_csv(results / "panel_family_verdict.csv", index=False)
    means.assign(family="family A").to_csv(results / "panel_means.csv", index=False)
    summary = write_page(results, tmp_path / "docs", "panel", "Panel", measured_at="abc").read_text()
    assert "The same bars per family" in summary and "worst_family_shortfall" in summary
    means.to_csv(results / "panel_means.csv", index=False)
    family = write_page(results, tmp_path / "docs", "panel-a", "A", measured_at="abc", family="family A").read_text()
    assert "Which setting to make the default" not in family
    assert "| a " in family.replace("|  a", "| a") and "| b " not in family
    with pytest.raises(ValueError, match="No panel family"):
        write_page(results, tmp_path / "docs", "panel-c", "C", measured_at="abc", family="family C")


def test_the_holdout_page_checks_the_panels_default_and_chooses_nothing():
    from pathlib import Path

    from aimfair_bench.panel import panel_sections

    docs = Path(__file__).resolve().parents[2] / "docs" / "results"
    title, source, text, table = panel_sections(docs / "panel-holdout", "panel-holdout")[0]
    assert title == "How the panel's defaults carry over" and "chosen" not in table.splitlines()[0]
    assert DEFAULT_SETTING in text
    assert panel_sections(docs / "panel", "panel")[0][0] == "Which setting to make the default"


def test_the_probe_table_averages_each_guard_probe_over_seeds(tmp_path):
    from aimfair_bench.panel import panel_probe, panel_sections

    frame = _runs()
    guard = frame["params"].str.contains("probe_worst_group")
    assert panel_probe(frame, {"a": "family A", "b": "family B"}).empty  # records without probe numbers
    frame.loc[guard, "probe_synthetic_accuracy"] = 0.99
    frame.loc[guard, "probe_real_accuracy"] = [0.9, 0.8, 0.7, 0.6, 0.6, 0.6]  # a: seeds 0-2, b: seeds 0-2
    frame.loc[guard, "probe_real_balanced_accuracy"] = 0.5
    probe = panel_probe(frame, {"a": "family A", "b": "family B"}).set_index("task")
    assert list(probe["setting"]) == ["guard probe_worst_group"] * 2 and list(probe["seeds"]) == [3, 3]
    assert probe.loc["a", "probe_real_accuracy"] == pytest.approx(0.8)
    assert probe.loc["b", "probe_real_accuracy"] == pytest.approx(0.6)
    means, paired, verdict, _ = panel_tables(frame, {"a": "family A", "b": "family B"})
    for table, name in ((means, "panel_means.csv"), (paired, "panel_paired.csv"), (verdict, "panel_verdict.csv"),
                        (probe.reset_index(), "panel_probe.csv")):
        table.to_csv(tmp_path / name, index=False)
    titles = {title: table for title, _, _, table in panel_sections(tmp_path, "panel")}
    assert "| 80.0 " in titles["The group probe on real images"]
    only_b = {title: table for title, _, _, table in panel_sections(tmp_path, "panel-b", family="family B")}
    assert "| a " not in only_b["The group probe on real images"]
