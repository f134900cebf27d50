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

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.utils import Bunch

from aimfair_plugin._io import atomic_path
from aimfair_plugin.datasets import read_images
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
from aimfair_plugin.synth import balanced_group_counts


@dataclass(frozen=True)
class Method:
    """A method: its table label, its family, the parameters it adds to the suite's recipe, and which group
    labels it reads: "none" (label-free), "validation" (the group-labelled validation split) or "training"
    (the training split's: an oracle). The runner hands a method only the labels it declares."""

    label: str
    family: str  # "baseline", "synthetic" or "finetune"
    params: dict = field(default_factory=dict)
    group_labels: str = "none"


METHODS = {
    "erm": Method("ERM", "baseline"),
    "cvar_dro": Method("CVaR DRO", "baseline", {"alpha": 0.2}),
    "lff": Method("LfF", "baseline"),
    "jtt": Method("JTT", "baseline", {"identification_epochs": 2, "upweight": 20}),
    "fairif": Method("FairIF", "baseline", group_labels="validation"),
    "group_dro": Method("Group DRO (oracle: training group labels)", "baseline", {"step_size": 0.01},
                        group_labels="training"),
    "afr": Method("AFR", "baseline", {"gamma": 4.0, "reg_lambda": 0.0}),
    "synthetic_only": Method("Trained on Synthetic Data", "synthetic"),
    "supplementation": Method("Data Supplementation", "synthetic"),
    "linear_probe": Method("Linear Probe", "finetune", {"strategy": "linear_probe"}),
    "full": Method("Fully Fine-Tuning", "finetune", {"strategy": "full"}),
    "random": Method("Random Selection", "finetune", {"strategy": "random"}),
    "update_block": Method("Sub-Tuning (Updating One Block)", "finetune", {"strategy": "update_block"}),
    "freeze_block": Method("Sub-Tuning (Freezing One Block)", "finetune", {"strategy": "freeze_block"}),
    "cosine": Method("Selective Fine-Tuning (Cosine Similarity)", "finetune", {"criterion": "cosine"}),
    "aimfair": Method("AIM-Fair (Absolute Difference)", "finetune", {"criterion": "abs_diff"}),
    "normalized": Method("Selective Fine-Tuning (Normalized Gaps)", "finetune", {"criterion": "normalized"}),
    "ratio": Method("Selective Fine-Tuning (Gap Ratio)", "finetune", {"criterion": "abs_diff", "selection": "ratio"}),
    "auto_rgn": Method("Auto-RGN (Surgical Fine-Tuning)", "finetune", {"strategy": "auto_rgn"}),
    # A random mask of the size another method's mask has for the same seed and settings; the variant
    # names the method ("match") and, optionally, its top_k ("match_top_k").
    "random_matched": Method("Random Selection (Same Size)", "finetune", {"strategy": "random"}),
}
BASELINE_CLASSES = {
    "erm": ImageClassifier,
    "cvar_dro": CVaRDROClassifier,
    "lff": LfFClassifier,
    "jtt": JTTClassifier,
    "fairif": InfluenceReweightingClassifier,
    "group_dro": GroupDROClassifier,
    "afr": AFRClassifier,
}


# Job parameters that belong to the backbone recipe (ImageClassifier) rather than to the method itself.
RECIPE_KEYS = frozenset(ImageClassifier._get_param_names())


def base_estimator(job, **overrides):
    """The unfitted ERM model of a job (the pre-training every fine-tuning method starts from).

    ``overrides`` (e.g. a tuned ``lr``) change the recipe; without them this is the suite's recipe, the model
    every fine-tuning method of the seed starts from.
    """
    return ImageClassifier(random_state=job["seed"], device=job["device"], **{**job["recipe"], **overrides})


def recipe_overrides(job):
    """The recipe parameters a job's variant changes (a tuned learning rate, an optimiser...)."""
    return {k: v for k, v in job["params"].items() if k in RECIPE_KEYS}


def pretrained_erm(job, data, cache_dir, **overrides):
    """ERM on the real training data, trained once per (task, seed, recipe) and then read from the cache."""
    return fit_cached(base_estimator(job, **overrides), data.X_train, data.y_train, memory=str(cache_dir))


def _balanced_synthetic(job, data):
    n = max(4, int(round(job["finetune"]["synthetic_ratio"] * len(data.y_train))))
    shape = (3, data.spec["image_size"], data.spec["image_size"])
    return data.provider.sample(balanced_group_counts(n), image_shape=shape, random_state=job["seed"])


def save_png_images(X, folder, start=0):
    """Write float images in [0, 1] as 8-bit PNG files ``{folder}/{start + i:05d}.png``, each atomically (an
    interruption leaves no partial file); returns their paths. Used wherever a benchmark needs images on disk."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, image in enumerate(X, start):
        path = folder / f"{i:05d}.png"
        with atomic_path(path) as tmp:
            Image.fromarray((np.clip(image, 0, 1).transpose(1, 2, 0) * 255).round().astype(np.uint8)).save(
                tmp, format="PNG")
        paths.append(str(path))
    return np.array(paths)


def visible_data(job, data):
    """What a job's method may read of a task: the training and validation splits, the provider and the spec,
    with the group labels its method declares (``Method.group_labels``); never the test split."""
    seen = METHODS[job["method"]].group_labels
    hidden = {"X_test", "y_test", "s_test"}
    if seen != "training":
        hidden |= {"s_train"}
    if seen == "none":
        hidden |= {"s_val", "s_val_train"}
    return Bunch(**{key: value for key, value in data.items() if key not in hidden})


def fit_method(job, data, cache_dir):
    """Fit the job's method on ``data``; returns the fitted model."""
    method = METHODS[job["method"]]  # job["params"] already holds method.params and the variant's
    X, y = data.X_train, data.y_train
    if job["method"] == "erm":
        return pretrained_erm(job, data, cache_dir, **recipe_overrides(job))
    if method.family == "baseline":
        params = {**job["recipe"], **job["params"]}
        if job["method"] in ("fairif", "afr"):  # stage one is an ERM model: shared through the cache
            params["memory"] = str(cache_dir)
        model = BASELINE_CLASSES[job["method"]](random_state=job["seed"], device=job["device"], **params)
        if job["method"] == "fairif":
            return model.fit(X, y, X_val=data.X_val, y_val=data.y_val, sensitive_features_val=data.s_val)
        if job["method"] == "group_dro":  # the oracle: reads the training data's group labels
            return model.fit(X, y, sensitive_features=data.s_train)
        # a fit of (X, y) alone: tasks that differ only in their synthetic data (the domain-gap levels) share it
        return fit_cached(model, X, y, memory=str(cache_dir))
    if method.family == "synthetic":
        X_syn, y_syn, _ = _balanced_synthetic(job, data)
        if job["method"] == "supplementation":
            if X.ndim == 1 and X_syn.ndim != 1:  # real images are paths: write the synthetic ones next to them
                X_syn = save_png_images(X_syn, Path(cache_dir) / "supplementation" / job["settings_hash"])
            elif X.ndim != 1 and X_syn.ndim == 1:  # real arrays, synthetic files: decode them at the real size
                X_syn = read_images(X_syn, image_size=X.shape[2:])
            X_syn, y_syn = np.concatenate([X, X_syn]), np.concatenate([y, y_syn])
        return base_estimator(job, **recipe_overrides(job)).fit(X_syn, y_syn)
    params = {**job["finetune"], **job["params"]}
    if job["method"] == "random_matched":
        params["top_k"] = matched_size(job, data, cache_dir, params.pop("match"), params.pop("match_top_k", None))
    mitigator = SelectiveFinetuneMitigator(
        data.provider, estimator=base_estimator(job), memory=str(cache_dir), random_state=job["seed"],
        device=job["device"], **params)
    return mitigator.fit(X, y)


def matched_size(job, data, cache_dir, match, match_top_k):
    """How many tensors ``match`` selects for this job's seed and settings (selection only, no fine-tuning)."""
    if METHODS[match].family != "finetune" or match == "random_matched":
        raise ValueError(f"random_matched can match a selective fine-tuning method, not {match!r}.")
    params = {**job["finetune"], **METHODS[match].params, "finetune_epochs": 0}
    if match_top_k is not None:
        params["top_k"] = match_top_k
    mitigator = SelectiveFinetuneMitigator(
        data.provider, estimator=base_estimator(job), memory=str(cache_dir), random_state=job["seed"],
        device=job["device"], **params).fit(data.X_train, data.y_train)
    return mitigator.n_selected_
