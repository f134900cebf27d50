"""Pieces every benchmark script shares: the ERM recipe, one evaluation record, mean ± std tables."""

import pandas as pd

from aimfair_plugin.metrics import fairness_report, group_accuracy_table

# The embedded benchmark's ERM recipe (measured before the package existed): narrow ResNet-18, 15 epochs, lr x0.1 at epoch 10.
ERM = dict(width=16, max_epochs=15, lr=0.05, batch_size=64, lr_milestones=(10,), lr_gamma=0.1, augment=False)
CELL_COLUMNS = ["cell_y0_s0", "cell_y0_s1", "cell_y1_s0", "cell_y1_s1"]


def evaluate(name, model, X_test, y_test, s_test, *, eo_agg="max", **extra):
    """One record: method, the fairness report (ACC/WST/EO/STD/...) and the 2x2 cell accuracies.

    ``eo_agg``: "max" is fairlearn's equalized odds difference, "mean" the AIM-Fair paper's Eq. 9.
    """
    pred = model.predict(X_test)
    report = fairness_report(y_test, pred, sensitive_features=s_test, agg=eo_agg)
    cells = group_accuracy_table(y_test, pred, sensitive_features=s_test)
    record = {"method": name, **extra, **report.round(3).to_dict()}
    record.update({f"cell_y{y}_s{s}": round(float(cells.loc[y, s]), 2) for y in (0, 1) for s in (0, 1)})
    return record


def mean_std_table(records, by, metrics):
    """``mean ± std`` over seeds per group, as strings, in the order the groups first appear."""
    table = pd.DataFrame(records)
    summary = table.groupby(by, dropna=False, sort=False)[metrics].agg(["mean", "std"])

    def cell(mean, std):
        return f"{mean:.2f}" if pd.isna(std) else f"{mean:.2f} ± {std:.2f}"

    return pd.DataFrame(
        {m: [cell(a, b) for a, b in zip(summary[(m, "mean")], summary[(m, "std")])] for m in metrics},
        index=summary.index,
    )
