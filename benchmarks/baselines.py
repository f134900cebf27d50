"""Baselines on one backbone: ERM, JTT, CVaR DRO, LfF, FairIF and the Group DRO oracle.

Part 1, coloured MNIST (minority share 0.04, 32px, narrow ResNet-18, the embedded ERM recipe). The
balanced real test split is cut in two: 200 images (50 per cell) form FairIF's validation set, the
other 800 test every method. Only Group DRO sees the training protected attribute (an oracle).

Part 2, Adult (FairIF paper, Table 4): logistic regression, sex as the protected attribute, 20% of the
training split as FairIF's validation set, the official test split for testing.

Run: ``python -m benchmarks.baselines [--seeds 0 1 2] [--out results/baselines]``.
"""

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.model_selection import train_test_split

from aimfair_plugin.datasets import adult_design_matrix, load_adult, make_colored_mnist
from aimfair_plugin.estimators import (
    CVaRDROClassifier,
    GroupDROClassifier,
    ImageClassifier,
    InfluenceReweightingClassifier,
    JTTClassifier,
    LfFClassifier,
)

from ._common import CELL_COLUMNS, ERM, evaluate, mean_std_table

IMAGE_METHODS = {
    "ERM": (ImageClassifier, {}),
    "JTT": (JTTClassifier, {"identification_epochs": 2, "upweight": 20}),
    "CVaR DRO": (CVaRDROClassifier, {"alpha": 0.2}),
    "LfF": (LfFClassifier, {}),
    "FairIF": (InfluenceReweightingClassifier, {}),
    "Group DRO (oracle: training group labels)": (GroupDROClassifier, {"step_size": 0.01}),
}
ADULT_RECIPE = dict(arch="logistic", max_epochs=10, lr=0.05, batch_size=256, lr_milestones=(7,), lr_gamma=0.1,
                    weight_decay=0.0)


def fit_method(cls, params, X, y, s, val):
    model = cls(**params)
    if cls is InfluenceReweightingClassifier:
        return model.fit(X, y, X_val=val[0], y_val=val[1], sensitive_features_val=val[2])
    if cls is GroupDROClassifier:
        return model.fit(X, y, sensitive_features=s)
    return model.fit(X, y)


def image_part(seeds, minority_share):
    records = []
    for seed in seeds:
        data = make_colored_mnist(minority_share=minority_share, image_size=32, random_state=seed)
        order = np.random.RandomState(seed).permutation(len(data.y_test))
        cells = data.y_test * 2 + data.s_test
        val_idx = np.concatenate([order[cells[order] == c][:50] for c in range(4)])
        test_idx = np.setdiff1d(order, val_idx)
        val = (data.X_test[val_idx], data.y_test[val_idx], data.s_test[val_idx])
        for name, (cls, own) in IMAGE_METHODS.items():
            start = time.perf_counter()
            model = fit_method(cls, {**ERM, **own, "random_state": seed}, data.X_train, data.y_train,
                               data.s_train, val)
            records.append(evaluate(name, model, data.X_test[test_idx], data.y_test[test_idx],
                                    data.s_test[test_idx], seed=seed, seconds=round(time.perf_counter() - start, 1)))
            print(f"seed {seed} {name}: ACC {records[-1]['ACC']:.2f} WST {records[-1]['WST']:.2f} "
                  f"EO {records[-1]['EO']:.2f}", flush=True)
    return records


def adult_part(seeds):
    adult = load_adult()
    X_all, X_test = adult_design_matrix(adult.X_train, adult.X_test, adult.categorical, adult.numeric)
    records = []
    for seed in seeds:
        X, X_val, y, y_val, s, s_val = train_test_split(
            X_all, adult.y_train, adult.sex_train, test_size=0.2, random_state=seed, stratify=adult.y_train)
        for name, cls in (("ERM (logistic regression)", ImageClassifier), ("FairIF", InfluenceReweightingClassifier)):
            start = time.perf_counter()
            model = fit_method(cls, {**ADULT_RECIPE, "random_state": seed}, X, y, s, (X_val, y_val, s_val))
            records.append(evaluate(name, model, X_test, adult.y_test, adult.sex_test, seed=seed,
                                    seconds=round(time.perf_counter() - start, 1)))
    return records


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--minority-share", type=float, default=0.04)
    parser.add_argument("--out", default="results/baselines")
    parser.add_argument("--skip-images", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    text = []
    if not args.skip_images:
        images = image_part(args.seeds, args.minority_share)
        pd.DataFrame(images).to_csv(out / "coloured_mnist.csv", index=False)
        table = mean_std_table(images, "method", ["ACC", "WST", "EO", "STD", "AD", "AOD", "EOD", *CELL_COLUMNS])
        text.append(f"Coloured MNIST, minority share {args.minority_share}, seeds {args.seeds} (mean ± std, "
                    f"800 balanced test images):\n\n{table.to_markdown()}")
    adult = adult_part(args.seeds)
    pd.DataFrame(adult).to_csv(out / "adult.csv", index=False)
    table = mean_std_table(adult, "method", ["ACC", "AD", "AOD", "EOD", "WST", "EO"])
    text.append(f"Adult (protected: sex), logistic regression, seeds {args.seeds} (mean ± std):\n\n{table.to_markdown()}")
    print("\n\n".join(text))
    (out / "summary.md").write_text("\n\n".join(text) + "\n")


if __name__ == "__main__":
    main()
