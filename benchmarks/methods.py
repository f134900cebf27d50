"""The methods a benchmark suite compares, under the names the AIM-Fair paper's tables use.

Every method fits on one task (see :mod:`benchmarks.tasks`) for one seed and returns a fitted model
with ``predict``. Three families:

- trained from scratch on real data without group labels: ERM and the baselines (CVaR DRO, LfF, JTT, AFR,
  FairIF; FairIF also gets the labelled validation split, as in its paper), and Group DRO, the oracle that
  reads the training data's group labels (an upper reference, not a competitor);
- trained from scratch with synthetic data: on the balanced synthetic set only, or on real + balanced
  synthetic data together (data supplementation);
- fine-tuning the ERM model on balanced synthetic data with :class:`SelectiveFinetuneMitigator`:
  linear probe, full fine-tuning, random tensors, sub-tuning (update one block / freeze one block),
  selective fine-tuning with the cosine criterion, AIM-Fair (absolute difference), and Auto-RGN (every
  tensor at a learning rate scaled by its relative gradient norm).

The ERM model is pre-trained once per (task, seed) and shared through a disk cache keyed by the data
and every pre-training parameter, so the ERM record and every fine-tuning run use the same model.
"""

import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from sklearn.utils import Bunch

from aimfair_plugin.datasets import read_images, write_images
from aimfair_plugin.estimators import (
    AFRClassifier,
    CVaRDROClassifier,
    GroupDROClassifier,
    ImageClassifier,
    InfluenceReweightingClassifier,
    JTTClassifier,
    LfFClassifier,
    SelectiveFinetuneMitigator,
    fit_cached,
)
from aimfair_plugin.synth import balanced_group_counts, synthetic_set_size

from .checkpoints import checkpoint_callbacks

# Job parameters that belong to the backbone recipe (ImageClassifier) rather than to the method itself.
RECIPE_KEYS = frozenset(ImageClassifier._get_param_names())


def base_estimator(job, checkpoints=False, **overrides):
    """The unfitted ERM model of a job (the pre-training every fine-tuning method starts from).

    ``overrides`` (e.g. a tuned ``lr``) change the recipe; without them this is the suite's recipe, the model
    every fine-tuning method of the seed starts from. ``checkpoints``: keep every epoch's weights for the
    benchmark's checkpoint selection (:mod:`benchmarks.checkpoints`; not part of the cache key).
    """
    return ImageClassifier(random_state=job.seed, device=job.device,
                           callbacks=checkpoint_callbacks(job) if checkpoints else None, **{**job.recipe, **overrides})


def recipe_overrides(job):
    """The recipe parameters a job's variant changes (a tuned learning rate, an optimiser...)."""
    return {k: v for k, v in job.params.items() if k in RECIPE_KEYS}


def pretrained_erm(job, data, cache_dir, **overrides):
    """ERM on the real training data, trained once per (task, seed, recipe) and then read from the cache (with
    every epoch's weights, whichever job trained it)."""
    return fit_cached(base_estimator(job, checkpoints=True, **overrides), data.X_train, data.y_train, memory=str(cache_dir))


def balanced_synthetic(job, data):
    """The balanced synthetic set the methods trained on synthetic data draw (the provider seeded with the
    job's seed, the mitigator's size rule); fine-tuning draws its own through the mitigator
    (:func:`finetune_synthetic`)."""
    n = synthetic_set_size(len(data.y_train), job.finetune["synthetic_ratio"])
    shape = (3, data.spec["image_size"], data.spec["image_size"])
    return data.provider.sample(balanced_group_counts(n), image_shape=shape, random_state=job.seed)


def mitigator(job, data, cache_dir, settings=None):
    """The job's :class:`SelectiveFinetuneMitigator`, starting from the seed's ERM model, with ``settings``
    (default: the suite's fine-tuning settings updated by the job's parameters)."""
    settings = {**job.finetune, **job.params} if settings is None else settings
    return SelectiveFinetuneMitigator(data.provider, estimator=base_estimator(job), memory=str(cache_dir),
                                      random_state=job.seed, device=job.device, callbacks=checkpoint_callbacks(job),
                                      **settings)


def finetune_synthetic(job, data, cache_dir):
    """The balanced synthetic set S2 a fine-tuning job of this seed trains on, drawn by the mitigator itself.

    S2 is drawn first, from the seed and the suite's fine-tuning settings alone, so every fine-tuning method of
    the seed (whatever its strategy parameters) trains on this same set."""
    return mitigator(job, data, cache_dir, dict(job.finetune)).draw_synthetic(data.X_train, data.y_train)[0]


# -- how each kind of method is fitted ---------------------------------------------------------------------


def fit_erm(method, job, data, cache_dir):
    """ERM: the cached pre-training (with the variant's recipe changes)."""
    return pretrained_erm(job, data, cache_dir, **recipe_overrides(job))


def fit_baseline(method, job, data, cache_dir):
    """A baseline trained from scratch on the real data; it receives the fit arguments ``method.fit_arguments``
    gives (group labels or validation data it declares). A fit of (X, y) alone is cached: tasks that differ only
    in their synthetic data (the domain-gap levels) share it."""
    params = {**job.recipe, **job.params}
    if method.shares_erm_cache:  # stage one is an ERM model: shared through the cache
        params["memory"] = str(cache_dir)
    model = method.estimator(random_state=job.seed, device=job.device, callbacks=checkpoint_callbacks(job), **params)
    extra = method.fit_arguments(data) if method.fit_arguments else {}
    if extra:
        return model.fit(data.X_train, data.y_train, **extra)
    return fit_cached(model, data.X_train, data.y_train, memory=str(cache_dir))


def fit_synthetic_only(method, job, data, cache_dir):
    """The backbone trained from scratch on the balanced synthetic set alone; with the parameter
    ``bn_statistics="real"`` its BatchNorm statistics are then re-estimated on the real training images."""
    X_syn, y_syn, _ = balanced_synthetic(job, data)
    model = base_estimator(job, checkpoints=True, **recipe_overrides(job)).fit(X_syn, y_syn)
    if job.params.get("bn_statistics", "finetune") == "real":
        model.reestimate_batchnorm(data.X_train)
    return model


def reestimates_batchnorm(job, model):
    """Whether a fitted run re-estimated its BatchNorm statistics on the real training images after training
    (so each of its checkpoints must be too): the mitigator's ``bn_statistics``, or a synthetic-only run's."""
    if isinstance(model, SelectiveFinetuneMitigator):
        return model.bn_statistics == "real"
    return METHODS[job.method].fit is fit_synthetic_only and job.params.get("bn_statistics", "finetune") == "real"


def fit_supplementation(method, job, data, cache_dir):
    """The backbone trained from scratch on the real data plus the balanced synthetic set."""
    X, y = data.X_train, data.y_train
    X_syn, y_syn, _ = balanced_synthetic(job, data)
    if X.ndim == 1 and X_syn.ndim != 1:  # real images are paths: write the synthetic ones next to them
        X_syn = write_images(X_syn, Path(cache_dir) / "supplementation" / job.settings_hash)
    elif X.ndim != 1 and X_syn.ndim == 1:  # real arrays, synthetic files: decode them at the real size
        X_syn = read_images(X_syn, image_size=X.shape[2:])
    X_syn, y_syn = np.concatenate([X, X_syn]), np.concatenate([y, y_syn])
    return base_estimator(job, checkpoints=True, **recipe_overrides(job)).fit(X_syn, y_syn)


def fit_finetune(method, job, data, cache_dir):
    """The mitigator with the method's strategy settings, fine-tuning the seed's ERM model.

    A variant with ``validate_on="val_train"`` turns the mitigator's held-out guard on with the task's
    training-distribution validation split (``X_val_train``, no group labels) as ``X_val`` / ``y_val``; the
    ERM model never sees that split, so the shared pre-training is unchanged."""
    params = dict(job.params)
    validate_on = params.pop("validate_on", None)
    model = mitigator(job, data, cache_dir, {**job.finetune, **params})
    if validate_on is None:
        return model.fit(data.X_train, data.y_train)
    if validate_on != "val_train":
        raise ValueError(f"validate_on={validate_on!r}: the guard can read 'val_train' (no group labels).")
    return model.fit(data.X_train, data.y_train, X_val=data.X_val_train, y_val=data.y_val_train)


def fit_random_matched(method, job, data, cache_dir):
    """A random mask of the size another method's mask has for the same seed and settings (the variant names
    the method, ``match``, and optionally its ``match_top_k``)."""
    params = dict(job.params)
    match, match_top_k = params.pop("match"), params.pop("match_top_k", None)
    matched = METHODS.get(match)
    if matched is None or matched.fit is not fit_finetune or match == "random_matched":
        raise ValueError(f"random_matched can match a selective fine-tuning method, not {match!r}.")
    select = {**job.finetune, **matched.params, "finetune_epochs": 0}
    if match_top_k is not None:
        select["top_k"] = match_top_k
    size = mitigator(job, data, cache_dir, select).fit(data.X_train, data.y_train).n_selected_
    return mitigator(job, data, cache_dir, {**job.finetune, **params, "top_k": size}).fit(data.X_train, data.y_train)


@dataclass(frozen=True)
class Method:
    """A benchmark method and everything the runner, the report and the plots read of it.

    label : str
        Its row label in the tables (the paper's name).
    fit : callable ``(method, job, data, cache_dir) -> fitted model``
        How a job of this method is fitted (one of the ``fit_*`` functions, or your own).
    estimator : class, optional
        The estimator :func:`fit_baseline` builds (with the recipe and the job's parameters).
    params : dict
        The parameters it adds to the suite's recipe (a baseline) or fine-tuning settings (a fine-tuning method).
    group_labels : {"none", "validation", "training"}
        Which group labels it reads: none (label-free), the group-labelled validation split, or the training
        split's (an oracle). The runner hands a method only the labels it declares.
    fit_arguments : callable ``data -> dict``, optional
        Extra arguments of ``fit`` (validation data, training group labels), read from what the method sees.
    starts_from_erm : bool
        Whether it starts from (or reads) the suite-recipe ERM model of its seed; such jobs run after ERM.
    shares_erm_cache : bool
        Whether its stage one is the ERM model and is read from the benchmark's cache.
    finetunes : bool
        Whether it fine-tunes with the mitigator, so that the suite's ``finetune_lrs`` search applies to it.
    uses_synthetic : bool
        Whether it needs the task's synthetic-data provider (its record then holds the suite's fine-tuning
        settings, which include the synthetic-set size).
    cost : float
        Rough run time relative to ERM (measured on the embedded task); orders parallel work, longest first.
    tables : dict table name -> row position
        Where it appears in the paper-layout tables ("1", "3", "4").
    reference : bool
        Whether every method is paired against it (ERM, full fine-tuning).
    selective : bool
        A selective-fine-tuning configuration (compared with same-size random masks).
    style : dict
        Its matplotlib marker style in every plot.
    """

    label: str
    fit: Callable
    estimator: type = None
    params: dict = field(default_factory=dict)
    group_labels: str = "none"
    fit_arguments: Callable = None
    starts_from_erm: bool = False
    shares_erm_cache: bool = False
    finetunes: bool = False
    uses_synthetic: bool = False
    cost: float = 1.0
    tables: dict = field(default_factory=dict)
    reference: bool = False
    selective: bool = False
    style: dict = field(default_factory=dict)


def _baseline(label, estimator, params=None, **fields):
    return Method(label, fit_baseline, estimator, params or {}, **fields)


def _synthetic(label, fit, **fields):
    return Method(label, fit, uses_synthetic=True, **fields)


def _finetune(label, params, fit=fit_finetune, **fields):
    return Method(label, fit, SelectiveFinetuneMitigator, params, starts_from_erm=True, finetunes=True,
                  uses_synthetic=True, **fields)


def _style(marker, color, **extra):
    return {"marker": marker, "color": color, "markersize": 9, **extra}


METHODS = {
    "erm": Method("ERM", fit_erm, ImageClassifier, tables={"1": 0, "3": 0}, reference=True,
                  style=_style("o", "#1f77b4")),
    "cvar_dro": _baseline("CVaR DRO", CVaRDROClassifier, {"alpha": 0.2}, cost=1.1, tables={"1": 1},
                          style=_style("s", "#ff7f0e")),
    "lff": _baseline("LfF", LfFClassifier, cost=2.5, tables={"1": 2}, style=_style("D", "#2ca02c")),
    "jtt": _baseline("JTT", JTTClassifier, {"identification_epochs": 2, "upweight": 20}, cost=1.2, tables={"1": 3},
                     style=_style("^", "#d62728")),
    "fairif": _baseline("FairIF", InfluenceReweightingClassifier, group_labels="validation",
                        fit_arguments=lambda d: {"X_val": d.X_val, "y_val": d.y_val, "sensitive_features_val": d.s_val},
                        starts_from_erm=True, shares_erm_cache=True, cost=1.8, tables={"1": 4},
                        style=_style("v", "#9467bd")),
    "group_dro": _baseline("Group DRO (oracle: training group labels)", GroupDROClassifier, {"step_size": 0.01},
                           group_labels="training", fit_arguments=lambda d: {"sensitive_features": d.s_train},
                           tables={"1": 6}, style=_style("<", "#8c564b")),
    "afr": _baseline("AFR", AFRClassifier, {"gamma": 4.0, "reg_lambda": 0.0}, shares_erm_cache=True,
                     style=_style(">", "#e377c2")),
    "synthetic_only": _synthetic("Trained on Synthetic Data", fit_synthetic_only, tables={"3": 1},
                                 style=_style("p", "#7f7f7f")),
    "supplementation": _synthetic("Data Supplementation", fit_supplementation, cost=1.8, tables={"3": 2},
                                  style=_style("P", "#bcbd22")),
    "linear_probe": _finetune("Linear Probe", {"strategy": "linear_probe"}, cost=0.3, tables={"3": 3},
                              style=_style("X", "#17becf")),
    "full": _finetune("Fully Fine-Tuning", {"strategy": "full"}, tables={"3": 4}, reference=True,
                      style=_style("h", "#000000")),
    "random": _finetune("Random Selection", {"strategy": "random"}, tables={"4": 0}, style=_style("H", "#8b4513")),
    "update_block": _finetune("Sub-Tuning (Updating One Block)", {"strategy": "update_block"}, tables={"4": 1},
                              style=_style("d", "#4b0082")),
    "freeze_block": _finetune("Sub-Tuning (Freezing One Block)", {"strategy": "freeze_block"}, tables={"4": 2},
                              style=_style("8", "#9acd32")),
    "cosine": _finetune("Selective Fine-Tuning (Cosine Similarity)", {"criterion": "cosine"}, tables={"4": 3},
                        selective=True, style=_style("1", "#ff1493")),
    "aimfair": _finetune("AIM-Fair (Absolute Difference)", {"criterion": "abs_diff"},
                         tables={"1": 5, "3": 5, "4": 4}, selective=True,
                         style=_style("*", "red", markersize=18, markeredgecolor="black", zorder=5)),
    "normalized": _finetune("Selective Fine-Tuning (Normalized Gaps)", {"criterion": "normalized"}, selective=True,
                            style=_style("3", "#b8860b")),
    "ratio": _finetune("Selective Fine-Tuning (Gap Ratio)", {"criterion": "abs_diff", "selection": "ratio"},
                       selective=True, style=_style("4", "#2f4f4f")),
    "auto_rgn": _finetune("Auto-RGN (Surgical Fine-Tuning)", {"strategy": "auto_rgn"}, style=_style("+", "#ff6347")),
    "random_matched": _finetune("Random Selection (Same Size)", {"strategy": "random"}, fit=fit_random_matched,
                                style=_style("x", "#000080")),
}


def mitigator_defaults():
    """The default of every ``SelectiveFinetuneMitigator`` parameter, read from its signature."""
    return {name: p.default for name, p in inspect.signature(SelectiveFinetuneMitigator).parameters.items()
            if p.default is not inspect.Parameter.empty}


def package_default_method():
    """The key of the fine-tuning method whose parameters are all the mitigator's defaults (``"normalized"``
    today): what the report, the plots and the batchnorm tables call "the package default". Derived, so it
    follows a change of default instead of a hand-kept name."""
    defaults = mitigator_defaults()
    keys = [key for key, m in METHODS.items() if m.fit is fit_finetune and m.params
            and all(defaults.get(k) == v for k, v in m.params.items())]
    if len(keys) != 1:
        raise RuntimeError(f"Expected one benchmark method at the mitigator's defaults, found {keys}.")
    return keys[0]


def table_methods(table):
    """The method keys of a paper-layout table ("1", "3" or "4"), in the table's row order."""
    rows = [(m.tables[table], key) for key, m in METHODS.items() if table in m.tables]
    return [key for _, key in sorted(rows)]


def visible_data(job, data):
    """What a job's method may read of a task: the training and validation splits, the provider and the spec,
    with the group labels its method declares (``Method.group_labels``); never the test split."""
    seen = METHODS[job.method].group_labels
    hidden = {"X_test", "y_test", "s_test"}
    if seen != "training":
        hidden |= {"s_train"}
    if seen == "none":
        hidden |= {"s_val", "s_val_train"}
    return Bunch(**{key: value for key, value in data.items() if key not in hidden})


def fit_method(job, data, cache_dir):
    """Fit the job's method on ``data`` (what it may see); returns the fitted model."""
    method = METHODS[job.method]  # job.params already holds method.params and the variant's
    return method.fit(method, job, data, cache_dir)


def register_method(key, method):
    """Add ``method`` to the registry under ``key`` (suites then name it like a built-in one); returns it.

    Adding a method to the benchmark is this one call (or one entry in :data:`METHODS`): the runner, the
    report and the plots read its fields.
    """
    if not isinstance(method, Method):
        raise TypeError(f"register_method needs a Method, got {type(method).__name__}.")
    if key in METHODS:
        raise ValueError(f"A method {key!r} is already registered.")
    METHODS[key] = method
    return method
