"""Learning from Failure (Nam et al., 2020): a deliberately biased model tells a debiased one what to weight."""

from numbers import Real

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.utils._param_validation import Interval
from torch import nn

from ._classifier import ImageClassifier, WeightedImageNet, with_backbone_params


class BiasedDebiasedPair(nn.Module):
    """Two networks trained side by side; in eval mode only the debiased one answers."""

    def __init__(self, debiased, biased):
        super().__init__()
        self.debiased = debiased
        self.biased = biased

    def forward(self, x):
        if self.training:
            return self.debiased(x), self.biased(x)
        return self.debiased(x)


class LfFNet(WeightedImageNet):
    """One training loop for both networks of LfF.

    The biased network minimises the generalized cross-entropy (which
    amplifies its reliance on easy, spurious cues); the debiased network
    minimises cross-entropy weighted by each sample's relative difficulty
    ``W = L_B / (L_B + L_D)``, where ``L_B`` and ``L_D`` are exponential
    moving averages of the two networks' per-sample losses, normalised by
    their class-wise maxima. Batches carry each sample's ``index``.
    """

    def __init__(self, *args, train_labels=None, gce_q=0.7, ema=0.7, **kwargs):
        self.train_labels = train_labels
        self.gce_q = gce_q
        self.ema = ema
        super().__init__(*args, **kwargs)

    def initialize(self):
        super().initialize()
        if self.train_labels is None:  # a net rebuilt for prediction only (from_pretrained)
            return self
        labels = torch.as_tensor(np.asarray(self.train_labels), dtype=torch.long)
        self.labels_ = labels
        self.loss_ema_ = torch.zeros(2, len(labels))  # rows: biased, debiased
        return self

    def _relative_difficulty(self, index, y, loss_b, loss_d):
        ema = self.loss_ema_
        ema[:, index] = self.ema * ema[:, index] + (1 - self.ema) * torch.stack([loss_b, loss_d]).cpu()
        n_classes = int(self.labels_.max()) + 1
        class_max = torch.zeros(2, n_classes).scatter_reduce(
            1, self.labels_.expand(2, -1), ema, reduce="amax", include_self=False
        )
        scaled = ema[:, index] / class_max[:, y.cpu()].clamp(min=1e-8)
        return (scaled[0] / (scaled[0] + scaled[1] + 1e-8)).to(loss_b.device)

    def get_loss(self, y_pred, y_true, X=None, training=False):
        if not training:
            return super().get_loss(y_pred, y_true, X=X, training=training)
        logits_d, logits_b = (t.float() for t in y_pred)
        loss_d = F.cross_entropy(logits_d, y_true, reduction="none")
        loss_b = F.cross_entropy(logits_b, y_true, reduction="none")
        index = self.batch_values(X, "index", loss_d).long().cpu()
        weight_d = self._relative_difficulty(index, y_true, loss_b.detach(), loss_d.detach())
        p_true = F.softmax(logits_b, dim=1).gather(1, y_true[:, None])[:, 0].detach()
        gce = loss_b * p_true**self.gce_q * self.gce_q  # gradient of (1 - p^q) / q
        per_sample = weight_d * loss_d + gce
        weights = self.batch_values(X, "sample_weight", per_sample)
        return (per_sample * weights).mean() if weights is not None else per_sample.mean()


@with_backbone_params(gce_q=0.7, ema=0.7)
class LfFClassifier(ImageClassifier):
    """Learning from Failure on the ResNet backbone, without group labels.

    Trains a biased and a debiased network of the same architecture together
    (``LfFNet``); predictions come from the debiased one.

    Parameters
    ----------
    gce_q : float in (0, 1], default=0.7
        Exponent of the generalized cross-entropy of the biased network: the
        larger, the more it leans on the easy (shortcut) examples. The LfF
        paper's value, also the package's tuning choice (results page "Tuned settings").
    ema : float in [0, 1), default=0.7
        Momentum of the per-sample loss averages.
    **backbone
        All :class:`ImageClassifier` parameters.

    Examples
    --------
    >>> from aimfair_plugin.datasets import make_colored_mnist
    >>> data = make_colored_mnist(n_train=300, n_test=100, minority_share=0.05, image_size=16, random_state=0)
    >>> tiny = dict(width=4, max_epochs=1, batch_size=64, augment=False, random_state=0)  # a small, fast backbone
    >>> from aimfair_plugin.estimators import LfFClassifier
    >>> clf = LfFClassifier(gce_q=0.7, **tiny).fit(data.X_train, data.y_train)
    >>> clf.predict_proba(data.X_test).shape
    (100, 2)
    """

    net_class = LfFNet

    _parameter_constraints = {**ImageClassifier._parameter_constraints,
                              "gce_q": [Interval(Real, 0, 1, closed="right")],
                              "ema": [Interval(Real, 0, 1, closed="left")]}

    def _build_module(self, in_channels):
        return BiasedDebiasedPair(super()._build_module(in_channels), super()._build_module(in_channels))

    def _net_kwargs(self):
        return {"train_labels": getattr(self, "_train_labels", None), "gce_q": float(self.gce_q),
                "ema": float(self.ema)}

    def fit(self, X, y, sample_weight=None):
        data = self._validate_fit_input(X, y, sample_weight)
        self._train_labels = np.searchsorted(self.classes_, data.y)
        self._fit_net(data, extras={"index": np.arange(len(data.y))})
        del self._train_labels
        return self
