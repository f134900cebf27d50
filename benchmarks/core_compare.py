"""ERM vs full fine-tuning vs selective fine-tuning (AIM-Fair) on the embedded coloured MNIST.

Also measures how stable the mask is when the gradients use only a few batches
(Jaccard vs the full pass) and what a GridSearchCV over five values of k costs
relative to a single fit (pre-training is reused across candidates).

Run: ``python -m benchmarks.core_compare [--seeds 0 1 2] [--out results/core_compare]``.
Synthetic data: held-out real digits, visibly transformed (see ``_standin.py``).
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import sklearn
import torch
from sklearn.model_selection import GridSearchCV

from aimfair_plugin.datasets import make_colored_mnist
from aimfair_plugin.estimators import ImageClassifier, SelectiveFinetuneMitigator
from aimfair_plugin.estimators._cache import PROCESS_CACHE
from aimfair_plugin.estimators._data import ImageDataset
from aimfair_plugin.estimators._masking import gradient_gaps, mean_gradients, top_k_intersection
from aimfair_plugin.metrics import fairness_scorer
from aimfair_plugin.synth import balanced_group_counts, biased_group_counts

from ._common import ERM, mean_std_table
from ._common import evaluate as _evaluate
from ._standin import heldout_provider

FINETUNE = dict(top_k=55, finetune_epochs=10, finetune_batch_size=64, bias_ratio=0.96)


def evaluate(name, model, data, seed, lr, extra=None):
    return _evaluate(name, model, data.X_test, data.y_test, data.s_test, seed=seed, finetune_lr=lr, **(extra or {}))


def run_seed(seed, lrs, minority_share):
    data = make_colored_mnist(minority_share=minority_share, image_size=32, random_state=seed)
    provider = heldout_provider(data, random_state=seed)
    start = time.perf_counter()
    erm = ImageClassifier(random_state=seed, **ERM).fit(data.X_train, data.y_train)
    records = [evaluate("ERM", erm, data, seed, None, {"seconds": round(time.perf_counter() - start, 1)})]
    for lr in lrs:
        common = dict(estimator=erm, prefit=True, finetune_lr=lr, random_state=seed, **FINETUNE)
        fitted = {}
        for name, kw in (
            ("full fine-tuning", {"strategy": "full"}),
            ("selective abs_diff (AIM-Fair)", {"criterion": "abs_diff"}),
            ("selective cosine", {"criterion": "cosine"}),
        ):
            start = time.perf_counter()
            m = SelectiveFinetuneMitigator(provider, **common, **kw).fit(data.X_train, data.y_train)
            fitted[name] = m
            records.append(evaluate(name, m, data, seed, lr, {
                "n_selected": m.n_selected_, "seconds": round(time.perf_counter() - start, 1),
                "spearman": round(m.mask_report_["spearman_domain_vs_bias"], 3)}))
        size = fitted["selective abs_diff (AIM-Fair)"].n_selected_
        m = SelectiveFinetuneMitigator(provider, **{**common, "top_k": size}, strategy="random").fit(
            data.X_train, data.y_train)
        records.append(evaluate("random (same size as abs_diff)", m, data, seed, lr, {"n_selected": size}))
        print(f"seed {seed} lr {lr}: done", flush=True)
    return records, data, provider, erm


def mask_stability(data, provider, erm, seed, caps=(1, 2, 5, 10)):
    """Jaccard similarity of the abs_diff k=55 mask computed from the first `cap` batches vs all batches."""
    module = erm.net_.module_
    n = len(data.X_train)
    rng = np.random.RandomState(seed)
    S1 = provider.sample(biased_group_counts(n, 0.96), image_shape=(3, 32, 32), random_state=rng.randint(1 << 30))
    S2 = provider.sample(balanced_group_counts(n), image_shape=(3, 32, 32), random_state=rng.randint(1 << 30))
    sets = [ImageDataset(data.X_train, data.y_train), ImageDataset(S1[0], S1[1]), ImageDataset(S2[0], S2[1])]
    rows, masks = [], {}
    for cap in (None, *caps):
        start = time.perf_counter()
        grads = [mean_gradients(module, ds, batch_size=64, max_batches=cap) for ds in sets]
        gaps = gradient_gaps(module, *grads)
        masks[cap] = top_k_intersection(gaps["domain_gap"], gaps["bias_gap"], 55)
        rows.append({"seed": seed, "max_batches": cap or "all", "seconds": round(time.perf_counter() - start, 2)})
    for row, cap in zip(rows, (None, *caps)):
        inter = np.sum(masks[cap] & masks[None])
        row["jaccard_vs_full"] = round(inter / np.sum(masks[cap] | masks[None]), 3)
    return rows


def grid_ratio(data, provider, seed):
    sub = slice(0, 1500)
    X, y, s = data.X_train[sub], data.y_train[sub], data.s_train[sub]
    make = lambda: SelectiveFinetuneMitigator(  # noqa: E731
        provider, estimator=ImageClassifier(random_state=seed, **ERM), random_state=seed,
        finetune_lr=0.01, **FINETUNE)
    PROCESS_CACHE.clear()
    start = time.perf_counter()
    make().fit(X[:750], y[:750])
    single = time.perf_counter() - start
    PROCESS_CACHE.clear()
    start = time.perf_counter()
    with sklearn.config_context(enable_metadata_routing=True):
        GridSearchCV(make(), {"top_k": [45, 50, 55, 58, 60]}, scoring=fairness_scorer("WST"), cv=2,
                     refit=False).fit(X, y, sensitive_features=s)
    grid = time.perf_counter() - start
    return {"single_fit_s": round(single, 1), "grid_5k_cv2_s": round(grid, 1),
            "ratio": round(grid / single, 2), "fits_in_grid": 10}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--lrs", type=float, nargs="+", default=[0.001, 0.01])
    parser.add_argument("--minority-share", type=float, default=0.04)
    parser.add_argument("--out", default="results/core_compare")
    args = parser.parse_args(argv)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    records, stability = [], []
    for seed in args.seeds:
        seed_records, data, provider, erm = run_seed(seed, args.lrs, args.minority_share)
        records += seed_records
        stability += mask_stability(data, provider, erm, seed)
    table = pd.DataFrame(records)
    table.to_csv(out / "records.csv", index=False)
    metrics = ["ACC", "WST", "EO", "STD", "cell_y0_s0", "cell_y0_s1", "cell_y1_s0", "cell_y1_s1", "n_selected"]
    flat = mean_std_table(records, ["method", "finetune_lr"], metrics)
    print(f"\nColoured MNIST, minority share {args.minority_share}, seeds {args.seeds} (mean ± std):")
    print(flat.to_markdown())
    stab = pd.DataFrame(stability).groupby("max_batches", sort=False)[["jaccard_vs_full", "seconds"]].mean()
    print("\nMask stability (abs_diff, k=55, batch 64; 3000 images = 47 batches per set):")
    print(stab.round(3).to_markdown())
    ratio = grid_ratio(data, provider, args.seeds[0])
    print("\nGridSearchCV over 5 values of k (cv=2) vs one fit on a fold-sized set:", ratio)
    (out / "summary.md").write_text(flat.to_markdown() + "\n\n" + stab.round(3).to_markdown() + "\n")
    (out / "grid_ratio.json").write_text(json.dumps(ratio, indent=2))


if __name__ == "__main__":
    main()
