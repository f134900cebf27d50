"""Tiny models shared by the estimator tests (small images, a width-4 ResNet, one epoch)."""

from aimfair_plugin.estimators import ImageClassifier, SelectiveFinetuneMitigator
from aimfair_plugin.synth import ArrayProvider

TINY = dict(width=4, max_epochs=1, lr=0.05, batch_size=64, augment=False, random_state=0)


def tiny_mitigator(data, *, invert=False, **params):
    """A mitigator on ``data`` whose synthetic images are its balanced test split (inverted with ``invert``: a
    style far from the real images), one fine-tuning epoch, S1/S2 a quarter of the training set."""
    X = 1.0 - data.X_test if invert else data.X_test
    settings = dict(finetune_epochs=1, finetune_batch_size=64, synthetic_ratio=0.25, random_state=0)
    return SelectiveFinetuneMitigator(ArrayProvider(X, data.y_test, data.s_test), estimator=ImageClassifier(**TINY),
                                      **{**settings, **params})
