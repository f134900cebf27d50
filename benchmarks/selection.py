"""Model selection on validation data and paired comparisons: what turns runs into a verdict.

Selection never reads the test split. A method that ran in several variants (hyperparameters, fine-tuning
learning rates, k, a block, a random ratio) is represented by one variant per rule, chosen on the mean over
seeds of a validation metric:

- ``label_free``: the highest overall accuracy on ``val_train``, the held-out part of the (biased) training
  draw (``val_train_ACC``). No group label is read: all a user without demographic labels can do, and what
  the upstream AIM-Fair code does.
- ``group_val``: the highest worst-group accuracy on the small balanced, group-labelled validation set
  (``val_group_WST``), the JTT / DFR / SubpopBench convention; ties go to its overall accuracy.

Paired comparisons: every method of a seed shares that seed's data, synthetic images and ERM model, so the
per-seed differences to a reference (ERM, full fine-tuning) are the quantity to average; the interval is a
two-sided 95 % Student t interval over seeds (``mean ± t_{0.975, n-1} · sd / sqrt(n)``).
"""

import numpy as np
import pandas as pd
from scipy import stats

from .checkpoints import RULES
from .methods import METHODS

SELECTED_COLUMNS = ["task", "method", "rule", "variant", "n_seeds", "ACC_mean", "ACC_std", "WST_mean", "WST_std",
                    "EO_mean", "EO_std"]
PAIRED_COLUMNS = ["task", "method", "reference", "rule", "metric", "mean_diff", "ci_low", "ci_high", "n_seeds"]
PAIRED_METRICS = ("WST", "ACC", "EO")
REFERENCES = tuple(key for key, method in METHODS.items() if method.reference)  # every method is paired with these
CONFIDENCE = 0.95


def _check_rule(rule):
    if rule not in RULES:
        raise ValueError(f"Unknown selection rule {rule!r}; expected one of {list(RULES)}.")


def at_checkpoint(table, rule):
    """``table`` (a records frame or a summary) with every metric and validation column replaced by its value at
    the checkpoint ``rule`` kept (the ``{rule}:`` columns of :func:`benchmarks.report.records_frame`); unchanged
    where there are none (records made without checkpoint selection)."""
    prefix = f"{rule}:"
    columns = {c[len(prefix):]: table[c] for c in table.columns if c.startswith(prefix)}
    if not columns:
        return table
    return table.assign(**columns)


def select_variants(summary, rule):
    """One row of ``summary`` (see :func:`benchmarks.report.summarise`) per (task, method): the rule's choice.

    Each run is represented by the checkpoint the rule kept (:mod:`benchmarks.checkpoints`), so the variant and
    the epoch are chosen by the same validation score, as in SubpopBench. Rows keep the paper's method order; a
    ``rule`` column names the rule.
    """
    _check_rule(rule)
    summary = at_checkpoint(summary, rule)
    score, tie = RULES[rule]
    missing = [c for c in (f"{score}_mean", f"{tie}_mean") if c not in summary]
    if missing:
        raise ValueError(f"The runs carry no validation metrics {missing}; re-run them with this version.")
    ranked = summary.sort_values([f"{score}_mean", f"{tie}_mean"], ascending=False, kind="stable")
    chosen = ranked.groupby(["task", "method"], sort=False).head(1).copy()
    chosen["rule"] = rule
    order = {m: i for i, m in enumerate(METHODS)}
    tasks = {t: i for i, t in enumerate(dict.fromkeys(summary["task"]))}
    chosen = chosen.sort_values(["task", "method"], kind="stable",
                                key=lambda c: c.map(order) if c.name == "method" else c.map(tasks))
    return chosen.reset_index(drop=True)


def selected_frame(summary):
    """``selected.csv``: the chosen variant of every (task, method) under both rules, with test mean and std."""
    parts = [select_variants(summary, rule) for rule in RULES]
    frame = pd.concat(parts, ignore_index=True)
    frame["method_name"] = frame["method"].map(lambda m: METHODS[m].label)
    extra = ["method_name", *(f"{RULES[r][0]}_mean" for r in RULES)]
    return frame[SELECTED_COLUMNS + extra].rename(columns=lambda c: c.replace("_mean", "") if c.startswith("val_") else c)


def format_interval(mean, low, high, *, decimals=2, mark=False):
    """``+x.xx [lo, hi]`` (just the mean when the interval is undefined): the one way the benchmark writes a
    mean difference with its interval. ``mark``: append `` *`` when the interval excludes 0."""
    if np.isnan(low):
        return f"{mean:+.{decimals}f}"
    marker = " *" if mark and not low <= 0 <= high else ""
    return f"{mean:+.{decimals}f} [{low:+.{decimals}f}, {high:+.{decimals}f}]{marker}"


def t_interval(differences, confidence=CONFIDENCE):
    """``(mean, low, high)`` of a two-sided Student t interval; the bounds are NaN for fewer than 2 values."""
    d = np.asarray(differences, dtype=float)
    mean = float(d.mean()) if len(d) else float("nan")
    if len(d) < 2:
        return mean, float("nan"), float("nan")
    sem = float(stats.sem(d))
    if sem == 0:  # every difference the same: scipy's interval needs a positive scale
        return mean, mean, mean
    low, high = stats.t.interval(confidence, len(d) - 1, loc=mean, scale=sem)
    return mean, float(low), float(high)


def paired_frame(frame, summary, references=REFERENCES, metrics=PAIRED_METRICS):
    """``paired.csv``: each method minus each reference, per seed, under both rules, with 95 % t intervals.

    Under a rule each method (and each reference) is represented by the variant that rule selected.
    ``frame`` holds one row per run (see :func:`benchmarks.report.records_frame`).
    """
    rows = []
    for rule in RULES:
        chosen = select_variants(summary, rule).set_index(["task", "method"])["variant"]
        frame_at = at_checkpoint(frame, rule)
        for (task, method), variant in chosen.items():
            runs = frame_at[(frame_at["task"] == task) & (frame_at["method"] == method) & (frame_at["variant"] == variant)]
            for reference in references:
                if reference == method or (task, reference) not in chosen.index:
                    continue
                ref_variant = chosen[(task, reference)]
                ref = frame_at[(frame_at["task"] == task) & (frame_at["method"] == reference)
                               & (frame_at["variant"] == ref_variant)]
                merged = runs.merge(ref, on="seed", suffixes=("", "_ref"))
                for metric in metrics:
                    mean, low, high = t_interval(merged[metric] - merged[f"{metric}_ref"])
                    rows.append({"task": task, "method": METHODS[method].label,
                                 "reference": METHODS[reference].label, "rule": rule, "metric": metric,
                                 "mean_diff": mean, "ci_low": low, "ci_high": high, "n_seeds": len(merged),
                                 "method_key": method, "variant": variant, "reference_variant": ref_variant})
    return pd.DataFrame(rows, columns=PAIRED_COLUMNS + ["method_key", "variant", "reference_variant"])


CHECKPOINT_COLUMNS = ["task", "method", "rule", "variant", "n_seeds", "n_with_epochs", "n_epochs", "epoch_mean",
                      "earlier_share", "WST_last", "WST_checkpoint", "mean_diff", "ci_low", "ci_high"]


def checkpoint_frame(frame, summary, metric="WST"):
    """``checkpoints.csv``: what choosing the epoch changed, per (task, method) at the variant each rule selects.

    For each rule: the mean number of epochs and chosen epoch, the share of runs whose chosen epoch is not the
    last, the test ``metric`` of the returned (last-epoch) model and of the rule's checkpoint, and their paired
    difference per seed with its 95 % t interval. ``n_with_epochs`` counts the runs that had epochs to choose
    from (the rest keep their returned model).
    """
    rows = []
    for rule in RULES:
        chosen = select_variants(summary, rule)
        for _, row in chosen.iterrows():
            runs = frame[(frame["task"] == row["task"]) & (frame["method"] == row["method"])
                         & (frame["variant"] == row["variant"])]
            if f"{rule}:{metric}" not in runs:
                continue
            epochs = runs[f"{rule}:epoch"]
            with_epochs = epochs.notna()
            mean, low, high = t_interval(runs[f"{rule}:{metric}"] - runs[metric])
            rows.append({
                "task": row["task"], "method": row["method"], "rule": rule, "variant": row["variant"],
                "n_seeds": len(runs), "n_with_epochs": int(with_epochs.sum()),
                "n_epochs": runs["n_epochs"].mean(), "epoch_mean": epochs.mean(),
                "earlier_share": float((epochs[with_epochs] < runs["n_epochs"][with_epochs]).mean())
                if with_epochs.any() else np.nan,
                f"{metric}_last": runs[metric].mean(), f"{metric}_checkpoint": runs[f"{rule}:{metric}"].mean(),
                "mean_diff": mean, "ci_low": low, "ci_high": high})
    return pd.DataFrame(rows, columns=[c.replace("WST", metric) for c in CHECKPOINT_COLUMNS])


def paired_sentences(paired, method="aimfair"):
    """One sentence per (rule, reference, metric) row of ``method``: "AIM-Fair vs full fine-tuning, WST: ..."."""
    lines = []
    names = {"ERM": "ERM", "Fully Fine-Tuning": "full fine-tuning"}
    label = "AIM-Fair" if method == "aimfair" else METHODS[method].label
    for _, row in paired[paired["method_key"] == method].iterrows():
        interval = format_interval(row["mean_diff"], row["ci_low"], row["ci_high"], decimals=1)
        lines.append(f"{row['task']}, {row['rule']}: {label} vs {names.get(row['reference'], row['reference'])}, "
                     f"{row['metric']}: {interval} over {row['n_seeds']} seeds "
                     f"(95 % t interval; {row['variant'] or 'one variant'} vs "
                     f"{row['reference_variant'] or 'one variant'}).")
    return lines
