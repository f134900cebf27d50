"""Reuse of pre-trained models (and their mean gradients) across fits on the same data.

``GridSearchCV`` over ``top_k`` clones the mitigator for every candidate; all
candidates of one fold pre-train the same model on the same data. The cache
key is a fingerprint of the training data plus every pre-training parameter,
so a hit returns exactly what a new pre-training would compute (on the CPU,
where training is deterministic for a fixed seed). On disk the cache is a
``joblib.Memory`` (from scikit-learn's ``check_memory``, like ``Pipeline``'s);
``memory="process"`` keeps copies in this process instead.
"""

import copy
import os
import pickle
from collections import OrderedDict
from numbers import Integral

import joblib
from sklearn.utils.validation import check_memory


def fingerprint(*parts):
    """Stable hex digest of arrays, strings and Python values: ``joblib.hash`` (what ``joblib.Memory`` keys
    calls by; arrays by their bytes, other objects by their pickled state, never by a memory address)."""
    return joblib.hash(parts)


def pretraining_fingerprint(estimator, X, y):
    """Cache key of ``estimator.fit(X, y)``: the estimator's class, the data and every constructor parameter.

    Shared by :class:`SelectiveFinetuneMitigator` and the benchmark runner, so
    a benchmark's ERM run and every fine-tuning run of the same seed reuse one
    pre-trained model. The ``callbacks`` parameter is not part of the key: callbacks observe a training loop
    (a model trained with them is shared with fits that pass none).
    """
    params = sorted((k, v) for k, v in estimator.get_params().items() if k != "callbacks" and not k.endswith("__callbacks"))
    try:
        return fingerprint("pretrain", type(estimator).__name__, X, y, params)
    except (pickle.PicklingError, TypeError, AttributeError):  # e.g. module= a lambda: no key, so no caching
        return None


class ProcessCache:
    """In-process least-recently-used cache holding deep copies.

    ``put`` stores a deep copy and ``get`` returns one, so a caller that modifies what it got (or what it stored)
    never changes what the next caller gets. The mitigator's ``memory="process"`` is one (``PROCESS_CACHE``); the
    benchmark keeps its real splits and synthetic draws in others.

    Parameters
    ----------
    max_entries : int, default=8
        The least recently used entry is dropped beyond this many.

    Examples
    --------
    >>> import numpy as np
    >>> from aimfair_plugin.utils import ProcessCache
    >>> cache = ProcessCache(max_entries=1)
    >>> cache.put("a", np.zeros(2))
    >>> got = cache.get("a")
    >>> got[0] = 5.0
    >>> cache.get("a")
    array([0., 0.])
    >>> cache.put("b", 1)
    >>> cache.get("a") is None
    True
    """

    def __init__(self, max_entries=8):
        self.max_entries = max_entries
        self._items = OrderedDict()

    def get(self, key):
        """A copy of the value under ``key`` (now the most recently used entry), or None."""
        if key not in self._items:
            return None
        self._items.move_to_end(key)
        return copy.deepcopy(self._items[key])

    def put(self, key, value):
        """Store a copy of ``value`` under ``key``, dropping the least recently used entries beyond ``max_entries``."""
        self._items[key] = copy.deepcopy(value)
        self._items.move_to_end(key)
        while len(self._items) > self.max_entries:
            self._items.popitem(last=False)

    def clear(self):
        """Drop every entry."""
        self._items.clear()


PROCESS_CACHE = ProcessCache(max_entries=16)  # a 5-fold grid: each fold's model, real and synthetic gradients


def pretraining_cache_and_key(estimator, memory, X, y):
    """``(cache, key)`` of ``estimator.fit(X, y)``: its :func:`pretraining_fingerprint` (one hash of the data and
    parameters) and the cache it may use, ``resolve_cache(memory)`` when its ``random_state`` is an int and the key
    exists, else None. The one caching rule of the package (the mitigator, FairIF's and AFR's stage one,
    :func:`fit_cached`): a fit seeded by None or a ``RandomState`` object is not reproducible from its
    parameters, so there is nothing to reuse; nor is a fit whose ``module`` joblib cannot hash (a lambda or a
    local function: no key). A module class or function is keyed by its qualified name, an instance by its
    weights and attributes."""
    key = pretraining_fingerprint(estimator, X, y)
    seed = getattr(estimator, "random_state", None)
    seeded = isinstance(seed, Integral) and not isinstance(seed, bool)
    return (resolve_cache(memory) if key is not None and seeded else None), key


def cached_fit(memory, estimator, X, y):
    """``(fitted estimator, hit)``: ``estimator.fit(X, y)``, or the identical fit from ``memory``
    (under :func:`pretraining_cache_and_key`'s rule).

    The key is :func:`pretraining_fingerprint`, so the mitigator, FairIF's stage one and the benchmark's ERM
    runs share one model whenever they pre-train the same estimator on the same data.
    """
    return cached(*pretraining_cache_and_key(estimator, memory, X, y), lambda: estimator.fit(X, y))


def fit_cached(estimator, X, y, *, memory="process"):
    """Fit ``estimator`` on ``(X, y)``, or return the identical fit that ``memory`` already holds.

    The key is a fingerprint of the data and of every parameter of ``estimator`` (including its seed), so a
    pre-training is done once and shared by everything that asks for the same one: the mitigator with the
    same ``memory``, FairIF's stage one, every job of a benchmark. Only a fit seeded by an int is cached.

    Parameters
    ----------
    estimator : estimator
        Unfitted; it is fitted in place on a cache miss.
    X, y : array-like
        Training data.
    memory : "process", str, Path, joblib.Memory or None, default="process"
        Where fitted models are kept: the in-process cache, a folder or ``joblib.Memory`` (shared between
        processes), or None (always fit).

    Returns
    -------
    estimator
        The fitted estimator (a copy read from the cache on a hit).

    Examples
    --------
    >>> from aimfair_plugin.datasets import make_colored_mnist
    >>> data = make_colored_mnist(n_train=300, n_test=100, minority_share=0.05, image_size=16, random_state=0)
    >>> tiny = dict(width=4, max_epochs=1, batch_size=64, augment=False, random_state=0)  # a small, fast backbone
    >>> from aimfair_plugin.estimators import ImageClassifier, fit_cached
    >>> a = fit_cached(ImageClassifier(**tiny), data.X_train, data.y_train)
    >>> b = fit_cached(ImageClassifier(**tiny), data.X_train, data.y_train)
    >>> (a.predict_proba(data.X_test) == b.predict_proba(data.X_test)).all()
    np.True_
    """
    return cached_fit(memory, estimator, X, y)[0]


def resolve_cache(memory):
    """``"process"`` -> the shared in-process cache; a folder path or a ``joblib.Memory`` -> that
    ``joblib.Memory`` (through scikit-learn's ``check_memory``, as ``Pipeline(memory=...)`` does); None -> no
    caching."""
    if memory is None:
        return None
    if isinstance(memory, str) and memory == "process":
        return PROCESS_CACHE
    if isinstance(memory, (str, os.PathLike)):
        memory = str(memory)
    try:
        return check_memory(memory)
    except ValueError as exc:
        raise ValueError(f"memory must be 'process', None, a folder path or a joblib.Memory, got {memory!r}.") from exc


def _compute(key, compute):
    """What ``joblib.Memory`` caches: ``compute()``, looked up by ``key`` alone (``compute`` is ignored)."""
    return compute()


def cached(cache, key, compute):
    """Return ``(value, hit)``: the cached value under ``key``, or ``compute()`` stored under it.

    ``cache`` is what :func:`resolve_cache` returns. With a ``joblib.Memory`` the key (a fingerprint of the
    data and every setting) is the only argument joblib hashes, so every process that computes the same key
    (a GridSearchCV fold, a benchmark job) shares one result on disk.
    """
    if cache is None:
        return compute(), False
    if isinstance(cache, ProcessCache):
        value = cache.get(key)
        if value is not None:
            return value, True
        value = compute()
        cache.put(key, value)
        return value, False
    function = cache.cache(_compute, ignore=["compute"])
    hit = function.check_call_in_cache(key, compute)
    return function(key, compute), hit
