"""ImageClassifier: the ERM model, a scikit-learn classifier around one skorch training loop."""

import copy
import inspect
import os
from numbers import Integral, Real
from typing import NamedTuple

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, InvalidParameterError, StrOptions
from sklearn.utils.multiclass import type_of_target
from sklearn.utils.validation import check_array, check_is_fitted, column_or_1d, validate_data
from skorch import NeuralNetClassifier
from skorch.callbacks import LRScheduler, ProgressBar
from torch import nn
from torch.optim.lr_scheduler import MultiStepLR

from .._device import autocast, resolve_device
from .._validation import validate_declared
from ..nets import LinearModel, ResNet, VisionTransformer, block_of, classifier_head, load_checkpoint, penultimate_features
from ._cache import cached_fit
from ._callbacks import ConstantPredictionCheck, DivergenceGuard
from ._data import ImageInput, WorkerInvariantLoader, check_image_size, loader_options

CHANNELS_LAST_MIN_WIDTH = 16
# Images per forward pass when predicting (at least ``batch_size``): no gradients are kept, so a larger batch costs
# little memory and saves per-batch overhead; the predictions are the same as in batches of ``batch_size``.
PREDICT_BATCH_SIZE = 256


class WeightedImageNet(NeuralNetClassifier):
    """skorch classifier whose loss honours a per-sample weight carried in the batch.

    Batches are ``({"X": images, "sample_weight": w}, y)`` when weights are
    given, plain ``(images, y)`` otherwise. The weight never reaches the
    module: :meth:`infer` strips it and :meth:`get_loss` applies it to the
    per-sample losses (the criterion uses ``reduction="none"``). On CUDA the
    forward pass runs under bfloat16 autocast.
    """

    def __init__(self, *args, num_workers="auto", **kwargs):
        self.num_workers = num_workers
        super().__init__(*args, **kwargs)

    def get_iterator(self, dataset, training=False):
        """A :class:`WorkerInvariantLoader` with this package's loader options for ``dataset`` (see
        :func:`~aimfair_plugin.estimators._data.loader_options`): files are decoded in worker processes that
        stay alive across epochs (skorch builds the training loader once per ``fit``), pinned memory on CUDA."""
        kwargs = self.get_params_for("iterator_train" if training else "iterator_valid")
        kwargs.setdefault("batch_size", self.batch_size)
        if kwargs["batch_size"] == -1:
            kwargs["batch_size"] = len(dataset)
        kwargs.update(loader_options(self.num_workers, dataset, self.device))
        return WorkerInvariantLoader(dataset, **kwargs)

    def infer(self, x, **fit_params):
        if isinstance(x, dict):
            x = x["X"]
        first = next(self.module_.parameters())
        if x.dim() == 4 and first.dim() == 4 and first.is_contiguous(memory_format=torch.channels_last):
            x = x.contiguous(memory_format=torch.channels_last)  # the module's layout (ImageClassifier._build_module)
        with autocast(self.device):
            return super().infer(x, **fit_params)

    def per_sample_losses(self, y_pred, y_true, X=None, training=False):
        """Unreduced criterion values of the batch, in float32."""
        return super().get_loss(y_pred.float(), y_true, X=X, training=training)

    @staticmethod
    def batch_values(X, name, like):
        """A per-sample value carried in the batch dict (``None`` when absent), on ``like``'s device."""
        if not isinstance(X, dict) or name not in X:
            return None
        return torch.as_tensor(X[name], device=like.device)

    def get_loss(self, y_pred, y_true, X=None, training=False):
        losses = self.per_sample_losses(y_pred, y_true, X=X, training=training)
        weights = self.batch_values(X, "sample_weight", losses)
        return (losses * weights).mean() if weights is not None else losses.mean()


def validate_sample_weight(sample_weight, n_samples):
    """Non-negative finite weights, rescaled to mean 1 so the learning rate keeps its meaning."""
    if sample_weight is None:
        return None
    w = np.asarray(sample_weight, dtype=np.float64).reshape(-1)
    if w.shape[0] != n_samples:
        raise ValueError(f"sample_weight has {w.shape[0]} entries for {n_samples} samples.")
    if not np.isfinite(w).all() or (w < 0).any():
        raise ValueError("sample_weight must be finite and non-negative.")
    if w.sum() <= 0:
        raise ValueError("sample_weight sums to zero; at least one sample needs a positive weight.")
    return (w / w.mean()).astype(np.float32)


def validate_labels(y, n_samples):
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = column_or_1d(y, warn=True)  # scikit-learn's DataConversionWarning
    if y.ndim != 1 or len(y) != n_samples:
        raise ValueError(f"y must be one-dimensional with one label per image ({n_samples}), got shape {y.shape}.")
    kind = type_of_target(y, raise_unknown=True)
    if kind not in ("binary", "multiclass"):
        raise ValueError(f"ImageClassifier needs class labels, got a {kind!r} target.")
    return y


OPTIMIZERS = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam}


class FitInput(NamedTuple):
    """Checked training input: the images, the labels (as given) and the per-sample weights (or None)."""

    images: ImageInput
    y: np.ndarray
    sample_weight: np.ndarray = None


class ImageClassifier(ClassifierMixin, BaseEstimator):
    """Image classifier (a ResNet, a ViT or your own network) trained by ERM with skorch, with the scikit-learn API.

    Parameters
    ----------
    arch : {"resnet18", "resnet34", "resnet50", "vit", "logistic"}, default="resnet18"
        The package's network when ``module`` is None. ``"vit"`` is a small
        :class:`~aimfair_plugin.nets.VisionTransformer` (4 blocks, 4 heads,
        embedding ``4 * width``, 4 x 4 patches of the image). ``"logistic"``
        is a linear (logistic-regression) model on a 2-D feature matrix, for
        tabular data; the image parameters are ignored.
    module : torch.nn.Module class, instance or callable, optional
        Your own network, as skorch's ``module=`` takes it: a class or a
        callable is called with those of ``num_outputs`` / ``num_classes``
        (the number of classes), ``in_channels`` and ``image_size`` its
        signature accepts; an instance (e.g. with pretrained weights you
        loaded) is copied at every ``fit``, so refits start from the same
        weights. Its output must have one logit per class (checked before
        training). Its classification head is its ``fc`` or ``head`` linear
        layer, else its last ``nn.Linear``; ``arch``, ``width``, ``stem`` and
        ``pretrained`` are then unused.
    width : int, default=64
        Base channels of the ResNet (64 is standard; 16 is fast on CPUs).
    pretrained : str or Path, optional
        A ResNet checkpoint (torchvision ``.pth`` or ``.safetensors``) to
        start from, read without unpickling code; its ``fc`` is replaced when
        the number of classes differs. (For your own ``module``, load the
        weights into the instance you pass.)
    max_epochs : int, default=15
    lr : float, default=0.01
    momentum : float, default=0.9
    weight_decay : float, default=1e-4
    batch_size : int, default=128
        Images per training step. Predictions run in batches of
        ``max(batch_size, 256)`` (no gradients are kept).
    lr_milestones : tuple of int, default=(10,)
        Epochs at which the learning rate is multiplied by ``lr_gamma``.
    lr_gamma : float, default=0.01
    image_size : int or (int, int), optional
        Resize images to this size; required in practice for path inputs of
        varying sizes.
    augment : bool, default=True
        Random translation (up to 12.5%) and horizontal flip during training.
    device : str, default="auto"
        ``"auto"`` uses CUDA with bfloat16 mixed precision when available,
        the CPU otherwise.
    random_state : int, RandomState or None
        Seeds weight initialisation, shuffling and augmentation; the same
        seed on the CPU gives identical predictions.
    verbose : int, default=0
        ``>= 1`` prints a per-epoch log with a tqdm progress bar.
    stem : {"imagenet", "cifar"}, default="imagenet"
    num_workers : int or "auto", default="auto"
        DataLoader worker processes. ``"auto"``: arrays are read in the main
        process (0 workers); image files are decoded in ``min(4, cores - 1)``
        workers (at least 1), kept alive across epochs, with pinned memory on
        CUDA, so decoding overlaps training.
    optimizer : {"sgd", "adam"}, default="sgd"
        SGD with ``momentum`` (the paper's recipe), or Adam (``momentum`` is
        then unused; LfF's original recipe is Adam at lr 1e-3).
    callbacks : list of skorch callbacks or (name, callback) pairs, optional
        Extra skorch callbacks in the training loop of the model ``fit``
        returns (a two-stage baseline's second stage; its stage-one model
        trains without them), after the package's own, as skorch's
        ``NeuralNet(callbacks=...)`` takes them. They are not part of a
        cache key (:func:`fit_cached` returns a model trained with the
        callbacks it was first fitted with) and are not saved by
        ``save_pretrained``.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    net_ : WeightedImageNet
        The fitted skorch net; ``net_.module_`` is the ResNet.
    image_shape_ : tuple
        ``(C, H, W)`` the network was trained on.
    history_ : skorch History

    Examples
    --------
    >>> from aimfair_plugin.datasets import make_colored_mnist
    >>> from aimfair_plugin.estimators import ImageClassifier
    >>> data = make_colored_mnist(n_train=400, n_test=200, random_state=0)
    >>> clf = ImageClassifier(width=8, max_epochs=1, random_state=0)
    >>> clf.fit(data.X_train, data.y_train).predict(data.X_test).shape
    (200,)
    """

    def __init__(
        self,
        *,
        arch="resnet18",
        module=None,
        width=64,
        pretrained=None,
        max_epochs=15,
        lr=0.01,
        momentum=0.9,
        weight_decay=1e-4,
        batch_size=128,
        lr_milestones=(10,),
        lr_gamma=0.01,
        image_size=None,
        augment=True,
        device="auto",
        random_state=None,
        verbose=0,
        stem="imagenet",
        num_workers="auto",
        optimizer="sgd",
        callbacks=None,
    ):
        self.arch = arch
        self.module = module
        self.width = width
        self.pretrained = pretrained
        self.max_epochs = max_epochs
        self.lr = lr
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.lr_milestones = lr_milestones
        self.lr_gamma = lr_gamma
        self.image_size = image_size
        self.augment = augment
        self.device = device
        self.random_state = random_state
        self.verbose = verbose
        self.stem = stem
        self.num_workers = num_workers
        self.optimizer = optimizer
        self.callbacks = callbacks

    # Declared once, checked by scikit-learn's ``BaseEstimator._validate_params`` at the start of ``fit``.
    _parameter_constraints = {
        "arch": [StrOptions({"resnet18", "resnet34", "resnet50", "vit", "logistic"})],
        "module": [None, nn.Module, callable],
        "width": [Interval(Integral, 1, None, closed="left")],
        "pretrained": [None, str, os.PathLike],
        "max_epochs": [Interval(Integral, 1, None, closed="left")],
        "lr": [Interval(Real, 0, None, closed="neither")],
        "momentum": [Interval(Real, 0, 1, closed="left")],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "lr_milestones": [tuple, list],
        "lr_gamma": [Interval(Real, 0, None, closed="neither")],
        "image_size": [None, Interval(Integral, 8, None, closed="left"), tuple, list],
        "augment": ["boolean"],
        "device": [str, torch.device],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
        "stem": [StrOptions({"imagenet", "cifar"})],
        "num_workers": [Interval(Integral, 0, None, closed="left"), StrOptions({"auto"})],
        "optimizer": [StrOptions(set(OPTIMIZERS))],
        "callbacks": [None, list, tuple],
    }

    def _validate_params(self):
        super()._validate_params()
        validate_declared(self)
        # what a declaration cannot say: the contents of the milestone list and the image size pair
        if not all(isinstance(m, Integral) and not isinstance(m, bool) and m >= 0 for m in self.lr_milestones):
            raise InvalidParameterError(f"lr_milestones must hold non-negative epoch numbers, got {self.lr_milestones!r}.")
        check_image_size(self.image_size)
        user_callbacks(self.callbacks)

    @property
    def _tabular(self):
        """Whether the estimator reads a feature matrix (the package's linear model) rather than images."""
        return self.arch == "logistic" and self.module is None

    # The skorch net class; baselines swap in one that changes only the loss.
    net_class = WeightedImageNet

    def _check_X(self, X, *, reset=None):
        """The checked :class:`ImageInput`. Tabular input goes through scikit-learn's ``validate_data`` (its
        messages for sparse, complex, object, empty and 1-D input; ``n_features_in_`` set when ``reset``,
        checked when ``reset=False``); images through :func:`check_images`, read at ``image_size``.
        ``reset=None`` validates only (no state)."""
        if not self._tabular:
            return ImageInput.check(X, self.image_size)
        if reset is None:
            return ImageInput(check_array(X, dtype=np.float32), False)
        return ImageInput(validate_data(self, X, dtype=np.float32, reset=reset), False)

    def _dataset(self, images, y=None, sample_weight=None, train=False, extras=None):
        """The dataset of checked ``images``; augmented when ``train`` and the estimator augments images."""
        augment = train and self.augment and not self._tabular
        return images.dataset(y, sample_weight=sample_weight, augment=augment, extras=extras)

    def _net_kwargs(self):
        """Extra keyword arguments for ``net_class`` (none for plain ERM)."""
        return {}

    def _make_net(self, module, *, lr_milestones=None, callbacks=(), **net_options):
        """A skorch net around ``module`` with this estimator's optimiser settings.

        ``lr_milestones`` defaults to the estimator's; ``callbacks`` are added after the learning-rate schedule
        (and the progress bar); ``net_options`` override skorch's keyword arguments (``max_epochs``, ``lr``,
        ``batch_size``, ``optimizer``: a variant of the optimiser ``self.optimizer`` names that takes the same
        options, e.g. its Auto-RGN one).
        """
        milestones = self.lr_milestones if lr_milestones is None else lr_milestones
        schedule = LRScheduler(policy=MultiStepLR, milestones=list(milestones), gamma=self.lr_gamma)
        progress = [("progress", ProgressBar())] if self.verbose else []
        options = {
            "optimizer": OPTIMIZERS[self.optimizer],
            "lr": self.lr,
            "max_epochs": self.max_epochs,
            "batch_size": self.batch_size,
            **{k: v for k, v in net_options.items() if v is not None},
        }
        # predictions keep no gradients: larger batches cost little memory and save loader and per-call overhead
        options["iterator_valid__batch_size"] = max(options["batch_size"], PREDICT_BATCH_SIZE)
        return self.net_class(
            module=module,
            criterion=nn.CrossEntropyLoss,
            criterion__reduction="none",
            optimizer__weight_decay=self.weight_decay,
            **({"optimizer__momentum": self.momentum} if self.optimizer == "sgd" else {}),
            train_split=None,
            iterator_train__shuffle=True,
            num_workers=self.num_workers,
            callbacks=[("lr_schedule", schedule), *progress, ("divergence_guard", DivergenceGuard()),
                       ("constant_prediction_check", ConstantPredictionCheck()), *callbacks],
            classes=list(range(len(self.classes_))),
            device=resolve_device(self.device),
            verbose=self.verbose,
            **options,
            **self._net_kwargs(),
        )

    def _build_module(self, in_channels):
        return self._new_network((in_channels, *self.image_shape_[1:]), len(self.classes_))

    def _new_network(self, image_shape, n_classes):
        """A freshly initialised network (seeded by the caller) for ``image_shape`` inputs and ``n_classes``."""
        in_channels = image_shape[0]
        if self.module is not None:
            return build_user_module(self.module, n_classes, image_shape)
        if self.arch == "logistic":
            return LinearModel(in_channels, n_classes)
        if self.arch == "vit":
            return VisionTransformer(n_classes, image_size=image_shape[1], in_channels=in_channels,
                                     patch_size=max(1, image_shape[1] // 4), dim=4 * self.width)
        module = ResNet(self.arch, n_classes, width=self.width, in_channels=in_channels, stem=self.stem)
        if self.pretrained is not None:
            load_checkpoint(module, self.pretrained)
        # Channels-last convolutions: measured 14-20 % faster per training step on these CPUs (width-16
        # ResNet-18, 32 px, batch 64, two single-threaded processes), and the layout CUDA mixed precision prefers.
        # Not below width 16: the CPU build of torch 2.13 crashes (segmentation fault / double free) in the
        # backward pass of channels-last ResNet-18s of width 4 and 8 at 224 px (measured; width 16 and 64 run).
        return module.to(memory_format=torch.channels_last) if self.width >= CHANNELS_LAST_MIN_WIDTH else module

    def fit(self, X, y, sample_weight=None):
        """Train the ResNet by (weighted) empirical risk minimisation.

        Parameters
        ----------
        X : ndarray of shape (n_samples, C, H, W) or 1-D array of image paths
        y : array-like of shape (n_samples,)
        sample_weight : array-like of shape (n_samples,), optional
            Per-sample loss weights (rescaled to mean 1); every minibatch uses
            the weights of its own samples.

        Returns
        -------
        self
        """
        return self._fit_net(self._validate_fit_input(X, y, sample_weight))

    def _validate_fit_input(self, X, y, sample_weight):
        """The checked :class:`FitInput` (images, labels, weights rescaled to mean 1); sets ``classes_``."""
        self._validate_params()
        if y is None:
            raise ValueError(f"{type(self).__name__} requires y to be passed, but the target y is None.")
        images = self._check_X(X, reset=True)
        y = validate_labels(y, len(images))
        weights = validate_sample_weight(sample_weight, len(images))
        self.classes_ = np.unique(y)
        if len(self.classes_) < 2:
            raise ValueError(f"y needs at least two classes; got 1 class: {self.classes_.tolist()}.")
        return FitInput(images, y, weights)

    def _fit_net(self, data, extras=None, lr=None):
        """Build a fresh net and train it on a checked :class:`FitInput` (labels in ``classes_``); ``lr``
        overrides ``self.lr``."""
        seed_torch(self.random_state)
        self.image_shape_ = data.images.shape
        if not self._tabular:  # the pixels per image the network sees (tabular: set by validate_data)
            self.n_features_in_ = int(np.prod(self.image_shape_))
        self.net_ = self._make_net(self._build_module(self.image_shape_[0]), lr=lr,
                                   callbacks=user_callbacks(self.callbacks))
        y_encoded = np.searchsorted(self.classes_, data.y)
        self.net_.fit(self._dataset(data.images, y_encoded, data.sample_weight, train=True, extras=extras), y=None)
        return self

    @property
    def history_(self):
        check_is_fitted(self, "net_")
        return self.net_.history

    def _check_predict_input(self, X):
        check_is_fitted(self, "net_")
        images = self._check_X(X, reset=False)
        channels = images.shape[0]
        if channels != self.image_shape_[0]:
            raise ValueError(f"X has {channels} channels but the model was fitted on {self.image_shape_[0]}.")
        return self._dataset(images)

    def predict_proba(self, X):
        """Class probabilities (softmax of the logits), shape (n_samples, n_classes)."""
        dataset = self._check_predict_input(X)
        return self.net_.predict_proba(dataset).astype(np.float64)

    def decision_function(self, X):
        """Logit of class 1 minus logit of class 0 for binary tasks; all logits otherwise."""
        dataset = self._check_predict_input(X)
        logits = self.net_.forward(dataset, training=False).float().cpu().numpy()
        return logits[:, 1] - logits[:, 0] if logits.shape[1] == 2 else logits

    def predict(self, X):
        """Predicted class labels."""
        proba = self.predict_proba(X)
        return self.classes_[proba.argmax(axis=1)]

    def reestimate_batchnorm(self, X, batch_size=None):
        """Reset the network's BatchNorm running statistics and re-estimate them on the images ``X`` (AdaBN).

        Only the images are read (no labels); the weights are unchanged. Useful when the model was trained on
        images of another domain (synthetic ones) and is used on ``X``'s domain. A network without BatchNorm
        layers is left as it is.

        Parameters
        ----------
        X : ndarray of shape (n_samples, C, H, W) or 1-D array of image paths
        batch_size : int, optional
            Images per forward pass (default: the estimator's ``batch_size``). Each layer's statistics are the
            average over the batches, so the batch size changes them slightly.

        Returns
        -------
        self
        """
        from ._callbacks import reestimate_batchnorm_statistics

        check_is_fitted(self, "net_")
        reestimate_batchnorm_statistics(self.net_.module_, self._dataset(self._check_X(X, reset=False)),
                                        batch_size=batch_size or self.batch_size, device=resolve_device(self.device),
                                        num_workers=self.num_workers)
        return self

    def save_pretrained(self, directory):
        """Save the fitted model to ``directory`` as ``config.json`` + ``model.safetensors`` (no pickle).

        :meth:`from_pretrained` reads it back with identical predictions.
        """
        from ._persistence import save_classifier

        check_is_fitted(self, "net_")
        return save_classifier(self, directory)

    @classmethod
    def from_pretrained(cls, directory, *, device=None, module=None):
        """The fitted model saved by :meth:`save_pretrained` (any estimator class of this package);
        ``device`` overrides the saved one; ``module``: your own network, when the model was trained with one
        (networks are code and are not saved: only their weights)."""
        from ._persistence import load_classifier

        return load_classifier(directory, device=device, module=module)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # a feature matrix for the linear model; image arrays (n, C, H, W) or path arrays otherwise
        tags.input_tags.two_d_array = self._tabular
        tags.non_deterministic = self.random_state is None
        return tags


MODULE_ARGUMENTS = ("num_outputs", "num_classes", "in_channels", "image_size")


def build_user_module(module, n_classes, image_shape):
    """The network a user's ``module`` parameter stands for (see :class:`ImageClassifier`), checked: a copy of an
    instance, or a class / callable called with the arguments of ``MODULE_ARGUMENTS`` its signature names; its
    output on a batch of ``image_shape`` zeros must be ``(batch, n_classes)`` logits (a ValueError otherwise, before
    any training)."""
    if isinstance(module, nn.Module):
        network = copy.deepcopy(module)
    else:
        values = {"num_outputs": n_classes, "num_classes": n_classes, "in_channels": image_shape[0],
                  "image_size": image_shape[1]}
        try:
            accepted = inspect.signature(module).parameters
        except (TypeError, ValueError):  # a builtin or C callable: call it without arguments
            accepted = {}
        network = module(**{k: v for k, v in values.items() if k in accepted})
        if not isinstance(network, nn.Module):
            raise TypeError(f"module={module!r} returned a {type(network).__name__}, not a torch.nn.Module.")
    was_training = network.training
    network.eval()
    try:
        with torch.no_grad():
            out = network(torch.zeros(2, *image_shape, device=next(network.parameters()).device))
    except Exception as exc:  # the user's network cannot read these images: say so before training
        raise ValueError(f"module {type(network).__name__} cannot read images of shape {tuple(image_shape)}: "
                         f"{exc}") from exc
    finally:
        network.train(was_training)
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (2, n_classes):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"module {type(network).__name__} gives outputs of shape {shape} for 2 images, but y has "
                         f"{n_classes} classes: it needs one logit per class, shape (2, {n_classes}).")
    return network


def network_layout(estimator, image_shape, n_classes):
    """``(names, blocks)``: the parameter names of the network ``estimator`` trains on ``image_shape`` images with
    ``n_classes`` (a fitted estimator: its own network's) and the block of each (:func:`~aimfair_plugin.nets.block_of`,
    the head's tensors in block ``"fc"``). The package's networks are built on the meta device (no memory, no
    initialisation), a user's module for real (which also checks its output size)."""
    if hasattr(estimator, "net_"):
        module = estimator.net_.module_
    elif estimator.module is not None:
        module = estimator._new_network(image_shape, n_classes)
    else:
        with torch.device("meta"):
            module = estimator._new_network(image_shape, n_classes)
    head = classifier_head(module)[0]
    names = [name for name, _ in module.named_parameters()]
    return names, [block_of(name, head) for name in names]


def backbone_params(estimator):
    """The :class:`ImageClassifier` parameters of ``estimator`` (a baseline shares them)."""
    return {name: getattr(estimator, name) for name in ImageClassifier._get_param_names()}


def stage_one_params(estimator):
    """The parameters of a two-stage baseline's stage-one :class:`ImageClassifier`: the backbone's, without the
    user's ``callbacks`` (they belong to the loop of the model the baseline returns)."""
    return {**backbone_params(estimator), "callbacks": None}


def user_callbacks(callbacks):
    """``callbacks`` (a list of skorch callbacks or ``(name, callback)`` pairs, or None) as checked
    ``(name, callback)`` pairs; a callback without a name is named after its class, as skorch names it."""
    from skorch.callbacks import Callback

    pairs = []
    for item in callbacks or ():
        name, callback = item if isinstance(item, tuple) and len(item) == 2 else (None, item)
        if not isinstance(callback, Callback) or not (name is None or isinstance(name, str)):
            raise InvalidParameterError(
                f"callbacks must hold skorch callbacks or (name, callback) pairs, got {item!r}.")
        pairs.append((name or type(callback).__name__, callback))
    return pairs


def fit_stage_one(estimator, X, y, sample_weight=None):
    """The ERM model a two-stage baseline (FairIF, AFR) starts from: an :class:`ImageClassifier` with
    ``estimator``'s backbone parameters fit on ``(X, y)``, read from ``estimator.memory`` when an identical one
    was trained before (without sample weights, under the package's one caching rule,
    :func:`~aimfair_plugin.estimators._cache.pretraining_cache_and_key`)."""
    model = ImageClassifier(**stage_one_params(estimator))
    if sample_weight is not None:
        return model.fit(X, y, sample_weight=sample_weight)
    return cached_fit(estimator.memory, model, X, y)[0]


def head_inputs(module, loader, device, dtype=torch.float32):
    """What ``module``'s last layer reads (``module.features``) for every batch of ``loader``, in order,
    without gradients, as ``dtype``; returns ``(features, targets)``, ``targets`` None when the batches hold
    images only. The caller puts ``module`` in evaluation mode."""
    features, targets = [], []
    with torch.no_grad():
        for batch in loader:
            pair = isinstance(batch, (tuple, list))
            features.append(penultimate_features(module, (batch[0] if pair else batch).to(device)).to(dtype))
            if pair and len(batch) > 1:
                targets.append(torch.as_tensor(batch[1]))
    return torch.cat(features), (torch.cat(targets) if targets else None)


def with_backbone_params(**own_params):
    """Class decorator: an ``__init__`` taking the baseline's own parameters and all of ImageClassifier's.

    The generated ``__init__`` has an explicit keyword-only signature (own
    parameters first), so ``get_params``, ``clone`` and ``GridSearchCV`` see
    every parameter, and it only stores them, as scikit-learn requires. It
    keeps the backbone parameters in one place instead of copying seventeen
    of them into every baseline.
    """
    base = inspect.signature(ImageClassifier.__init__)
    own = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=d) for name, d in own_params.items()]
    backbone = [p for name, p in base.parameters.items() if name != "self"]
    signature = base.replace(parameters=[base.parameters["self"], *own, *backbone])

    def __init__(self, **kwargs):
        bound = signature.bind(self, **kwargs)
        bound.apply_defaults()
        for name, value in list(bound.arguments.items())[1:]:
            setattr(self, name, value)

    __init__.__signature__ = signature

    def decorate(cls):
        __init__.__qualname__ = f"{cls.__name__}.__init__"
        cls.__init__ = __init__
        cls.__doc__ = _with_backbone_docs(cls.__doc__)
        return cls

    return decorate


BACKBONE_ENTRY = "    **backbone\n        All :class:`ImageClassifier` parameters.\n"


def _with_backbone_docs(doc):
    """``doc`` with its ``**backbone`` entry replaced by ImageClassifier's parameter entries (as pandas'
    ``@doc`` shares text), so every baseline's reference page lists every parameter it takes."""
    if not doc or BACKBONE_ENTRY not in doc:
        return doc
    base = ImageClassifier.__doc__
    start = base.index("Parameters\n    ----------\n") + len("Parameters\n    ----------\n")
    entries = base[start:base.index("\n    Attributes\n")].rstrip("\n") + "\n"
    return doc.replace(BACKBONE_ENTRY, entries, 1)


def seed_torch(random_state):
    """Seed torch's global generator (initialisation, shuffling, augmentation) from ``random_state``."""
    seed = int(check_random_state(random_state).randint(0, 2**31 - 1))
    torch.manual_seed(seed)
    return seed
