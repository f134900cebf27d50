"""Two costs of AIM-Fair's selection on the embedded task: how few gradient batches give the same mask, and
what a GridSearchCV over k costs relative to one fit.

1. **Mask stability.** For each seed, the quick suite's ERM model (its task, recipe and rendered synthetic
   data, via :func:`benchmarks.tasks.load_task`) is given to :class:`SelectiveFinetuneMitigator` with
   ``finetune_epochs=0`` (selection only) and ``mask_max_batches`` in {1, 2, 5, 10, all}; the table gives the
   Jaccard similarity of each mask to the all-batches mask and the selection time, per criterion.
2. **Grid cost.** ``GridSearchCV`` over five values of ``top_k`` (cv=2, scoring worst-group accuracy) against
   one fit on a fold-sized set, each with an empty ``joblib.Memory`` folder: pre-training is shared by the
   candidates of a fold, so the ratio is far below the 10 fits the grid makes.

The comparison of methods that this script once also ran is the ``criteria`` suite (``aimfair-bench
criteria``), which selects on validation data and pairs every selective mask with a random mask of its size.

Run: ``python -m aimfair_bench.mask_cost [--seeds 0 1 2] [--out results/mask_cost]``.
"""

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import sklearn
import torch
from sklearn.frozen import FrozenEstimator
from sklearn.model_selection import GridSearchCV

from aimfair_plugin.estimators import ImageClassifier, SelectiveFinetuneMitigator
from aimfair_plugin.metrics import fairness_scorer

from .methods import mitigator_params
from .suites import EMBEDDED_FINETUNE, EMBEDDED_RECIPE, embedded_task
from .tasks import load_task

CAPS = (1, 2, 5, 10)
CRITERIA = ("abs_diff", "normalized")
GRID = [45, 50, 55, 58, 60]


def _mitigator(provider, seed, estimator, memory="process", **settings):
    """The mitigator at the embedded suite's fine-tuning settings changed by ``settings`` (the benchmark's flat
    names, :func:`benchmarks.methods.mitigator_params`)."""
    finetune = {k: v for k, v in EMBEDDED_FINETUNE.items() if k != "finetune_lr"}
    return SelectiveFinetuneMitigator(provider, estimator=estimator, memory=memory, random_state=seed,
                                      **mitigator_params({**finetune, **settings}))


def mask_stability(data, seed, caps=CAPS, criteria=CRITERIA):
    """Rows of (seed, criterion, max_batches, jaccard_vs_full, n_selected, seconds)."""
    erm = ImageClassifier(random_state=seed, **EMBEDDED_RECIPE).fit(data.X_train, data.y_train)
    rows = []
    for criterion in criteria:
        masks = {}
        for cap in (None, *caps):
            start = time.perf_counter()
            fitted = _mitigator(data.provider, seed, FrozenEstimator(erm), criterion=criterion,
                                finetune_epochs=0, mask_max_batches=cap).fit(data.X_train, data.y_train)
            masks[cap] = np.array(list(fitted.selection_mask_.values()))  # name -> selected, in module order
            rows.append({"seed": seed, "criterion": criterion, "max_batches": cap or "all",
                         "n_selected": int(fitted.n_selected_), "seconds": time.perf_counter() - start})
        for row, cap in zip(rows[-len(masks):], masks):
            row["jaccard_vs_full"] = np.sum(masks[cap] & masks[None]) / max(1, np.sum(masks[cap] | masks[None]))
    return rows


def grid_cost(data, seed, grid=GRID):
    """Seconds of one fit on half the training set vs GridSearchCV over ``grid`` (cv=2) on all of it."""
    X, y, s = data.X_train, data.y_train, data.s_train

    def make(memory):
        return _mitigator(data.provider, seed, ImageClassifier(random_state=seed, **EMBEDDED_RECIPE),
                          memory=memory, finetune_lr=EMBEDDED_FINETUNE["finetune_lr"])

    with tempfile.TemporaryDirectory() as single_dir, tempfile.TemporaryDirectory() as grid_dir:
        start = time.perf_counter()
        make(single_dir).fit(X[: len(X) // 2], y[: len(y) // 2])
        single = time.perf_counter() - start
        start = time.perf_counter()
        with sklearn.config_context(enable_metadata_routing=True):
            GridSearchCV(make(grid_dir), {"strategy__top_k": grid}, scoring=fairness_scorer("WST"), cv=2,
                         refit=False).fit(X, y, sensitive_features=s)
        searched = time.perf_counter() - start
    return {"seed": seed, "single_fit_s": round(single, 1), "grid_s": round(searched, 1),
            "ratio": round(searched / single, 2), "fits_in_grid": 2 * len(grid)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", default="results/mask_cost")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch threads")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    task = embedded_task()
    rows, grid = [], None
    for seed in args.seeds:
        data = load_task(task, seed)
        rows += mask_stability(data, seed)
        if grid is None:
            grid = grid_cost(data, seed)
    frame = pd.DataFrame(rows)
    frame.to_csv(out / "mask_stability.csv", index=False)
    table = (frame.groupby(["criterion", "max_batches"], sort=False)[["jaccard_vs_full", "n_selected", "seconds"]]
             .agg(["mean", "std"]).round(3))
    batches = int(np.ceil(len(data.y_train) / EMBEDDED_FINETUNE["finetune_batch_size"]))
    text = (f"Mask stability ({task['name']}, k={EMBEDDED_FINETUNE['top_k']}, batch "
            f"{EMBEDDED_FINETUNE['finetune_batch_size']}, {batches} batches per set; seeds {args.seeds}, "
            f"{args.threads} torch threads):\n\n{table.to_markdown()}\n\nGridSearchCV over k={GRID} (cv=2) vs one "
            f"fit on a fold-sized set (seed {args.seeds[0]}): {json.dumps(grid)}\n")
    print(text)
    (out / "summary.md").write_text(text)
    (out / "grid_cost.json").write_text(json.dumps(grid, indent=2) + "\n")


if __name__ == "__main__":
    main()
