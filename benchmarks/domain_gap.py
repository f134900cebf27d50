"""The domain-gap suite's own outputs: how far each level's synthetic images are from the real ones, and the plot.

``gap_measures`` takes four measures per (level, seed), each on the balanced synthetic set a run of that seed
trains on:

- ``pixel_gap``: distance between the mean synthetic and the mean real training image of each (y, s) cell,
  averaged over cells (the images themselves, no model);
- ``erm_synthetic_acc`` / ``erm_synthetic_wst``: accuracy and worst-group accuracy of the seed's pre-trained
  ERM model on the synthetic set, i.e. how well what the model learnt on real images carries over to the
  synthetic ones (measures taken from the model that fine-tuning starts from);
- ``synthetic_only_acc``: real-test accuracy of the model trained on the synthetic images alone (from the
  ``synthetic_only`` records).

``plot_domain_gap`` draws, per level, WST(method) - WST(full fine-tuning) with the 95 % paired t interval over
seeds (each method at the variant the ``group_val`` rule chose), next to the gap measures.
"""

import json

import numpy as np
import pandas as pd

from aimfair_plugin.datasets import read_images
from aimfair_plugin.metrics import fairness_report

from .methods import METHODS, finetune_synthetic, mitigator_defaults, package_default_method, pretrained_erm
from .selection import t_interval
from .tasks import load_task

LEVEL_KEY = "style_shift"
# The references ``gap_paired.csv`` pairs every method with: full fine-tuning, a random mask of AIM-Fair's size,
# Auto-RGN and head-only tuning.
GAP_REFERENCES = ("full", "random_matched", "auto_rgn", "linear_probe")


def level_of(task):
    return float((task.get("provider") or {}).get(LEVEL_KEY, 0.0))


def pixel_gap(X_syn, y_syn, s_syn, X_real, y_real, s_real):
    """Mean over the (y, s) cells of ``||mean synthetic image - mean real image||``."""
    gaps = []
    for a in (0, 1):
        for b in (0, 1):
            syn, real = X_syn[(y_syn == a) & (s_syn == b)], X_real[(y_real == a) & (s_real == b)]
            if len(syn) and len(real):
                gaps.append(float(np.linalg.norm(syn.mean(0) - real.mean(0))))
    return float(np.mean(gaps))


def gap_measures(jobs, records, cache_dir):
    """One row per (task, level, seed) with the four measures (see the module docstring); reads the ERM models
    the runs left in ``cache_dir``. The synthetic set is the one a fine-tuning job of the seed trains on,
    drawn by the mitigator itself (:func:`benchmarks.methods.finetune_synthetic`)."""
    rows = []
    erm_jobs = {(j.task["name"], j.seed): j for j in jobs if j.method == "erm"}
    finetune_jobs = {(j.task["name"], j.seed): j for j in jobs if METHODS[j.method].finetunes}
    synthetic_only = {(r["task"], r["seed"]): r["metrics"]["ACC"] for r in records if r["method"] == "synthetic_only"
                      and r["settings"]["params"].get("bn_statistics", "finetune") == "finetune"}
    for (task, seed), job in erm_jobs.items():
        data = load_task(job.task, seed)
        erm = pretrained_erm(job, data, cache_dir)  # the suite-recipe model every fine-tuning run starts from
        synthetic = finetune_synthetic(finetune_jobs.get((task, seed), job), data, cache_dir)
        X_syn = read_images(synthetic.X, image_size=synthetic.size) if synthetic.is_paths else synthetic.X
        y_syn, s_syn = synthetic.y, synthetic.s
        report = fairness_report(y_syn, erm.predict(X_syn), sensitive_features=s_syn)
        rows.append({"task": task, "level": level_of(job.task), "seed": seed,
                     "pixel_gap": pixel_gap(X_syn, y_syn, s_syn, data.X_train, data.y_train, data.s_train),
                     "erm_synthetic_acc": float(report["ACC"]), "erm_synthetic_wst": float(report["WST"]),
                     "synthetic_only_acc": synthetic_only.get((task, seed), np.nan)})
    return pd.DataFrame(rows)


def gap_summary(measures, paired, rule="group_val", reference="Fully Fine-Tuning"):
    """Per level: the gap measures (mean over seeds) and every method's WST - WST(reference) with its interval."""
    means = measures.groupby(["task", "level"], sort=False)[
        ["pixel_gap", "erm_synthetic_acc", "synthetic_only_acc"]].mean().reset_index()
    diffs = paired[(paired["rule"] == rule) & (paired["reference"] == reference) & (paired["metric"] == "WST")]
    diffs = diffs.merge(means[["task", "level"]], on="task")
    return means, diffs[["level", "method", "method_key", "variant", "mean_diff", "ci_low", "ci_high", "n_seeds"]]


def plot_domain_gap(measures, paired, path, rule="group_val"):
    """WST(method) - WST(full fine-tuning) per level with 95 % paired intervals, and the gap measures."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .plots import method_style

    means, diffs = gap_summary(measures, paired, rule)
    if diffs.empty:
        return None
    fig, (left, right) = plt.subplots(1, 2, figsize=(14, 5.5), gridspec_kw={"width_ratios": [2, 1]})
    methods = list(dict.fromkeys(diffs["method_key"]))
    offsets = np.linspace(-0.06, 0.06, len(methods))
    for offset, key in zip(offsets, methods):
        rows = diffs[diffs["method_key"] == key].sort_values("level")
        style = method_style(key)
        left.errorbar(rows["level"] + offset, rows["mean_diff"],
                      yerr=[rows["mean_diff"] - rows["ci_low"], rows["ci_high"] - rows["mean_diff"]],
                      label=rows["method"].iloc[0], capsize=3, marker=style["marker"], color=style["color"],
                      linestyle="-", linewidth=1)
    left.axhline(0, color="black", linewidth=0.8)
    left.set_xlabel("style shift of the synthetic images (domain gap)")
    left.set_ylabel("WST(method) - WST(full fine-tuning), points")
    left.set_title(f"Paired by seed, 95 % t intervals ({rule} rule)")
    left.legend(fontsize=7, loc="best")
    for column, label in (("erm_synthetic_acc", "ERM model's accuracy on the synthetic set"),
                          ("synthetic_only_acc", "real-test accuracy, trained on synthetic only")):
        right.plot(means["level"], means[column], marker="o", label=label)
    right.set_xlabel("style shift")
    right.set_ylabel("accuracy, %")
    twin = right.twinx()
    twin.plot(means["level"], means["pixel_gap"], marker="s", color="grey", linestyle="--", label="pixel gap")
    twin.set_ylabel("pixel gap (mean-image distance)")
    right.set_title("Gap measures (mean over seeds)")
    handles = right.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
    right.legend(handles, [h.get_label() for h in handles], fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def batchnorm_setting(params):
    """What a batchnorm-suite run's parameters (a JSON string) set: its ``bn_statistics``, ``"guard <score>"``
    when the held-out guard was on, ``""`` for a method without the setting."""
    params = json.loads(params)
    if params.get("validate_on"):
        score = params.get('selection_score', mitigator_defaults()['selection_score'])
        return f"guard {score}" + (" + BN candidates" if params.get("batchnorm_variants") else "")
    return params.get("bn_statistics", "")


# The package's defaults as a batchnorm-suite run: the default criterion's method, real statistics, no guard.
DEFAULT_RUN = (package_default_method(), mitigator_defaults()["bn_statistics"])


def batchnorm_tables(frame, metric="WST", default=DEFAULT_RUN):
    """The batchnorm suite's evidence from ``records.csv``: every run, none selected.

    Returns ``(means, paired)``. ``means``: per (level, method, setting) the mean and std over seeds of the test
    ``metric`` and of ACC; the setting is the ``bn_statistics`` value, ``"guard <score>"`` for a guarded run
    (see :func:`batchnorm_setting`). ``paired``: per (level, method), each setting minus another ("real" -
    "finetune", "real" - "eval", "eval" - "finetune", each guard - "real") and each setting minus ERM; and
    ``default`` (method, setting) minus every other run, paired by seed, with the 95 % t interval.
    """
    frame = frame.copy()
    frame["level"] = frame["task"].str.extract(r"style shift ([0-9.]+)$", expand=False).astype(float)
    frame["bn_statistics"] = frame["params"].map(batchnorm_setting)
    runs = frame[frame["method"] != "erm"]
    means = (frame.groupby(["level", "method", "bn_statistics"], sort=False)[[metric, "ACC"]]
             .agg(["mean", "std", "count"]))
    means.columns = [f"{m}_{s}" for m, s in means.columns]
    erm = frame[frame["method"] == "erm"].set_index(["level", "seed"])[metric]
    rows = []

    def add(level, method, setting, versus, diff):
        diff = diff.dropna()
        mean, low, high = t_interval(diff)
        rows.append({"level": level, "method": method, "setting": setting, "versus": versus, "metric": metric,
                     "mean_diff": mean, "ci_low": low, "ci_high": high, "n_seeds": len(diff)})

    for (level, method), part in runs.groupby(["level", "method"], sort=False):
        by = part.pivot_table(index="seed", columns="bn_statistics", values=metric, aggfunc="first")
        comparisons = [("real", "finetune"), ("real", "eval"), ("eval", "finetune")]
        comparisons += [(c, "real") for c in by.columns if c.startswith("guard ")]
        for a, b in comparisons:
            if a in by and b in by:
                add(level, method, a, b, by[a] - by[b])
        for setting in by.columns:
            add(level, method, setting, "ERM", by[setting] - erm.loc[level].reindex(by.index))
    for level, part in runs.groupby("level", sort=False):
        by = part.pivot_table(index="seed", columns=["method", "bn_statistics"], values=metric, aggfunc="first")
        if default not in by:
            continue
        for other in by.columns:
            if other != default:
                add(level, default[0], f"{default[1]} (default)", " ".join(filter(None, other)),
                    by[default] - by[other])
    return means.reset_index(), pd.DataFrame(rows)
