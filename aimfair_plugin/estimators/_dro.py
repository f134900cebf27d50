"""Distributionally robust baselines: CVaR DRO (no group labels) and Group DRO (an oracle that uses them)."""

from numbers import Real

import numpy as np
import torch
from sklearn.utils._param_validation import Interval

from ._classifier import ImageClassifier, WeightedImageNet, with_backbone_params


def cvar_weights(losses, alpha, p=None):
    """Weights ``q`` with ``sum(q * losses)`` equal to the CVaR at level ``alpha``.

    CVaR_alpha is the mean loss over the worst ``alpha`` fraction of the
    probability mass ``p`` (uniform by default): samples are taken from the
    largest loss down until the mass ``alpha`` is used up, the boundary
    sample contributing only the fraction of its mass that still fits.
    ``q`` sums to 1; ``alpha=1`` gives ``q = p``, the ERM mean.

    Parameters
    ----------
    losses : 1-D tensor
    alpha : float in (0, 1]
    p : 1-D tensor, optional
        Non-negative sample masses (e.g. sample weights); normalised here.
    """
    n = losses.shape[0]
    p = torch.full_like(losses, 1.0 / n) if p is None else p.to(losses.dtype) / p.sum()
    order = torch.argsort(losses, descending=True)
    mass = p[order]
    before = torch.cumsum(mass, 0) - mass
    taken = torch.minimum(torch.clamp(alpha - before, min=0.0), mass)
    q = torch.zeros_like(losses)
    q[order] = taken / alpha
    return q


class CVaRNet(WeightedImageNet):
    """Minimises the CVaR of each minibatch's per-sample losses instead of their mean."""

    def __init__(self, *args, alpha=0.1, **kwargs):
        self.alpha = alpha
        super().__init__(*args, **kwargs)

    def get_loss(self, y_pred, y_true, X=None, training=False):
        if not training:
            return super().get_loss(y_pred, y_true, X=X, training=training)
        losses = self.per_sample_losses(y_pred, y_true, X=X, training=training)
        q = cvar_weights(losses.detach(), self.alpha, self.batch_values(X, "sample_weight", losses))
        return (q * losses).sum()


@with_backbone_params(alpha=0.3)
class CVaRDROClassifier(ImageClassifier):
    """CVaR distributionally robust optimisation (Levy et al., 2020) on the ResNet backbone.

    Each minibatch's loss is the mean over its worst ``alpha`` fraction of
    samples (with the fractional boundary sample), which up-weights whatever
    the model currently gets wrong, minority groups included, without group
    labels. ``alpha=1`` is ERM. ``sample_weight`` acts as each sample's
    probability mass.

    Parameters
    ----------
    alpha : float in (0, 1], default=0.3
        The share of the worst per-sample losses each minibatch trains on.
        Smaller values focus harder on the hardest examples (and on label
        noise); 0.3 keeps enough of each batch for a stable gradient and is
        the value the package's tuning chose (results page "Tuned settings"). A small
        ``alpha`` with a large ``lr`` can diverge to a constant classifier.
    **backbone
        All :class:`ImageClassifier` parameters.

    Examples
    --------
    >>> from aimfair_plugin.datasets import make_colored_mnist
    >>> data = make_colored_mnist(n_train=300, n_test=100, minority_share=0.05, image_size=16, random_state=0)
    >>> tiny = dict(width=4, max_epochs=1, batch_size=64, augment=False, random_state=0)  # a small, fast backbone
    >>> from aimfair_plugin.estimators import CVaRDROClassifier
    >>> clf = CVaRDROClassifier(alpha=0.3, **tiny).fit(data.X_train, data.y_train)
    >>> clf.predict(data.X_test).shape
    (100,)
    """

    net_class = CVaRNet
    _parameter_constraints = {**ImageClassifier._parameter_constraints,
                              "alpha": [Interval(Real, 0, 1, closed="right")]}

    def _net_kwargs(self):
        return {"alpha": float(self.alpha)}


class GroupDRONet(WeightedImageNet):
    """Online Group DRO: exponentiated-gradient weights over groups, loss = weighted group means."""

    def __init__(self, *args, n_groups=4, step_size=0.01, **kwargs):
        self.n_groups = n_groups
        self.step_size = step_size
        super().__init__(*args, **kwargs)

    def initialize(self):
        super().initialize()
        self.group_weights_ = torch.full((self.n_groups,), 1.0 / self.n_groups)
        return self

    def get_loss(self, y_pred, y_true, X=None, training=False):
        if not training:
            return super().get_loss(y_pred, y_true, X=X, training=training)
        losses = self.per_sample_losses(y_pred, y_true, X=X, training=training)
        weights = self.batch_values(X, "sample_weight", losses)
        weights = torch.ones_like(losses) if weights is None else weights.to(losses.dtype)
        groups = self.batch_values(X, "group", losses).long()
        onehot = torch.nn.functional.one_hot(groups, self.n_groups).to(losses.dtype) * weights[:, None]
        present = onehot.sum(0) > 0
        group_loss = (onehot * losses[:, None]).sum(0) / onehot.sum(0).clamp(min=1e-12)
        q = self.group_weights_.to(losses.device)
        q = q * torch.exp(self.step_size * group_loss.detach() * present)
        self.group_weights_ = (q / q.sum()).detach().cpu()
        return (q / q.sum() * group_loss * present).sum()


@with_backbone_params(step_size=0.01)
class GroupDROClassifier(ImageClassifier):
    """Group DRO (Sagawa et al., 2020): an ORACLE that uses the training group labels.

    It minimises the worst (y, s) group's loss through online group weights
    ``q_g <- q_g exp(step_size * loss_g)``. Unlike every other method here it
    needs ``sensitive_features`` of the training data, so it is an upper
    reference, not a competitor of label-free methods; benchmarks mark it so.

    Parameters
    ----------
    step_size : float, default=0.01
    **backbone
        All :class:`ImageClassifier` parameters.

    Attributes
    ----------
    groups_ : ndarray of shape (n_groups, 2)
        The (y, s) pair of each group index.
    group_weights_ : ndarray of shape (n_groups,)
        The final online group weights.

    Examples
    --------
    >>> from aimfair_plugin.datasets import make_colored_mnist
    >>> data = make_colored_mnist(n_train=300, n_test=100, minority_share=0.05, image_size=16, random_state=0)
    >>> tiny = dict(width=4, max_epochs=1, batch_size=64, augment=False, random_state=0)  # a small, fast backbone
    >>> from aimfair_plugin.estimators import GroupDROClassifier
    >>> clf = GroupDROClassifier(**tiny)
    >>> clf.fit(data.X_train, data.y_train, sensitive_features=data.s_train).predict(data.X_test).shape
    (100,)
    """

    net_class = GroupDRONet
    uses_training_group_labels = True
    _parameter_constraints = {**ImageClassifier._parameter_constraints,
                              "step_size": [Interval(Real, 0, None, closed="neither")]}

    def _net_kwargs(self):
        return {"n_groups": len(self.groups_), "step_size": float(self.step_size)}

    def fit(self, X, y, *, sensitive_features, sample_weight=None):
        """Train on the worst group's loss; ``sensitive_features`` are the training data's protected values."""
        data = self._validate_fit_input(X, y, sample_weight)
        s, y = np.asarray(sensitive_features), data.y
        if s.ndim != 1 or len(s) != len(y):
            raise ValueError(f"sensitive_features must be 1-D with one value per sample ({len(y)}), got {s.shape}.")
        s_values, s_index = np.unique(s, return_inverse=True)
        ids = np.searchsorted(self.classes_, y) * len(s_values) + s_index.reshape(-1)
        present, group = np.unique(ids, return_inverse=True)
        self.groups_ = np.array(
            [(self.classes_[g // len(s_values)], s_values[g % len(s_values)]) for g in present], dtype=object
        )
        self._fit_net(data, extras={"group": group.reshape(-1).astype(np.int64)})
        self.group_weights_ = self.net_.group_weights_.numpy()
        return self
