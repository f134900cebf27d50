"""Selective mask generation (AIM-Fair Sec. 3.2): mean gradients, per-tensor gaps, top-k intersection.

Pure functions over a module and data, so each step can be tested on its own.
"""

import copy
import numbers

import numpy as np
import pandas as pd
import torch
from scipy.stats import spearmanr
from torch.utils.data import DataLoader, Subset

from ..nets import block_of, classifier_head
from ._data import loader_options

CRITERIA = ("abs_diff", "cosine", "normalized")
SELECTIONS = ("intersection", "ratio")


def mean_gradients(module, dataset, *, batch_size=128, max_batches=None, device="cpu", num_workers=0):
    """Mean loss gradient over a dataset for every named parameter (Eqs. 1-3).

    The gradient of the mean cross-entropy over all (at most
    ``max_batches * batch_size``) samples, computed in train mode as the
    reference implementation does. ``module`` itself is left untouched:
    the pass runs on a copy, so BatchNorm running statistics do not move.
    Batches are read one at a time (image files are decoded by
    ``num_workers`` loader processes, see ``ImageClassifier(num_workers)``),
    so memory does not grow with the dataset.

    Returns
    -------
    grads : dict name -> float32 CPU tensor
    """
    work = copy.deepcopy(module).to(device).train()
    work.zero_grad(set_to_none=True)
    if max_batches is not None:  # only the first batches are read at all
        dataset = Subset(dataset, range(min(len(dataset), max_batches * batch_size)))
    options = loader_options(num_workers, getattr(dataset, "dataset", dataset), device, persistent=False)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, **options)
    n_seen = 0
    for xb, yb in loader:
        if isinstance(xb, dict):
            xb = xb["X"]
        xb, yb = xb.to(device), yb.to(device)
        # Sum of per-sample losses, so the division below weights every sample equally.
        loss = torch.nn.functional.cross_entropy(work(xb).float(), yb, reduction="sum")
        loss.backward()
        n_seen += len(yb)
    if n_seen == 0:
        raise ValueError("Cannot compute mean gradients on an empty dataset.")
    return {
        name: (p.grad.detach().float().cpu() / n_seen if p.grad is not None else torch.zeros_like(p, device="cpu"))
        for name, p in work.named_parameters()
    }


def tensor_gap(a, b, criterion="abs_diff"):
    """Gap between two gradients of one tensor.

    ``"abs_diff"``: mean over elements of ``|a - b|`` (Eq. 4, averaged per
    tensor as in the reference code). ``"cosine"``: ``1 - cos(a, b)`` of the
    flattened gradients (Table 4's cosine-similarity variant; 0 when both
    point the same way, 2 when opposite; 1 if either is all zero).
    """
    if criterion == "abs_diff":
        return float((a - b).abs().mean())
    if criterion == "cosine":
        a, b = a.flatten().double(), b.flatten().double()
        denom = a.norm() * b.norm()
        return 1.0 if denom == 0 else float(1.0 - (a @ b) / denom)
    raise ValueError(f"criterion must be one of {CRITERIA}, got {criterion!r}.")


def gradient_scale(*grads):
    """A tensor's gradient scale: the mean over the given gradients of their mean absolute entry."""
    return float(np.mean([float(g.abs().mean()) for g in grads]))


def gradient_gaps(module, g_real, g_biased, g_balanced, *, criterion="abs_diff"):
    """Per-tensor domain gap (real vs biased synthetic) and bias gap (biased vs balanced synthetic).

    ``criterion="normalized"`` divides both abs_diff gaps of a tensor by the
    tensor's gradient scale on the three sets (``grad_scale``): mean |g_a - g_b|
    grows linearly with how large the tensor's gradients are, so without this
    both gaps rank tensors by gradient magnitude and the two rankings agree
    (user guide, "The method"). After it, a gap says how much the
    gradient changes *relative to its own size*, which compares across tensors.
    A tensor whose gradients are all zero gets gaps 0.

    Returns
    -------
    gaps : pandas.DataFrame
        One row per named parameter, in ``module.named_parameters()`` order,
        with columns ``tensor, block, numel, grad_scale, domain_gap, bias_gap``.
    """
    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {CRITERIA}, got {criterion!r}.")
    rows = []
    head = classifier_head(module)[0]
    for name, p in module.named_parameters():
        scale = gradient_scale(g_real[name], g_biased[name], g_balanced[name])
        inner = "abs_diff" if criterion == "normalized" else criterion
        domain = tensor_gap(g_real[name], g_biased[name], inner)
        bias = tensor_gap(g_biased[name], g_balanced[name], inner)
        if criterion == "normalized":
            domain, bias = (domain / scale, bias / scale) if scale > 0 else (0.0, 0.0)
        rows.append(
            {"tensor": name, "block": block_of(name, head), "numel": p.numel(), "grad_scale": scale,
             "domain_gap": domain, "bias_gap": bias}
        )
    return pd.DataFrame(rows)


def resolve_top_k(top_k, n_tensors):
    """``top_k`` as a count: an int in [1, n] is used as is, a float in (0, 1] is a fraction of ``n``."""
    if isinstance(top_k, bool):
        raise ValueError(f"top_k must be an int in [1, n_tensors] or a float in (0, 1], got {top_k!r}.")
    if isinstance(top_k, numbers.Integral):
        if not 1 <= top_k <= n_tensors:
            raise ValueError(f"top_k={top_k} is out of range: the model has {n_tensors} parameter tensors.")
        return int(top_k)
    if isinstance(top_k, numbers.Real) and 0.0 < top_k <= 1.0:
        return max(1, int(round(top_k * n_tensors)))
    raise ValueError(f"top_k must be an int in [1, n_tensors] or a float in (0, 1], got {top_k!r}.")


def top_k_intersection(domain_gap, bias_gap, k):
    """Selection mask of Eqs. 5-7: (k smallest domain gaps) ∩ (k largest bias gaps).

    Ties are broken by tensor order (stable sort). Returns a bool array.
    """
    domain_gap, bias_gap = np.asarray(domain_gap, float), np.asarray(bias_gap, float)
    low_domain = np.argsort(domain_gap, kind="stable")[:k]
    high_bias = np.argsort(-bias_gap, kind="stable")[:k]
    mask = np.zeros(len(domain_gap), dtype=bool)
    mask[np.intersect1d(low_domain, high_bias)] = True
    return mask


def top_k_ratio(domain_gap, bias_gap, k):
    """The ``k`` tensors with the largest bias gap / domain gap (``selection="ratio"``).

    One score that wants both a large bias gap and a small domain gap; the
    mask has exactly ``k`` tensors, so its size is a budget chosen directly
    rather than the by-product of intersecting two top-k lists. The ratio is
    free of any per-tensor scale that multiplies both gaps (so abs_diff and
    normalized give the same ratio mask). A zero domain gap ranks first when
    its bias gap is positive; 0 / 0 ranks last. Ties keep tensor order.
    """
    domain_gap, bias_gap = np.asarray(domain_gap, float), np.asarray(bias_gap, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        score = np.where(domain_gap > 0, bias_gap / domain_gap, np.where(bias_gap > 0, np.inf, -np.inf))
    mask = np.zeros(len(domain_gap), dtype=bool)
    mask[np.argsort(-score, kind="stable")[:k]] = True
    return mask


def select_tensors(domain_gap, bias_gap, k, selection="intersection"):
    """The selection mask: ``"intersection"`` (the paper's Eqs. 5-7) or ``"ratio"`` (:func:`top_k_ratio`)."""
    if selection == "intersection":
        return top_k_intersection(domain_gap, bias_gap, k)
    if selection == "ratio":
        return top_k_ratio(domain_gap, bias_gap, k)
    raise ValueError(f"selection must be one of {SELECTIONS}, got {selection!r}.")


def mask_statistics(gaps, mask, k):
    """Diagnostics of a mask: rank correlation of the two gaps, size, and the smallest possible size (None, as
    ``top_k``, for a strategy without a ``k``)."""
    rho = spearmanr(gaps["domain_gap"], gaps["bias_gap"]).statistic if len(gaps) > 2 else np.nan
    return {
        "spearman_domain_vs_bias": float(rho),
        "n_selected": int(np.sum(mask)),
        "min_possible_intersection": None if k is None else max(0, 2 * k - len(gaps)),
        "top_k": None if k is None else int(k),
        "n_tensors": len(gaps),
    }
