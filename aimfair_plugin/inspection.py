"""Looking inside a fitted :class:`SelectiveFinetuneMitigator`: the per-tensor gaps and the selection."""

import numpy as np

from .nets import BLOCK_ORDER

SELECTION_STYLE = dict(s=70, edgecolors="black", linewidths=1.2, zorder=3)
OTHER_STYLE = dict(s=45, facecolors="none", linewidths=1.2, zorder=2)


def plot_gradient_gaps(mitigator, *, ax=None, log=True, title=None):
    """Scatter of domain gap (x) against bias gap (y) per parameter tensor, selection highlighted.

    One marker per tensor, coloured by block (stem, layer1-4, fc); selected
    tensors are filled with a black edge, the others hollow. With
    ``selection="intersection"`` the dashed lines are the k-th smallest domain
    gap and the k-th largest bias gap: the paper's selection is the upper-left
    region they cut out. A box gives the Spearman correlation of the two gaps,
    the mask size and the smallest size the intersection allows (2k - n).

    Parameters
    ----------
    mitigator : fitted SelectiveFinetuneMitigator (``strategy="selective"``)
    ax : matplotlib Axes, optional
    log : bool, default=True
        Log-scaled axes (gaps span orders of magnitude across tensors).
    title : str, optional

    Returns
    -------
    ax : matplotlib Axes

    Examples
    --------
    >>> from aimfair_plugin.datasets import make_colored_mnist
    >>> data = make_colored_mnist(n_train=300, n_test=100, minority_share=0.05, image_size=16, random_state=0)
    >>> tiny = dict(width=4, max_epochs=1, batch_size=64, augment=False, random_state=0)  # a small, fast backbone
    >>> import matplotlib
    >>> matplotlib.use('Agg')
    >>> from aimfair_plugin.estimators import ImageClassifier, SelectiveFinetuneMitigator
    >>> from aimfair_plugin.inspection import plot_gradient_gaps
    >>> from aimfair_plugin.synth import RenderedDigitsProvider
    >>> mitigator = SelectiveFinetuneMitigator(RenderedDigitsProvider(), estimator=ImageClassifier(**tiny), random_state=0)
    >>> ax = plot_gradient_gaps(mitigator.select(data.X_train, data.y_train))
    >>> type(ax).__name__
    'Axes'
    """
    gaps = getattr(mitigator, "gradient_gaps_", None)
    if gaps is None:
        raise ValueError("plot_gradient_gaps needs a fitted SelectiveFinetuneMitigator.")
    if gaps["domain_gap"].isna().all():
        raise ValueError(f"strategy={mitigator.strategy!r} computes no gaps; use strategy='selective'.")
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(7, 5.5))
    report = mitigator.mask_report_
    colours = plt.get_cmap("tab10")
    blocks = [b for b in BLOCK_ORDER if b in set(gaps["block"])]
    x, y = gaps["domain_gap"].to_numpy(float), gaps["bias_gap"].to_numpy(float)
    if log:
        floor = min(v[v > 0].min() for v in (x, y) if (v > 0).any()) / 2 if ((x > 0) | (y > 0)).any() else 1e-12
        x, y = np.maximum(x, floor), np.maximum(y, floor)
        ax.set_xscale("log")
        ax.set_yscale("log")
    selected = gaps["selected"].to_numpy(bool)
    for i, block in enumerate(blocks):
        inb = (gaps["block"] == block).to_numpy()
        ax.scatter(x[inb & selected], y[inb & selected], color=colours(i), label=f"{block} (selected)",
                   **SELECTION_STYLE)
        ax.scatter(x[inb & ~selected], y[inb & ~selected], edgecolors=colours(i), label=f"{block} (not selected)",
                   **OTHER_STYLE)
    k = report["top_k"]
    if report.get("selection") == "intersection" and k < len(gaps):
        ax.axvline(np.sort(x)[k - 1], color="grey", linestyle="--", linewidth=1)
        ax.axhline(np.sort(y)[::-1][k - 1], color="grey", linestyle="--", linewidth=1)
    ax.text(0.02, 0.98, f"Spearman ρ = {report['spearman_domain_vs_bias']:.2f}\n"
            f"selected {report['n_selected']} of {report['n_tensors']} (k = {k}, 2k − n = "
            f"{report['min_possible_intersection']})", transform=ax.transAxes, va="top", fontsize=9,
            bbox=dict(boxstyle="round", facecolor="white", alpha=0.85))
    ax.set_xlabel(f"domain gap Δ1 = gap(g_R, g_S1)  ({report['criterion']})  ←  robust to the domain shift")
    ax.set_ylabel("bias gap Δ2 = gap(g_S1, g_S2)  →  sensitive to bias")
    ax.set_title(title or f"Per-tensor gaps, selection = {report['selection']}")
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, frameon=False)
    ax.grid(alpha=0.3, which="both")
    return ax
