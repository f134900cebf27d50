"""The defaults panel's own tables (``aimfair-bench panel``): which fine-tuning setting carries over to data it was
not chosen on.

Every run of the panel gets a *setting*: ``"ERM"``, ``"full fine-tuning"``, a fixed variant of the default
criterion (``"real, lr 0.003"``: its BatchNorm handling and fine-tuning rate), ``"guard SCORE"`` (the held-out
guard on the training-distribution validation split, no group labels) or ``"guard SCORE, 200 labels"`` (the guard
that reads the group labels of the balanced validation split).

- ``panel_means.csv``: per (family, task, setting) the test WST and ACC, mean and std over seeds;
- ``panel_paired.csv``: each candidate default (every fixed variant and guard) minus each reference, paired by
  seed with a 95 % Student t interval: ERM, full fine-tuning, the unguarded default (``DEFAULT_SETTING``), and
  the best fixed variant in hindsight (the fixed variant with the highest mean *test* WST on that task: an oracle
  no user has, the bar a default is measured against);
- ``panel_verdict.csv``: per candidate, its worst gain over ERM and its worst shortfall to the best fixed variant
  across the tasks, and whether it meets the bars (at least ERM + 5 on every task and within 5 of the best fixed
  variant; within 3 for the guards that read group labels). The label-free candidate with the smallest worst
  shortfall is the evidence-based default (ties: the higher mean WST); full fine-tuning is measured the same way,
  as a reference (another strategy), never chosen;
- ``panel_family_verdict.csv``: the same bars per family instead of per task (a family's WST is the mean over its
  tasks, its best fixed variant the one with the highest family mean): the issue's reading of "on every family".
  Per task is the stricter check (a family of several tasks, such as rendered digits at four style gaps, can
  meet a bar on its mean and miss it on one task); both are reported.
"""

import json

import numpy as np
import pandas as pd

from .report import PROBE_COLUMNS
from .selection import format_interval, t_interval
from .suites import PANEL_FINETUNE

DEFAULT_SETTING = f"{PANEL_FINETUNE['bn_statistics']}, lr {PANEL_FINETUNE['finetune_lr']:g}"
LABELS = ", 200 labels"  # the end of the name of a guard that reads the group labels of the validation split
LABELLED_GUARD = f"guard worst_group{LABELS}"
REFERENCES = ("ERM", "full fine-tuning", "default", "best fixed")
GAIN_BAR, SHORTFALL_BAR, LABELLED_BAR = 5.0, 5.0, 3.0


def panel_setting(method, params, finetune_lr):
    """The panel's name for a run (see the module docstring); ``params`` a JSON string or a dict."""
    params = json.loads(params) if isinstance(params, str) else params
    if method == "erm":
        return "ERM"
    if method == "full":
        return "full fine-tuning"
    last = ", last epoch" if params.get("selection_candidates") == "last" else ""
    if method == "normalized_guarded":
        return f"guard {params.get('selection_score', 'worst_group')}{last}{LABELS}"
    if params.get("validate_on"):
        train = ", training images too" if params["validate_on"] == "train+val_train" else ""
        return f"guard {params['selection_score']}{last}{train}"
    return f"{params.get('bn_statistics', PANEL_FINETUNE['bn_statistics'])}, lr {finetune_lr:g}"


def is_fixed(setting):
    return ", lr " in setting


def with_settings(frame, families):
    """``frame`` (:func:`benchmarks.report.records_frame`) with ``setting`` and ``family`` columns; ``families``
    maps each task name to its family."""
    frame = frame.copy()
    frame["setting"] = [panel_setting(m, p, lr) for m, p, lr in zip(frame["method"], frame["params"],
                                                                  frame["finetune_lr"])]
    frame["family"] = frame["task"].map(families)
    return frame


def panel_means(frame):
    means = frame.groupby(["family", "task", "setting"], sort=False)[["WST", "ACC"]].agg(["mean", "std", "count"])
    means.columns = [f"{m}_{s}" for m, s in means.columns]
    return means.reset_index()


def best_fixed(means):
    """Per task, the fixed variant with the highest mean test WST (hindsight)."""
    fixed = means[means["setting"].map(is_fixed)]
    return fixed.loc[fixed.groupby("task", sort=False)["WST_mean"].idxmax()].set_index("task")["setting"]


def panel_paired(frame, means, metric="WST"):
    """Each candidate minus each reference (``REFERENCES``), per task, paired by seed."""
    best = best_fixed(means)
    rows = []
    for (family, task), part in frame.groupby(["family", "task"], sort=False):
        by = part.pivot_table(index="seed", columns="setting", values=metric, aggfunc="first")
        reference = {"ERM": "ERM", "full fine-tuning": "full fine-tuning", "default": DEFAULT_SETTING,
                     "best fixed": best.get(task)}
        for setting in by.columns:
            if setting in ("ERM", "full fine-tuning"):
                continue
            for name in REFERENCES:
                other = reference[name]
                if other not in by or other == setting:
                    continue
                diff = (by[setting] - by[other]).dropna()
                mean, low, high = t_interval(diff)
                rows.append({"family": family, "task": task, "setting": setting, "versus": name,
                             "versus_setting": other, "metric": metric, "mean_diff": mean, "ci_low": low,
                             "ci_high": high, "n_seeds": len(diff)})
    return pd.DataFrame(rows)


def family_means(means):
    """``means`` (:func:`panel_means`) per family instead of per task: each family's test WST is the mean over its
    tasks (every task has the same seeds, so it is the mean over the family's runs); ``task`` holds the family,
    so that :func:`best_fixed` and :func:`panel_verdict` read it as they read a task."""
    grouped = means.groupby(["family", "setting"], sort=False)["WST_mean"].mean().reset_index()
    return grouped.assign(task=grouped["family"])


def panel_verdict(means, choose=True, unit="task"):
    """Per candidate: the worst (over tasks) gain over ERM and shortfall to the best fixed variant, the mean WST
    over tasks, whether it meets the bars, and (``choose``) which label-free candidate is the evidence-based
    default; families held out from the choice check it and choose nothing (no ``chosen`` column).
    ``unit="family"`` with :func:`family_means`: the same over families (``worst_family_gain``, ...)."""
    best = best_fixed(means)
    wst = means.pivot_table(index="task", columns="setting", values="WST_mean", aggfunc="first", sort=False)
    rows = []
    for setting in wst.columns:
        if setting == "ERM":
            continue
        gain = wst[setting] - wst["ERM"]
        shortfall = pd.Series({t: wst.loc[t, best[t]] - wst.loc[t, setting] for t in wst.index})
        labelled = setting.endswith(LABELS)
        bar = LABELLED_BAR if labelled else SHORTFALL_BAR
        rows.append({"setting": setting, "group_labels": labelled,
                     "mean_WST": wst[setting].mean(), "worst_gain_over_ERM": gain.min(),
                     f"worst_{unit}_gain": gain.idxmin(), "worst_shortfall_to_best_fixed": shortfall.max(),
                     f"worst_{unit}_shortfall": shortfall.idxmax(),
                     "meets_bars": bool((gain >= GAIN_BAR).all() and (shortfall <= bar).all())})
    verdict = pd.DataFrame(rows)
    verdict["reference"] = verdict["setting"] == "full fine-tuning"  # another strategy, shown, never chosen
    if not choose:
        return verdict
    free = verdict[~verdict["group_labels"] & ~verdict["reference"]]
    free = free.sort_values(["worst_shortfall_to_best_fixed", "mean_WST"], ascending=[True, False])
    verdict["chosen"] = verdict["setting"] == free["setting"].iloc[0]
    return verdict


def panel_tables(frame, families, choose=True):
    """``(means, paired, verdict, family_verdict)`` of the panel's records (see the module docstring);
    ``choose``: see :func:`panel_verdict` (the per-family verdict chooses nothing)."""
    frame = with_settings(frame, families)
    means = panel_means(frame)
    return (means, panel_paired(frame, means), panel_verdict(means, choose),
            panel_verdict(family_means(means), choose=False, unit="family"))


def panel_probe(frame, families):
    """Per (family, task, setting) of a guard with a group probe: the probe's mean cross-validated accuracy on the
    synthetic images, and its mean accuracy and balanced accuracy on the held-out real images' true groups (which
    the method never saw), over ``seeds`` (records without them are left out)."""
    columns = [f"probe_{key}" for key in PROBE_COLUMNS]
    keys = ["family", "task", "setting"]
    if "probe_real_accuracy" not in frame:
        return pd.DataFrame(columns=[*keys, *columns, "seeds"])
    part = with_settings(frame, families).dropna(subset=["probe_real_accuracy"])
    grouped = part.groupby(keys, sort=False)
    return grouped[columns].mean().assign(seeds=grouped.size()).reset_index()


def _interval(row):
    return format_interval(row["mean_diff"], row["ci_low"], row["ci_high"], decimals=1, mark=True)


def _rounded(verdict):
    """A verdict table as the pages show it: WST numbers to one decimal."""
    shown = verdict.copy()
    for column in ("mean_WST", "worst_gain_over_ERM", "worst_shortfall_to_best_fixed"):
        shown[column] = shown[column].map(lambda v: f"{v:.1f}")
    return shown


def panel_sections(folder, name, family=None):
    """The panel's page sections from its CSVs; ``family``: only that family's tasks (a per-family page)."""
    means = pd.read_csv(folder / "panel_means.csv")
    paired = pd.read_csv(folder / "panel_paired.csv")
    verdict = pd.read_csv(folder / "panel_verdict.csv")
    if family is not None:
        means, paired = means[means["family"] == family], paired[paired["family"] == family]
        if means.empty:
            raise ValueError(f"No panel family {family!r} in {folder}; expected one of "
                             f"{sorted(pd.read_csv(folder / 'panel_means.csv')['family'].unique())}.")
    means = means.assign(cell=[f"{m:.1f} ± {s:.1f} ({int(c)})" if not np.isnan(s) else f"{m:.1f} ({int(c)})"
                               for m, s, c in zip(means["WST_mean"], means["WST_std"], means["WST_count"])])
    wide = means.pivot_table(index="setting", columns="task", values="cell", aggfunc="first", sort=False)
    wide = wide.reset_index()
    paired = paired.assign(cell=[_interval(r) for _, r in paired.iterrows()])
    pairs = paired.pivot_table(index=["task", "setting"], columns="versus", values="cell", aggfunc="first",
                               sort=False).reindex(columns=list(REFERENCES)).reset_index().fillna("")
    best = paired[paired["versus"] == "best fixed"].drop_duplicates("task")[["task", "versus_setting"]]
    sections = []
    if family is None:
        shown = _rounded(verdict)
        bars = (f"the smallest gain over ERM (the bar: {GAIN_BAR:g} points) and the largest shortfall to the best "
                f"fixed variant chosen in hindsight (the bar: {SHORTFALL_BAR:g} points; {LABELLED_BAR:g} for the guards "
                "that read 200 group labels), with the task where each happens")
        if "chosen" not in verdict:  # families held out from the choice: a check of the panel's default, no choice
            sections.append((
                "How the panel's defaults carry over", "panel_verdict.csv",
                f"Per candidate, over the held-out families' tasks: the mean test WST over tasks, {bars}. The "
                f"default was chosen on the panel ({DEFAULT_SETTING}); nothing is chosen here.",
                shown.to_markdown(index=False, disable_numparse=True)))
        else:
            sections.append((
                "Which setting to make the default", "panel_verdict.csv",
                f"Per candidate, over every task of the panel: the mean test WST over tasks, {bars}; `chosen`: the "
                "label-free candidate with the smallest worst shortfall (`reference`: full fine-tuning, another "
                "strategy, measured the same way and never chosen).",
                shown.to_markdown(index=False, disable_numparse=True)))
    by_family = folder / "panel_family_verdict.csv"
    several = means.groupby("family")["task"].nunique().max() > 1  # else per family is per task
    if family is None and several and by_family.is_file():
        shown = _rounded(pd.read_csv(by_family))
        sections.append((
            "The same bars per family", "panel_family_verdict.csv",
            "Per candidate, over families instead of tasks: a family's test WST is the mean over its tasks and its "
            "best fixed variant the one with the highest family mean. The issue asks for the bars \"on every "
            "family\"; per task (above) is the stricter check, since a family of several tasks (rendered digits at "
            "four style gaps) can meet a bar on its mean and miss it on one task.",
            shown.to_markdown(index=False, disable_numparse=True)))
    probe = folder / "panel_probe.csv"
    probe = pd.read_csv(probe) if probe.is_file() else pd.DataFrame()
    if family is not None and not probe.empty:
        probe = probe[probe["family"] == family]
    if not probe.empty:
        shown = probe.drop(columns=["family"]).rename(columns={
            "probe_synthetic_accuracy": "synthetic (cross-validated)", "probe_real_accuracy": "real, held-out",
            "probe_real_balanced_accuracy": "real, held-out, balanced"})
        for column in ("synthetic (cross-validated)", "real, held-out", "real, held-out, balanced"):
            shown[column] = shown[column].map(lambda v: f"{100 * v:.1f}")
        sections.append((
            "The group probe on real images", "panel_probe.csv",
            "The label-free probe guards infer each held-out image's group with a probe trained on the synthetic "
            "images. Its accuracy in %, mean over seeds: cross-validated on the synthetic images (what the "
            "mitigator sees), and on the held-out real images' true groups (which it never sees; balanced: the mean "
            "of the two groups' recalls, so the rare group counts as much as the common one).",
            shown.to_markdown(index=False, disable_numparse=True)))
    sections += [
        ("Test worst-group accuracy of every setting", "panel_means.csv",
         "Test WST %, mean ± std over seeds (seeds); fixed variants are `BatchNorm handling, fine-tuning rate`; "
         "guards choose among the pre-trained model, every epoch, WiSE-FT interpolations and BatchNorm handling "
         "(`last epoch`: only between the last epoch's BatchNorm statistics as fine-tuned and re-estimated).",
         wide.to_markdown(index=False, disable_numparse=True)),
        ("The best fixed variant in hindsight", "panel_paired.csv",
         "Per task, the fixed variant with the highest mean test WST: an oracle (chosen on the test split), the "
         "bar a default is measured against, never a result.", best.rename(columns={"versus_setting": "best fixed"})
         .to_markdown(index=False, disable_numparse=True)),
        ("Every candidate against the references, paired by seed", "panel_paired.csv",
         f"Candidate minus reference, test WST: mean [95 % Student t interval]; * the interval excludes 0. "
         f"`default` is the unguarded mitigator at the defaults the panel started from ({DEFAULT_SETTING}).",
         pairs.to_markdown(index=False, disable_numparse=True)),
    ]
    return sections
