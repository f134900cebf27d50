"""Mask strategies: which parameter tensors the mitigator fine-tunes, and with which optimiser.

A strategy is an object; ``SelectiveFinetuneMitigator(strategy=...)`` takes one of these or the name of a
built-in one (as fairlearn's reductions take a ``Moment`` object or a name for ``constraints``). The protocol
is small:

``needs_gradient_gaps`` (bool)
    Whether the mitigator must draw the biased synthetic set S1 and compute the per-tensor gradient gaps
    before :meth:`MaskStrategy.mask` is called. Without it S1 is not drawn and the gap columns are NaN.
``mask(gaps, k, rng)``
    A boolean array, one entry per row of ``gaps`` (the per-tensor table: ``tensor``, ``block``, ``numel``,
    ``grad_scale``, ``domain_gap``, ``bias_gap``), True for the tensors to fine-tune. ``k`` is ``top_k``
    resolved to a count; ``rng`` is the mitigator's seeded ``RandomState``.
``optimizer_class(optimizer)``
    The torch optimiser class fine-tuning uses, given the name of the estimator's own optimiser
    (``"sgd"``/``"adam"``); ``None`` keeps the estimator's.
``finetune_columns(optimizer)``
    Extra per-tensor columns for ``gradient_gaps_`` after fine-tuning (a dict name -> array), from the
    fitted optimiser; ``{}`` for none.

Derive from :class:`MaskStrategy` to get the defaults (no gaps, the estimator's optimiser, no extra columns).
"""

from abc import ABC, abstractmethod

import numpy as np
from sklearn.utils._param_validation import InvalidParameterError

from ..nets import BLOCK_ORDER
from ._auto_rgn import AUTO_RGN_OPTIMIZERS
from ._masking import SELECTIONS, select_tensors


class MaskStrategy(ABC):
    """Base class of the mask strategies: which tensors the mitigator fine-tunes, and with which optimiser.

    ``SelectiveFinetuneMitigator(strategy=...)`` takes an instance or the name of a built-in one. Subclasses
    implement :meth:`mask` and override what else they change; the defaults draw no gaps, keep the
    estimator's optimiser and add no columns.

    Attributes
    ----------
    needs_gradient_gaps : bool, default=False
        Whether the mitigator must draw the biased synthetic set S1 and compute the per-tensor gradient gaps
        before :meth:`mask` is called. Without it S1 is not drawn and the gap columns are NaN.

    Examples
    --------
    A strategy that fine-tunes the last residual stage and the head:

    >>> import numpy as np
    >>> from aimfair_plugin.estimators import MaskStrategy
    >>> class LastStage(MaskStrategy):
    ...     def mask(self, gaps, k, rng):
    ...         return gaps["block"].isin(["layer4", "fc"]).to_numpy()
    >>> LastStage()
    LastStage()
    """

    needs_gradient_gaps = False

    @abstractmethod
    def mask(self, gaps, k, rng):
        """The tensors to fine-tune.

        Parameters
        ----------
        gaps : pandas.DataFrame
            One row per parameter tensor: ``tensor``, ``block``, ``numel``, ``grad_scale``, ``domain_gap``,
            ``bias_gap`` (the gap columns NaN unless ``needs_gradient_gaps``).
        k : int
            ``top_k`` resolved to a count of tensors.
        rng : numpy.random.RandomState
            The mitigator's seeded generator.

        Returns
        -------
        mask : ndarray of bool, shape (len(gaps),)
            True for the tensors to fine-tune.
        """

    def optimizer_class(self, optimizer):
        """The torch optimiser class fine-tuning uses.

        Parameters
        ----------
        optimizer : {"sgd", "adam"}
            The name of the estimator's own optimiser.

        Returns
        -------
        optimizer_class : type or None
            None keeps the estimator's.
        """
        return None

    def finetune_columns(self, optimizer):
        """Extra per-tensor columns for ``gradient_gaps_`` after fine-tuning.

        Parameters
        ----------
        optimizer : torch.optim.Optimizer
            The fitted optimiser.

        Returns
        -------
        columns : dict
            Column name -> array with one value per tensor; ``{}`` for none.
        """
        return {}

    def __repr__(self):
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({fields})"

    def __eq__(self, other):
        return type(self) is type(other) and vars(self) == vars(other)

    def __hash__(self):
        return hash((type(self), tuple(sorted(vars(self).items()))))


class SelectiveMask(MaskStrategy):
    """AIM-Fair's selection from the gradient gaps (``selection`` "intersection" or "ratio", see
    the masking module's ``select_tensors``).

    Parameters
    ----------
    selection : {"intersection", "ratio"}, default="intersection"
        ``"intersection"``: (``top_k`` smallest domain gaps) ∩ (``top_k`` largest bias gaps), the paper's;
        ``"ratio"``: the ``top_k`` tensors with the largest bias gap / domain gap.

    Examples
    --------
    >>> from aimfair_plugin.estimators import SelectiveFinetuneMitigator, SelectiveMask
    >>> from aimfair_plugin.synth import RenderedDigitsProvider
    >>> SelectiveFinetuneMitigator(RenderedDigitsProvider(), strategy=SelectiveMask(selection='ratio')).strategy
    SelectiveMask(selection='ratio')
    """

    needs_gradient_gaps = True

    def __init__(self, selection="intersection"):
        if selection not in SELECTIONS:
            raise InvalidParameterError(f"selection must be one of {SELECTIONS}, got {selection!r}.")
        self.selection = selection

    def mask(self, gaps, k, rng):
        return select_tensors(gaps["domain_gap"], gaps["bias_gap"], k, self.selection)


class FullMask(MaskStrategy):
    """Every tensor (full fine-tuning).

    Examples
    --------
    >>> import pandas as pd
    >>> from aimfair_plugin.estimators import FullMask
    >>> gaps = pd.DataFrame({'tensor': ['conv1.weight', 'fc.weight'], 'block': ['stem', 'fc']})
    >>> FullMask().mask(gaps, 1, None).tolist()
    [True, True]
    """

    def mask(self, gaps, k, rng):
        return np.ones(len(gaps), dtype=bool)


class LinearProbeMask(MaskStrategy):
    """The classification head (``fc``) only.

    Examples
    --------
    >>> import pandas as pd
    >>> from aimfair_plugin.estimators import LinearProbeMask
    >>> gaps = pd.DataFrame({'tensor': ['conv1.weight', 'fc.weight'], 'block': ['stem', 'fc']})
    >>> LinearProbeMask().mask(gaps, 1, None).tolist()
    [False, True]
    """

    def mask(self, gaps, k, rng):
        return gaps["block"].to_numpy() == "fc"


class RandomMask(MaskStrategy):
    """``k`` tensors drawn uniformly without replacement from ``rng``.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from aimfair_plugin.estimators import RandomMask
    >>> gaps = pd.DataFrame({'tensor': list('abcd'), 'block': ['stem', 'layer1', 'layer2', 'fc']})
    >>> int(RandomMask().mask(gaps, 2, np.random.RandomState(0)).sum())
    2
    """

    def mask(self, gaps, k, rng):
        mask = np.zeros(len(gaps), dtype=bool)
        mask[rng.choice(len(gaps), size=k, replace=False)] = True
        return mask


class _BlockMask(MaskStrategy):
    def __init__(self, block):
        if block not in BLOCK_ORDER:
            raise InvalidParameterError(f"{type(self).__name__} needs block= one of {BLOCK_ORDER}, got {block!r}.")
        self.block = block


class UpdateBlockMask(_BlockMask):
    """Sub-tuning: the tensors of one block only.

    Parameters
    ----------
    block : {"stem", "layer1", "layer2", "layer3", "layer4", "fc"}
        The only block fine-tuned.

    Examples
    --------
    >>> import pandas as pd
    >>> from aimfair_plugin.estimators import UpdateBlockMask
    >>> gaps = pd.DataFrame({'tensor': list('abc'), 'block': ['stem', 'layer1', 'fc']})
    >>> UpdateBlockMask('layer1').mask(gaps, 1, None).tolist()
    [False, True, False]
    """

    def mask(self, gaps, k, rng):
        return gaps["block"].to_numpy() == self.block


class FreezeBlockMask(_BlockMask):
    """Sub-tuning: every tensor except those of one block.

    Parameters
    ----------
    block : {"stem", "layer1", "layer2", "layer3", "layer4", "fc"}
        The block kept frozen.

    Examples
    --------
    >>> import pandas as pd
    >>> from aimfair_plugin.estimators import FreezeBlockMask
    >>> gaps = pd.DataFrame({'tensor': list('abc'), 'block': ['stem', 'layer1', 'fc']})
    >>> FreezeBlockMask('layer1').mask(gaps, 1, None).tolist()
    [True, False, True]
    """

    def mask(self, gaps, k, rng):
        return gaps["block"].to_numpy() != self.block


class AutoRGNMask(FullMask):
    """Auto-RGN (Lee et al., ICLR 2023): every tensor, each step at the base rate times its relative gradient
    norm over the largest (:class:`~aimfair_plugin.estimators.AutoRGNSGD` / ``AutoRGNAdam``); the mean factor
    of each tensor becomes the ``lr_factor`` column.

    Examples
    --------
    >>> from aimfair_plugin.estimators import AutoRGNMask
    >>> AutoRGNMask().needs_gradient_gaps
    False
    """

    def optimizer_class(self, optimizer):
        return AUTO_RGN_OPTIMIZERS[optimizer]

    def finetune_columns(self, optimizer):
        return {"lr_factor": optimizer.mean_factors_}


def _selective(mitigator):
    return SelectiveMask(mitigator.selection)


def _block(cls):
    def build(mitigator):
        if mitigator.block is None:
            raise InvalidParameterError(f"strategy={mitigator.strategy!r} needs block= one of {BLOCK_ORDER}.")
        return cls(mitigator.block)

    return build


# The built-in names and how each builds its object from the mitigator's parameters.
BUILTIN_STRATEGIES = {
    "selective": _selective,
    "full": lambda mitigator: FullMask(),
    "linear_probe": lambda mitigator: LinearProbeMask(),
    "random": lambda mitigator: RandomMask(),
    "update_block": _block(UpdateBlockMask),
    "freeze_block": _block(FreezeBlockMask),
    "auto_rgn": lambda mitigator: AutoRGNMask(),
}


def resolve_strategy(mitigator):
    """The strategy object of a mitigator: a built-in name resolved with its parameters, or the object given."""
    strategy = mitigator.strategy
    if isinstance(strategy, str):
        return BUILTIN_STRATEGIES[strategy](mitigator)
    return strategy
