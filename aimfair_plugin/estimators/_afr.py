"""Automatic Feature Reweighting (Qiu et al., ICML 2023): ERM, then the last layer retrained with weights."""

import copy
import os
from numbers import Integral, Real

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import HasMethods, Interval
from torch.utils.data import DataLoader

from .._device import resolve_device
from ..nets import classifier_head
from ._classifier import ImageClassifier, fit_stage_one, head_inputs, with_backbone_params
from ._data import loader_options


def afr_weights(p_true, y, gamma):
    """AFR's per-sample weights: ``exp(-gamma * p_true)``, rebalanced so that each class carries the same total,
    normalised to sum 1 (``p_true``: the ERM model's probability of each sample's true class)."""
    p_true, y = np.asarray(p_true, dtype=np.float64), np.asarray(y)
    w = np.exp(-gamma * p_true)
    classes = np.unique(y)
    for c in classes:
        w[y == c] /= w[y == c].sum()
    return w / len(classes)


@with_backbone_params(validation_fraction=0.2, gamma=4.0, reg_lambda=0.0, max_iter=200, memory="process")
class AFRClassifier(ImageClassifier):
    """Automatic Feature Reweighting on the ResNet backbone, without group labels.

    1. ERM (this estimator's backbone parameters) on the training data
       except a stratified ``validation_fraction`` of it, which stage one never
       sees.
    2. On the held-out part, every example gets the weight
       ``exp(-gamma * p)``, ``p`` being the ERM model's probability of its
       true class, rebalanced so that both classes carry the same total;
       examples the ERM model gets wrong or is unsure about (the minority
       groups it has not learnt) weigh most.
    3. The last layer alone is retrained on the held-out part's features
       (the ERM backbone frozen, BatchNorm in evaluation mode), minimising the
       weighted cross-entropy plus ``reg_lambda * ||theta - theta_ERM||^2``
       from the ERM last layer, full batch with L-BFGS (a convex problem; the
       authors also train on precomputed features with full batches).

    Parameters
    ----------
    validation_fraction : float, default=0.2
        Share of the training data kept out of stage one for reweighting (the
        paper's 80 / 20 split).
    gamma : float, default=4.0
        Temperature of the weights; 0 gives class-balanced uniform weights.
        Choose it and ``reg_lambda`` on validation data, as the paper does.
    reg_lambda : float, default=0.0
        Pull of the retrained layer toward the ERM layer.
    max_iter : int, default=200
        L-BFGS iterations of the last-layer fit.
    memory : "process", str path, joblib.Memory or None, default="process"
        Where the stage-one ERM model is reused across fits with the same data
        and backbone (e.g. a grid over ``gamma`` and ``reg_lambda``).
    **backbone
        All :class:`ImageClassifier` parameters.

    Attributes
    ----------
    stage_one_estimator_ : ImageClassifier
        The ERM model of stage one.
    holdout_indices_ : ndarray of int
        Rows of ``X`` used for reweighting (never seen by stage one).
    afr_weights_ : ndarray of float
        Their weights, in the order of ``holdout_indices_`` (sum 1).
    n_iter_ : int
        L-BFGS iterations the last-layer retraining ran (at most ``max_iter``).

    References
    ----------
    Qiu, Potapczynski, Izmailov and Wilson, "Simple and Fast Group Robustness
    by Automatic Feature Reweighting", ICML 2023.

    Examples
    --------
    >>> from aimfair_plugin.datasets import make_colored_mnist
    >>> data = make_colored_mnist(n_train=300, n_test=100, minority_share=0.05, image_size=16, random_state=0)
    >>> tiny = dict(width=4, max_epochs=1, batch_size=64, augment=False, random_state=0)  # a small, fast backbone
    >>> from aimfair_plugin.estimators import AFRClassifier
    >>> clf = AFRClassifier(gamma=4.0, **tiny).fit(data.X_train, data.y_train)
    >>> clf.predict(data.X_test).shape
    (100,)
    """

    _parameter_constraints = {
        **ImageClassifier._parameter_constraints,
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "gamma": [Interval(Real, 0, None, closed="left")],
        "reg_lambda": [Interval(Real, 0, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "memory": [None, str, os.PathLike, HasMethods(["cache"])],
    }

    def fit(self, X, y, sample_weight=None):
        data = self._validate_fit_input(X, y, sample_weight)
        X, y, weights = data.images.X, data.y, data.sample_weight
        seed = check_random_state(self.random_state).randint(0, 2**31 - 1)
        rows = np.arange(len(X))
        try:
            first, held = train_test_split(rows, test_size=self.validation_fraction, stratify=y, random_state=seed)
        except ValueError as exc:
            raise ValueError(f"AFR cannot hold out {self.validation_fraction} of {len(X)} samples with both classes "
                             f"on each side: {exc}") from exc
        self.holdout_indices_, first = np.sort(held), np.sort(first)
        stage_one = fit_stage_one(self, X[first], y[first], None if weights is None else weights[first])
        self.stage_one_estimator_ = stage_one
        for name, value in vars(stage_one).items():  # fitted state (net_, classes_, image_shape_, ...)
            if name.endswith("_") and not name.startswith("_"):
                setattr(self, name, copy.deepcopy(value))
        features = self._holdout_features(data.images[self.holdout_indices_])
        y_held = np.searchsorted(self.classes_, y[self.holdout_indices_])
        fc = classifier_head(self.net_.module_)[1]
        with torch.no_grad():
            probs = F.linear(features, fc.weight.double(), fc.bias.double()).softmax(1)
        p_true = probs[torch.arange(len(y_held)), torch.as_tensor(y_held)].cpu().numpy()
        w = afr_weights(p_true, y_held, self.gamma)
        if weights is not None:
            w = w * weights[self.holdout_indices_]
            w = w / w.sum()
        self.afr_weights_ = w
        self._retrain_last_layer(features, y_held, w)
        return self

    def _holdout_features(self, images):
        """What the ERM model's last layer reads for each held-out example (float64, ``n x d``), streamed batch
        by batch through the network in evaluation mode."""
        module = self.net_.module_
        device = resolve_device(self.device)
        dataset = self._dataset(images)
        loader = DataLoader(dataset, batch_size=self.batch_size, shuffle=False,
                            **loader_options(self.num_workers, dataset, device, persistent=False))
        was_training = module.training
        module.eval()
        features = head_inputs(module, loader, device, dtype=torch.float64)[0]
        module.train(was_training)
        return features

    def _retrain_last_layer(self, features, y, w):
        fc = classifier_head(self.net_.module_)[1]
        w0, b0 = fc.weight.detach().double(), fc.bias.detach().double()
        weight, bias = w0.clone().requires_grad_(True), b0.clone().requires_grad_(True)
        target = torch.as_tensor(y, device=features.device)
        sample_w = torch.as_tensor(w, device=features.device)
        optimizer = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=self.max_iter, line_search_fn="strong_wolfe",
                                      tolerance_grad=1e-9, tolerance_change=1e-12, history_size=20)

        def objective():
            optimizer.zero_grad()
            loss = (sample_w * F.cross_entropy(F.linear(features, weight, bias), target, reduction="none")).sum()
            loss = loss + self.reg_lambda * ((weight - w0).square().sum() + (bias - b0).square().sum())
            loss.backward()
            return loss

        optimizer.step(objective)
        self.n_iter_ = int(optimizer.state[optimizer._params[0]]["n_iter"])  # L-BFGS iterations run
        with torch.no_grad():
            fc.weight.copy_(weight.to(fc.weight.dtype))
            fc.bias.copy_(bias.to(fc.bias.dtype))
