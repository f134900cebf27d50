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

import joblib
import numpy as np
from sklearn.base import clone
from sklearn.utils import Bunch

from aimfair_plugin.datasets import read_images, write_images
from aimfair_plugin.estimators import (
    AFRClassifier,
    AutoRGNMask,
    CandidateSelection,
    CVaRDROClassifier,
    FreezeBlockMask,
    FullMask,
    GroupDROClassifier,
    ImageClassifier,
    InfluenceReweightingClassifier,
    JTTClassifier,
    LfFClassifier,
    LinearProbeMask,
    RandomMask,
    RealBatchNormStatistics,
    SelectiveFinetuneMitigator,
    SelectiveMask,
    UpdateBlockMask,
    as_image_dataset,
    fit_cached,
)
from aimfair_plugin.synth import balanced_group_counts, synthetic_set_size

from .checkpoints import CALLBACK, RULES, checkpoint_callbacks

# The two validation sets of every task (see benchmarks.tasks): record name -> split name in the task data.
VALIDATION_SETS = {"train": "val_train", "group": "val"}

# Job parameters that belong to the backbone recipe (ImageClassifier) rather than to the method itself.
RECIPE_KEYS = frozenset(ImageClassifier._get_param_names())


# -- the benchmark's settings vocabulary -------------------------------------------------------------------
#
# Suites, variants, tuned settings and records name a fine-tuning method's settings flat (``top_k``, ``criterion``,
# ``bn_statistics``...), as the tables and the settings hashes of the records always have. These functions turn
# them into the mitigator's parameters (strategy and selection objects, one BatchNorm setting).

# The flat defaults: what a settings dict means when it does not name a setting.
FLAT_DEFAULTS = {"strategy": "selective", "top_k": 55, "criterion": "normalized", "selection": "intersection",
                 "bias_ratio": 0.9, "mask_max_batches": None, "block": None, "freeze_bn_stats": True,
                 "bn_statistics": "real", "validation_fraction": None, "selection_score": "synthetic_worst_group",
                 "interpolation_alphas": (0.25, 0.5, 0.75), "batchnorm_variants": False, "selection_candidates": "all"}
_STRATEGY_KEYS = ("strategy", "top_k", "criterion", "selection", "bias_ratio", "mask_max_batches", "block")
_SELECTION_KEYS = ("validation_fraction", "selection_score", "interpolation_alphas", "batchnorm_variants",
                   "selection_candidates")


def _strategy(flat):
    name = flat["strategy"]
    if name == "selective":
        return SelectiveMask(top_k=flat["top_k"], criterion=flat["criterion"], selection=flat["selection"],
                             bias_ratio=flat["bias_ratio"], max_batches=flat["mask_max_batches"])
    if name == "random":
        return RandomMask(top_k=flat["top_k"])
    if name in ("update_block", "freeze_block"):
        return (UpdateBlockMask if name == "update_block" else FreezeBlockMask)(flat["block"])
    builtin = {"full": FullMask, "linear_probe": LinearProbeMask, "auto_rgn": AutoRGNMask}
    if name not in builtin:
        raise ValueError(f"Unknown strategy {name!r} in the benchmark's settings.")
    return builtin[name]()


def _batchnorm(flat):
    bn, keep = flat["bn_statistics"], flat["freeze_bn_stats"]
    if bn == "eval":
        return "eval"
    if bn == "real":
        if not keep:
            raise ValueError("bn_statistics='real' with freeze_bn_stats=False has no mitigator setting (its "
                             "batchnorm='real' keeps frozen layers' statistics during fine-tuning).")
        return "real"
    return "finetune" if keep else "train"


def mitigator_params(settings):
    """The :class:`SelectiveFinetuneMitigator` parameters a flat settings dict stands for."""
    flat = {**FLAT_DEFAULTS, **settings}
    params = {k: v for k, v in flat.items() if k not in (*FLAT_DEFAULTS, "validate_on")}
    params["strategy"] = _strategy(flat)
    params["batchnorm"] = _batchnorm(flat)
    if any(k in settings for k in _SELECTION_KEYS):
        params["candidate_selection"] = CandidateSelection(
            validation_fraction=flat["validation_fraction"], score=flat["selection_score"],
            interpolation_alphas=tuple(flat["interpolation_alphas"]), candidates=flat["selection_candidates"],
            batchnorm_variants=flat["batchnorm_variants"])
    return params


def reestimates_batchnorm(job):
    """Whether the job's method re-estimates its BatchNorm statistics on the real training images after
    training (so each of its checkpoints must be too): a fine-tuning job at ``bn_statistics="real"``, or a
    synthetic-only run's."""
    method = METHODS[job.method]
    if method.finetunes:
        return {**FLAT_DEFAULTS, **job.finetune, **job.params}["bn_statistics"] == "real"
    return method.fit is fit_synthetic_only and job.params.get("bn_statistics", "finetune") == "real"


def bn_batch_size(job):
    """The batch size the job's method re-estimates BatchNorm statistics with (None: it does not)."""
    if not reestimates_batchnorm(job):
        return None
    if METHODS[job.method].finetunes:
        return {**job.finetune, **job.params}.get("finetune_batch_size", 128)
    return {**job.recipe, **recipe_overrides(job)}.get("batch_size", ImageClassifier().batch_size)


class Checkpointing:
    """The benchmark's checkpoint scoring of one job, built by the runner from the task's full data (the
    validation sets with their group labels, which the method itself may not see) and handed to the method's
    fit as ``data.checkpointing``."""

    def __init__(self, job, data):
        self.job, self.data = job, data
        self._sets_hash = None

    def callbacks(self, bn_batch_size=None):
        """The callback for a training loop (None without checkpoint selection); ``bn_batch_size``: the batch
        size of the loop's BatchNorm re-estimation, None when it has none. It carries :meth:`key`, so a model
        read from the cache is reused only when its curve was scored on the same validation data the same way."""
        callbacks = checkpoint_callbacks(self.job, self.data, RULES, VALIDATION_SETS, bn_batch_size=bn_batch_size,
                                         bn_images=self.job.checkpoint_bn_images)
        if callbacks:
            callbacks[0][1].benchmark_key_ = self.key(bn_batch_size)  # "_": not a skorch callback parameter
        return callbacks

    def key(self, bn_batch_size=None):
        """What a curve depends on besides the model: the validation sets, the rules and the BatchNorm images
        (read only by a loop that re-estimates statistics, ``bn_batch_size`` not None)."""
        if self._sets_hash is None:
            self._sets_hash = joblib.hash([(self.data[f"X_{s}"], self.data[f"y_{s}"], self.data[f"s_{s}"])
                                           for s in VALIDATION_SETS.values()])
        bn_images = None if bn_batch_size is None else self.job.checkpoint_bn_images
        return joblib.hash((self._sets_hash, RULES, bn_images, bn_batch_size, self.job.seed))


def benchmark_callbacks(job, data, *, erm=False):
    """The checkpoint callbacks the runner handed to this fit (``data.checkpointing``), or None; ``erm``: for a
    loop trained on the real data from scratch (no BatchNorm re-estimation, whatever the job's method)."""
    checkpointing = data.get("checkpointing")
    if checkpointing is None or not job.checkpoints:
        return None
    return checkpointing.callbacks(None if erm else bn_batch_size(job))


def fit_scored(estimator, job, data, cache_dir):
    """``fit_cached`` for a model trained with the benchmark's callback: a cached model whose callback scored
    other data (or none: a run without checkpoint selection trained it) is trained again, outside the cache."""
    model = fit_cached(estimator, data.X_train, data.y_train, memory=str(cache_dir))
    checkpointing = data.get("checkpointing")
    if not job.checkpoints or checkpointing is None:
        return model
    callback = dict(getattr(model.net_, "callbacks_", None) or ()).get(CALLBACK)
    if getattr(callback, "benchmark_key_", None) == checkpointing.key() and getattr(callback, "rows_", None):
        return model
    return clone(estimator).fit(data.X_train, data.y_train)


def base_estimator(job, callbacks=None, **overrides):
    """The unfitted ERM model of a job (the pre-training every fine-tuning method starts from).

    ``overrides`` (e.g. a tuned ``lr``) change the recipe; without them this is the suite's recipe, the model
    every fine-tuning method of the seed starts from. ``callbacks`` are not part of the cache key.
    """
    return ImageClassifier(random_state=job.seed, device=job.device, callbacks=callbacks,
                           **{**job.recipe, **overrides})


def recipe_overrides(job):
    """The recipe parameters a job's variant changes (a tuned learning rate, an optimiser...)."""
    return {k: v for k, v in job.params.items() if k in RECIPE_KEYS}


def pretrained_erm(job, data, cache_dir, **overrides):
    """ERM on the real training data, trained once per (task, seed, recipe) and then read from the cache (with
    its scored checkpoints, whichever job trained it)."""
    return fit_scored(base_estimator(job, benchmark_callbacks(job, data, erm=True), **overrides), job, data, cache_dir)


def balanced_synthetic(job, data):
    """The balanced synthetic set the methods trained on synthetic data draw (the provider seeded with the
    job's seed, the mitigator's size rule); fine-tuning draws its own through the mitigator
    (:func:`finetune_synthetic`)."""
    n = synthetic_set_size(len(data.y_train), job.finetune["synthetic_ratio"])
    shape = (3, data.spec["image_size"], data.spec["image_size"])
    return data.provider.sample(balanced_group_counts(n), image_shape=shape, random_state=job.seed)


def mitigator(job, data, cache_dir, settings=None, callbacks=None):
    """The job's :class:`SelectiveFinetuneMitigator`, starting from the seed's ERM model, with ``settings``
    (default: the suite's fine-tuning settings updated by the job's parameters; flat, see
    :func:`mitigator_params`)."""
    settings = {**job.finetune, **job.params} if settings is None else settings
    return SelectiveFinetuneMitigator(data.provider, estimator=base_estimator(job), memory=str(cache_dir),
                                      random_state=job.seed, callbacks=callbacks, **mitigator_params(settings))


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
    model = method.estimator(random_state=job.seed, device=job.device,
                             callbacks=benchmark_callbacks(job, data, erm=True), **params)
    extra = method.fit_arguments(data) if method.fit_arguments else {}
    if extra:
        return model.fit(data.X_train, data.y_train, **extra)
    return fit_scored(model, job, data, cache_dir)


def fit_synthetic_only(method, job, data, cache_dir):
    """The backbone trained from scratch on the balanced synthetic set alone; with the parameter
    ``bn_statistics="real"`` its BatchNorm statistics are re-estimated on the real training images when training
    ends (a callback in its loop)."""
    X_syn, y_syn, _ = balanced_synthetic(job, data)
    callbacks = []
    if reestimates_batchnorm(job):
        callbacks.append(("real_bn_statistics", RealBatchNormStatistics(
            as_image_dataset(data.X_train), batch_size=bn_batch_size(job))))
    return base_estimator(job, [*callbacks, *(benchmark_callbacks(job, data) or [])],
                          **recipe_overrides(job)).fit(X_syn, y_syn)


def fit_supplementation(method, job, data, cache_dir):
    """The backbone trained from scratch on the real data plus the balanced synthetic set."""
    X, y = data.X_train, data.y_train
    X_syn, y_syn, _ = balanced_synthetic(job, data)
    if X.ndim == 1 and X_syn.ndim != 1:  # real images are paths: write the synthetic ones next to them
        X_syn = write_images(X_syn, Path(cache_dir) / "supplementation" / job.settings_hash)
    elif X.ndim != 1 and X_syn.ndim == 1:  # real arrays, synthetic files: decode them at the real size
        X_syn = read_images(X_syn, image_size=X.shape[2:])
    X_syn, y_syn = np.concatenate([X, X_syn]), np.concatenate([y, y_syn])
    return base_estimator(job, benchmark_callbacks(job, data), **recipe_overrides(job)).fit(X_syn, y_syn)


_VALIDATE_ON = ("validate_on={!r}: the guard reads 'val_train' or 'train+val_train' (no group labels), or 'val' "
                "with its group labels for a method that declares group_labels='validation'.")


def fit_finetune(method, job, data, cache_dir):
    """The mitigator with the method's strategy settings, fine-tuning the seed's ERM model.

    A variant with ``validate_on="val_train"`` turns the mitigator's held-out guard on with the task's
    training-distribution validation split (``X_val_train``, no group labels) as ``X_val`` / ``y_val``; with
    ``validate_on="val"`` (a method that declares ``group_labels="validation"``) on the balanced group-labelled
    validation split, its group labels as ``sensitive_features_val``; with ``validate_on="train+val_train"`` on
    the training images and the training-distribution validation split together (:func:`held_out_split`). The
    ERM model never sees a validation split, so the shared pre-training is unchanged. (The guard then chooses
    the returned model; the benchmark scores no checkpoints of it.)"""
    params = dict(job.params)
    validate_on = params.pop("validate_on", None)
    if validate_on is None:
        model = mitigator(job, data, cache_dir, {**job.finetune, **params}, benchmark_callbacks(job, data))
        return model.fit(data.X_train, data.y_train)
    if validate_on == "val" and method.group_labels != "validation":
        raise ValueError(_VALIDATE_ON.format(validate_on))
    X_val, y_val, s_val = held_out_split(validate_on, data)
    model = mitigator(job, data, cache_dir, {**job.finetune, **params})
    labels = {"sensitive_features_val": s_val} if validate_on == "val" else {}
    return model.fit(data.X_train, data.y_train, X_val=X_val, y_val=y_val, **labels)


def held_out_split(validate_on, data):
    """``(X_val, y_val, s_val)`` a guard's ``validate_on`` names: ``"val_train"`` (the training-distribution
    validation split), ``"train+val_train"`` (the training images too: label-free scores on every real image the
    run has) or ``"val"`` (the balanced group-labelled split). ``s_val`` is None where ``data`` hides the groups
    (a label-free method's view); the runner reads them to score the guard's group probe."""
    def groups(*names):
        parts = [getattr(data, name, None) for name in names]
        if any(part is None for part in parts):
            return None
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    if validate_on == "val_train":
        return data.X_val_train, data.y_val_train, groups("s_val_train")
    if validate_on == "train+val_train":
        return (np.concatenate([data.X_train, data.X_val_train]), np.concatenate([data.y_train, data.y_val_train]),
                groups("s_train", "s_val_train"))
    if validate_on == "val":
        return data.X_val, data.y_val, groups("s_val")
    raise ValueError(_VALIDATE_ON.format(validate_on))


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
    return mitigator(job, data, cache_dir, {**job.finetune, **params, "top_k": size},
                     benchmark_callbacks(job, data)).fit(data.X_train, data.y_train)


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
    "normalized_guarded": _finetune(
        "Selective Fine-Tuning (Normalized Gaps), guard on the group-labelled validation split",
        {"criterion": "normalized", "validate_on": "val", "selection_score": "worst_group"},
        group_labels="validation", style=_style("2", "#8b6914")),
    "ratio": _finetune("Selective Fine-Tuning (Gap Ratio)", {"criterion": "abs_diff", "selection": "ratio"},
                       selective=True, style=_style("4", "#2f4f4f")),
    "auto_rgn": _finetune("Auto-RGN (Surgical Fine-Tuning)", {"strategy": "auto_rgn"}, style=_style("+", "#ff6347")),
    "random_matched": _finetune("Random Selection (Same Size)", {"strategy": "random"}, fit=fit_random_matched,
                                style=_style("x", "#000080")),
}


def mitigator_defaults():
    """The mitigator's defaults in the benchmark's flat vocabulary: its signature's plain defaults, its default
    strategy's settings and its BatchNorm default (as ``bn_statistics`` / ``freeze_bn_stats``)."""
    signature = {name: p.default for name, p in inspect.signature(SelectiveFinetuneMitigator).parameters.items()
                 if p.default is not inspect.Parameter.empty}
    strategy = SelectiveMask() if signature["strategy"] == "selective" else None
    flat = {k: v for k, v in signature.items() if k not in ("strategy", "batchnorm", "candidate_selection")}
    flat["strategy"] = signature["strategy"]
    if strategy is not None:
        flat.update({("mask_max_batches" if k == "max_batches" else k): v for k, v in strategy.get_params().items()})
    flat["bn_statistics"] = {"real": "real", "eval": "eval"}.get(signature["batchnorm"], "finetune")
    flat["freeze_bn_stats"] = signature["batchnorm"] != "train"
    selection = CandidateSelection()
    flat.update(validation_fraction=selection.validation_fraction, selection_score=selection.score,
                interpolation_alphas=selection.interpolation_alphas, batchnorm_variants=selection.batchnorm_variants,
                selection_candidates=selection.candidates)
    return flat


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
    hidden = {"X_test", "y_test", "s_test", "checkpointing"}
    if seen != "training":
        hidden |= {"s_train"}
    if seen == "none":
        hidden |= {"s_val", "s_val_train"}
    return Bunch(**{key: value for key, value in data.items() if key not in hidden},
                 checkpointing=Checkpointing(job, data))


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
