"""Estimators: the ERM image classifier, the AIM-Fair mitigator and the baselines users compare against."""

from ._afr import AFRClassifier
from ._auto_rgn import AutoRGNAdam, AutoRGNSGD
from ._cache import fit_cached
from ._classifier import ImageClassifier
from ._dro import CVaRDROClassifier, GroupDROClassifier
from ._fairif import InfluenceReweightingClassifier
from ._jtt import JTTClassifier
from ._lff import LfFClassifier
from ._selective import SelectiveFinetuneMitigator

__all__ = [
    "AFRClassifier",
    "AutoRGNAdam",
    "AutoRGNSGD",
    "CVaRDROClassifier",
    "GroupDROClassifier",
    "ImageClassifier",
    "InfluenceReweightingClassifier",
    "JTTClassifier",
    "LfFClassifier",
    "SelectiveFinetuneMitigator",
    "fit_cached",
]
