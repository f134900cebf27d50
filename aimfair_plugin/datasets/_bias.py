"""Group shares of biased and balanced subsets over the four (target, protected) cells.

Cells are ordered ``(y, s) = (0, 0), (0, 1), (1, 0), (1, 1)`` everywhere in the package.
"""

import numpy as np
from sklearn.utils import check_random_state

CELLS = ((0, 0), (0, 1), (1, 0), (1, 1))

BIAS_TYPES = ("correlation", "group_size", "class_size")


def cell_shares(minority_share=0.1, bias_type="correlation"):
    """Share of each (y, s) cell in a biased set, in ``CELLS`` order.

    The three bias kinds are those of the FairIF paper (Sec. 6.1):

    ``"correlation"`` (group distribution shift, the AIM-Fair setting)
        Classes are equally large; within each class the protected value that
        is rare in it holds ``minority_share`` of the class, and the rare value
        differs between classes: ``y=0`` goes mostly with ``s=1`` and ``y=1``
        mostly with ``s=0``. ``minority_share=0.1`` gives the paper's
        ``[0.05, 0.45, 0.45, 0.05]``.
    ``"group_size"`` (group size discrepancy)
        Group ``s=1`` holds ``minority_share`` of the data, with the same class
        balance as group ``s=0``.
    ``"class_size"`` (class size discrepancy)
        Class ``y=1`` holds ``minority_share`` of the data; the groups are
        equally large and have the same class distribution.

    Parameters
    ----------
    minority_share : float in (0, 1)
        See above.
    bias_type : {"correlation", "group_size", "class_size"}

    Returns
    -------
    shares : ndarray of shape (4,)
        Non-negative, sums to 1.

    Examples
    --------
    >>> from aimfair_plugin.datasets import cell_shares
    >>> cell_shares(0.1)
    array([0.05, 0.45, 0.45, 0.05])
    """
    m = float(minority_share)
    if not 0.0 < m < 1.0:
        raise ValueError(f"minority_share must lie strictly between 0 and 1, got {minority_share!r}.")
    if bias_type == "correlation":
        shares = [m / 2, (1 - m) / 2, (1 - m) / 2, m / 2]
    elif bias_type == "group_size":
        shares = [(1 - m) / 2, m / 2, (1 - m) / 2, m / 2]
    elif bias_type == "class_size":
        shares = [(1 - m) / 2, (1 - m) / 2, m / 2, m / 2]
    else:
        raise ValueError(f"bias_type must be one of {BIAS_TYPES}, got {bias_type!r}.")
    return np.asarray(shares, dtype=float)


def shares_to_counts(shares, n):
    """Split ``n`` items over cells in proportion to ``shares`` (largest remainder).

    The counts sum to exactly ``n``; ties in the remainders go to earlier cells.

    Parameters
    ----------
    shares : array-like of float
        Non-negative shares (normalised to sum to 1).
    n : int
        Items to split.

    Returns
    -------
    counts : ndarray of int
        One count per share, summing to ``n``.

    Examples
    --------
    >>> from aimfair_plugin.datasets import shares_to_counts
    >>> shares_to_counts([0.05, 0.45, 0.45, 0.05], 100).tolist()
    [5, 45, 45, 5]
    """
    n = int(n)
    if n < 0:
        raise ValueError(f"n must be non-negative, got {n}.")
    shares = np.asarray(shares, dtype=float)
    exact = shares / shares.sum() * n
    counts = np.floor(exact).astype(int)
    short = n - counts.sum()
    order = np.argsort(-(exact - counts), kind="stable")
    counts[order[:short]] += 1
    return counts


def _check_binary(name, values):
    values = np.asarray(values)
    if values.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {values.shape}.")
    if not np.isin(values, (0, 1)).all():
        raise ValueError(f"{name} must hold only the values 0 and 1, got {np.unique(values)[:10]}.")
    return values.astype(int)


def _draw_cells(y, s, counts, random_state, what):
    y = _check_binary("y", y)
    s = _check_binary("s", s)
    if y.shape != s.shape:
        raise ValueError(f"y and s must have the same length, got {len(y)} and {len(s)}.")
    rng = check_random_state(random_state)
    chosen = []
    for (cy, cs), count in zip(CELLS, counts):
        pool = np.flatnonzero((y == cy) & (s == cs))
        if len(pool) < count:
            raise ValueError(
                f"{what} needs {count} samples of cell (y={cy}, s={cs}) but the data has only "
                f"{len(pool)}; lower n or the share of that cell."
            )
        chosen.append(rng.choice(pool, size=count, replace=False))
    indices = np.concatenate(chosen)
    rng.shuffle(indices)
    return indices


def make_biased_subset(y, s, *, n, minority_share=0.1, bias_type="correlation", random_state=None):
    """Indices of a biased subset with the paper's group shares.

    Parameters
    ----------
    y, s : array-like of shape (n_samples,)
        Binary target and protected attribute (0/1).
    n : int
        Size of the subset.
    minority_share, bias_type
        See :func:`cell_shares`; the defaults give the AIM-Fair shares
        ``[0.05, 0.45, 0.45, 0.05]``.
    random_state : int, RandomState or None

    Returns
    -------
    indices : ndarray of int, shuffled, without repeats.

    Raises
    ------
    ValueError
        If a cell has fewer samples than the subset needs.

    Examples
    --------
    >>> import numpy as np
    >>> from aimfair_plugin.datasets import make_biased_subset
    >>> rng = np.random.RandomState(0)
    >>> y, s = rng.randint(0, 2, 1000), rng.randint(0, 2, 1000)
    >>> idx = make_biased_subset(y, s, n=200, minority_share=0.1, random_state=0)
    >>> len(idx), int(((y[idx] == 0) & (s[idx] == 0)).sum())
    (200, 10)
    """
    counts = shares_to_counts(cell_shares(minority_share, bias_type), n)
    return _draw_cells(y, s, counts, random_state, "The biased subset")


def make_balanced_subset(y, s, *, n, random_state=None):
    """Indices of a subset with ``n / 4`` samples in each (y, s) cell.

    Used for balanced test sets such as the paper's 3,200-image UTKFace test.
    ``n`` must be divisible by 4.

    Parameters
    ----------
    y, s : array-like of int
        Target and protected attribute of the pool.
    n : int
        Subset size, divisible by 4.
    random_state : int, RandomState or None

    Returns
    -------
    indices : ndarray of int
        Indices into ``y`` / ``s``, ``n / 4`` per (y, s) cell.

    Examples
    --------
    >>> import numpy as np
    >>> from aimfair_plugin.datasets import make_balanced_subset
    >>> rng = np.random.RandomState(0)
    >>> y, s = rng.randint(0, 2, 1000), rng.randint(0, 2, 1000)
    >>> idx = make_balanced_subset(y, s, n=100, random_state=0)
    >>> np.bincount(2 * y[idx] + s[idx]).tolist()
    [25, 25, 25, 25]
    """
    if int(n) % 4:
        raise ValueError(f"A balanced subset needs n divisible by 4 (one quarter per cell), got {n}.")
    counts = np.full(4, int(n) // 4)
    return _draw_cells(y, s, counts, random_state, "The balanced subset")
