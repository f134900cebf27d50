"""Estimators: the ERM image classifier and the AIM-Fair mitigator."""

from ._classifier import ImageClassifier
from ._selective import SelectiveFinetuneMitigator

__all__ = ["ImageClassifier", "SelectiveFinetuneMitigator"]
