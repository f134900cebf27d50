"""SelectiveFinetuneMitigator: AIM-Fair's selective fine-tuning and the paper's comparison strategies."""

import copy
import os
import warnings
from dataclasses import dataclass
from numbers import Integral, Real
from typing import NamedTuple

import numpy as np
import pandas as pd
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, MetaEstimatorMixin, clone
from sklearn.frozen import FrozenEstimator
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import HasMethods, Interval, InvalidParameterError, StrOptions
from sklearn.utils.validation import check_is_fitted

from .._device import resolve_device
from .._validation import validate_declared
from ..datasets import check_image_files
from ..exceptions import EmptyMaskWarning, FineTuningWarning
from ..synth import balanced_group_counts, biased_group_counts, group_cells, synthetic_set_size
from ._cache import cached, fingerprint, pretraining_cache_and_key
from ._callbacks import MaskedFinetune, RealBatchNormStatistics
from ._checkpoints import ScoredCheckpoints
from ._classifier import ImageClassifier, network_layout, seed_torch, user_callbacks, validate_labels
from ._data import ImageInput, check_images
from ._masking import gradient_gaps, mask_statistics, mean_gradients, resolve_top_k
from ._probe import GroupProbe
from ._selection import LABELLED_SCORES, PROBE_SCORES, SCORES, CandidateSelection, label_cells, pseudo_groups
from ._strategies import in_block, resolve_strategy, strategy_name

# batchnorm -> (frozen layers keep their statistics during fine-tuning, every layer does, re-estimate on real
# images when fine-tuning ends)
BATCHNORM = {
    "real": (True, False, True),
    "finetune": (True, False, False),
    "eval": (True, True, False),
    "train": (False, False, False),
}
# A held-out accuracy this far below the pre-trained model's (as a fraction) is worth a warning.
ACCURACY_DROP_WARNING = 0.1


def check_synthetic(name, X, y, s, counts, shape):
    """The provider's output must match the requested cells; returns ``(X, y, s, is_paths)``.

    Arrays must have the requested image shape and lie in [0, 1]. Image paths (providers whose images live on
    disk) are checked to be complete image files without decoding them (:func:`check_image_files`); they are
    decoded batch by batch at the requested size when gradients and fine-tuning read them.
    """
    X, is_paths = check_images(X)  # image paths, or a finite float array (channel-first, uint8 scaled)
    y, s = np.asarray(y), np.asarray(s)
    n = sum(counts.values())
    if not is_paths and tuple(X.shape[1:]) != tuple(shape):
        raise ValueError(f"The provider returned {name} images of shape {X.shape}, expected (n, {shape}) or a "
                         "1-D array of image paths.")
    if not (len(X) == len(y) == len(s)):
        raise ValueError(f"The provider returned {len(X)} {name} images with {len(y)} labels and {len(s)} groups.")
    for (cy, cs), want in counts.items():
        got = int(((y == cy) & (s == cs)).sum())
        if got != want:
            raise ValueError(
                f"The provider returned {got} {name} images of cell (y={cy}, s={cs}), {want} were requested."
            )
    if len(X) != n:
        raise ValueError(f"The provider returned {len(X)} {name} images, {n} were requested (extra labels?).")
    if is_paths:
        check_image_files(dict.fromkeys(X))  # each file once
    elif X.min() < 0 or X.max() > 1:
        raise ValueError(f"The provider's {name} images must be finite and lie in [0, 1].")
    return X, y.astype(int), s.astype(int), is_paths


class SyntheticSet(NamedTuple):
    """One checked draw of the provider: images (array or paths), labels, groups, and the size paths decode to.

    Examples
    --------
    >>> import numpy as np
    >>> from aimfair_plugin.estimators import SyntheticSet
    >>> draw = SyntheticSet(np.zeros((4, 3, 8, 8), 'float32'), np.array([0, 0, 1, 1]), np.array([0, 1, 0, 1]), False, (8, 8))
    >>> len(draw.dataset())
    4
    """

    X: np.ndarray
    y: np.ndarray
    s: np.ndarray
    is_paths: bool
    size: tuple

    def dataset(self, augment=False):
        """The draw as an ``ImageDataset`` (files decoded lazily, at the real images' size)."""
        return ImageInput(self.X, self.is_paths, self.size if self.is_paths else None).dataset(self.y, augment=augment)


@dataclass
class _FitState:
    """What one fit carries from step to step: the checked input, the base estimator (and whether it is a
    prefit one), the strategy object, the tensor names, the seeded random state, and (after pre-training) the
    cache and the pre-training key."""

    images: ImageInput
    y: np.ndarray
    base: ImageClassifier
    prefit: bool
    strategy: object
    names: list
    rng: np.random.RandomState
    cache: object = None
    pretrain_key: str = None
    held_out: object = None
    selection: object = None
    cells: tuple = (2, 2)  # (n_classes, n_groups) the synthetic sets are drawn over
    blocks: list = None  # the block of each tensor of ``names`` (the head's in "fc")


class _HeldOut(NamedTuple):
    """Held-out real data for the candidate selection (``s`` only when the user gave it)."""

    images: ImageInput
    y: np.ndarray
    s: np.ndarray = None


class SelectiveFinetuneMitigator(MetaEstimatorMixin, ClassifierMixin, BaseEstimator):
    """AIM-Fair: fine-tune only bias-sensitive, domain-robust parameter tensors on balanced synthetic data.

    ``fit(X, y)`` never needs the protected attribute of the real data:

    1. pre-train ``estimator`` on the real data (X, y) by ERM (skipped for a
       prefit estimator, given as ``FrozenEstimator(fitted)``);
    2. draw a balanced synthetic set S2 from ``provider`` of
       ``synthetic_ratio * len(X)`` images (and, for ``SelectiveMask``, a
       biased set S1 of the same size);
    3. choose the tensors to fine-tune with ``strategy``: AIM-Fair's
       :class:`SelectiveMask` computes the mean loss gradient of every
       parameter tensor on R, S1 and S2, the domain gap gap(R, S1) and the
       bias gap gap(S1, S2), and selects (``top_k`` smallest domain gaps) ∩
       (``top_k`` largest bias gaps);
    4. fine-tune the selected tensors only, on S2. Frozen tensors get no
       update at all; ``batchnorm`` says what the BatchNorm statistics do;
    5. optionally (``candidate_selection``, or ``X_val`` given to ``fit``)
       return the best of the pre-trained model, each epoch and weight
       interpolations, scored on held-out real data while fine-tuning runs.

    Parameters
    ----------
    provider : SyntheticDataProvider
        Anything with ``sample(group_counts, *, image_shape, random_state)``. It is asked for every (class,
        group) cell: the classes of ``y`` (indexed in sorted order) x ``range(provider.n_groups)`` (2 unless the
        provider says more); a provider with ``available_cells()`` is checked against them before any training.
    estimator : ImageClassifier or FrozenEstimator, optional
        The model to pre-train (cloned), or ``sklearn.frozen.FrozenEstimator(fitted)`` to start from a fitted
        model (copied, never modified; scikit-learn's way to say "prefit"). Its ``device`` is where everything
        runs. Default: ``ImageClassifier(random_state=random_state)``.
    strategy : str or MaskStrategy, default="selective"
        Which tensors are fine-tuned, with its own settings: :class:`SelectiveMask` (AIM-Fair; ``top_k``,
        ``criterion``, ``selection``, ``bias_ratio``, ``max_batches``), :class:`FullMask`,
        :class:`LinearProbeMask`, :class:`RandomMask` (``top_k``), :class:`UpdateBlockMask` /
        :class:`FreezeBlockMask` (``block``; sub-tuning), :class:`AutoRGNMask` (surgical fine-tuning's Auto-RGN),
        or your own :class:`MaskStrategy`. A name (``"selective"``, ``"full"``, ``"linear_probe"``,
        ``"random"``, ``"auto_rgn"``) is that class with its defaults, as fairlearn takes a ``Moment`` or its
        name. Search its settings with nested names: ``{"strategy__top_k": [20, 40]}`` with
        ``strategy=SelectiveMask()``. The default is AIM-Fair because it is the method this package implements;
        how it compares with the others is on the results pages of the documentation (on the defaults panel,
        full fine-tuning at the same settings was the stronger label-free choice on rendered digits and tied
        elsewhere).
    synthetic_ratio : float, default=1.0
        Size of S2 (and S1) relative to the real training set.
    finetune_epochs : int, default=10
        0 selects tensors without fine-tuning: ``estimator_`` is then the pre-trained model and the mask
        attributes are set (to inspect a mask cheaply).
    finetune_lr : float, default=0.003
        Fine-tuning starts from a trained model, so the rate is a small fraction of a training rate; 0.003 is
        the package's tuning choice on its embedded data (results page "Tuned settings"). The upstream code uses
        0.05 to 0.06 on ImageNet-pretrained ResNets at 224 px; the right value depends on the pre-training, so
        search it (e.g. ``GridSearchCV`` with ``fairness_scorer``) for your data.
    finetune_batch_size : int, default=128
        Fine-tuning batches, the mean gradients' batches and BatchNorm re-estimation's batches.
    batchnorm : {"real", "finetune", "eval", "train"}, default="real"
        What the BatchNorm layers' running statistics do:

        - ``"real"``: during fine-tuning a layer whose weight and bias are both frozen normalises with and keeps
          its statistics; when fine-tuning ends every layer's statistics are reset and re-estimated on the real
          training images ``X`` (forward passes without gradients, labels not read; AdaBN), so weights tuned on
          synthetic images normalise real images with real statistics. Costs one more pass over ``X``.
        - ``"finetune"``: as fine-tuning leaves them (frozen layers keep theirs, tuned layers' follow the
          synthetic images);
        - ``"eval"``: every layer keeps the pre-trained model's statistics during fine-tuning (its weight and
          bias may still be tuned);
        - ``"train"``: every layer's statistics follow the synthetic images.

        The default was chosen on the package's domain-gap benchmark (results page "BatchNorm statistics
        across the domain gap"); which handling is best depends on the data.
    candidate_selection : CandidateSelection, optional
        Held-out selection of the returned model: what data (``validation_fraction`` of ``X``, or the
        ``X_val``/``y_val`` given to ``fit``), which candidates (by default the last epoch's BatchNorm handling;
        or the pre-trained model, each epoch and ``interpolation_alphas``), which ``score``. None (the default):
        the last epoch is returned unguarded, unless ``fit`` receives ``X_val`` (then ``CandidateSelection()``:
        ``worst_group`` with ``sensitive_features_val``, else ``accuracy``). Off by default because it needs
        held-out images; with 200 group-labelled ones it was within 3.3 points of the best fixed setting in
        hindsight on every task of the defaults panel (see :class:`CandidateSelection` for the evidence).
    memory : "process", str path, joblib.Memory or None, default="process"
        Where pre-trained models and their mean gradients (on the real images and on the synthetic draws) are
        reused across fits with identical data and pre-training settings (e.g. the candidates of a
        ``GridSearchCV`` fold): the in-process cache, a folder
        (pickles written by this package; only point it at folders you trust), or no caching.
    random_state : int, RandomState or None
        Seeds synthetic sampling, random masks, the held-out split and fine-tuning (and the default
        estimator's pre-training). The estimator's own ``random_state`` seeds its pre-training.
    callbacks : list of skorch callbacks or (name, callback) pairs, optional
        Extra skorch callbacks in the fine-tuning loop, after the package's own (the pre-training loop runs
        ``estimator``'s ``callbacks``), e.g. :class:`~aimfair_plugin.estimators.ScoredCheckpoints` to keep the
        best epoch on validation data, as the benchmark does. Not saved by ``save_pretrained``.

    Attributes
    ----------
    estimator_ : ImageClassifier
        The fine-tuned classifier.
    stage_one_estimator_ : ImageClassifier
        The pre-trained (or prefit) model fine-tuning started from.
    selection_mask_ : dict tensor name -> bool
    gradient_gaps_ : pandas.DataFrame
        ``tensor, block, numel, grad_scale, domain_gap, bias_gap, selected``
        (gaps are NaN for strategies that do not need them). Plot it with
        :func:`aimfair_plugin.inspection.plot_gradient_gaps`.
    mask_report_ : dict
        ``spearman_domain_vs_bias`` (rank correlation of the two gaps; near 1
        means they rank tensors alike and the intersection degenerates),
        ``n_selected``, ``min_possible_intersection`` (``2k - n``), ``top_k``,
        ``n_tensors``, ``criterion``, ``selection`` and
        ``selected_per_block``.
    n_selected_ : int
    finetune_scores_ : pandas.DataFrame or None
        With held-out data: one row per candidate (``candidate``,
        ``epoch``, ``alpha`` and each score on the held-out data); None otherwise.
    selected_candidate_ : dict or None
        With held-out data: the row of the returned candidate, and the ``score`` it was chosen by (the
        candidate selection's, with ``"auto"`` resolved, or the fallback); None otherwise.
    group_probe_ : dict or None
        With a probe score: the probe's cross-validated accuracy on the synthetic images, the chance level,
        whether it was reliable (else the score fell back to ``"synthetic_worst_group"``), its accuracy on
        the held-out real images when ``sensitive_features_val`` was given, and ``"groups"``: the group it
        inferred for each held-out image (so a benchmark that knows the true groups can score the probe); None
        otherwise.
    validation_indices_ : ndarray or None
        The rows of ``X`` held out by ``validation_fraction``.
    history_ : skorch History of the fine-tuning.
    classes_ : ndarray
    n_features_in_ : int
        Pixels per image (channels x height x width) the network reads.
    pretrain_cache_hit_ : bool

    References
    ----------
    Zhao et al., "AIM-Fair: Advancing Algorithmic Fairness via Selectively
    Fine-Tuning Biased Models with Contextual Synthetic Data", CVPR 2025.

    Examples
    --------
    >>> from aimfair_plugin.datasets import make_colored_mnist
    >>> data = make_colored_mnist(n_train=300, n_test=100, minority_share=0.05, image_size=16, random_state=0)
    >>> tiny = dict(width=4, max_epochs=1, batch_size=64, augment=False, random_state=0)  # a small, fast backbone
    >>> from aimfair_plugin.estimators import ImageClassifier, SelectiveFinetuneMitigator, SelectiveMask
    >>> from aimfair_plugin.synth import RenderedDigitsProvider
    >>> erm = ImageClassifier(**tiny)
    >>> mitigator = SelectiveFinetuneMitigator(RenderedDigitsProvider(), estimator=erm,
    ...     strategy=SelectiveMask(top_k=40), finetune_epochs=1, random_state=0)
    >>> mitigator.fit(data.X_train, data.y_train).predict(data.X_test).shape
    (100,)
    >>> mitigator.n_selected_ <= len(mitigator.selection_mask_)
    True
    >>> sorted(mitigator.gradient_gaps_.columns)[:4]
    ['bias_gap', 'block', 'domain_gap', 'grad_scale']
    """

    def __init__(
        self,
        provider,
        *,
        estimator=None,
        strategy="selective",
        synthetic_ratio=1.0,
        finetune_epochs=10,
        finetune_lr=0.003,
        finetune_batch_size=128,
        batchnorm="real",
        candidate_selection=None,
        memory="process",
        random_state=None,
        callbacks=None,
    ):
        self.provider = provider
        self.estimator = estimator
        self.strategy = strategy
        self.synthetic_ratio = synthetic_ratio
        self.finetune_epochs = finetune_epochs
        self.finetune_lr = finetune_lr
        self.finetune_batch_size = finetune_batch_size
        self.batchnorm = batchnorm
        self.candidate_selection = candidate_selection
        self.memory = memory
        self.random_state = random_state
        self.callbacks = callbacks

    # -- validation -------------------------------------------------------------------------------

    _parameter_constraints = {
        "provider": [HasMethods(["sample"])],
        "estimator": [None, ImageClassifier, FrozenEstimator],
        "strategy": [str, HasMethods(["mask", "optimizer_class", "finetune_columns"])],  # names: resolve_strategy
        "synthetic_ratio": [Interval(Real, 0, None, closed="neither")],
        "finetune_epochs": [Interval(Integral, 0, None, closed="left")],
        "finetune_lr": [Interval(Real, 0, None, closed="neither")],
        "finetune_batch_size": [Interval(Integral, 1, None, closed="left")],
        "batchnorm": [StrOptions(set(BATCHNORM))],
        "candidate_selection": [None, CandidateSelection],
        "memory": [None, str, os.PathLike, HasMethods(["cache"])],
        "random_state": ["random_state"],
        "callbacks": [None, list, tuple],
    }

    def _validate_params(self):
        super()._validate_params()
        validate_declared(self)
        user_callbacks(self.callbacks)
        resolve_strategy(self.strategy)
        if self.candidate_selection is not None:
            self.candidate_selection.validate()
        if isinstance(self.estimator, FrozenEstimator):
            if not isinstance(self.estimator.estimator, ImageClassifier):
                raise InvalidParameterError("A FrozenEstimator must wrap a fitted ImageClassifier, got "
                                            f"{type(self.estimator.estimator).__name__}.")
            check_is_fitted(self.estimator.estimator, "net_")

    def _base_estimator(self):
        """``(estimator to pre-train or start from, prefit)``."""
        if self.estimator is None:
            return ImageClassifier(random_state=self.random_state), False
        if isinstance(self.estimator, FrozenEstimator):
            return self.estimator.estimator, True
        return clone(self.estimator), False

    def _device(self, state):
        return resolve_device(state.base.device)

    # -- fit --------------------------------------------------------------------------------------

    def fit(self, X, y, *, X_val=None, y_val=None, sensitive_features_val=None):
        """Pre-train (unless prefit), select tensors, fine-tune them on balanced synthetic data.

        With held-out real data (``candidate_selection`` with a ``validation_fraction``, or ``X_val`` and
        ``y_val``), the model returned is the best candidate by the selection's ``score`` among the pre-trained
        model, the model after each fine-tuning epoch and weight interpolations between the pre-trained and the
        fine-tuned model (see ``finetune_scores_``). Every fitted attribute of an earlier fit is removed first.

        The steps, each a method: ``_check_fit_input``, ``_draw_synthetic`` (S2, and S1 for a
        strategy that needs the gradient gaps), ``_pretrain`` (or reuse), ``_select_tensors``,
        ``_finetune``. :meth:`select` runs all but the last.

        Parameters
        ----------
        X : ndarray (n_samples, C, H, W) or 1-D array of image paths
            Real training images.
        y : array-like (n_samples,)
            Binary target. The protected attribute is not an input.
        X_val, y_val : optional
            Held-out real images and labels for the candidate selection; neither pre-training nor fine-tuning
            sees them. Routable in a pipeline or a search: ``set_fit_request(X_val=True, y_val=True)``.
        sensitive_features_val : array-like, optional
            Their protected attribute; needed only by the score ``"worst_group"``.

        Returns
        -------
        self
        """
        state, balanced = self._select(X, y, {"X": X_val, "y": y_val, "s": sensitive_features_val})
        self.estimator_ = self._finetune(state, balanced)
        return self

    def select(self, X, y):
        """Draw the synthetic sets, pre-train (or reuse) and select tensors, without fine-tuning.

        Sets everything :meth:`fit` sets; ``estimator_`` is then the pre-trained model, so the mask can be
        inspected (``selection_mask_``, ``gradient_gaps_``, ``mask_report_``,
        :func:`~aimfair_plugin.inspection.plot_gradient_gaps`) cheaply. Same as ``fit`` with
        ``finetune_epochs=0``.

        Parameters
        ----------
        X : ndarray (n_samples, C, H, W) or 1-D array of image paths
        y : array-like (n_samples,)

        Returns
        -------
        self
        """
        self._select(X, y)
        self.estimator_ = copy.deepcopy(self.stage_one_estimator_)
        return self

    def draw_synthetic(self, X, y):
        """The synthetic sets :meth:`fit` would train on for ``(X, y)``: ``(S2, S1)``, S1 None when the strategy
        needs no gradient gaps. Each is a :class:`SyntheticSet` (``X``, ``y``, ``s``, ``is_paths``, ``size``);
        ``S2.X`` is exactly what fine-tuning reads. Nothing is trained and no attribute is set.

        Parameters
        ----------
        X : ndarray (n_samples, C, H, W) or 1-D array of image paths
        y : array-like (n_samples,)

        Returns
        -------
        S2, S1 : SyntheticSet
        """
        return self._draw_synthetic(self._check_fit_input(X, y, reset=False))

    def _reset(self):
        """Remove every fitted attribute (a refit keeps nothing of the last fit)."""
        for name in [k for k in vars(self) if k.endswith("_") and not k.startswith("_")]:
            delattr(self, name)

    def _select(self, X, y, validation=None):
        """Every step before fine-tuning; returns the fit state and the balanced set S2."""
        state = self._check_fit_input(X, y, validation)
        balanced, biased = self._draw_synthetic(state)
        self._pretrain(state)
        gaps = self._select_tensors(state, biased, balanced)
        mask = gaps["selected"].to_numpy()
        self.gradient_gaps_ = gaps
        self.selection_mask_ = dict(zip(gaps["tensor"], mask.tolist()))
        self.n_selected_ = int(mask.sum())
        strategy = state.strategy
        top_k = getattr(strategy, "top_k", None)
        self.mask_report_ = {
            **mask_statistics(gaps, mask, None if top_k is None else resolve_top_k(top_k, len(gaps))),
            "criterion": strategy.criterion if strategy.needs_gradient_gaps else None,
            "selection": (getattr(strategy, "selection", None) if strategy.needs_gradient_gaps
                          else strategy_name(strategy)),
            "selected_per_block": gaps.groupby("block", sort=False)["selected"].sum().astype(int).to_dict(),
        }
        self.finetune_scores_ = self.selected_candidate_ = self.group_probe_ = None
        return state, balanced

    def _check_fit_input(self, X, y, validation=None, reset=True):
        """The :class:`_FitState` of checked input (the held-out part split off when there is one); refuses
        real images outside the synthetic [0, 1]. ``reset``: remove the last fit's attributes first."""
        self._validate_params()
        if reset:
            self._reset()
        strategy = resolve_strategy(self.strategy)
        base, prefit = self._base_estimator()
        images = ImageInput.check(X, base.image_size)
        low, high = images.value_range()
        if low < -1e-3 or high > 1 + 1e-3:
            raise ValueError(
                f"The real images lie in [{low:.3g}, {high:.3g}] but synthetic images are in [0, 1]: the domain gap "
                "would measure the scale. Give X in [0, 1] (uint8 images are scaled automatically; undo any "
                "mean/std normalisation)."
            )
        y = validate_labels(y, len(images))
        classes = np.unique(y)
        if len(classes) < 2:
            raise ValueError(f"y needs at least two classes; got 1 class: {classes.tolist()}.")
        cells = self._check_provider_cells(len(classes))
        if prefit and not np.array_equal(base.classes_, classes):
            raise ValueError(f"The prefit estimator has classes {base.classes_.tolist()}, y has {classes.tolist()}.")
        names, blocks = network_layout(base, images.shape, len(classes))
        # settings the network cannot satisfy fail before any training: a count of tensors it does not have, a block
        # (or module-name prefix) none of its tensors is in
        if getattr(strategy, "top_k", None) is not None:
            resolve_top_k(strategy.top_k, len(names))
        if isinstance(getattr(strategy, "block", None), str) and not in_block(names, blocks, strategy.block).any():
            raise ValueError(f"{strategy!r}: no parameter of the network is in block {strategy.block!r}; its blocks "
                             f"are {list(dict.fromkeys(blocks))} (or give a module-name prefix such as "
                             f"{names[0].rsplit('.', 1)[0]!r}).")
        validation = validation or {}
        selection = self._selection(validation)
        images, y, held_out, held_rows = self._held_out(images, y, base, prefit, validation, selection)
        if reset:
            self.validation_indices_ = held_rows
        return _FitState(images, y, base, prefit, strategy, names, check_random_state(self.random_state),
                         held_out=held_out, selection=selection, cells=cells, blocks=blocks)

    def _check_provider_cells(self, n_classes):
        """``(n_classes, n_groups)``: the cells the synthetic sets are drawn over (every class of ``y`` x every
        group the provider knows); a cell the provider says it cannot produce fails here, before any training."""
        n_groups = int(getattr(self.provider, "n_groups", 2))
        available = getattr(self.provider, "available_cells", lambda: None)()
        if available is not None:
            missing = [cell for cell in group_cells(n_classes, n_groups) if cell not in available]
            if missing:
                raise ValueError(f"The provider has no image of the cells (class index, group index) {missing}; the "
                                 f"mitigator needs every cell of the {n_classes} classes x {n_groups} groups "
                                 "(classes indexed in sorted order of y).")
        return n_classes, n_groups

    def _selection(self, validation):
        """The :class:`CandidateSelection` in force: the parameter, the default one when ``X_val`` is given,
        or None (unguarded)."""
        selection = self.candidate_selection
        if selection is None:
            selection = CandidateSelection() if validation.get("X") is not None else None
        if selection is not None and isinstance(selection.score, str) and selection.score == "auto":
            # a copy: the parameter keeps "auto"; the fit's selection names the score it used
            label_free = "accuracy" if selection.candidates == "last" else "probe_worst_group"
            selection = copy.copy(selection).set_params(
                score="worst_group" if validation.get("s") is not None else label_free)
        return selection

    def _held_out(self, images, y, base, prefit, validation, selection):
        """``(training images, training labels, held-out data or None, held-out rows of X or None)``:
        ``X_val``/``y_val`` as given, or a stratified ``validation_fraction`` of the real data (then removed from
        what pre-training and fine-tuning see)."""
        if validation.get("X") is not None or validation.get("y") is not None:
            if validation.get("X") is None or validation.get("y") is None:
                raise ValueError("Give both X_val and y_val, or neither.")
            val_images = ImageInput.check(validation["X"], base.image_size)
            y_val = validate_labels(validation["y"], len(val_images))
            if not np.isin(y_val, y).all():
                raise ValueError("y_val has labels that y does not have.")
            s_val = validation.get("s")
            if s_val is not None and len(np.asarray(s_val)) != len(y_val):
                raise ValueError(f"sensitive_features_val has {len(np.asarray(s_val))} values for {len(y_val)} "
                                 "validation images.")
            if selection.score in LABELLED_SCORES and s_val is None:
                raise ValueError(f"The score {selection.score!r} needs sensitive_features_val.")
            return images, y, _HeldOut(val_images, y_val, None if s_val is None else np.asarray(s_val)), None
        if validation.get("s") is not None:
            raise ValueError("sensitive_features_val needs X_val and y_val.")
        if selection is None:
            return images, y, None, None
        if selection.validation_fraction is None:
            raise ValueError("candidate_selection needs held-out data: give it a validation_fraction, or give "
                             "X_val and y_val to fit.")
        if selection.score in LABELLED_SCORES:
            raise ValueError(f"The score {selection.score!r} needs X_val, y_val and sensitive_features_val (a share "
                             "of X held out by validation_fraction has no group labels).")
        if prefit:
            raise ValueError("A prefit (frozen) estimator with validation_fraction: the prefit model may have been "
                             "trained on any part of X, so no part of it is held out. Give X_val and y_val to fit.")
        seed = int(np.random.RandomState(check_random_state(self.random_state).randint(0, 2**31 - 1))
                   .randint(0, 2**31 - 1))
        try:
            train, held = train_test_split(np.arange(len(y)), test_size=selection.validation_fraction, stratify=y,
                                           random_state=seed)
        except ValueError as exc:
            raise ValueError(f"Cannot hold out validation_fraction={selection.validation_fraction} of {len(y)} "
                             f"images with both classes on each side: {exc}") from exc
        train, held = np.sort(train), np.sort(held)
        return images[train], y[train], _HeldOut(images[held], y[held], None), held

    def _draw_synthetic(self, state):
        """``(S2, S1)``: the balanced set, and the biased set when the strategy needs the gradient gaps (None
        otherwise: the comparison strategies do not draw it)."""
        shape = state.images.shape
        n_synthetic = synthetic_set_size(len(state.images), self.synthetic_ratio)
        balanced = self._draw("balanced (S2)", balanced_group_counts(n_synthetic, *state.cells), shape, state.rng)
        biased = (self._draw("biased (S1)", biased_group_counts(n_synthetic, state.strategy.bias_ratio, *state.cells),
                             shape, state.rng) if state.strategy.needs_gradient_gaps else None)
        return balanced, biased

    def _pretrain(self, state):
        """Set ``stage_one_estimator_`` (trained, reused from ``memory``, or the prefit one), and the state's
        cache and the pre-training key the gradients are cached under."""
        base, X = state.base, state.images.X
        # an int-seeded pre-training only (the key is also part of the gradients')
        state.cache, state.pretrain_key = pretraining_cache_and_key(base, self.memory, X, state.y)
        if state.prefit:
            self.stage_one_estimator_, self.pretrain_cache_hit_ = copy.deepcopy(base), False
        else:
            self.stage_one_estimator_, self.pretrain_cache_hit_ = cached(
                state.cache, state.pretrain_key, lambda: base.fit(X, state.y)
            )
        self.classes_ = self.stage_one_estimator_.classes_
        self.n_features_in_ = int(np.prod(state.images.shape))

    def _select_tensors(self, state, biased, balanced):
        """The per-tensor table (gaps when the strategy needs them, NaN otherwise) with its ``selected`` column."""
        module = self.stage_one_estimator_.net_.module_
        gaps = pd.DataFrame(
            {"tensor": state.names, "block": state.blocks,
             "numel": [p.numel() for p in module.parameters()], "grad_scale": np.nan, "domain_gap": np.nan,
             "bias_gap": np.nan}
        )
        if state.strategy.needs_gradient_gaps:
            gaps = self._gradient_gaps(state, biased, balanced)
        mask = np.asarray(state.strategy.mask(gaps, state.rng), dtype=bool)
        if mask.shape != (len(gaps),):
            raise ValueError(f"The strategy {state.strategy!r} returned a mask of shape {mask.shape}, expected "
                             f"({len(gaps)},): one entry per tensor.")
        if not mask.any():
            reason = ("the top_k smallest domain gaps and the top_k largest bias gaps do not overlap; increase "
                      "top_k" if state.strategy.needs_gradient_gaps else f"{state.strategy!r} chose none")
            warnings.warn(f"{state.strategy!r} selects no tensor ({reason}): nothing is fine-tuned and the "
                          "pre-trained model is returned.", EmptyMaskWarning, stacklevel=4)
        gaps["selected"] = mask
        return gaps

    def _gradient_gaps(self, state, biased, balanced):
        """Mean gradients on R, S1 and S2 and the per-tensor gaps (the strategy's ``criterion``).

        The gradients are cached with the pre-trained model (``memory``): R's under the pre-training key, S1's
        and S2's under that key and the two draws. The fits of one seed draw the same synthetic sets, so the
        candidates of a ``top_k`` grid, or fits that differ only in their criterion, compute them once. A prefit
        stage one has no key of its own weights: nothing is reused."""
        module = self.stage_one_estimator_.net_.module_
        device = self._device(state)
        max_batches = state.strategy.max_batches

        def gradients(dataset):
            return mean_gradients(module, dataset, batch_size=self.finetune_batch_size, max_batches=max_batches,
                                  device=device, num_workers=state.base.num_workers)

        def cached_or(compute, *key):
            if state.prefit:
                return compute()
            key = fingerprint("grad", state.pretrain_key, self.finetune_batch_size, max_batches, *key)
            return cached(state.cache, key, compute)[0]

        real = state.images.dataset(np.searchsorted(self.classes_, state.y))
        g_real = cached_or(lambda: gradients(real))
        g_biased, g_balanced = cached_or(
            lambda: (gradients(biased.dataset()), gradients(balanced.dataset())), "synthetic",
            [(draw.X, draw.y, draw.is_paths, draw.size) for draw in (biased, balanced)])
        return gradient_gaps(module, g_real, g_biased, g_balanced, criterion=state.strategy.criterion)

    def _draw(self, name, counts, shape, rng):
        seed = int(rng.randint(0, 2**31 - 1))
        X, y, s = self.provider.sample(counts, image_shape=shape, random_state=seed)
        return SyntheticSet(*check_synthetic(name, X, y, s, counts, shape), tuple(shape[1:]))

    def _finetune(self, state, balanced):
        """Fine-tune a copy of the pre-trained model; tensors outside the mask get no update (the
        :class:`MaskedFinetune` callback freezes them when training begins and unfreezes them when it ends).
        With held-out data a :class:`ScoredCheckpoints` callback scores every candidate while training runs and
        leaves the best one loaded."""
        estimator = copy.deepcopy(self.stage_one_estimator_)
        if self.finetune_epochs == 0 or self.n_selected_ == 0:  # nothing to tune: the pre-trained model
            return estimator
        seed_torch(state.rng)
        keep_frozen, all_eval, reestimate = BATCHNORM[self.batchnorm]
        callbacks = [("masked_finetune", MaskedFinetune(self.selection_mask_, freeze_bn_stats=keep_frozen,
                                                        all_bn_eval=all_eval))]
        if state.held_out is not None:  # the candidates, scored while fine-tuning runs
            scoring, column, start_accuracy = self._candidate_scoring(state, estimator, reestimate, balanced)
            callbacks.append(("candidate_selection", scoring))
        elif reestimate:  # after the mask is lifted: frozen layers are re-estimated too
            callbacks.append(("real_bn_statistics", RealBatchNormStatistics(
                state.images.dataset(), batch_size=self.finetune_batch_size, num_workers=state.base.num_workers)))
        estimator.net_ = estimator._make_net(
            estimator.net_.module_, max_epochs=self.finetune_epochs, lr=self.finetune_lr, lr_milestones=(),
            batch_size=self.finetune_batch_size, optimizer=state.strategy.optimizer_class(estimator.optimizer),
            callbacks=[*callbacks, *user_callbacks(self.callbacks)],
        )
        estimator.net_.fit(balanced.dataset(augment=estimator.augment and not estimator._tabular), y=None)
        for column, values in state.strategy.finetune_columns(estimator.net_.optimizer_).items():
            self.gradient_gaps_[column] = values
        if state.held_out is not None:
            scored = dict(estimator.net_.callbacks_)["candidate_selection"]
            names = {"start": "pretrained"}  # the candidate fine-tuning starts from is the pre-trained model
            self.finetune_scores_ = scored.scores_.replace({"candidate": names})
            chosen = {k: v for k, v in scored.best_["selected"].items() if k != "row"}
            self.selected_candidate_ = {**chosen, "candidate": names.get(chosen["candidate"], chosen["candidate"]),
                                        "score": column}  # the score it was chosen by ("auto" resolved)
            scored.release()  # the fitted model keeps neither the candidates' states nor the data
            if start_accuracy is None:  # the pre-trained model is the first candidate
                start_accuracy = float(self.finetune_scores_["accuracy"].iloc[0])
            self._warn_about_choice(column, start_accuracy)
        return estimator

    def _group_probe(self, state, balanced):
        """Train the probe of the protected attribute on the balanced synthetic set S2 (the pre-trained
        network's features) and infer the held-out images' groups; sets ``group_probe_``."""
        held, base = state.held_out, state.base
        loader = dict(batch_size=self.finetune_batch_size, device=self._device(state), num_workers=base.num_workers)
        module = self.stage_one_estimator_.net_.module_
        probe = GroupProbe(random_state=int(state.rng.randint(0, 2**31 - 1))).fit(module, balanced.dataset(),
                                                                                  balanced.s, **loader)
        inferred = probe.predict(module, held.images.dataset(), **loader)
        self.group_probe_ = {"synthetic_accuracy": probe.synthetic_accuracy_, "chance": probe.chance_,
                             "reliable": bool(probe.reliable_),
                             "real_accuracy": (None if held.s is None else float(np.mean(inferred == held.s))),
                             "groups": np.asarray(inferred)}
        return probe, inferred

    def _candidate_scoring(self, state, estimator, reestimate, balanced):
        """``(callback, column, start_accuracy)``: the :class:`ScoredCheckpoints` of the held-out selection (every
        score for every candidate: the pre-trained model, each epoch, the interpolations, or only the last epoch;
        the selection's score monitored, the best loaded), the name of the score column it monitors, and the
        pre-trained model's held-out accuracy when it is no candidate (None when it is: its row has it)."""
        selection, held = state.selection, state.held_out
        scorer = selection.score if callable(selection.score) else None
        score = "score" if scorer is not None else selection.score
        probe, inferred = (self._group_probe(state, balanced) if score in PROBE_SCORES else (None, None))
        if probe is not None and not probe.reliable_:
            warnings.warn(f"The probe of the protected attribute is near chance on the synthetic images "
                          f"({100 * probe.synthetic_accuracy_:.1f} % against {100 * probe.chance_:.1f} % by guessing): "
                          f"the score {score!r} falls back to 'synthetic_worst_group' (see group_probe_).",
                          FineTuningWarning, stacklevel=5)
            score = "synthetic_worst_group"
        with torch.random.fork_rng(devices=[]):  # the draw leaves fine-tuning's random stream as it was
            synthetic = (self._draw("held-out synthetic", balanced_group_counts(len(held.y), *state.cells), state.images.shape,
                                    state.rng) if score == "synthetic_worst_group" else None)
        groups = {"accuracy": None, "worst_class_accuracy": None, "pseudo_group": None}  # pseudo: from the start
        start_accuracy = None
        if selection.candidates == "last":  # the pre-trained model is no candidate: its predictions are made here
            with torch.random.fork_rng(devices=[]):  # (a loader draws a seed) fine-tuning's stream stays as it was
                start = estimator.predict(held.images.X)
            groups["pseudo_group"] = pseudo_groups(held.y, start)
            start_accuracy = SCORES["accuracy"][0](held.y, start)
        cells = {}
        if held.s is not None:
            groups.update(dict.fromkeys(LABELLED_SCORES, np.column_stack([held.y, held.s])))
            cells.update(dict.fromkeys(LABELLED_SCORES, label_cells(held.y, held.s)))
        if inferred is not None:
            groups["probe_worst_group"] = groups["probe_mean_group"] = np.column_stack([held.y, inferred])

        def scoring(net, candidate):
            pred = estimator.predict(held.images.X)
            if groups["pseudo_group"] is None:  # the first candidate is the pre-trained model
                groups["pseudo_group"] = pseudo_groups(held.y, pred)
            row = {name: SCORES[name][0](held.y, pred, g, **({"cells": cells[name]} if name in cells else {}))
                   for name, g in groups.items()}
            if synthetic is not None:
                row["synthetic_worst_group"] = SCORES["synthetic_worst_group"][0](
                    synthetic.y, np.searchsorted(self.classes_, estimator.predict(synthetic.X)),
                    np.column_stack([synthetic.y, synthetic.s]))
            if scorer is not None:
                row["score"] = float(scorer(estimator, held.images.X, held.y))
            return row

        variants = selection.batchnorm_variants
        callback = ScoredCheckpoints(
            scoring, {"selected": (score,)},
            batchnorm_images=state.images.dataset() if (reestimate or variants) else None,
            batch_size=self.finetune_batch_size, num_workers=state.base.num_workers,
            score_start=selection.candidates == "all", interpolation_alphas=selection.alphas(),
            batchnorm_variants=variants, every_epoch=selection.candidates == "all", load_best="selected")
        return callback, score, start_accuracy

    def _warn_about_choice(self, column, start_accuracy):
        chosen = self.selected_candidate_
        if chosen["candidate"] == "pretrained":
            warnings.warn(f"No fine-tuning candidate improved {column} on the held-out real data; the pre-trained "
                          "model is returned unchanged (see finetune_scores_).", FineTuningWarning, stacklevel=4)
        drop = start_accuracy - float(chosen["accuracy"])
        if drop > ACCURACY_DROP_WARNING:
            warnings.warn(f"The returned model's held-out real accuracy is {100 * drop:.1f} points below the "
                          f"pre-trained model's ({100 * chosen['accuracy']:.1f} vs {100 * start_accuracy:.1f} "
                          "%): the synthetic images may be far from the real ones.", FineTuningWarning, stacklevel=4)

    # -- persistence ------------------------------------------------------------------------------

    def save_pretrained(self, directory):
        """Save the fitted mitigator to ``directory`` without pickle: ``config.json`` (parameters except the
        provider, mask, report), ``gradient_gaps.csv``, and the fine-tuned and pre-trained networks as
        safetensors folders (``estimator/``, ``stage_one/``)."""
        from ._persistence import save_mitigator

        check_is_fitted(self, "estimator_")
        return save_mitigator(self, directory)

    @classmethod
    def from_pretrained(cls, directory, *, provider=None, device=None, module=None):
        """The mitigator saved by :meth:`save_pretrained`, ready to predict; ``provider`` is only needed to
        fit it again (the provider itself is not saved, only its class name in the config); ``module``: your
        own network, when the estimator was built with one (``ImageClassifier(module=...)``; networks are code
        and are not saved)."""
        from ._persistence import load_mitigator

        return load_mitigator(cls, directory, provider=provider, device=device, module=module)

    # -- prediction -------------------------------------------------------------------------------

    @property
    def history_(self):
        check_is_fitted(self, "estimator_")
        return self.estimator_.history_

    def reestimate_batchnorm(self, X):
        """Re-estimate the fine-tuned network's BatchNorm statistics on the real images ``X``, as
        ``batchnorm="real"`` does when fine-tuning ends (batches of ``finetune_batch_size``; no labels read).

        With weights loaded from a kept checkpoint
        (:class:`~aimfair_plugin.estimators.ScoredCheckpoints`), this makes the model the mitigator would have
        returned had fine-tuning stopped at that epoch.

        Parameters
        ----------
        X : ndarray of shape (n_samples, C, H, W) or 1-D array of image paths

        Returns
        -------
        self

        Examples
        --------
        >>> from aimfair_plugin.datasets import make_colored_mnist
        >>> from aimfair_plugin.estimators import ImageClassifier, SelectiveFinetuneMitigator
        >>> from aimfair_plugin.synth import RenderedDigitsProvider
        >>> data = make_colored_mnist(n_train=300, n_test=100, minority_share=0.05, image_size=16, random_state=0)
        >>> erm = ImageClassifier(width=4, max_epochs=1, batch_size=64, augment=False, random_state=0)
        >>> mitigator = SelectiveFinetuneMitigator(RenderedDigitsProvider(), estimator=erm, finetune_epochs=1,
        ...                                        random_state=0).fit(data.X_train, data.y_train)
        >>> before = mitigator.predict(data.X_test)
        >>> (mitigator.reestimate_batchnorm(data.X_train).predict(data.X_test) == before).all()  # what fit did
        np.True_
        """
        check_is_fitted(self, "estimator_")
        self.estimator_.reestimate_batchnorm(X, batch_size=self.finetune_batch_size)
        return self

    def predict(self, X):
        """Predicted labels of the fine-tuned classifier."""
        check_is_fitted(self, "estimator_")
        return self.estimator_.predict(X)

    def predict_proba(self, X):
        """Class probabilities of the fine-tuned classifier."""
        check_is_fitted(self, "estimator_")
        return self.estimator_.predict_proba(X)

    def decision_function(self, X):
        """Logit margin of the fine-tuned classifier."""
        check_is_fitted(self, "estimator_")
        return self.estimator_.decision_function(X)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        return tags
