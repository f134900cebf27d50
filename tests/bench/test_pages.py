"""The documentation's results pages are generated from a suite's files and say where their numbers come from."""

import json

import pandas as pd
import pytest

from aimfair_bench.pages import write_page


@pytest.fixture
def results(tmp_path):
    folder = tmp_path / "quick"
    for i, finished in enumerate(("2026-12-02T01:00:00+00:00", "2026-12-02T02:00:00+00:00")):
        path = folder / "records" / "task" / f"m{i}" / "seed0.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps({"finished": finished, "device": "cpu", "torch": "2.13.0+cpu"}))
    pd.DataFrame([{"task": "t", "method": "erm", "method_name": "ERM", "rule": rule, "variant": "lr=0.05",
                   "n_seeds": 3, "ACC_mean": 80.0, "ACC_std": 1.0, "WST_mean": 61.25, "WST_std": 4.0,
                   "EO_mean": 30.0, "EO_std": 2.0} for rule in ("group_val", "label_free")]
                 ).to_csv(folder / "selected.csv", index=False)
    pd.DataFrame([{"task": "t", "method": "Normalized", "reference": "ERM", "rule": "group_val", "metric": "WST",
                   "mean_diff": 12.0, "ci_low": 3.0, "ci_high": 21.0, "n_seeds": 3}]).to_csv(folder / "paired.csv",
                                                                                             index=False)
    (folder / "report.md").write_text("# Report\n\n| a |\n|---|\n| 1 |\n")
    return folder


def test_page_names_its_files_commit_and_dates_and_renders_the_csv_tables(results, tmp_path):
    page = write_page(results, tmp_path / "docs", "quick", "Quick suite", measured_at="abc1234")
    text = page.read_text()
    assert "`abc1234`" in text and "2 records" in text
    assert "2026-12-02T01:00:00+00:00" in text and "2026-12-02T02:00:00+00:00" in text
    for name in ("selected.csv", "paired.csv", "report.md"):
        assert (tmp_path / "docs" / "quick" / name).is_file() and f"[`{name}`](quick/{name})" in text
    assert "From `selected.csv`" in text and "61.2 ± 4.0" in text  # rendered from the CSV, not typed
    assert "+12.0 [+3.0, +21.0] *" in text  # an interval that excludes 0 is marked


def test_page_refuses_a_folder_without_records(tmp_path):
    with pytest.raises(FileNotFoundError, match="run the suite first"):
        write_page(tmp_path, tmp_path / "docs", "quick", "Quick suite")


def test_guard_choices_count_what_each_guarded_run_returned(tmp_path):
    from aimfair_bench.pages import guard_choices

    candidates = [{"candidate": "pretrained", "epoch": 0, "alpha": 0.0},
                  {"candidate": "epoch 1", "epoch": 1, "alpha": 1.0}, {"candidate": "epoch 2", "epoch": 2, "alpha": 1.0},
                  {"candidate": "alpha 0.5", "epoch": 2, "alpha": 0.5}]
    for seed, chosen in enumerate((0, 1, 2, 3, 3)):
        path = tmp_path / "records" / "t" / "normalized" / f"seed{seed}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"task": "coloured MNIST, style shift 1.5", "settings": {
            "task": {"provider": {"kind": "rendered_digits", "style_shift": 1.5}},
            "params": {"selection_score": "accuracy"}}, "guard": {"selected": candidates[chosen], "candidates": candidates}}))
    table = guard_choices(tmp_path).set_index("score")
    assert table.loc["accuracy", "level"] == "g = 1.5"
    assert (table.loc["accuracy", ["pre-trained", "earlier epoch", "last epoch", "α = 0.5"]].tolist()
            == ["1", "1", "1", "2"])


def test_page_shows_what_checkpoint_selection_changed_and_cost(results, tmp_path):
    pd.DataFrame([{"task": "t", "method": "full", "rule": "group_val", "variant": "ft_lr=0.001", "n_seeds": 3,
                   "n_with_epochs": 3, "n_epochs": 10.0, "epoch_mean": 4.0, "earlier_share": 2 / 3,
                   "WST_last": 70.0, "WST_checkpoint": 75.5, "mean_diff": 5.5, "ci_low": -1.0, "ci_high": 12.0},
                  {"task": "t", "method": "afr", "rule": "group_val", "variant": "", "n_seeds": 3,
                   "n_with_epochs": 0, "n_epochs": float("nan"), "epoch_mean": float("nan"),
                   "earlier_share": float("nan"), "WST_last": 60.0, "WST_checkpoint": 60.0, "mean_diff": 0.0,
                   "ci_low": 0.0, "ci_high": 0.0}]).to_csv(results / "checkpoints.csv", index=False)
    pd.DataFrame({"wall_s": [10.0, 20.0, 30.0], "checkpoint_s": [2.0, 3.0, 5.0]}).to_csv(results / "records.csv",
                                                                                       index=False)
    text = write_page(results, tmp_path / "docs", "quick", "Quick suite", measured_at="abc1234").read_text()
    assert "## Checkpoint selection" in text and "4.0 (10)" in text and "67%" in text and "70.0 → 75.5" in text
    assert "+5.5 [-1.0, +12.0]" in text and "AFR" not in text  # a method without epochs has no row
    assert "took 10 s of the 60 s the 3 runs took" in text and "20.0% on top" in text  # 10 / (60 - 10)
