"""Estimators: the ERM image classifier and the AIM-Fair mitigator."""

from ._classifier import ImageClassifier

__all__ = ["ImageClassifier"]
