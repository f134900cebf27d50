"""The benchmark's figures (matplotlib, PNG).

- :func:`plot_tradeoff`: accuracy against worst-group accuracy and against EO, one marker per method
  (mean over seeds, error bars = std), the idea of the paper's Fig. 1;
- :func:`plot_topk`: ACC, WST and EO against k for AIM-Fair (the paper's Fig. 5), with ERM and full
  fine-tuning as horizontal references when they ran;
- :func:`plot_mask_blocks`: how many of each block's tensors the selective methods update (Fig. 8).
"""

import re

import numpy as np
import pandas as pd

from aimfair_plugin.nets import BLOCK_ORDER

from .methods import METHODS, package_default_method
from .selection import REFERENCES, select_variants

DEFAULT_METHOD = package_default_method()  # the benchmark method that runs the mitigator at its defaults


def method_style(method):
    """The marker style of a method in every plot: its ``Method.style`` (matplotlib's default marker if empty)."""
    return {"marker": "o", "markersize": 9, **METHODS[method].style}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _zoom_limits(rows, metric, lower_is_better):
    """Axis limits around the methods within 10 points of the best ACC and, among those, 12 of the best ``metric``.

    The best ``metric`` is taken among the accurate methods, so the zoom is never empty (a method with the
    lowest EO but a poor accuracy, such as one trained on synthetic data alone, does not empty it).
    """
    accurate = rows[rows["ACC_mean"] >= rows["ACC_mean"].max() - 10]
    values = accurate[f"{metric}_mean"]
    best = values.min() if lower_is_better else values.max()
    near = accurate[(values - best).abs() <= 12]
    pad = lambda lo, hi: (lo - 0.08 * (hi - lo + 1), hi + 0.08 * (hi - lo + 1))  # noqa: E731
    std = lambda col: near[f"{col}_std"].fillna(0)  # noqa: E731
    x = pad((near[f"{metric}_mean"] - std(metric)).min(), (near[f"{metric}_mean"] + std(metric)).max())
    y = pad((near["ACC_mean"] - std("ACC")).min(), (near["ACC_mean"] + std("ACC")).max())
    return x, y


def plot_tradeoff(summary, path, rule="group_val"):
    """Per task: ACC vs WST (up-right is better) and ACC vs EO (up-left is better), all methods and zoomed.

    Each method is shown at the variant ``rule`` selects on validation data (see :mod:`benchmarks.selection`).
    The top row shows every method; the bottom row zooms on the methods within 12 points of the best
    WST (left) and the best EO (right), with ACC within 10 points of the best, where the fine-tuning methods crowd together.
    """
    plt = _pyplot()
    best = select_variants(summary, rule)
    tasks = list(dict.fromkeys(best["task"]))
    fig, axes = plt.subplots(2 * len(tasks), 2, figsize=(13, 9 * len(tasks)), squeeze=False)
    methods = [m for m in METHODS if m in set(best["method"])]
    for t, task in enumerate(tasks):
        rows = best[best["task"] == task].set_index("method")
        for zoomed, row_axes in enumerate(axes[2 * t: 2 * t + 2]):
            for method in methods:
                if method not in rows.index:
                    continue
                row = rows.loc[method]
                style = dict(method_style(method), capsize=3, linestyle="none", label=METHODS[method].label, alpha=0.9)
                if method == DEFAULT_METHOD:  # the package's default: large, outlined, drawn on top
                    style.update(markersize=15, markeredgecolor="black", markeredgewidth=1.8, zorder=6, alpha=1.0,
                                 label=f"{METHODS[method].label} (the package default)")
                for ax, metric in zip(row_axes, ("WST", "EO")):
                    ax.errorbar(row[f"{metric}_mean"], row["ACC_mean"], xerr=np.nan_to_num(row[f"{metric}_std"]),
                                yerr=np.nan_to_num(row["ACC_std"]), **style)
                    if method == DEFAULT_METHOD:  # a ring and a label, so it is found among overlapping markers
                        ax.scatter([row[f"{metric}_mean"]], [row["ACC_mean"]], s=700, facecolors="none",
                                   edgecolors="black", linewidths=1.5, zorder=7)
                        ax.annotate("package default", (row[f"{metric}_mean"], row["ACC_mean"]), xytext=(18, -28),
                                    textcoords="offset points", fontsize=9, zorder=8,
                                    arrowprops=dict(arrowstyle="->", color="black"))
            zoom = f"rule {rule}" + (", zoomed on the best" if zoomed else ", every method")
            row_axes[0].set(xlabel="worst-group accuracy WST (%)  →  better", ylabel="accuracy ACC (%)")
            row_axes[0].set_title(f"{task}\naccuracy vs worst-group accuracy ({zoom})", fontsize=10)
            row_axes[1].set(xlabel="better  ←  equalized odds EO (%)", ylabel="accuracy ACC (%)")
            row_axes[1].set_title(f"{task}\naccuracy vs equalized odds ({zoom})", fontsize=10)
            if zoomed:
                for ax, metric in zip(row_axes, ("WST", "EO")):
                    xlim, ylim = _zoom_limits(rows, metric, lower_is_better=metric == "EO")
                    ax.set_xlim(*xlim)
                    ax.set_ylim(*ylim)
            for ax in row_axes:
                ax.grid(alpha=0.3)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False,
               title="method (mean ± std over seeds)")
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def _top_k_of(variant):
    match = re.search(r"top_k=([0-9.]+)", variant)
    return float(match.group(1)) if match else None


def plot_topk(summary, path):
    """ACC, WST and EO of AIM-Fair against k (needs at least two k values); None if there are not."""
    rows = summary[summary["method"] == "aimfair"].copy()
    rows["k"] = rows["variant"].map(_top_k_of)
    rows = rows.dropna(subset=["k"])
    if rows["k"].nunique() < 2:
        return None
    plt = _pyplot()
    tasks = list(dict.fromkeys(rows["task"]))
    fig, axes = plt.subplots(len(tasks), 3, figsize=(14, 4 * len(tasks)), squeeze=False)
    for row_axes, task in zip(axes, tasks):
        part = rows[rows["task"] == task].sort_values("k")
        refs = summary[(summary["task"] == task) & summary["method"].isin(REFERENCES)]
        for ax, metric in zip(row_axes, ("ACC", "WST", "EO")):
            ax.errorbar(part["k"], part[f"{metric}_mean"], yerr=part[f"{metric}_std"].fillna(0), marker="o",
                        capsize=3, color="tab:red", label="AIM-Fair")
            for (_, ref), style in zip(refs.iterrows(), ("--", ":")):
                ax.axhline(ref[f"{metric}_mean"], linestyle=style, color="grey",
                           label=METHODS[ref["method"]].label)
            better = "higher is better" if metric != "EO" else "lower is better"
            ax.set(xlabel="k (tensors per ranking)", ylabel=f"{metric} (%)", title=f"{task}: {metric} ({better})")
            ax.set_xticks(part["k"])
            ax.grid(alpha=0.3)
        row_axes[0].legend(loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_mask_blocks(records, path):
    """Mean number of updated tensors per block for each selective method/variant, against the block's total."""
    rows = []
    for r in records:
        mask = r.get("mask")
        if not mask or r["method"] not in ("aimfair", "cosine"):  # the paper's Fig. 8: its two selective methods
            continue
        for block, total in mask["tensors_per_block"].items():
            rows.append({"task": r["task"], "run": f"{METHODS[r['method']].label} {r['variant']}".strip(),
                         "block": block, "selected": mask["selected_per_block"].get(block, 0), "total": total})
    if not rows:
        return None
    plt = _pyplot()
    frame = pd.DataFrame(rows)
    tasks = list(dict.fromkeys(frame["task"]))
    fig, axes = plt.subplots(len(tasks), 1, figsize=(11, 4.2 * len(tasks)), squeeze=False)
    for ax, task in zip(axes[:, 0], tasks):
        part = frame[frame["task"] == task]
        means = part.groupby(["run", "block"], sort=False)["selected"].mean().unstack("block")
        totals = part.groupby("block")["total"].first()
        blocks = [b for b in BLOCK_ORDER if b in means.columns]
        x = np.arange(len(blocks))
        ax.bar(x, totals[blocks], width=0.9, color="none", edgecolor="grey", linestyle="--",
               label="tensors in the block")
        width = 0.8 / len(means)
        colours = plt.get_cmap("tab10")
        for i, (run, values) in enumerate(means.iterrows()):
            ax.bar(x - 0.4 + width * (i + 0.5), values[blocks], width=width, color=colours(i % 10), label=run)
        ax.set_xticks(x, blocks)
        ax.set(ylabel="tensors updated (mean over seeds)", title=f"{task}: where the selected tensors sit")
        ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False, fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path
