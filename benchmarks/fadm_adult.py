"""FADM on Adult (the FADM paper's Table 1): leave one race domain out, train on generated data only.

Adult's training and test files are pooled (45,222 rows without missing values) and split into the
five race domains. For each held-out domain, on the other four:

- **Real data**: logistic regression on the real rows (the reference);
- **FADM**: :class:`FairTabularDiffusion` with meta-learning over the four source domains, sampled with
  label guidance (λ_y = 1) and entropy guidance on the sensitive attribute (sex) for each λ_z in
  ``--guidance-fair`` (default 1 and 0; λ_z = 0 is label guidance only, isolating the fairness guidance),
  labels drawn from the source label frequencies; logistic regression on the generated rows only;
- **Unguided diffusion** (λ_y = λ_z = 0, same model): the same diffusion model without guidance; since
  its rows do not follow requested labels, each row is labelled by the model's label classifier at t = 0
  (the paper's DDPM baseline models (x, y) jointly instead);

- **DDPM** (the paper's row): the same diffusion model trained without meta-learning and sampled without
  guidance, rows labelled by its label classifier at t = 0;
- **TVAE** and **CTGAN** (the paper's VAE and GAN rows) from the maintained ``ctgan`` package, when it is
  installed (``pip install ctgan``; an optional extra, not a dependency: it pins pandas below 3): trained on the
  source rows with income and sex as columns and sampled unconditionally (its conditional sampling is only
  correct for the first discrete column), so the labels are the generated income column;

then tested on the held-out domain's real rows: ACC, R_DP and R_EOp (FADM Eqs. 12-13; min/max ratios of
the positive rate and the true-positive rate between the sexes; 1 is fair).

Model selection (``--select``, the paper's Sec. 5.1): for each held-out domain, FADM's sampling-time setting
λ_z is chosen among ``--guidance-fair`` by leave-one-domain-out cross-validation on the four source domains
(a model trained on three, its generated rows' downstream accuracy on the fourth, averaged), the highest mean
accuracy wins, and the model trained on all four is sampled at it (the row "FADM (selected λ_z)").

``PAPER_TABLE1`` holds the paper's Table 1 (typed from the paper, labelled as such) and is written beside the
measured table. Run: ``aimfair-bench fadm-adult [--seeds 0] [--n-synthetic 10000] [--select]
[--out results/fadm_adult]``.
"""

import argparse
import importlib.util
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.linear_model import LogisticRegression

from aimfair_plugin.datasets import load_adult
from aimfair_plugin.metrics import fairness_report
from aimfair_plugin.synth import FairTabularDiffusion, TabularEncoder

from .selection import format_interval, t_interval

DOMAINS = ["Amer-Indian-Eskimo", "Asian-Pac-Islander", "Black", "Other", "White"]
SHORT = {"Amer-Indian-Eskimo": "A-I-E", "Asian-Pac-Islander": "A-P-I", "Black": "Black", "Other": "Other",
         "White": "White"}
# The FADM paper's Table 1: per domain (A-I-E, A-P-I, Black, Other, White) and on average, ACC, R_DP, R_EOp.
PAPER_TABLE1 = {
    "VAE": [84.51, 0.83, 0.73, 77.82, 0.55, 0.43, 88.70, 0.81, 0.54, 86.66, 0.88, 0.73, 78.38, 0.81, 0.68, 83.21,
            0.74, 0.62],
    "GAN": [78.79, 0.86, 0.80, 59.60, 0.75, 0.73, 72.24, 0.90, 0.69, 80.42, 0.89, 0.78, 72.27, 0.84, 0.73, 72.66,
            0.85, 0.74],
    "DDPM": [87.01, 0.89, 0.79, 79.75, 0.68, 0.42, 89.49, 0.91, 0.75, 85.16, 0.81, 0.48, 79.11, 0.74, 0.6, 84.10,
             0.82, 0.61],
    "FairGAN": [85.16, 0.93, 0.90, 63.12, 0.95, 0.83, 82.97, 0.75, 0.44, 65.71, 0.82, 0.55, 74.00, 0.95, 0.84,
                74.20, 0.88, 0.71],
    "FADM": [88.05, 0.95, 0.80, 79.04, 0.82, 0.66, 89.66, 0.92, 0.73, 86.73, 0.96, 0.81, 81.37, 0.86, 0.76, 84.97,
             0.91, 0.75],
}
SELECTED = "FADM (λ_z chosen by leave-one-domain-out)"  # the row of --select; its λ_z per fold is a column
PAIRED_REFERENCE = "FADM (λ_y = 1, λ_z = 1)"  # the row the others are paired against (paired.csv)
FADM = dict(meta_learning=True, n_steps=100, max_epochs=10, batch_size=256, hidden=256, n_layers=3, lr=1e-3, inner_lr=1e-3,
            meta_weight=1.0, guidance_label=1.0, guidance_fair=1.0)


def pooled_adult():
    adult = load_adult()
    X = pd.concat([adult.X_train, adult.X_test], ignore_index=True)
    return (X, np.r_[adult.y_train, adult.y_test], np.r_[adult.sex_train, adult.sex_test],
            np.r_[adult.race_train, adult.race_test])


def downstream(encoder, X, y, X_test, y_test, s_test):
    """Logistic regression on (X, y), scored on the held-out domain: ACC and the two fairness ratios."""
    if len(np.unique(y)) < 2:  # a generator that produced one label only: the classifier predicts it
        pred = np.full(len(y_test), y[0])
    else:
        model = LogisticRegression(max_iter=2000).fit(encoder.transform(X), y)
        pred = model.predict(encoder.transform(X_test))
    report = fairness_report(y_test, pred, sensitive_features=s_test)
    return {"ACC": float(report["ACC"]), "R_DP": float(report["DP_ratio"]), "R_EOp": float(report["EOp_ratio"])}


def fit_fadm(X, y, sex, race, params, seed):
    """FADM (or, with ``meta_learning=False`` in ``params``, the plain diffusion model) on real rows."""
    return FairTabularDiffusion(**params, random_state=seed).fit(
        X.reset_index(drop=True), pd.Series(y, name="income"), sensitive_features=sex, domains=race)


def sample_rows(model, n, seed, guidance):
    """``(encoded, decoded rows, labels)`` of ``n`` generated rows at ``guidance = (λ_y, λ_z)``; unguided rows
    (both 0) are labelled by the model's label classifier at t = 0."""
    model.set_params(guidance_label=guidance[0], guidance_fair=guidance[1])
    Z, labels = model.sample_encoded(n, random_state=seed)
    if guidance == (0.0, 0.0):
        labels = model.predict_proba_noisy(Z).argmax(axis=1)
    return Z, model.encoder_.inverse_transform(Z), model.classes_[labels]


def select_guidance(data, source, seed, n, params, grid):
    """The paper's model selection (Sec. 5.1) for FADM's λ_z: leave one *source* domain out, train on the other
    source domains, score each λ_z of ``grid`` by the downstream accuracy of its generated rows on the left-out
    domain; returns ``(the λ_z with the highest mean accuracy (ties: the first), {λ_z: mean accuracy})``."""
    X, y, sex, race = data
    scores = {lz: [] for lz in grid}
    for inner in sorted(set(race[source])):
        train, val = source & (race != inner), race == inner
        encoder = TabularEncoder(handle_unknown="ignore").fit(X[train])
        model = fit_fadm(X[train], y[train], sex[train], race[train], params, seed)
        for lz in grid:
            _, rows, labels = sample_rows(model, min(n, int(train.sum())), seed, (params["guidance_label"], lz))
            scores[lz].append(downstream(encoder, rows, labels, X[val], y[val], sex[val])["ACC"])
    means = {lz: float(np.mean(v)) for lz, v in scores.items()}
    return max(grid, key=lambda lz: means[lz]), means


def ctgan_rows(kind, X, y, sex, n, seed, epochs=100):
    """``(rows, labels)``: ``n`` rows from the ``ctgan`` package's TVAE or CTGAN trained on the real rows with
    income and sex as discrete columns, sampled unconditionally (labels: the generated income column)."""
    import ctgan

    frame = X.assign(income=y, sex=sex).reset_index(drop=True)
    discrete = [c for c in frame if not pd.api.types.is_numeric_dtype(frame[c])] + ["income", "sex"]
    frame[discrete] = frame[discrete].astype(str)
    torch.manual_seed(seed)
    np.random.seed(seed)
    model = (ctgan.TVAE if kind == "tvae" else ctgan.CTGAN)(epochs=epochs)
    model.fit(frame, discrete_columns=discrete)
    sample = model.sample(n)
    rows = sample[list(X.columns)].copy()
    for column in X.columns:
        if isinstance(X[column].dtype, pd.CategoricalDtype):
            rows[column] = pd.Categorical(rows[column], categories=X[column].cat.categories)
        else:
            rows[column] = pd.to_numeric(rows[column])
    return rows, sample["income"].astype(int).to_numpy()


# DECAF's causal graph of Adult (its paper's experiments, after Zhang et al. 2017): each column's children.
DECAF_GRAPH = {
    "age": ["occupation", "hours-per-week", "income", "workclass", "marital-status", "education", "relationship"],
    "education": ["occupation", "hours-per-week", "income", "workclass", "relationship"],
    "hours-per-week": ["income"],
    "marital-status": ["occupation", "hours-per-week", "income", "workclass", "relationship", "education"],
    "native-country": ["marital-status", "hours-per-week", "education", "workclass", "income", "relationship"],
    "occupation": ["income"],
    "race": ["occupation", "income", "hours-per-week", "education", "marital-status"],
    "relationship": ["income"],
    "sex": ["occupation", "marital-status", "income", "workclass", "education", "relationship"],
    "workclass": ["income"],
}
# Ours, for the columns that graph leaves out (fnlwgt, a sampling weight, stays a root).
DECAF_GRAPH_ADDED = {"education": ["education-num", "capital-gain", "capital-loss"],
                     "age": ["capital-gain", "capital-loss"], "occupation": ["capital-gain", "capital-loss"],
                     "capital-gain": ["income"], "capital-loss": ["income"]}
# The optional generators' packages (each in an environment of its own: ctgan pins pandas below 3).
OPTIONAL_PACKAGES = {"ctgan": "ctgan", "decaf": "decaf-synthetic-data"}
DECAF = dict(h_dim=64, lr=1e-3, batch_size=512, lambda_privacy=0.0, l1_W=0.0)


def decaf_graph(columns):
    """``(edges, removed)``: the graph over ``columns`` as index pairs (parent, child) for DECAF's ``dag_seed``, and
    its demographic-parity debiasing (DECAF-DP): every edge into ``income`` from ``sex`` or a descendant of it,
    as DECAF's ``biased_edges`` ``{income: [parents]}``. Raises if the graph has a cycle."""
    from graphlib import TopologicalSorter

    children = {c: [] for c in columns}
    for graph in (DECAF_GRAPH, DECAF_GRAPH_ADDED):
        for parent, kids in graph.items():
            children[parent] = list(dict.fromkeys(children[parent] + kids))
    tuple(TopologicalSorter({c: [p for p in columns if c in children[p]] for c in columns}).static_order())
    descendants, frontier = {"sex"}, ["sex"]
    while frontier:
        for child in children[frontier.pop()]:
            if child not in descendants:
                descendants.add(child)
                frontier.append(child)
    index = {c: i for i, c in enumerate(columns)}
    edges = [[index[p], index[c]] for p in columns for c in children[p]]
    into_income = [index[p] for p in columns if "income" in children[p] and p in descendants]
    return edges, {index["income"]: into_income}


def decaf_rows(X, y, sex, race, n, seed, epochs=20):
    """``{"DP": (rows, labels), "ND": (rows, labels)}``: ``n`` rows from the ``decaf`` package's DECAF trained on the
    source rows with :data:`DECAF_GRAPH` (plus :data:`DECAF_GRAPH_ADDED`), generated with the demographic-parity
    edges removed (DP) and with none (ND, the same model). Columns are scaled to [0, 1] (categories by their
    codes) as DECAF's own Adult preprocessing does, and decoded by rounding; labels: the generated income."""
    import pytorch_lightning as pl
    from decaf import DECAF as DecafModel
    from decaf import DataModule

    frame = X.assign(race=np.asarray(race), sex=np.asarray(sex), income=np.asarray(y)).reset_index(drop=True)
    columns = list(frame.columns)
    codes, low, span = {}, {}, {}
    for c in columns:
        column = frame[c]
        if isinstance(column.dtype, pd.CategoricalDtype):
            codes[c] = column.cat.codes.to_numpy(dtype=float)
        elif pd.api.types.is_numeric_dtype(column):
            codes[c] = column.to_numpy(dtype=float)
        else:  # race's names
            codes[c] = pd.factorize(column, sort=True)[0].astype(float)
        low[c], span[c] = codes[c].min(), max(codes[c].max() - codes[c].min(), 1.0)
    scaled = np.column_stack([(codes[c] - low[c]) / span[c] for c in columns]).astype("float32")
    edges, removed = decaf_graph(columns)
    torch.manual_seed(seed)
    np.random.seed(seed)
    model = DecafModel(len(columns), dag_seed=edges, nonlin_out=[("sigmoid", len(columns))], **DECAF)
    pl.Trainer(max_epochs=epochs, logger=False, enable_checkpointing=False, enable_progress_bar=False,
               enable_model_summary=False, accelerator="cpu").fit(model, DataModule(scaled, batch_size=DECAF["batch_size"]))
    start = torch.from_numpy(scaled[np.random.RandomState(seed).randint(0, len(scaled), n)])
    out = {}
    for name, biased in (("DP", removed), ("ND", {})):
        torch.manual_seed(seed)
        with torch.no_grad():
            generated = model.gen_synthetic(start, biased_edges=biased).numpy()
        decoded = {c: np.clip(np.rint(generated[:, i] * span[c] + low[c]), low[c], low[c] + span[c])
                   for i, c in enumerate(columns)}
        rows = pd.DataFrame(index=range(n))
        for c in X.columns:
            if isinstance(X[c].dtype, pd.CategoricalDtype):
                rows[c] = pd.Categorical.from_codes(decoded[c].astype(int), categories=X[c].cat.categories)
            else:
                rows[c] = decoded[c].astype(X[c].dtype)
        out[name] = rows, decoded["income"].astype(int)
    return out


def run_fold(held_out, data, seed, n_synthetic, params, options):
    """One held-out domain: the rows of every generator in ``options["generators"]`` (see the module docstring)
    and the real-data reference; ``options`` also holds ``guidance_fair`` (the λ_z values sampled), ``select``
    and ``ctgan_epochs``."""
    X, y, sex, race = data
    src, tgt = race != held_out, race == held_out
    encoder = TabularEncoder(handle_unknown="ignore").fit(X[src])  # a held-out domain may have unseen countries
    test = (X[tgt], y[tgt], sex[tgt])
    # A sex classifier trained on the real source rows: how well sex can still be read from decoded rows.
    sex_reader = LogisticRegression(max_iter=2000).fit(encoder.transform(X[src]), sex[src])
    rows = [{"method": "Real data (logistic regression)", **downstream(encoder, X[src], y[src], *test)}]
    n = min(n_synthetic, int(src.sum()))
    generators = options["generators"]
    if "fadm" in generators:
        start = time.perf_counter()
        model = fit_fadm(X[src], y[src], sex[src], race[src], params, seed)
        fit_s = time.perf_counter() - start
        settings = [(f"FADM (λ_y = {params['guidance_label']:g}, λ_z = {lz:g})", (params["guidance_label"], lz))
                    for lz in options["guidance_fair"]]
        settings.append(("Unguided diffusion (λ = 0), labelled by the classifier", (0.0, 0.0)))
        if options["select"]:
            chosen, _ = select_guidance(data, src, seed, n_synthetic, params, list(options["guidance_fair"]))
            settings.insert(0, (SELECTED, (params["guidance_label"], chosen)))
        for name, guidance in settings:
            start = time.perf_counter()
            Z, synthetic, labels = sample_rows(model, n, seed, guidance)
            row = {"method": name, **downstream(encoder, synthetic, labels, *test)}
            if name == SELECTED:
                row["selected_lambda_z"] = guidance[1]
            # how well the sensitive classifier reads sex from the generated rows (entropy, in nats; max ln 2)
            p = model.predict_proba_noisy(Z, which="sensitive")
            q = sex_reader.predict_proba(encoder.transform(synthetic))
            row.update(sensitive_entropy=float(-(p * np.log(p + 1e-12)).sum(axis=1).mean()),
                       real_sex_reader_entropy=float(-(q * np.log(q + 1e-12)).sum(axis=1).mean()),
                       positive_share=float(np.mean(labels == 1)),
                       fit_s=round(fit_s, 1), sample_s=round(time.perf_counter() - start, 1))
            rows.append(row)
    if "ddpm" in generators:
        start = time.perf_counter()
        plain = fit_fadm(X[src], y[src], sex[src], race[src], dict(params, meta_learning=False), seed)
        _, synthetic, labels = sample_rows(plain, n, seed, (0.0, 0.0))
        rows.append({"method": "DDPM (no meta-learning, no guidance)", **downstream(encoder, synthetic, labels, *test),
                     "positive_share": float(np.mean(labels == 1)), "fit_s": round(time.perf_counter() - start, 1)})
    if "decaf" in generators:
        start = time.perf_counter()
        generated = decaf_rows(X[src], y[src], sex[src], race[src], n, seed, options.get("decaf_epochs", 20))
        for name, label in (("DP", "DECAF-DP (decaf package; edges into income from sex and its descendants removed)"),
                            ("ND", "DECAF-ND (the same model, no edge removed)")):
            synthetic, labels = generated[name]
            rows.append({"method": label, **downstream(encoder, synthetic, labels, *test),
                         "positive_share": float(np.mean(labels == 1)), "fit_s": round(time.perf_counter() - start, 1)})
    for kind in ("tvae", "ctgan"):
        if kind in generators:
            start = time.perf_counter()
            synthetic, labels = ctgan_rows(kind, X[src], y[src], sex[src], n, seed, options["ctgan_epochs"])
            rows.append({"method": f"{kind.upper()} (ctgan package)", **downstream(encoder, synthetic, labels, *test),
                         "positive_share": float(np.mean(labels == 1)),
                         "fit_s": round(time.perf_counter() - start, 1)})
    return [{"held_out": SHORT[held_out], "seed": seed, "n_source": int(src.sum()), "n_target": int(tgt.sum()),
             "n_synthetic": n, **row} for row in rows]


def paper_table():
    """The paper's Table 1 as a frame in the layout of :func:`tables` (its numbers, typed from the paper)."""
    columns = [f"{SHORT[d]} {m}" for d in DOMAINS for m in ("ACC", "R_DP", "R_EOp")]
    columns += [f"Avg {m}" for m in ("ACC", "R_DP", "R_EOp")]
    return pd.DataFrame([{"Method": f"{name} (paper)", **{c: f"{v:g}" for c, v in zip(columns, values)}}
                         for name, values in PAPER_TABLE1.items()])


def tables(frame):
    """Per held-out domain and on average: mean (± std over seeds) of ACC, R_DP, R_EOp per method."""
    methods = list(dict.fromkeys(frame["method"]))
    out = []
    for method in methods:
        part = frame[frame["method"] == method]
        row = {"Method": method}
        per_domain = part.groupby("held_out")[["ACC", "R_DP", "R_EOp"]].mean()
        for domain in [SHORT[d] for d in DOMAINS if SHORT[d] in per_domain.index]:
            row.update({f"{domain} {m}": f"{per_domain.loc[domain, m]:.2f}" for m in ("ACC", "R_DP", "R_EOp")})
        avg = part.groupby("seed")[["ACC", "R_DP", "R_EOp"]].mean()
        for m in ("ACC", "R_DP", "R_EOp"):
            row[f"Avg {m}"] = f"{avg[m].mean():.2f}" + (f" ± {avg[m].std():.2f}" if len(avg) > 1 else "")
        out.append(row)
    return pd.DataFrame(out)


def seed_averages(frame):
    """Per method and seed, the mean over held-out domains of ACC, R_DP and R_EOp (the Avg columns; a NaN ratio,
    a fold whose classifier predicted one class, is left out of its mean)."""
    return frame.groupby(["method", "seed"], sort=False)[["ACC", "R_DP", "R_EOp"]].mean()


def paired_table(frame, reference=PAIRED_REFERENCE):
    """Each method minus ``reference`` on the Avg columns, paired by seed (the seeds both have), with the
    mean difference and its two-sided 95 % Student t interval (``*``: the interval excludes 0); ``seeds`` says
    how many pairs. Empty when ``reference`` was not run."""
    averages = seed_averages(frame)
    methods = list(dict.fromkeys(frame["method"]))
    if reference not in methods:
        return pd.DataFrame()
    base = averages.loc[reference]
    rows = []
    for method in methods:
        if method == reference:
            continue
        diff = (averages.loc[method] - base).dropna(how="all")
        row = {"Method": method, "versus": reference, "seeds": len(diff)}
        for metric in ("ACC", "R_DP", "R_EOp"):
            mean, low, high = t_interval(diff[metric].dropna())
            row[f"Avg {metric}"] = format_interval(mean, low, high, decimals=2 if metric == "ACC" else 3, mark=True)
        rows.append(row)
    return pd.DataFrame(rows)


def write_tables(frame, out):
    """``table1.csv``, ``paired.csv`` and ``paper_table1.csv`` in ``out`` from the records ``frame``; returns
    the table."""
    out = Path(out)
    table = tables(frame)
    table.to_csv(out / "table1.csv", index=False)
    paired_table(frame).to_csv(out / "paired.csv", index=False)
    paper_table().to_csv(out / "paper_table1.csv", index=False)
    return table


def combine_runs(folders, out):
    """One results folder from several runs' (e.g. FADM in this environment, TVAE and CTGAN in one with the
    ``ctgan`` package): their records (a method measured twice on the same fold keeps the first folder's row),
    ``table1.csv``, ``paper_table1.csv`` and their summaries one after the other. Returns the records."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    records = pd.concat([pd.read_csv(Path(f) / "records.csv") for f in folders], ignore_index=True)
    records = records.drop_duplicates(["seed", "held_out", "method"], keep="first").reset_index(drop=True)
    records.to_csv(out / "records.csv", index=False)
    write_tables(records, out)
    (out / "summary.md").write_text("\n\n".join(f"From {f}:\n\n" + (Path(f) / "summary.md").read_text()
                                                for f in folders))
    return records


def write_page(out, docs, *, measured_at, intro=""):
    """``docs/fadm-adult.md`` from ``out``'s ``table1.csv`` and ``paper_table1.csv`` (copied to
    ``docs/fadm-adult/`` with ``records.csv``): the paper's Table 1 and ours, transposed like the paper's."""
    from .pages import paper_table_files

    out, docs = Path(out), Path(docs)
    records = pd.read_csv(out / "records.csv")
    ours = pd.read_csv(out / "table1.csv").astype(str)
    paper = pd.read_csv(out / "paper_table1.csv").astype(str)
    files = {f: f for f in ("records.csv", "table1.csv", "paper_table1.csv", "paired.csv") if (out / f).exists()}
    files["summary.txt"] = "summary.md"  # as text: Sphinx would read a .md next to the page as a document
    lines = ["# FADM's Table 1: Adult's race domains, leave one out", "", intro, "", *paper_table_files(
        out, docs, "fadm-adult", files, generated_by="aimfair_bench.fadm_adult.write_page", measured_at=measured_at,
        detail=f"`aimfair-bench fadm-adult`, seeds {', '.join(map(str, sorted(records['seed'].unique())))}, "
        f"{records['n_synthetic'].max()} generated rows per fold; the paper's rows are its Table 1, typed from the "
        "paper"),
             "## Ours and the paper's, side by side", "",
             "From `table1.csv` and `paper_table1.csv`: per held-out domain and on average, downstream accuracy (%) "
             "and the two fairness ratios of a logistic regression trained on generated rows only (real rows for "
             "the reference), tested on the held-out domain's real rows.", "",
             pd.concat([ours, paper], ignore_index=True).set_index("Method").T.to_markdown(), ""]
    paired = pd.read_csv(out / "paired.csv") if (out / "paired.csv").exists() else pd.DataFrame()
    if len(paired):
        lines += ["## Paired by seed", "",
                  f"From `paired.csv`: each row minus {PAIRED_REFERENCE} on the averages over the five held-out "
                  "domains, per seed (the seeds both rows have, `seeds`): mean difference [two-sided 95 % Student t "
                  "interval]; * the interval excludes 0. A single seed has no interval.", "",
                  paired.drop(columns="versus").to_markdown(index=False), ""]
    page = docs / "fadm-adult.md"
    page.write_text("\n".join(lines))
    return page


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--n-synthetic", type=int, default=10000, help="generated rows per fold (cap)")
    parser.add_argument("--epochs", type=int, default=FADM["max_epochs"])
    parser.add_argument("--held-out", nargs="+", default=DOMAINS, choices=DOMAINS)
    parser.add_argument("--guidance-fair", type=float, nargs="+", default=[1.0, 0.0],
                        help="λ_z values sampled from each fitted model (0 = label guidance only)")
    parser.add_argument("--no-meta-learning", action="store_true",
                        help="train FADM without the meta-learning of Algorithm 1 (ablation)")
    parser.add_argument("--generators", nargs="+", default=["fadm", "ddpm", "tvae", "ctgan", "decaf"],
                        choices=["fadm", "ddpm", "tvae", "ctgan", "decaf"])
    parser.add_argument("--select", action="store_true",
                        help="choose FADM's λ_z among --guidance-fair by leave-one-source-domain-out accuracy")
    parser.add_argument("--ctgan-epochs", type=int, default=100)
    parser.add_argument("--decaf-epochs", type=int, default=20)
    parser.add_argument("--out", default="results/fadm_adult")
    parser.add_argument("--page", metavar="DOCS", help="write DOCS/fadm-adult.md from an earlier run's files only")
    parser.add_argument("--combine", nargs="+", metavar="RUN",
                        help="first combine these runs' folders into --out (runs nothing)")
    parser.add_argument("--measured-at", default="HEAD", help="commit of the code that measured (for --page)")
    parser.add_argument("--intro", default="", help="a paragraph under the page's title (for --page)")
    args = parser.parse_args(argv)
    if args.combine:
        combine_runs(args.combine, args.out)
    if args.page:  # the page from the files a run wrote: nothing is trained
        print(write_page(args.out, args.page, measured_at=args.measured_at, intro=args.intro))
    if args.page or args.combine:
        return 0
    generators = list(args.generators)
    for package, kinds in (("ctgan", ("tvae", "ctgan")), ("decaf", ("decaf",))):
        if set(kinds) & set(generators) and importlib.util.find_spec(package) is None:
            print(f"The {package} package is not installed (pip install {OPTIONAL_PACKAGES[package]}): the "
                  f"{' and '.join(k.upper() for k in kinds)} rows are skipped.")
            generators = [g for g in generators if g not in kinds]
    options = {"generators": generators, "guidance_fair": args.guidance_fair, "select": args.select,
               "ctgan_epochs": args.ctgan_epochs, "decaf_epochs": args.decaf_epochs}
    torch.set_num_threads(min(2, torch.get_num_threads()))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = pooled_adult()
    params = dict(FADM, max_epochs=args.epochs, meta_learning=not args.no_meta_learning)
    rows, start = [], time.perf_counter()
    for seed in args.seeds:
        for domain in args.held_out:
            fold = run_fold(domain, data, seed, args.n_synthetic, params, options)
            rows += fold
            last = fold
            pd.DataFrame(rows).to_csv(out / "records.csv", index=False)  # what an interrupted run has so far
            print(f"seed {seed}, held out {SHORT[domain]}: " + "; ".join(
                f"{r['method']} ACC {r['ACC']:.1f} R_DP {r['R_DP']:.2f} R_EOp {r['R_EOp']:.2f}"
                for r in last), flush=True)
    frame = pd.DataFrame(rows)
    frame.to_csv(out / "records.csv", index=False)
    table = write_tables(frame, out)
    extra = frame.groupby("method", sort=False)[[c for c in ("sensitive_entropy", "real_sex_reader_entropy",
                                                             "positive_share", "fit_s", "sample_s") if c in frame]].mean()
    text = (f"FADM on Adult (meta_learning={params['meta_learning']}), leave one race domain out, seeds {args.seeds}, "
            f"{args.n_synthetic} generated rows per "
            f"fold, downstream logistic regression (ACC in %, R_DP / R_EOp in [0, 1]):\n\n"
            f"{table.set_index('Method').T.to_markdown()}\n\nThe paper's Table 1 (typed from the paper):\n\n"
            f"{paper_table().set_index('Method').T.to_markdown()}\n\n"
            f"Means over folds: entropy (nats, max ln 2 = 0.69) of FADM's own "
            f"sensitive classifier on the generated rows and of a sex classifier trained on the real source rows "
            f"applied to the decoded generated rows:\n\n{extra.round(3).to_markdown()}\n\nWall time "
            f"{time.perf_counter() - start:.0f} s.")
    print("\n" + text)
    (out / "summary.md").write_text(text + "\n")


if __name__ == "__main__":
    main()
