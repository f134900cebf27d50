"""Held-out selection among fine-tuning candidates: the pre-trained model, each epoch, weight interpolations.

Pure pieces the mitigator composes: the candidates' weights (:func:`interpolate_states`), the scores
(:data:`SCORES`, each ``score(y_true, y_pred, groups)``), and the skorch callback that keeps each epoch's weights
(:class:`EpochCheckpoints`) inside the one training loop.
"""

import numpy as np
import torch
from skorch.callbacks import Callback

STATS_SUFFIXES = ("running_mean", "running_var", "num_batches_tracked")


class EpochCheckpoints(Callback):
    """Keep a CPU copy of the module's weights (its ``state_dict``) at the end of every training epoch.

    ``states_`` is the list of copies, epoch 1 first; a new training loop starts a new list. Each copy costs the
    model's size in memory (running statistics included). The mitigator's held-out guard uses it for its
    candidates; pass one in an estimator's ``callbacks`` to score every epoch afterwards (the benchmark's
    checkpoint selection does), then load a copy with ``net_.module_.load_state_dict``.

    Examples
    --------
    >>> from aimfair_plugin.datasets import make_colored_mnist
    >>> from aimfair_plugin.estimators import EpochCheckpoints, ImageClassifier
    >>> data = make_colored_mnist(n_train=300, n_test=100, minority_share=0.05, image_size=16, random_state=0)
    >>> clf = ImageClassifier(width=4, max_epochs=2, batch_size=64, augment=False, random_state=0,
    ...                       callbacks=[("checkpoints", EpochCheckpoints())]).fit(data.X_train, data.y_train)
    >>> states = dict(clf.net_.callbacks_)["checkpoints"].states_
    >>> len(states), all(states[1][k].equal(v.cpu()) for k, v in clf.net_.module_.state_dict().items())
    (2, True)
    """

    def on_train_begin(self, net, X=None, y=None, **kwargs):
        self.states_ = []

    def on_epoch_end(self, net, **kwargs):
        self.states_.append({k: v.detach().cpu().clone() for k, v in net.module_.state_dict().items()})


def interpolate_states(pre, post, alpha):
    """WiSE-FT's weight-space interpolation ``(1 - alpha) * pre + alpha * post`` of two state dicts.

    Floating-point entries are interpolated (running statistics too); integer entries (BatchNorm's
    ``num_batches_tracked``) are taken from ``post``. ``alpha=0`` and ``alpha=1`` return copies of ``pre`` and
    ``post`` exactly, bit for bit.
    """
    if alpha == 0:
        return {k: v.clone() for k, v in pre.items()}
    if alpha == 1:
        return {k: v.clone() for k, v in post.items()}
    out = {}
    for key, b in post.items():
        a = pre[key].to(b.device)
        out[key] = torch.lerp(a, b, float(alpha)) if b.is_floating_point() else b.clone()
    return out


def accuracy(y_true, y_pred, groups=None):
    return float(np.mean(y_true == y_pred))


def worst_group_accuracy(y_true, y_pred, groups):
    """The lowest accuracy over the groups present (``groups``: one label per example)."""
    groups = np.asarray(groups)
    return float(min(np.mean(y_true[groups == g] == y_pred[groups == g]) for g in np.unique(groups)))


def worst_class_accuracy(y_true, y_pred, groups=None):
    """The lowest per-class recall: no group labels needed (SubpopBench's proxy for worst-group accuracy)."""
    return worst_group_accuracy(y_true, y_pred, y_true)


# name -> (score function, where its groups come from)
SCORES = {
    "accuracy": (accuracy, None),
    "worst_class_accuracy": (worst_class_accuracy, None),
    "pseudo_group": (worst_group_accuracy, "pseudo"),
    "worst_group": (worst_group_accuracy, "sensitive"),
    "synthetic_worst_group": (worst_group_accuracy, "synthetic"),
}


def pseudo_groups(y_true, y_pred_pretrained):
    """JTT's error set as groups: (class, whether the pre-trained model got the example right)."""
    return np.asarray(y_true).astype(str).astype(object) + np.where(y_pred_pretrained == y_true, "+", "-")
