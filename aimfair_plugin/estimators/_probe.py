"""A probe of the protected attribute, trained on balanced synthetic images, for label-free candidate scores.

The balanced synthetic set knows the group of every image by construction. A linear probe on a network's
penultimate features, trained there, infers the group of each real held-out image; a candidate can then be
scored by its worst (or mean) accuracy over the inferred (class, group) cells, with no group label of the real
data. The probe is only as good as its transfer from synthetic to real images: its cross-validated accuracy on
the synthetic images is always measured, and its accuracy on real images when their groups are known.
"""

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch.utils.data import DataLoader

from ._classifier import head_inputs
from ._data import loader_options

# A probe whose cross-validated synthetic accuracy is below chance plus this margin is unreliable.
CHANCE_MARGIN = 0.1


def penultimate_features(module, dataset, *, batch_size=128, device="cpu", num_workers=0):
    """What ``module``'s last layer reads for every image of ``dataset`` (evaluation mode, restored after), as a
    float64 array."""
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False,
                        **loader_options(num_workers, dataset, device, persistent=False))
    was_training = module.training
    module.eval()
    try:
        features, _ = head_inputs(module, loader, device)
    finally:
        module.train(was_training)
    return features.double().cpu().numpy()


class GroupProbe:
    """Infer the protected attribute of real images from a network's features, trained on synthetic images.

    Parameters
    ----------
    cv : int, default=3
        Folds of the cross-validated accuracy on the synthetic images.
    random_state : int or None
        Seeds the folds.

    Attributes
    ----------
    synthetic_accuracy_ : float
        Cross-validated accuracy on the synthetic images (their groups known by construction).
    chance_ : float
        The accuracy of always guessing the most frequent group.
    reliable_ : bool
        Whether ``synthetic_accuracy_`` is at least ``chance_ + 0.1``.

    Examples
    --------
    >>> import numpy as np, torch
    >>> from aimfair_plugin.estimators._probe import GroupProbe
    >>> rng = np.random.RandomState(0)
    >>> s = np.repeat([0, 1], 30)
    >>> X = (rng.rand(60, 3, 4, 4) * 0.5 + s[:, None, None, None] * 0.5).astype('float32')
    >>> class Flat(torch.nn.Module):
    ...     def features(self, x): return x.flatten(1)
    >>> data = torch.utils.data.TensorDataset(torch.from_numpy(X))
    >>> probe = GroupProbe(random_state=0).fit(Flat(), data, s)
    >>> probe.reliable_, (probe.predict(Flat(), data) == s).mean() > 0.9
    (True, np.True_)
    """

    def __init__(self, cv=3, random_state=None):
        self.cv = cv
        self.random_state = random_state

    def fit(self, module, dataset, s, **loader):
        """Train on the images of ``dataset`` (groups ``s``); ``loader``: ``batch_size``, ``device``,
        ``num_workers`` of the feature pass. Returns self."""
        features, s = penultimate_features(module, dataset, **loader), np.asarray(s)
        self.classes_, counts = np.unique(s, return_counts=True)
        self.chance_ = float(counts.max() / counts.sum())
        self.model_ = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
        folds = StratifiedKFold(min(self.cv, int(counts.min())), shuffle=True, random_state=self.random_state)
        self.synthetic_accuracy_ = float(cross_val_score(self.model_, features, s, cv=folds).mean())
        self.reliable_ = self.synthetic_accuracy_ >= self.chance_ + CHANCE_MARGIN
        self.model_.fit(features, s)
        return self

    def predict(self, module, dataset, **loader):
        """The inferred group of every image of ``dataset``."""
        return self.model_.predict(penultimate_features(module, dataset, **loader))
