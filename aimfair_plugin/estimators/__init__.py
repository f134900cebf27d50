"""Estimators: the ERM image classifier, the AIM-Fair mitigator and the baselines users compare against."""

import inspect

from sklearn.base import BaseEstimator

from ._afr import AFRClassifier
from ._auto_rgn import AutoRGNAdam, AutoRGNSGD
from ._cache import fit_cached
from ._callbacks import MaskedFinetune, RealBatchNormStatistics, reestimate_batchnorm_statistics
from ._checkpoints import ScoredCheckpoints, as_image_dataset, interpolate_states, predict_indices
from ._classifier import ImageClassifier
from ._dro import CVaRDROClassifier, GroupDROClassifier
from ._fairif import InfluenceReweightingClassifier
from ._jtt import JTTClassifier
from ._lff import LfFClassifier
from ._selection import CandidateSelection
from ._selective import SelectiveFinetuneMitigator, SyntheticSet
from ._strategies import (
    AutoRGNMask,
    FreezeBlockMask,
    FullMask,
    LinearProbeMask,
    MaskStrategy,
    RandomMask,
    SelectiveMask,
    UpdateBlockMask,
)

__all__ = [
    "AFRClassifier",
    "AutoRGNAdam",
    "AutoRGNMask",
    "AutoRGNSGD",
    "CVaRDROClassifier",
    "CandidateSelection",
    "FreezeBlockMask",
    "FullMask",
    "GroupDROClassifier",
    "ImageClassifier",
    "InfluenceReweightingClassifier",
    "JTTClassifier",
    "LfFClassifier",
    "LinearProbeMask",
    "MaskStrategy",
    "MaskedFinetune",
    "RandomMask",
    "RealBatchNormStatistics",
    "ScoredCheckpoints",
    "SelectiveFinetuneMitigator",
    "SelectiveMask",
    "SyntheticSet",
    "UpdateBlockMask",
    "all_estimators",
    "as_image_dataset",
    "fit_cached",
    "interpolate_states",
    "predict_indices",
    "reestimate_batchnorm_statistics",
]


def all_estimators():
    """``[(name, class), ...]`` of every scikit-learn estimator this package exports, sorted by name.

    Built from ``__all__``, as scikit-learn's ``sklearn.utils.all_estimators`` is from its modules: a new
    estimator is registered by exporting it. Persistence (``from_pretrained``), the contract tests and
    scikit-learn's checks all read this list.

    Returns
    -------
    estimators : list of (str, type)

    Examples
    --------
    >>> from aimfair_plugin.estimators import all_estimators
    >>> [name for name, _ in all_estimators()][:3]
    ['AFRClassifier', 'CVaRDROClassifier', 'GroupDROClassifier']
    """
    namespace = globals()
    return sorted(
        (name, namespace[name]) for name in __all__
        if inspect.isclass(namespace[name]) and issubclass(namespace[name], BaseEstimator) and hasattr(namespace[name], "fit")
    )
