"""Mask strategies: which parameter tensors the mitigator fine-tunes, and with which optimiser.

A strategy is an object; ``SelectiveFinetuneMitigator(strategy=...)`` takes one of these or the name of a
built-in one (as fairlearn's reductions take a ``Moment`` object or a name for ``constraints``). The protocol
is small:

``needs_gradient_gaps`` (bool)
    Whether the mitigator must draw the biased synthetic set S1 and compute the per-tensor gradient gaps
    before :meth:`MaskStrategy.mask` is called. Without it S1 is not drawn and the gap columns are NaN.
``mask(gaps, rng)``
    A boolean array, one entry per row of ``gaps`` (the per-tensor table: ``tensor``, ``block``, ``numel``,
    ``grad_scale``, ``domain_gap``, ``bias_gap``), True for the tensors to fine-tune; ``rng`` is the
    mitigator's seeded ``RandomState``.
``optimizer_class(optimizer)``
    The torch optimiser class fine-tuning uses, given the name of the estimator's own optimiser
    (``"sgd"``/``"adam"``); ``None`` keeps the estimator's.
``finetune_columns(optimizer)``
    Extra per-tensor columns for ``gradient_gaps_`` after fine-tuning (a dict name -> array), from the
    fitted optimiser; ``{}`` for none.

A strategy that needs the gaps also says how to compute them: ``criterion``, ``bias_ratio`` (the majority share of
the biased synthetic set S1) and ``max_batches`` (see :class:`SelectiveMask`).

A strategy carries its own settings as constructor parameters (``SelectiveMask(top_k=40)``), readable and
settable as scikit-learn's are: ``get_params``, ``set_params``, ``clone``, and nested names in a search
(``GridSearchCV(mitigator, {"strategy__top_k": [20, 40]})``). Settings are checked when the mitigator fits.

Derive from :class:`MaskStrategy` to get the defaults (no gaps, the estimator's optimiser, no extra columns).
"""

from abc import ABC, abstractmethod
from numbers import Integral, Real

import numpy as np
from sklearn.utils._param_validation import InvalidParameterError

from .._params import Params
from ..nets import BLOCK_ORDER
from ._auto_rgn import AUTO_RGN_OPTIMIZERS
from ._masking import CRITERIA, SELECTIONS, resolve_top_k, select_tensors


class MaskStrategy(Params, ABC):
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
    ...     def mask(self, gaps, rng):
    ...         return gaps["block"].isin(["layer4", "fc"]).to_numpy()
    >>> LastStage()
    LastStage()
    """

    needs_gradient_gaps = False

    @abstractmethod
    def mask(self, gaps, rng):
        """The tensors to fine-tune.

        Parameters
        ----------
        gaps : pandas.DataFrame
            One row per parameter tensor: ``tensor``, ``block``, ``numel``, ``grad_scale``, ``domain_gap``,
            ``bias_gap`` (the gap columns NaN unless ``needs_gradient_gaps``).
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

    def validate(self):
        """Check the settings (called by the mitigator's ``fit``); raises ``InvalidParameterError``."""


class SelectiveMask(MaskStrategy):
    """AIM-Fair's selection from the gradient gaps of every parameter tensor.

    The mitigator draws a biased synthetic set S1 (``bias_ratio``) beside the balanced S2, computes the mean
    loss gradient of every tensor on the real data R, S1 and S2 (at most ``max_batches`` batches each), the
    domain gap gap(R, S1) and the bias gap gap(S1, S2) (``criterion``), and this strategy selects from them.

    Parameters
    ----------
    top_k : int or float, default=0.887
        Tensors per ranking: a count, or a fraction of all the network's tensors. The default is the paper's
        55 of ResNet-18's 62 as a fraction (it gives exactly 55 there), so that it carries over to any network
        (a ResNet-50's 161 tensors, a ViT's).
    criterion : {"normalized", "abs_diff", "cosine"}, default="normalized"
        ``"abs_diff"``: ``mean |g_a - g_b|`` per tensor (the paper's Eq. 4); ``"cosine"``: 1 - cosine
        similarity of the two gradients (its Table 4); ``"normalized"``: abs_diff divided by the tensor's
        gradient scale (``mean |g|`` over R, S1 and S2). abs_diff grows with a tensor's gradient magnitude, so
        its two rankings nearly agree and the intersection degenerates to a band of magnitude; dividing by the
        scale removes that common factor. The default because its two rankings measure different things and in
        the package's benchmarks it did at least as well as "abs_diff" (the mitigator's ``mask_report_`` shows
        the rank correlation of the two gaps either way).
    selection : {"intersection", "ratio"}, default="intersection"
        ``"intersection"``: (``top_k`` smallest domain gaps) ∩ (``top_k`` largest bias gaps), the paper's
        Eqs. 5-7 (its size is data-dependent, at least ``2k - n``); ``"ratio"``: the ``top_k`` tensors with the
        largest bias gap / domain gap (``top_k`` is then the mask size).
    bias_ratio : float in [0.5, 1), default=0.9
        Majority share per class of S1 (0.9 -> cells [0.05, 0.45, 0.45, 0.05]), the paper's setting.
    max_batches : int, optional
        Cap on the batches per set of the mean gradients (None: every batch).

    Examples
    --------
    >>> from aimfair_plugin.estimators import SelectiveFinetuneMitigator, SelectiveMask
    >>> from aimfair_plugin.synth import RenderedDigitsProvider
    >>> SelectiveFinetuneMitigator(RenderedDigitsProvider(), strategy=SelectiveMask(selection='ratio')).strategy
    SelectiveMask(selection='ratio')
    >>> SelectiveMask(top_k=40).set_params(criterion='abs_diff')
    SelectiveMask(top_k=40, criterion='abs_diff')
    """

    needs_gradient_gaps = True

    def __init__(self, top_k=0.887, criterion="normalized", selection="intersection", bias_ratio=0.9, max_batches=None):
        self.top_k = top_k
        self.criterion = criterion
        self.selection = selection
        self.bias_ratio = bias_ratio
        self.max_batches = max_batches

    def validate(self):
        _check_top_k(self.top_k)
        if self.criterion not in CRITERIA:
            raise InvalidParameterError(f"criterion must be one of {CRITERIA}, got {self.criterion!r}.")
        if self.selection not in SELECTIONS:
            raise InvalidParameterError(f"selection must be one of {SELECTIONS}, got {self.selection!r}.")
        if isinstance(self.bias_ratio, bool) or not isinstance(self.bias_ratio, Real) or not 0.5 <= self.bias_ratio < 1:
            raise InvalidParameterError(f"bias_ratio must be a float in [0.5, 1), got {self.bias_ratio!r}.")
        if self.max_batches is not None and (isinstance(self.max_batches, bool) or not isinstance(
                self.max_batches, Integral) or self.max_batches < 1):
            raise InvalidParameterError(f"max_batches must be None or a positive int, got {self.max_batches!r}.")

    def mask(self, gaps, rng):
        return select_tensors(gaps["domain_gap"], gaps["bias_gap"], resolve_top_k(self.top_k, len(gaps)),
                              self.selection)


def _check_top_k(top_k):
    valid = (isinstance(top_k, Integral) and top_k >= 1) or (isinstance(top_k, Real) and 0 < top_k <= 1)
    if isinstance(top_k, bool) or not valid:
        raise InvalidParameterError(f"top_k must be an int >= 1 or a float in (0, 1], got {top_k!r}.")


class FullMask(MaskStrategy):
    """Every tensor (full fine-tuning).

    Examples
    --------
    >>> import pandas as pd
    >>> from aimfair_plugin.estimators import FullMask
    >>> gaps = pd.DataFrame({'tensor': ['conv1.weight', 'fc.weight'], 'block': ['stem', 'fc']})
    >>> FullMask().mask(gaps, None).tolist()
    [True, True]
    """

    def mask(self, gaps, rng):
        return np.ones(len(gaps), dtype=bool)


class LinearProbeMask(MaskStrategy):
    """The classification head (``fc``) only.

    Examples
    --------
    >>> import pandas as pd
    >>> from aimfair_plugin.estimators import LinearProbeMask
    >>> gaps = pd.DataFrame({'tensor': ['conv1.weight', 'fc.weight'], 'block': ['stem', 'fc']})
    >>> LinearProbeMask().mask(gaps, None).tolist()
    [False, True]
    """

    def mask(self, gaps, rng):
        return gaps["block"].to_numpy() == "fc"


class RandomMask(MaskStrategy):
    """``top_k`` tensors drawn uniformly without replacement from the mitigator's seeded generator.

    Parameters
    ----------
    top_k : int or float, default=0.887
        A count of tensors, or a fraction of all tensors (the default: 55 of ResNet-18's 62).

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from aimfair_plugin.estimators import RandomMask
    >>> gaps = pd.DataFrame({'tensor': list('abcd'), 'block': ['stem', 'layer1', 'layer2', 'fc']})
    >>> int(RandomMask(top_k=2).mask(gaps, np.random.RandomState(0)).sum())
    2
    """

    def __init__(self, top_k=0.887):
        self.top_k = top_k

    def validate(self):
        _check_top_k(self.top_k)

    def mask(self, gaps, rng):
        mask = np.zeros(len(gaps), dtype=bool)
        mask[rng.choice(len(gaps), size=resolve_top_k(self.top_k, len(gaps)), replace=False)] = True
        return mask


def in_block(tensors, blocks, block):
    """Which tensors are in ``block``: a block name (``"layer4"``, ``"fc"`` for the classification head, see
    :func:`~aimfair_plugin.nets.block_of`) or a module-name prefix (``"blocks.3"``, ``"layer4.1"``)."""
    tensors, blocks = np.asarray(tensors, dtype=str), np.asarray(blocks, dtype=str)
    return (blocks == block) | (tensors == block) | np.char.startswith(tensors, block + ".")


class _BlockMask(MaskStrategy):
    def __init__(self, block):
        self.block = block

    def validate(self):
        if not isinstance(self.block, str) or not self.block:
            raise InvalidParameterError(f"{type(self).__name__} needs block= a block name ({BLOCK_ORDER} in a "
                                        f"ResNet) or a module-name prefix, got {self.block!r}.")


class UpdateBlockMask(_BlockMask):
    """Sub-tuning: the tensors of one block only.

    Parameters
    ----------
    block : str
        The only block fine-tuned: a ResNet block (``"stem"``, ``"layer1"`` .. ``"layer4"``), ``"fc"`` (the
        classification head of any network), or a module-name prefix (``"blocks.3"`` in a ViT, ``"layer4.1"``).

    Examples
    --------
    >>> import pandas as pd
    >>> from aimfair_plugin.estimators import UpdateBlockMask
    >>> gaps = pd.DataFrame({'tensor': list('abc'), 'block': ['stem', 'layer1', 'fc']})
    >>> UpdateBlockMask('layer1').mask(gaps, None).tolist()
    [False, True, False]
    """

    def mask(self, gaps, rng):
        return in_block(gaps["tensor"], gaps["block"], self.block)


class FreezeBlockMask(_BlockMask):
    """Sub-tuning: every tensor except those of one block.

    Parameters
    ----------
    block : str
        The block kept frozen: a block name or a module-name prefix, as for :class:`UpdateBlockMask`.

    Examples
    --------
    >>> import pandas as pd
    >>> from aimfair_plugin.estimators import FreezeBlockMask
    >>> gaps = pd.DataFrame({'tensor': list('abc'), 'block': ['stem', 'layer1', 'fc']})
    >>> FreezeBlockMask('layer1').mask(gaps, None).tolist()
    [True, False, True]
    """

    def mask(self, gaps, rng):
        return ~in_block(gaps["tensor"], gaps["block"], self.block)


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


# The built-in names: each is its class with the default settings.
BUILTIN_STRATEGIES = {
    "selective": SelectiveMask,
    "full": FullMask,
    "linear_probe": LinearProbeMask,
    "random": RandomMask,
    "auto_rgn": AutoRGNMask,
}


def strategy_name(strategy):
    """A short name for reports: a built-in's name (``"random"``, ``"update_block"``...), else the repr."""
    if isinstance(strategy, str):
        return strategy
    names = {cls: name for name, cls in BUILTIN_STRATEGIES.items()}
    names.update({UpdateBlockMask: "update_block", FreezeBlockMask: "freeze_block"})
    return names.get(type(strategy), repr(strategy))


def resolve_strategy(strategy):
    """The strategy object: a built-in name's class with its defaults, or the object given (checked)."""
    if isinstance(strategy, str):
        if strategy not in BUILTIN_STRATEGIES:
            raise InvalidParameterError(
                f"strategy must be a MaskStrategy or one of {sorted(BUILTIN_STRATEGIES)}, got {strategy!r} "
                "(the block strategies are objects: UpdateBlockMask('layer4'), FreezeBlockMask('layer1')).")
        strategy = BUILTIN_STRATEGIES[strategy]()
    if not all(hasattr(strategy, name) for name in ("mask", "optimizer_class", "finetune_columns")):
        raise InvalidParameterError(f"strategy must be a MaskStrategy or a built-in name, got {strategy!r}.")
    validate = getattr(strategy, "validate", None)
    if validate is not None:
        validate()
    if getattr(strategy, "needs_gradient_gaps", False) and not all(
            hasattr(strategy, name) for name in ("criterion", "bias_ratio", "max_batches")):
        raise InvalidParameterError(f"{strategy!r} needs the gradient gaps, so it must say how to compute them: "
                                    "criterion, bias_ratio and max_batches (derive from SelectiveMask).")
    return strategy
