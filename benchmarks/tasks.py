"""The data side of a benchmark run: real train/validation/test splits and a synthetic-data provider.

A task is a plain JSON-able dict (it is part of every record's settings), e.g.::

    {"name": "coloured MNIST", "dataset": "coloured_mnist", "n_train": 2000, "n_val_train": 500,
     "minority_share": 0.04, "image_size": 32,
     "provider": {"kind": "rendered_digits", "n_prompts": 50, "head_poses": True}}

:func:`load_task` turns it into arrays (or image paths) and a provider for one seed, with two validation
sets, both disjoint from train and test:

- ``X_val_train``: ``n_val_train`` images held out of the biased training draw, stratified so that it has the
  training distribution. Model selection by the ``label_free`` rule reads only its overall accuracy (what a
  user without group labels can do; the upstream AIM-Fair code selects so);
- ``X_val``: ``n_val_per_cell`` images of each (y, s) cell, balanced and group-labelled. The ``group_val``
  rule reads its worst-group accuracy; FairIF also fits its influence weights on it, as in its paper.

Every method is tested on the same test split, which no selection ever reads.

A ``"dataset": "metadata"`` task is the user's own images, from a CSV of paths, labels and splits (see
:mod:`benchmarks.custom`); there the user's validation split is both validation sets.
"""

import json
import re
from pathlib import Path

import numpy as np
from sklearn.model_selection import train_test_split
from sklearn.utils import Bunch, check_random_state

from aimfair_plugin.datasets import (
    adult_design_matrix,
    load_adult,
    load_celeba,
    load_fashion_mnist,
    load_mnist_5k,
    load_utkface,
    make_balanced_subset,
    make_biased_subset,
    make_colored_fashion_mnist,
    make_colored_mnist,
)
from aimfair_plugin.synth import (
    ContextualPromptBuilder,
    DiffusersProvider,
    ImageFolderProvider,
    PlainPromptBuilder,
    RenderedDigitsProvider,
    SyntheticDataProvider,
    balanced_group_counts,
    biased_group_counts,
)
from aimfair_plugin.utils import ProcessCache

from ._standin import heldout_provider
from .custom import load_metadata_task

DATASETS = ("coloured_mnist", "coloured_fashion", "celeba", "utkface", "adult", "metadata")
# a task without synthetic data has provider None
PROVIDERS = ("rendered_digits", "heldout", "folder", "diffusers")


def split_validation(data, n_val_per_cell, seed):
    """Move ``n_val_per_cell`` images of each (y, s) cell from the test split to a validation split."""
    order = np.random.RandomState(seed).permutation(len(data.y_test))
    cells = np.asarray(data.y_test) * 2 + np.asarray(data.s_test)
    val = np.concatenate([order[cells[order] == c][:n_val_per_cell] for c in range(4)])
    test = np.setdiff1d(order, val)
    for name in ("X", "y", "s"):
        full = getattr(data, f"{name}_test")
        data[f"{name}_val"], data[f"{name}_test"] = full[val], full[test]
    return data


def split_train_validation(data, n_val_train, seed):
    """Hold ``n_val_train`` images out of the training split, stratified by (y, s): the training distribution."""
    if not n_val_train:
        raise ValueError("A task needs n_val_train > 0: the label_free selection rule reads that validation set.")
    cells = np.asarray(data.y_train) * 2 + np.asarray(data.s_train)
    train, val = train_test_split(np.arange(len(cells)), test_size=n_val_train, stratify=cells, random_state=seed)
    for name in [k[: -len("_train")] for k in list(data) if k.endswith("_train") and k != "n_train"]:
        full = data[f"{name}_train"]
        if isinstance(full, np.ndarray) and len(full) == len(cells):
            data[f"{name}_val_train"], data[f"{name}_train"] = full[val], full[train]
    return data


def _colored(spec, seed):
    common = dict(n_train=spec["n_train"] + spec["n_val_train"], n_test=spec["n_test"],
                  minority_share=spec["minority_share"], image_size=spec["image_size"], random_state=seed)
    if spec["dataset"] == "coloured_mnist":
        data = make_colored_mnist(**common)
        pool = load_mnist_5k()
    else:
        data = make_colored_fashion_mnist(path=spec.get("path"), **common)
        fashion = load_fashion_mnist(spec.get("path"))
        pool = (fashion.images_train, fashion.labels_train)
    data = split_validation(split_train_validation(data, spec["n_val_train"], seed), spec["n_val_per_cell"], seed)
    data.pool = pool
    return data


def _faces(spec, seed):
    """CelebA or UTKFace as paths: the paper's biased training subset, a balanced validation set, a test set."""
    rng = check_random_state(seed)
    if spec["dataset"] == "celeba":
        train = load_celeba(spec["root"], target=spec["target"], protected=spec["protected"], split="train")
        valid = load_celeba(spec["root"], target=spec["target"], protected=spec["protected"], split="valid")
        test = load_celeba(spec["root"], target=spec["target"], protected=spec["protected"], split="test")
    else:
        everything = load_utkface(spec["root"])
        # The paper's balanced 3,200-image test set; validation and the biased training set from the rest.
        test_idx = make_balanced_subset(everything.y, everything.s, n=spec["n_test"], random_state=rng)
        rest = np.setdiff1d(np.arange(len(everything.y)), test_idx)
        val_idx = rest[make_balanced_subset(everything.y[rest], everything.s[rest], n=4 * spec["n_val_per_cell"],
                                            random_state=rng)]
        rest = np.setdiff1d(rest, val_idx)

        def part(idx):
            return Bunch(X=everything.X[idx], y=everything.y[idx], s=everything.s[idx])

        train, valid, test = part(rest), part(val_idx), part(test_idx)
    idx = make_biased_subset(train.y, train.s, n=spec["n_train"] + spec["n_val_train"],
                             minority_share=spec["minority_share"], random_state=rng)
    data = Bunch(X_train=train.X[idx], y_train=train.y[idx], s_train=train.s[idx])
    data = split_train_validation(data, spec["n_val_train"], seed)
    if spec["dataset"] == "celeba":
        val_idx = make_balanced_subset(valid.y, valid.s, n=4 * spec["n_val_per_cell"], random_state=rng)
        data.update(X_val=valid.X[val_idx], y_val=valid.y[val_idx], s_val=valid.s[val_idx])
        # The paper reports CelebA on its whole original test split; n_test caps it for smaller runs.
        test_idx = np.arange(len(test.y)) if spec.get("n_test") is None else rng.permutation(len(test.y))[
            : spec["n_test"]]
        data.update(X_test=test.X[test_idx], y_test=test.y[test_idx], s_test=test.s[test_idx])
    else:
        data.update(X_val=valid.X, y_val=valid.y, s_val=valid.s, X_test=test.X, y_test=test.y, s_test=test.s)
    return data


def _adult(spec, seed):
    """UCI Adult (protected: sex) as a standardised one-hot design matrix; the official test split.

    ``n_train`` (None: every row) rows of the training split are drawn, ``n_val_train`` of them held out
    (stratified); the group-labelled validation set takes ``n_val_per_cell`` rows per cell from the test split.
    """
    adult = load_adult()
    X_train, X_test = adult_design_matrix(adult.X_train, adult.X_test, adult.categorical, adult.numeric)
    y_train, s_train = np.asarray(adult.y_train), np.asarray(adult.sex_train)
    if spec.get("n_train") is not None:
        keep = check_random_state(seed).permutation(len(y_train))[: spec["n_train"] + spec["n_val_train"]]
        X_train, y_train, s_train = X_train[keep], y_train[keep], s_train[keep]
    data = Bunch(X_train=X_train, y_train=y_train, s_train=s_train, X_test=X_test,
                 y_test=np.asarray(adult.y_test), s_test=np.asarray(adult.sex_test))
    return split_validation(split_train_validation(data, spec["n_val_train"], seed), spec["n_val_per_cell"], seed)


class MemoizedProvider(SyntheticDataProvider):
    """A provider whose draws are kept in this process, so the runs of one seed render their images once.

    A draw is a pure function of the provider's settings and ``(group_counts, image_shape, random_state)``;
    every fine-tuning run of a seed asks for the same balanced set, so a worker that runs several of them
    reads it from here instead of rendering it again. ``key`` names the provider's settings.
    """

    _draws = ProcessCache(max_entries=8)

    def __init__(self, provider, key):
        self.provider, self.key = provider, key

    def sample(self, group_counts, *, image_shape=None, random_state=None):
        if not isinstance(random_state, (int, np.integer)):
            return self.provider.sample(group_counts, image_shape=image_shape, random_state=random_state)
        key = (self.key, tuple(sorted(group_counts.items())), tuple(image_shape or ()), int(random_state))
        draw = self._draws.get(key)  # a copy: the caller may modify it
        if draw is None:
            draw = self.provider.sample(group_counts, image_shape=image_shape, random_state=random_state)
            self._draws.put(key, draw)
        return draw


def make_provider(spec, data, seed):
    """The task's synthetic-data provider (see ``PROVIDERS``; None for a task without synthetic data).

    A ``folder`` provider reads ``{root}/{y}_{s}/*.png`` (:class:`ImageFolderProvider`). A
    ``rendered_digits`` provider renders contextual prompts (``n_prompts`` per cell, with or without
    ``head_poses``: angle and position), or one plain prompt per cell with ``"prompts": "plain"``; its
    ``style_shift`` (default 0) moves the images away from the real digits' style (the domain-gap knob). A
    ``heldout`` provider colours the pool images no split uses, pushed away by a ``gap`` of kind ``"stroke"``
    (default) or ``"resolution"`` (shrunk to ``low_size`` pixels, default 10; see ``benchmarks._standin``).
    """
    provider = spec.get("provider")
    if provider is None:
        return None
    kind = provider["kind"]
    if kind == "rendered_digits":
        if provider.get("prompts", "contextual") == "plain":
            prompts = PlainPromptBuilder(5, ("red", "blue"), dataset="digits")
        else:
            prompts = ContextualPromptBuilder(
                5, ("red", "blue"), dataset="digits", n_prompts=provider.get("n_prompts", 50),
                head_poses=provider.get("head_poses", True), random_state=seed)
        key = json.dumps([provider, spec["image_size"], seed], sort_keys=True)
        rendered = RenderedDigitsProvider(prompts, image_size=spec["image_size"],
                                          style_shift=provider.get("style_shift", 0.0))
        return MemoizedProvider(rendered, key)
    if kind == "heldout":
        # MNIST-5k's test images come from the same pool: the default pool excludes them too
        images, labels = data.pool if spec["dataset"] != "coloured_mnist" else (None, None)
        return heldout_provider(data, images, labels, image_size=spec["image_size"],
                                max_images=provider.get("max_images"), gap=provider.get("gap", "stroke"),
                                low_size=provider.get("low_size", 10), random_state=seed)
    if kind == "folder":
        return ImageFolderProvider(provider["root"], image_size=spec["image_size"])
    if kind == "diffusers":
        if spec["dataset"] == "metadata":
            prompts = ContextualPromptBuilder(
                tuple(provider["target_words"]), tuple(provider["protected_words"]),
                dataset=provider.get("prompt_vocabulary", "celeba"), n_prompts=provider.get("n_prompts", 50),
                random_state=0)
            folder = "custom_" + "_".join(re.sub(r"[^A-Za-z0-9]+", "-", w).strip("-")
                                          for w in (*provider["target_words"], *provider["protected_words"]))
        elif spec["dataset"] == "celeba":
            prompts = ContextualPromptBuilder(spec["target"], spec["protected"], dataset="celeba",
                                              n_prompts=provider.get("n_prompts", 50), random_state=0)
            folder = f"celeba_{spec['target']}_{spec['protected']}"
        elif spec["dataset"] == "utkface":
            prompts = ContextualPromptBuilder("Female", "White", dataset="utkface",
                                              n_prompts=provider.get("n_prompts", 50), random_state=0)
            folder = "utkface_Female_White"
        else:
            raise ValueError(f"The diffusers provider has prompts for CelebA and UTKFace, not {spec['dataset']!r}.")
        if not provider.get("pipeline"):
            raise ValueError(f"Task {spec['name']!r} needs a diffusers pipeline (--pipeline MODEL_ID_OR_PATH).")
        return DiffusersProvider(
            provider["pipeline"], prompts, cache_dir=Path(provider["cache_dir"]) / folder,
            image_size=spec["image_size"], num_inference_steps=provider.get("num_inference_steps", 50),
            guidance_scale=provider.get("guidance_scale", 9.0), batch_size=provider.get("batch_size", 8),
            generation_size=provider.get("generation_size"), random_state=provider.get("seed", 0), verbose=0)
    raise ValueError(f"Unknown provider kind {kind!r}; expected one of {PROVIDERS}.")


_SPLITS = ProcessCache(max_entries=4)  # (spec, seed) -> real splits, in this process (a worker runs many jobs)


def _real_splits(spec, seed):
    """The real splits of ``spec`` for ``seed``.

    Those built from data the packages ship (coloured digits and Fashion-MNIST, Adult) are a pure function of
    ``(spec, seed)``, and a benchmark worker runs every method of a seed on them: they are built once per process
    and every call gets its own deep copy (a job may modify it), which saves a colouring and splitting pass per
    job. Splits read from a user's folder (faces, a metadata CSV) are read again on every call.
    """
    if spec["dataset"] == "metadata":
        return load_metadata_task(spec, seed)
    if spec["dataset"] in ("celeba", "utkface"):
        return _faces(spec, seed)
    key = json.dumps([spec, int(seed)], sort_keys=True, default=str)
    data = _SPLITS.get(key)
    if data is None:
        data = _adult(spec, seed) if spec["dataset"] == "adult" else _colored(spec, seed)
        _SPLITS.put(key, data)
    return data


def load_task(spec, seed):
    """Real splits and the provider of ``spec`` for one seed (the seed draws the biased training subset)."""
    if spec["dataset"] not in DATASETS:
        raise ValueError(f"Unknown dataset {spec['dataset']!r}; expected one of {DATASETS}.")
    data = _real_splits(spec, seed)
    data.provider = make_provider(spec, data, seed)
    data.spec = spec
    return data


def synthetic_counts_needed(spec, n_train, synthetic_ratio=1.0, bias_ratio=0.9):
    """Per-cell image counts a run of this task can request (for generating a diffusers cache up front)."""
    n = max(4, int(round(synthetic_ratio * n_train)))
    balanced, biased = balanced_group_counts(n), biased_group_counts(n, bias_ratio)
    return {cell: max(balanced[cell], biased[cell]) for cell in balanced}

