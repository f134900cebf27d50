"""The synthetic-data provider contract, group-count helpers and a provider over given arrays."""

from abc import ABC, abstractmethod

import numpy as np
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import StrOptions, validate_parameter_constraints

from .._resize import resize_images
from ..datasets import shares_to_counts


def group_cells(n_classes=2, n_groups=2):
    """Every (class, group) cell, class-major: ``[(0, 0), (0, 1), ..., (n_classes - 1, n_groups - 1)]``.

    Parameters
    ----------
    n_classes, n_groups : int, default=2

    Returns
    -------
    cells : list of (int, int)

    Examples
    --------
    >>> from aimfair_plugin.synth import group_cells
    >>> group_cells(3, 2)
    [(0, 0), (0, 1), (1, 0), (1, 1), (2, 0), (2, 1)]
    """
    for name, value in (("n_classes", n_classes), ("n_groups", n_groups)):
        if int(value) != value or value < 2:
            raise ValueError(f"{name} must be an int >= 2, got {value!r}.")
    return [(y, s) for y in range(int(n_classes)) for s in range(int(n_groups))]


def balanced_group_counts(n_total, n_classes=2, n_groups=2):
    """``{(y, s): count}`` with ``n_total`` split evenly over the ``n_classes x n_groups`` cells.

    Parameters
    ----------
    n_total : int
    n_classes, n_groups : int, default=2
        Classes of the target and values of the protected attribute (or of an intersection of several).

    Returns
    -------
    counts : dict of (int, int) to int
        Summing to ``n_total``; the remainder goes to the first cells.

    Examples
    --------
    >>> from aimfair_plugin.synth import balanced_group_counts
    >>> balanced_group_counts(10)
    {(0, 0): 3, (0, 1): 3, (1, 0): 2, (1, 1): 2}
    >>> balanced_group_counts(9, n_classes=3, n_groups=3)[(2, 2)]
    1
    """
    cells = group_cells(n_classes, n_groups)
    return dict(zip(cells, shares_to_counts(np.full(len(cells), 1.0 / len(cells)), n_total).tolist()))


def synthetic_set_size(n_real, synthetic_ratio=1.0):
    """Images in each synthetic set (S1, S2) for ``n_real`` real training images: ``synthetic_ratio * n_real``
    rounded, at least 4 (one per cell). The rule :class:`~aimfair_plugin.estimators.SelectiveFinetuneMitigator`
    draws by.

    Parameters
    ----------
    n_real : int
    synthetic_ratio : float, default=1.0

    Returns
    -------
    n : int

    Examples
    --------
    >>> from aimfair_plugin.synth import synthetic_set_size
    >>> synthetic_set_size(2000, 0.5)
    1000
    """
    return max(4, int(round(float(synthetic_ratio) * int(n_real))))


def majority_group(y, n_groups=2):
    """The group class ``y`` is biased towards in the synthetic biased set S1: ``(y + 1) % n_groups``.

    With two classes and two groups these are the AIM-Fair setting's majority cells (0, 1) and (1, 0); with
    more, each class leans to another group, cycling (class 0 to group 1, class 1 to group 2, ...), so that no
    group is every class's majority and S1 carries a class-group correlation for every class, as the real data
    the paper models does. The gradient gap between S1 and the balanced S2 only needs *a* bias of this kind; the
    direction of the real data's bias is not known without group labels.

    Parameters
    ----------
    y : int
        A class index.
    n_groups : int, default=2

    Returns
    -------
    group : int

    Examples
    --------
    >>> from aimfair_plugin.synth import majority_group
    >>> [majority_group(y, 3) for y in range(3)]
    [1, 2, 0]
    """
    return (int(y) + 1) % int(n_groups)


def biased_group_counts(n_total, bias_ratio, n_classes=2, n_groups=2):
    """``{(y, s): count}`` where each class keeps ``bias_ratio`` of its images in its majority cell.

    Every class gets ``1 / n_classes`` of the images; within a class, its majority group
    (:func:`majority_group`) gets ``bias_ratio`` of them and the other ``n_groups - 1`` groups share the rest
    equally. With two classes and two groups the majority cells are those of the AIM-Fair setting, (0, 1) and
    (1, 0): ``bias_ratio=0.9`` gives shares ``[0.05, 0.45, 0.45, 0.05]``.

    Parameters
    ----------
    n_total : int
    bias_ratio : float in [1 / n_groups, 1)
    n_classes, n_groups : int, default=2

    Returns
    -------
    counts : dict of (int, int) to int
        Summing to ``n_total``.

    Examples
    --------
    >>> from aimfair_plugin.synth import biased_group_counts
    >>> biased_group_counts(1000, 0.9)
    {(0, 0): 50, (0, 1): 450, (1, 0): 450, (1, 1): 50}
    >>> biased_group_counts(900, 0.8, n_classes=3, n_groups=3)[(0, 1)]
    240
    """
    cells = group_cells(n_classes, n_groups)
    if not 1.0 / n_groups <= float(bias_ratio) < 1.0:
        raise ValueError(f"bias_ratio must lie in [1/n_groups, 1) = [{1 / n_groups:.3g}, 1), got {bias_ratio!r}.")
    other = (1.0 - float(bias_ratio)) / (n_groups - 1)
    shares = [(float(bias_ratio) if s == majority_group(y, n_groups) else other) / n_classes for y, s in cells]
    return dict(zip(cells, shares_to_counts(shares, n_total).tolist()))


class SyntheticDataProvider(ABC):
    """Source of labelled synthetic images for the AIM-Fair mitigator.

    Subclasses implement :meth:`~aimfair_plugin.synth.SyntheticDataProvider.sample`. A provider never sees the real
    data; the mitigator tells it how many images of each (y, s) cell it
    needs and the image shape, and checks what comes back. Subclasses declare
    their constructor parameters in ``_parameter_constraints`` (scikit-learn's
    constraint vocabulary) and call ``self._validate_params()`` in ``sample``.

    Examples
    --------
    >>> import numpy as np
    >>> from aimfair_plugin.synth import SyntheticDataProvider
    >>> class GreyProvider(SyntheticDataProvider):
    ...     def sample(self, group_counts, *, image_shape=None, random_state=None):
    ...         cells = [cell for cell, n in group_counts.items() for _ in range(n)]
    ...         y, s = np.array(cells).T
    ...         return np.full((len(cells), *image_shape), 0.5, 'float32'), y, s
    ...
    >>> X, y, s = GreyProvider().sample({(0, 0): 1, (1, 1): 2}, image_shape=(3, 8, 8))
    >>> X.shape, y.tolist()
    ((3, 3, 8, 8), [0, 1, 1])
    """

    _parameter_constraints = {}

    @property
    def n_groups(self):
        """How many values the protected attribute (or the intersection of several) takes in this provider's
        cells: 2 unless a subclass knows more (:class:`ArrayProvider` and :class:`ImageFolderProvider` read it
        from their data). The mitigator asks for every (class, group) cell of ``range(n_groups)``."""
        cells = self.available_cells()
        return 2 if cells is None else max(2, 1 + max(s for _, s in cells))

    def available_cells(self):
        """The ``(y, s)`` cells this provider holds images of, or None when it makes any cell on request (a
        generator). The mitigator checks every cell it needs against it before any training."""
        return None

    def _validate_params(self):
        params = {name: getattr(self, name) for name in self._parameter_constraints}
        validate_parameter_constraints(self._parameter_constraints, params, caller_name=type(self).__name__)

    @abstractmethod
    def sample(self, group_counts, *, image_shape=None, random_state=None):
        """Draw synthetic images.

        Parameters
        ----------
        group_counts : dict
            Maps ``(y, s)`` int tuples (a class index and a group index) to how
            many images of that cell to return.
        image_shape : tuple (C, H, W), optional
            Shape the images must have (providers resize).
        random_state : int, RandomState or None

        Returns
        -------
        X : float32 ndarray (n, C, H, W) in [0, 1], or 1-D str ndarray (n,) of image paths
            Providers that compute images in memory (:class:`ArrayProvider`,
            :class:`RenderedDigitsProvider`) return arrays of ``image_shape``.
            Providers whose images live on disk (:class:`ImageFolderProvider`,
            :class:`DiffusersProvider`) return the files' paths, each checked
            to be a complete image: consumers decode them batch by batch with
            :func:`aimfair_plugin.datasets.read_image` at the size they train
            on (``image_shape``), so memory does not grow with ``n``.
        y, s : int ndarrays (n,)
        """


def check_group_counts(group_counts, available=None):
    """Refuse a malformed ``{(y, s): count}`` request, or one for a cell outside ``available`` (the provider's
    :meth:`~SyntheticDataProvider.available_cells`, when it knows them)."""
    if not isinstance(group_counts, dict) or not group_counts:
        raise ValueError(f"group_counts must be a non-empty dict {{(y, s): count}}, got {group_counts!r}.")
    for cell, count in group_counts.items():
        if not (isinstance(cell, tuple) and len(cell) == 2 and all(
                isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 0 for v in cell)):
            raise ValueError(f"group_counts keys must be (y, s) pairs of non-negative ints (a class index and a "
                             f"group index), got {cell!r}.")
        if int(count) != count or count < 0:
            raise ValueError(f"group_counts[{cell}] must be a non-negative int, got {count!r}.")
        if available is not None and count and cell not in available:
            raise ValueError(f"group_counts asks for cell (y={cell[0]}, s={cell[1]}), which this provider cannot "
                             f"produce; it has the cells {sorted(available)}.")


class ArrayProvider(SyntheticDataProvider):
    """Provider that samples from images held in memory.

    Useful for tests, for pre-generated synthetic sets loaded as arrays, and
    for the "transformed held-out real images" stand-in of the benchmarks.
    Images are drawn without replacement within a cell while the cell has
    enough of them, with replacement otherwise (``replace="auto"``).

    Parameters
    ----------
    X : ndarray (n, C, H, W), float in [0, 1]
    y, s : ndarray (n,)
        Class indices and group indices (0, 1, ...; an intersection of several attributes coded as one index).
    replace : {"auto", True, False}, default="auto"
        ``False`` raises when a cell holds fewer images than requested.

    Examples
    --------
    >>> import numpy as np
    >>> from aimfair_plugin.synth import ArrayProvider
    >>> rng = np.random.RandomState(0)
    >>> provider = ArrayProvider(rng.rand(40, 3, 8, 8).astype('float32'), np.repeat([0, 1], 20), np.tile([0, 1], 20))
    >>> X, y, s = provider.sample({(0, 0): 2, (0, 1): 2, (1, 0): 2, (1, 1): 2}, random_state=0)
    >>> X.shape, y.tolist()
    ((8, 3, 8, 8), [0, 0, 0, 0, 1, 1, 1, 1])
    """

    _parameter_constraints = {"X": ["array-like"], "y": ["array-like"], "s": ["array-like"],
                              "replace": [StrOptions({"auto"}), "boolean"]}

    def __init__(self, X, y, s, *, replace="auto"):
        self.X = X
        self.y = y
        self.s = s
        self.replace = replace

    def available_cells(self):
        return {(int(a), int(b)) for a, b in zip(np.asarray(self.y).tolist(), np.asarray(self.s).tolist())}

    def sample(self, group_counts, *, image_shape=None, random_state=None):
        self._validate_params()
        check_group_counts(group_counts, self.available_cells())
        rng = check_random_state(random_state)
        y, s = np.asarray(self.y), np.asarray(self.s)
        chosen = []
        for (cy, cs), count in sorted(group_counts.items()):
            pool = np.flatnonzero((y == cy) & (s == cs))
            if count and not len(pool):
                raise ValueError(f"ArrayProvider has no image of cell (y={cy}, s={cs}).")
            replace = self.replace is True or (self.replace == "auto" and len(pool) < count)
            if not replace and len(pool) < count:
                raise ValueError(
                    f"ArrayProvider has {len(pool)} images of cell (y={cy}, s={cs}), {count} requested "
                    "(replace=False)."
                )
            chosen.append(rng.choice(pool, size=int(count), replace=replace))
        idx = np.concatenate(chosen) if chosen else np.array([], dtype=int)
        X = np.asarray(self.X, dtype=np.float32)[idx]
        if image_shape is not None:
            if X.shape[1] != image_shape[0]:
                raise ValueError(f"Images have {X.shape[1]} channels, {image_shape[0]} were requested.")
            X = resize_images(X, image_shape[1:])
        return X, y[idx].astype(int), s[idx].astype(int)
