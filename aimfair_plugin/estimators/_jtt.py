"""Just Train Twice (Liu et al., 2021): upsample what an early model gets wrong, then retrain."""

import numpy as np

from .._validation import check_int
from ._classifier import ImageClassifier, backbone_params, with_backbone_params


@with_backbone_params(identification_epochs=1, upweight=50)
class JTTClassifier(ImageClassifier):
    """Just Train Twice on the ResNet backbone, without group labels.

    Stage one trains an identification model for ``identification_epochs``
    epochs (same backbone and optimiser) and takes its error set on the
    training data. Stage two retrains from scratch on the training data with
    each error-set example repeated ``upweight`` times (the paper's
    upsampling), so the minority examples a biased model misclassifies
    dominate the second run.

    Parameters
    ----------
    identification_epochs : int, default=1
    upweight : int, default=50
        lambda_up: how many copies of each error-set example stage two sees.
    **backbone
        All :class:`ImageClassifier` parameters.

    Attributes
    ----------
    identifier_ : ImageClassifier
        The stage-one model.
    error_set_ : ndarray of int
        Indices of the training examples it misclassified.
    duplication_counts_ : ndarray of int, shape (n_samples,)
        Copies of each example in stage two (``upweight`` or 1).
    """

    def _validate_params(self):
        super()._validate_params()
        for name in ("identification_epochs", "upweight"):
            check_int(name, getattr(self, name))

    def fit(self, X, y, sample_weight=None):
        X, is_paths, y, weights = self._validate_fit_input(X, y, sample_weight)
        params = {**backbone_params(self), "max_epochs": self.identification_epochs}
        self.identifier_ = ImageClassifier(**params).fit(X, y, sample_weight=sample_weight)
        self.error_set_ = np.flatnonzero(self.identifier_.predict(X) != y)
        self.duplication_counts_ = np.ones(len(X), dtype=int)
        self.duplication_counts_[self.error_set_] = self.upweight
        index = np.repeat(np.arange(len(X)), self.duplication_counts_)
        return self._fit_net(X[index], is_paths, y[index], None if weights is None else weights[index])
