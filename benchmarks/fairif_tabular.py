"""FairIF's Table 4 on its own datasets: Adult, German and COMPAS, logistic regression, the paper's numbers beside.

``aimfair-bench fairif-tabular [--seeds 0 1 2 3 4] [--datasets adult german compas] [--out results/fairif_tabular]``

Data (aif360's conventions, FairIF's binary codes; :func:`aimfair_plugin.datasets.load_german`,
:func:`~aimfair_plugin.datasets.load_compas`, :func:`~aimfair_plugin.datasets.load_adult`): Adult with sex
(1 male) as the sensitive attribute, its official training file split 80/20 into training and validation (the
split drawn per seed, stratified by (y, s)) and its official test file as the test set; German (sex) and COMPAS
(race, Black and White defendants) split 60/20/20 per seed, stratified by (y, s). Features: standardised
numbers and one-hot categories fitted on the training split.

Methods, each with the group labels it reads (``GROUP_LABELS``):

- ``ERM``: scikit-learn's ``LogisticRegression`` (L-BFGS, C = 1), no group labels; the base model of the
  fairlearn and aif360 rows;
- ``ERM (stage one)``: the package's logistic model trained by SGD, FairIF's first stage (the paper's
  "Original"), no group labels;
- ``FairIF``: :class:`~aimfair_plugin.estimators.InfluenceReweightingClassifier` at its defaults, reweighting the
  training rows by influence on the fairness of the validation split, whose group labels it reads;
- ``FairIF (tuned on validation)``: the same at the setting of ``FAIRIF_GRID`` (λ and the weight cap) chosen on
  the validation split (:func:`choose_on_validation`: the lowest AOD within 1 point of the first stage's accuracy),
  as the paper tuned every method on validation performance; the chosen setting is in the record's ``chosen``;
- ``ExponentiatedGradient``: fairlearn's reduction with the equalized-odds constraint around ``ERM``; reads the
  training rows' group labels;
- ``ThresholdOptimizer``: fairlearn's post-processing of ``ERM`` for equalized odds; reads the training rows'
  group labels and, at prediction, the test rows';
- ``Reweighing``: aif360's pre-processing (Kamiran and Calders), weights per (group, label), then ``ERM`` with
  those sample weights; reads the training rows' group labels.

Metrics as FairIF defines them (its Eqs. 3-5; :func:`aimfair_plugin.metrics.fairness_report`): accuracy and AD
in %, AOD and EOD as fractions. The paper's Table 4 (``PAPER``, typed from the paper and labelled as such) is
shown beside the measured rows; it did not publish seeds or intervals.
"""

import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split

from aimfair_plugin.datasets import adult_design_matrix, load_adult, load_compas, load_german
from aimfair_plugin.estimators import ImageClassifier, InfluenceReweightingClassifier
from aimfair_plugin.metrics import fairness_report

from .selection import format_interval, t_interval

# The FairIF paper's Table 4 (Acc %, AD %, AOD, EOD), for the rows it shares with this benchmark.
PAPER = {
    ("adult", "Original"): (69.76, 17.40, 0.302, 0.303), ("adult", "FairIF"): (68.97, 15.34, 0.170, 0.265),
    ("german", "Original"): (75.50, 15.45, 0.083, 0.041), ("german", "FairIF"): (74.68, 8.68, 0.017, 0.024),
    ("compas", "Original"): (68.09, 2.09, 0.183, 0.220), ("compas", "FairIF"): (67.53, 0.28, 0.156, 0.218),
}
TUNED = "FairIF (tuned on validation)"
PAPER_ROW = {"ERM (stage one)": "Original", "FairIF": "FairIF", TUNED: "FairIF"}
METHODS = ("ERM", "ERM (stage one)", "FairIF", TUNED, "ExponentiatedGradient", "ThresholdOptimizer", "Reweighing")
GROUP_LABELS = {"ERM": "none", "ERM (stage one)": "none", "FairIF": "validation", TUNED: "validation",
                "ExponentiatedGradient": "training", "ThresholdOptimizer": "training and test",
                "Reweighing": "training"}
# The package's SGD logistic model (FairIF's stages): full batches are too few steps on German's 600 rows.
RECIPES = {"adult": dict(max_epochs=10, lr=0.05, batch_size=256, lr_milestones=(7,), lr_gamma=0.1),
           "german": dict(max_epochs=60, lr=0.05, batch_size=32, lr_milestones=(40,), lr_gamma=0.1),
           "compas": dict(max_epochs=30, lr=0.05, batch_size=64, lr_milestones=(20,), lr_gamma=0.1)}
COLUMNS = ("Acc", "AD", "AOD", "EOD")


def _stratified(y, s, sizes, seed):
    """Row indices of consecutive parts of ``sizes`` (fractions), each stratified by (y, s)."""
    rest, parts = np.arange(len(y)), []
    remaining = 1.0
    for share in sizes[:-1]:
        cells = y[rest] * 2 + s[rest]
        taken, rest = train_test_split(rest, train_size=share / remaining, stratify=cells, random_state=seed)
        parts.append(np.sort(taken))
        remaining -= share
    return [*parts, np.sort(rest)]


def load_split(name, seed):
    """``Bunch``-like dict of float32 matrices ``X_{train,val,test}``, labels and groups for one seed."""
    if name == "adult":
        adult = load_adult()
        train, val = _stratified(adult.y_train, adult.sex_train, (0.8, 0.2), seed)
        frames = {"train": adult.X_train.iloc[train], "val": adult.X_train.iloc[val], "test": adult.X_test}
        y = {"train": adult.y_train[train], "val": adult.y_train[val], "test": adult.y_test}
        s = {"train": adult.sex_train[train], "val": adult.sex_train[val], "test": adult.sex_test}
        categorical, numeric = adult.categorical, adult.numeric
    else:
        data = load_german() if name == "german" else load_compas()
        groups = data.sex if name == "german" else data.race
        parts = dict(zip(("train", "val", "test"), _stratified(data.y, groups, (0.6, 0.2, 0.2), seed)))
        frames = {k: data.X.iloc[v] for k, v in parts.items()}
        y = {k: data.y[v] for k, v in parts.items()}
        s = {k: groups[v] for k, v in parts.items()}
        categorical, numeric = data.categorical, data.numeric
    out = {}
    for part in ("val", "test"):
        out["X_train"], out[f"X_{part}"] = adult_design_matrix(frames["train"], frames[part], categorical, numeric)
    for part in ("train", "val", "test"):
        out[f"y_{part}"], out[f"s_{part}"] = np.asarray(y[part]), np.asarray(s[part])
    return out


def _metrics(y, pred, s):
    report = fairness_report(y, pred, sensitive_features=s)
    return {"Acc": report["ACC"], "AD": report["AD"], "AOD": report["AOD"] / 100, "EOD": report["EOD"] / 100}


# The tuned FairIF's grid (its regulariser λ of Eq. 14 and the weight cap) and its rule: on the validation split,
# the lowest AOD among the settings within ACCURACY_TOLERANCE points of the first stage's accuracy (ties: the
# higher accuracy); when none is, the most accurate. The paper tuned "on validation set performance" without a rule.
FAIRIF_GRID = {"reg_lambda": (0.01, 0.1, 1.0), "max_weight": (2.0, 5.0, 20.0)}
ACCURACY_TOLERANCE = 1.0


def choose_on_validation(scores, stage_one_acc, tolerance=ACCURACY_TOLERANCE):
    """The index of the chosen setting among ``scores`` (dicts with validation ``Acc`` and ``AOD``) by the rule
    above."""
    close = [i for i, v in enumerate(scores) if v["Acc"] >= stage_one_acc - tolerance]
    if not close:
        return max(range(len(scores)), key=lambda i: scores[i]["Acc"])
    return min(close, key=lambda i: (scores[i]["AOD"], -scores[i]["Acc"]))


def tuned_fairif(d, recipe):
    """``(model, settings)``: FairIF at the :data:`FAIRIF_GRID` setting :func:`choose_on_validation` picks (the
    first stage is trained once and reused through ``memory``). The validation split both sets the weights and
    chooses, as in the paper, so its validation scores are optimistic; the test split is not read."""
    from sklearn.model_selection import ParameterGrid

    models, scores = [], []
    for params in ParameterGrid(FAIRIF_GRID):
        model = InfluenceReweightingClassifier(**recipe, **params, memory="process").fit(
            d["X_train"], d["y_train"], X_val=d["X_val"], y_val=d["y_val"], sensitive_features_val=d["s_val"])
        models.append((model, params))
        scores.append(_metrics(d["y_val"], model.predict(d["X_val"]), d["s_val"]))
    stage_one = models[0][0].stage_one_estimator_.predict(d["X_val"])
    return models[choose_on_validation(scores, 100.0 * float(np.mean(stage_one == d["y_val"])))]


def fit_predict(method, d, seed):
    """``(test predictions, chosen)`` of one method (see the module docstring) on the split ``d``; ``chosen``: the
    setting the tuned FairIF chose (JSON), else ``""``."""
    if method == TUNED:
        model, params = tuned_fairif(d, _stage_recipe(d, seed))
        return model.predict(d["X_test"]), json.dumps(params, sort_keys=True)
    return _fixed_method_predictions(method, d, seed), ""


def _stage_recipe(d, seed):
    """FairIF's stages (and its first stage alone): the package's logistic model at the dataset's recipe."""
    return {**d["recipe"], "arch": "logistic", "weight_decay": 0.0, "random_state": seed, "device": "cpu"}


def _fixed_method_predictions(method, d, seed):
    """Test predictions of a method at its fixed settings."""
    from aif360.sklearn.preprocessing import Reweighing
    from fairlearn.postprocessing import ThresholdOptimizer
    from fairlearn.reductions import EqualizedOdds, ExponentiatedGradient

    X, y, s = d["X_train"], d["y_train"], d["s_train"]
    erm = LogisticRegression(max_iter=2000)
    if method == "ERM":
        return erm.fit(X, y).predict(d["X_test"])
    if method in ("ERM (stage one)", "FairIF"):
        recipe = _stage_recipe(d, seed)
        if method == "ERM (stage one)":
            return ImageClassifier(**recipe).fit(X, y).predict(d["X_test"])
        model = InfluenceReweightingClassifier(**recipe)
        return model.fit(X, y, X_val=d["X_val"], y_val=d["y_val"], sensitive_features_val=d["s_val"]).predict(
            d["X_test"])
    if method == "ExponentiatedGradient":
        model = ExponentiatedGradient(erm, constraints=EqualizedOdds())
        model.fit(X, y, sensitive_features=s)
        return model.predict(d["X_test"], random_state=seed)
    if method == "ThresholdOptimizer":
        # float64 features: with float32 ones fairlearn 0.15 writes float64 thresholds into a float32 pandas
        # Series, which pandas 3 refuses
        model = ThresholdOptimizer(estimator=erm, constraints="equalized_odds", predict_method="predict_proba")
        model.fit(X.astype(np.float64), y, sensitive_features=s)
        return model.predict(d["X_test"].astype(np.float64), sensitive_features=d["s_test"], random_state=seed)
    if method == "Reweighing":
        frame = pd.DataFrame(X, index=pd.Index(s, name="s"))
        _, weights = Reweighing(prot_attr="s").fit_transform(frame, pd.Series(y, index=frame.index))
        return erm.fit(X, y, sample_weight=np.asarray(weights)).predict(d["X_test"])
    raise ValueError(f"Unknown method {method!r}; expected one of {METHODS}.")


def run(datasets, seeds, out, methods=METHODS):
    """Every (dataset, seed, method) not yet in ``out/records.csv``; returns all records as a frame."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / "records.csv"
    records = pd.read_csv(path) if path.is_file() else pd.DataFrame()
    done = set() if records.empty else set(zip(records["dataset"], records["seed"], records["method"]))
    rows = []
    for name in datasets:
        for seed in seeds:
            todo = [m for m in methods if (name, seed, m) not in done]
            if not todo:
                continue
            d = {**load_split(name, seed), "recipe": RECIPES[name]}
            for method in todo:
                start = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    pred, chosen = fit_predict(method, d, seed)
                rows.append({"dataset": name, "seed": seed, "method": method, "group_labels": GROUP_LABELS[method],
                             **_metrics(d["y_test"], pred, d["s_test"]), "n_train": len(d["y_train"]),
                             "n_val": len(d["y_val"]), "n_test": len(d["y_test"]),
                             "chosen": chosen,
                             "wall_s": round(time.perf_counter() - start, 2)})
                print(f"{name} seed {seed} {method}: " + ", ".join(f"{k} {rows[-1][k]:.3f}" for k in COLUMNS))
            records = pd.concat([records, pd.DataFrame(rows)], ignore_index=True)
            rows = []
            records.to_csv(path, index=False)
    if "chosen" in records:  # the CSV reads an empty choice back as NaN
        records["chosen"] = records["chosen"].fillna("").astype(str)
    return records


def tables(records):
    """``(summary, paired)``: mean ± std per (dataset, method) next to the paper's row, and each method minus
    ERM (stage one) paired by seed with 95 % t intervals."""
    rows = []
    for (name, method), part in records.groupby(["dataset", "method"], sort=False):
        row = {"dataset": name, "method": method, "group labels read": GROUP_LABELS[method], "seeds": len(part)}
        for column in COLUMNS:
            decimals = 2 if column in ("Acc", "AD") else 3
            row[column] = f"{part[column].mean():.{decimals}f} ± {part[column].std():.{decimals}f}"
        paper = PAPER.get((name, PAPER_ROW.get(method)))
        for column, value in zip(COLUMNS, paper or (None,) * 4):
            row[f"paper {column}"] = "" if value is None else f"{value:g}"
        rows.append(row)
    paired = []
    for name, part in records.groupby("dataset", sort=False):
        wide = {c: part.pivot_table(index="seed", columns="method", values=c) for c in COLUMNS}
        for method in part["method"].unique():
            if method == "ERM (stage one)":
                continue
            row = {"dataset": name, "method": method, "versus": "ERM (stage one)"}
            for column in COLUMNS:
                diff = (wide[column][method] - wide[column]["ERM (stage one)"]).dropna()
                mean, low, high = t_interval(diff)
                row[column] = format_interval(mean, low, high, decimals=2 if column in ("Acc", "AD") else 3,
                                              mark=True)
            paired.append(row)
    return pd.DataFrame(rows), pd.DataFrame(paired)


def write_page(out, docs, *, measured_at, intro=""):
    """``docs/fairif-tabular.md`` from ``out``'s ``summary.csv`` and ``paired.csv`` (copied to
    ``docs/fairif-tabular/`` with ``records.csv``): ours beside the paper's, and each method against FairIF's own
    stage one, paired by seed."""
    from .pages import paper_table_files

    out, docs = Path(out), Path(docs)
    summary, paired = pd.read_csv(out / "summary.csv").fillna(""), pd.read_csv(out / "paired.csv")
    settings = json.loads((out / "settings.json").read_text())
    files = {f: f for f in ("records.csv", "summary.csv", "paired.csv", "settings.json")}
    lines = ["# FairIF's Table 4: Adult, German and COMPAS", "", intro, "", *paper_table_files(
        out, docs, "fairif-tabular", files, generated_by="aimfair_bench.fairif_tabular.write_page",
        measured_at=measured_at, detail=f"`aimfair-bench fairif-tabular`, seeds {', '.join(map(str, settings['seeds']))}; "
        "the `paper` columns are the FairIF paper's Table 4, typed from the paper, which gives no seeds or intervals")]
    for name, part in summary.groupby("dataset", sort=False):
        lines += [f"## {name}", "", "From `summary.csv`: test Acc and AD in %, AOD and EOD as fractions (FairIF's "
                  "Eqs. 3-5), mean ± std over seeds; the paper's row where it has one (`Original` is FairIF's first "
                  "stage, our `ERM (stage one)`).", "",
                  part.drop(columns="dataset").to_markdown(index=False, disable_numparse=True), "",
                  "From `paired.csv`: each method minus ERM (stage one), paired by seed: mean [95 % Student t "
                  "interval]; * the interval excludes 0.", "",
                  paired[paired["dataset"] == name].drop(columns="dataset").to_markdown(index=False,
                                                                                         disable_numparse=True), ""]
    page = docs / "fairif-tabular.md"
    page.write_text("\n".join(lines))
    return page


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["adult", "german", "compas"],
                        choices=["adult", "german", "compas"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--out", default="results/fairif_tabular")
    parser.add_argument("--page", metavar="DOCS", help="also write DOCS/fairif-tabular.md from the results")
    parser.add_argument("--measured-at", default="HEAD", help="commit of the code that measured (for --page)")
    parser.add_argument("--intro", default="", help="a paragraph under the page's title (for --page)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    records = run(args.datasets, args.seeds, out)
    summary, paired = tables(records[records["dataset"].isin(args.datasets) & records["seed"].isin(args.seeds)])
    summary.to_csv(out / "summary.csv", index=False)
    paired.to_csv(out / "paired.csv", index=False)
    (out / "settings.json").write_text(json.dumps({"seeds": args.seeds, "datasets": args.datasets,
                                                   "recipes": RECIPES}, indent=2) + "\n")
    print("\n" + summary.to_markdown(index=False) + "\n\n" + paired.to_markdown(index=False))
    if args.page:
        print(write_page(out, args.page, measured_at=args.measured_at, intro=args.intro))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
