"""Records -> a flat CSV and Markdown tables laid out like the AIM-Fair paper's Tables 1, 3 and 4.

Every number is a mean over the seeds a record exists for, with ± the standard deviation (ddof=1) when
there is more than one seed. Where a method ran in several variants (random-selection ratios, sub-tuning
blocks, fine-tuning learning rates, k, hyperparameters), the paper's tables show one of them ("Best Random
Selection", "Best Sub-Tuning"); here that variant is chosen on validation data by a named rule (see
:mod:`benchmarks.selection`: ``label_free`` = overall accuracy on held-out training-distribution data,
``group_val`` = worst-group accuracy on the small group-labelled validation set), never on the test split,
and every table is given under both rules. The "all runs" table lists every variant.
"""

import json

import numpy as np
import pandas as pd

from .methods import METHODS, table_methods
from .selection import (
    REFERENCES,
    RULES,
    checkpoint_frame,
    format_interval,
    paired_frame,
    paired_sentences,
    select_variants,
)

METRICS = ["ACC", "WST", "EO", "STD", "AD", "AOD", "EOD"]
CELLS = ["cell_y0_s0", "cell_y0_s1", "cell_y1_s0", "cell_y1_s1"]
EO_NOTE = ("EO is the paper's Eq. 9 (mean of the TPR and FPR gaps between the protected groups); "
           "ACC, WST, EO, STD and cell accuracies in %.")


# The guard's group probe in the records frame (``probe_*`` columns, where a record has them): its cross-validated
# accuracy on the synthetic images, and its accuracy and balanced accuracy on the held-out real images' true groups.
PROBE_COLUMNS = ("synthetic_accuracy", "real_accuracy", "real_balanced_accuracy")


def records_frame(records):
    """One row per record: identifiers, settings hash, wall time, device, metrics and cell accuracies."""
    rows = []
    for r in records:
        row = {k: r[k] for k in ("suite", "task", "method", "method_name", "variant", "seed", "n_train", "n_test",
                                 "wall_s", "device", "settings_hash")}
        row["group_labels"] = r.get("group_labels", "")  # the group labels the method read ("" in older records)
        row.update(r["metrics"])
        for name, values in (r.get("validation") or {}).items():
            row.update({f"val_{name}_{k}": v for k, v in values.items() if k in METRICS})
        row.update(checkpoint_columns(r, row))
        mask = r.get("mask") or {}
        row.update({"n_selected": mask.get("n_selected"), "spearman_domain_vs_bias": mask.get("spearman_domain_vs_bias"),
                    "min_possible_intersection": mask.get("min_possible_intersection")})
        settings = r.get("settings") or {}
        row["params"] = json.dumps(settings.get("params", {}), sort_keys=True)
        row["variant_params"] = json.dumps(r.get("variant_params", {}), sort_keys=True)
        row["tuned_from"] = settings.get("tuned_from", "")
        row["finetune_lr"] = (settings.get("finetune") or {}).get("finetune_lr")
        probe = (r.get("guard") or {}).get("probe") or {}
        row.update({f"probe_{key}": probe[key] for key in PROBE_COLUMNS if probe.get(key) is not None})
        rows.append(row)
    return pd.DataFrame(rows)


def checkpoint_columns(record, row):
    """``{rule}:{column}`` for every metric, cell and validation column of ``row``: its value at the checkpoint
    the rule kept (:mod:`benchmarks.checkpoints`), or the returned model's when the run kept none; plus
    ``{rule}:epoch`` (NaN then), ``n_epochs`` and ``checkpoint_s`` (what scoring the epochs cost)."""
    checkpoints = record.get("checkpoints") or {}
    columns = {"checkpoint_s": checkpoints.get("scoring_s", 0.0), "n_epochs": checkpoints.get("n_epochs", np.nan)}
    swapped = [k for k in row if k in record["metrics"] or k.startswith("val_")]
    for rule in RULES:
        chosen = (checkpoints.get("selected") or {}).get(rule)
        values = dict(row)
        if chosen is not None:
            values.update(chosen["metrics"])
            # the validation scores the rule chose on; the others are not measured at the checkpoint
            values.update({k: np.nan for k in swapped if k.startswith("val_")})
            for name, metrics in chosen["validation"].items():
                values.update({f"val_{name}_{k}": v for k, v in metrics.items()})
        columns[f"{rule}:epoch"] = chosen["epoch"] if chosen is not None else np.nan
        columns.update({f"{rule}:{k}": values[k] for k in swapped})
    return columns


def summarise(frame):
    """Mean and std over seeds per (task, method, variant), in the order the runs appear."""
    cells = [*CELLS, *sorted(c for c in frame if c.startswith("cell_y") and c not in CELLS)]  # any more cells
    columns = [c for c in [*METRICS, *cells, "n_selected", "wall_s", "checkpoint_s"] if c in frame]
    columns += [c for c in frame if c.startswith("val_") or any(c.startswith(f"{rule}:") for rule in RULES)]
    grouped = frame.groupby(["task", "method", "variant"], sort=False)
    summary = grouped[columns].agg(["mean", "std"])
    summary.columns = [f"{c}_{stat}" for c, stat in summary.columns]
    summary["n_seeds"] = grouped.size()
    return summary.reset_index()


def _pm(row, metric):
    mean, std = row[f"{metric}_mean"], row.get(f"{metric}_std")
    return f"{mean:.2f}" if pd.isna(std) else f"{mean:.2f} ± {std:.2f}"


def row_label(row, n_variants):
    """The paper's row label; "Best ..." plus the selected variant where several variants ran."""
    label = METHODS[row["method"]].label
    if n_variants > 1:
        return f"Best {label} ({row['variant']})"
    return f"{label} ({row['variant']})" if row["variant"] else label


def _labelled(summary, keys, rule):
    chosen = select_variants(summary, rule)
    counts = summary.groupby(["task", "method"]).size()
    chosen["label"] = [row_label(row, counts[(row["task"], row["method"])]) for _, row in chosen.iterrows()]
    return chosen[chosen["method"].isin(keys)]


def table1(summary, rule, methods=None):
    """Paper's Table 1 under a selection rule: methods x tasks, ACC / WST / EO per task."""
    methods = table_methods("1") if methods is None else methods
    chosen = _labelled(summary, methods, rule)
    if chosen.empty:
        return None
    out = {}
    for task, rows in chosen.groupby("task", sort=False):
        for _, row in rows.iterrows():
            entry = out.setdefault(row["method"], {"Method": row["label"]})
            for metric in ("ACC", "WST", "EO"):
                entry[f"{task}: {metric}"] = _pm(row, metric)
    order = [m for m in methods if m in out]
    return pd.DataFrame([out[m] for m in order]).fillna("")


def cell_table(summary, methods, rule):
    """Paper's Tables 3 and 4 for one task each: a row per method and target class (T=0, T=1, ...) with a column
    per protected group (P=0, P=1, ...): the paper's 2 x 2 layout, or every cell a task has."""
    chosen = _labelled(summary, methods, rule)
    cell_columns = [c[: -len("_mean")] for c in summary if c.startswith("cell_y") and c.endswith("_mean")]
    classes = sorted({int(c.split("_")[1][1:]) for c in cell_columns}) or [0, 1]
    groups = sorted({int(c.split("_")[2][1:]) for c in cell_columns}) or [0, 1]
    tables = {}
    for task, rows in chosen.groupby("task", sort=False):
        lines = []
        rows = rows.set_index("method").loc[[m for m in methods if m in set(rows["method"])]]
        for method, row in rows.iterrows():
            for t in classes:
                line = {"Method": row["label"] if t == classes[0] else "", "Target": f"T={t}",
                        **{f"P={g}": _pm(row, f"cell_y{t}_s{g}") for g in groups}}
                for metric in ("ACC", "WST", "EO", "STD"):
                    line[metric] = _pm(row, metric) if t == classes[0] else ""
                lines.append(line)
        tables[task] = pd.DataFrame(lines)
    return tables


def all_runs_table(summary):
    """Every (task, method, variant): mean ± std of the main metrics, seeds, and the mask size."""
    rows = []
    for _, row in summary.iterrows():
        entry = {"Task": row["task"], "Method": METHODS[row["method"]].label, "Variant": row["variant"],
                 "Seeds": int(row["n_seeds"])}
        entry.update({m: _pm(row, m) for m in ("ACC", "WST", "EO", "STD")})
        for rule, (score, _) in RULES.items():
            if f"{score}_mean" in row:
                entry[f"{rule}: {score}"] = f"{row[f'{score}_mean']:.2f}"
        entry["Tensors updated"] = "" if pd.isna(row.get("n_selected_mean")) else f"{row['n_selected_mean']:.1f}"
        entry["Wall s (mean)"] = f"{row['wall_s_mean']:.1f}"
        rows.append(entry)
    return pd.DataFrame(rows)


def _mean_std(values):
    return f"{values.mean():.2f} ± {values.std():.2f}" if len(values) > 1 else f"{values.mean():.2f}"


def _config(params):
    """(method key, top_k, freeze_bn_stats) that a selective run or a random_matched run stands for."""
    params = json.loads(params)
    return params.get("top_k"), params.get("freeze_bn_stats", True), params.get("match"), params.get("match_top_k")


def selection_evidence(frame):
    """Each selective configuration against the random mask of its own size, paired by seed.

    One table per task: rows = (learning rate, method, k); columns = its ACC/WST/EO, mask size, the
    Spearman correlation of its gaps, the same-size random mask's ACC/WST/EO, and the paired differences
    (selective - random) of WST and ACC over seeds. Returns {task: DataFrame}; empty without
    ``random_matched`` records.
    """
    if "random_matched" not in set(frame.get("method", [])):
        return {}
    tables = {}
    for task, part in frame.groupby("task", sort=False):
        lines = []
        random = part[part["method"] == "random_matched"]
        selective = [key for key, m in METHODS.items() if m.selective]
        for (lr, method, params), runs in part[part["method"].isin(selective)].groupby(
                ["finetune_lr", "method", "params"], sort=False):
            top_k, bn_frozen, _, _ = _config(params)
            twin = random[(random["finetune_lr"] == lr) & random["params"].map(
                lambda p, m=method, k=top_k: _config(p)[2:] == (m, k))]
            if not bn_frozen or twin.empty:
                continue
            merged = runs.merge(twin, on="seed", suffixes=("", "_random"))
            d_wst, d_acc = merged["WST"] - merged["WST_random"], merged["ACC"] - merged["ACC_random"]
            lines.append({
                "lr": lr, "Method": METHODS[method].label, "k": top_k, "ACC": _mean_std(merged["ACC"]),
                "WST": _mean_std(merged["WST"]), "EO": _mean_std(merged["EO"]), "Tensors": f"{merged['n_selected'].mean():.1f}",
                "Spearman": f"{merged['spearman_domain_vs_bias'].mean():.2f}",
                "Random ACC": _mean_std(merged["ACC_random"]), "Random WST": _mean_std(merged["WST_random"]),
                "Random EO": _mean_std(merged["EO_random"]), "ΔWST vs random": _mean_std(d_wst),
                "ΔACC vs random": _mean_std(d_acc),
                "seeds": len(merged)})
        for method in REFERENCES:
            for lr, runs in part[part["method"] == method].groupby("finetune_lr", dropna=False, sort=False):
                lines.append({"lr": "" if pd.isna(lr) else lr, "Method": METHODS[method].label, "k": "",
                              "ACC": _mean_std(runs["ACC"]), "WST": _mean_std(runs["WST"]),
                              "EO": _mean_std(runs["EO"]), "seeds": len(runs)})
        tables[task] = pd.DataFrame(lines).fillna("")
    return tables


def batchnorm_evidence(frame):
    """AIM-Fair runs that differ only in freeze_bn_stats: mean ± std per task and learning rate."""
    part = frame[frame["method"] == "aimfair"].copy()
    if part.empty:
        return None
    part["freeze_bn_stats"] = part["params"].map(lambda p: _config(p)[1])
    part["top_k"] = part["params"].map(lambda p: _config(p)[0])
    if part["freeze_bn_stats"].nunique() < 2:
        return None
    part = part[part["top_k"].isin(part.loc[~part["freeze_bn_stats"], "top_k"])]
    grouped = part.groupby(["task", "finetune_lr", "top_k", "freeze_bn_stats"], sort=False)[["ACC", "WST", "EO"]]
    stats = grouped.agg(["mean", "std"])
    return pd.DataFrame({m: [f"{a:.2f} ± {b:.2f}" for a, b in zip(stats[(m, "mean")], stats[(m, "std")])]
                         for m in ("ACC", "WST", "EO")}, index=stats.index).reset_index()


RULE_NOTES = {
    "label_free": "selected by overall accuracy on held-out training-distribution data (no group labels)",
    "group_val": "selected by worst-group accuracy on the balanced, group-labelled validation set",
}


def _markdown(table):
    return table.to_markdown(index=False, disable_numparse=True)


def checkpoint_table(checkpoints):
    """:func:`benchmarks.selection.checkpoint_frame` as a Markdown-ready frame (None when no run kept epochs)."""
    if checkpoints.empty or not checkpoints["n_with_epochs"].any():
        return None
    table = pd.DataFrame({
        "Task": checkpoints["task"], "Rule": checkpoints["rule"],
        "Method": checkpoints["method"].map(lambda m: METHODS[m].label), "Variant": checkpoints["variant"],
        "Epoch (of)": [f"{e:.1f} ({n:.0f})" if not np.isnan(e) else "returned model"
                       for e, n in zip(checkpoints["epoch_mean"], checkpoints["n_epochs"])],
        "Stops early": [f"{x:.0%}" if not np.isnan(x) else "" for x in checkpoints["earlier_share"]],
        "WST last": checkpoints["WST_last"].map("{:.2f}".format),
        "WST checkpoint": checkpoints["WST_checkpoint"].map("{:.2f}".format),
        "Difference": [format_interval(m, lo, hi) for m, lo, hi in zip(
            checkpoints["mean_diff"], checkpoints["ci_low"], checkpoints["ci_high"])],
        "Seeds": checkpoints["n_seeds"]})
    return table


def paired_table(paired):
    """The paired differences as a Markdown-ready frame: ``+x.x [lo, hi]`` per metric, one row per comparison."""
    if paired.empty:
        return None
    frame = paired.copy()
    frame["diff"] = [format_interval(m, lo, hi) for m, lo, hi in zip(frame["mean_diff"], frame["ci_low"], frame["ci_high"])]
    wide = frame.pivot_table(index=["task", "rule", "reference", "method"], columns="metric", values="diff",
                             aggfunc="first", sort=False).reset_index()
    seeds = frame.groupby(["task", "rule", "reference", "method"], sort=False)["n_seeds"].first().to_numpy()
    wide["seeds"] = seeds
    return wide.rename(columns={"task": "Task", "rule": "Rule", "reference": "vs", "method": "Method"})


def markdown_report(frame, title, paired=None):
    """The whole Markdown report: Tables 1, 3, 4 in the paper's layout under both selection rules, the paired
    differences to ERM and full fine-tuning (with the AIM-Fair rows as sentences), and the all-runs table."""
    summary = summarise(frame)
    parts = [f"# {title}", EO_NOTE, __doc__.split("\n\n")[1].replace("\n", " ")]
    for rule, note in RULE_NOTES.items():
        t1 = table1(summary, rule)
        if t1 is not None and len(t1) > 1:
            parts += [f"## Table 1 layout: comparison with other methods [rule: {rule}, {note}]", _markdown(t1)]
        for name, heading in (("3", "training strategies"), ("4", "partial fine-tuning")):
            for task, table in cell_table(summary, table_methods(name), rule).items():
                if len(table) > 2:
                    parts += [f"## Table {name} layout: {heading} ({task}) [rule: {rule}]", _markdown(table)]
    paired = paired_frame(frame, summary) if paired is None else paired
    sentences = paired_sentences(paired)
    if sentences:
        parts += ["## AIM-Fair, paired by seed", "\n".join(f"- {line}" for line in sentences)]
    table = paired_table(paired)
    if table is not None:
        parts += ["## Paired differences (method minus reference, per seed; mean [95 % t interval])",
                  "Each method and each reference is its variant selected by the named rule; positive is higher "
                  "(for EO, lower is better).", _markdown(table)]
    checkpoints = checkpoint_table(checkpoint_frame(frame, summary))
    if checkpoints is not None:
        parts += ["## Checkpoint selection: the rule's epoch against the last epoch",
                  "Every run scores both validation sets after each epoch of the training loop that produces its model "
                  "and each rule keeps the epoch with its best score (SubpopBench's protocol); the tables above show "
                  "those checkpoints. Here, for each method at the variant the rule selected: the mean chosen epoch, "
                  "the share of runs that stop before the last epoch, and test WST of the last epoch and of the "
                  "checkpoint with their paired difference (mean [95 % t interval]).", _markdown(checkpoints)]
    for task, table in selection_evidence(frame).items():
        parts += [f"## Selection vs same-size random masks ({task})",
                  "Paired by seed: the random mask has exactly as many tensors as the selective run of the same "
                  "seed, learning rate and k.", _markdown(table)]
    bn = batchnorm_evidence(frame)
    if bn is not None:
        parts += ["## BatchNorm running statistics of frozen layers: frozen (True) or updated (False)", _markdown(bn)]
    parts += ["## All runs", _markdown(all_runs_table(summary))]
    return "\n\n".join(parts) + "\n"
