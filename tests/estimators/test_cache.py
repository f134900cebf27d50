"""Cache keys from joblib.hash of what a pre-training depends on, and one caching rule for every caller."""

import numpy as np
import pytest
import torch
from _tiny import TINY

from aimfair_plugin.estimators import ImageClassifier, fit_cached
from aimfair_plugin.estimators._cache import (
    PROCESS_CACHE,
    fingerprint,
    pretraining_cache_and_key,
    pretraining_fingerprint,
)


def test_keys_depend_on_values_not_on_object_identity():
    X, y = np.zeros((4, 3, 8, 8), "float32"), np.array([0, 1, 0, 1])
    a = ImageClassifier(**{**TINY, "random_state": np.random.RandomState(3)})
    b = ImageClassifier(**{**TINY, "random_state": np.random.RandomState(3)})
    assert repr(a.random_state) != repr(b.random_state)  # the repr holds a memory address ...
    assert pretraining_fingerprint(a, X, y) == pretraining_fingerprint(b, X, y)  # ... the key does not
    c = ImageClassifier(**{**TINY, "random_state": np.random.RandomState(4)})
    assert pretraining_fingerprint(c, X, y) != pretraining_fingerprint(a, X, y)
    assert pretraining_fingerprint(ImageClassifier(**TINY), X, y) != pretraining_fingerprint(
        ImageClassifier(**{**TINY, "lr": 0.01}), X, y)
    X2 = X.copy()
    X2[0, 0, 0, 0] = 1
    assert pretraining_fingerprint(ImageClassifier(**TINY), X2, y) != pretraining_fingerprint(ImageClassifier(**TINY), X, y)
    assert fingerprint("a", 1) == fingerprint("a", 1) != fingerprint("a", 2)


@pytest.mark.parametrize("seed, cached", [(0, True), (None, False), (np.random.RandomState(0), False)])
def test_only_int_seeded_fits_are_cached(seed, cached):
    X, y = np.zeros((4, 3, 8, 8), "float32"), np.array([0, 1, 0, 1])
    assert (pretraining_cache_and_key(ImageClassifier(random_state=seed), "process", X, y)[0] is PROCESS_CACHE) == cached


@pytest.mark.parametrize("seed, cached", [(0, True), (None, False), (np.random.RandomState(0), False)])
def test_the_fit_path_keys_once_and_caches_under_the_same_rule(seed, cached, monkeypatch):
    import aimfair_plugin.estimators._cache as cache_module

    X, y = np.zeros((4, 3, 8, 8), "float32"), np.array([0, 1, 0, 1])
    module = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(192, 2))  # an instance: hashed by its weights
    estimator = ImageClassifier(**{**TINY, "module": module, "random_state": seed})
    calls = []
    real_hash = cache_module.joblib.hash
    monkeypatch.setattr(cache_module.joblib, "hash", lambda value: calls.append(1) or real_hash(value))
    cache, key = pretraining_cache_and_key(estimator, "process", X, y)
    assert len(calls) == 1 and key == real_hash(("pretrain", "ImageClassifier", X, y, sorted(
        (k, v) for k, v in estimator.get_params().items() if k != "callbacks")))
    assert (cache is PROCESS_CACHE) == cached
    unhashable = ImageClassifier(**{**TINY, "module": lambda: module, "random_state": 0})
    assert pretraining_cache_and_key(unhashable, "process", X, y) == (None, None)


def test_fit_cached_returns_the_identical_fit_and_never_caches_an_unseeded_one(small_mnist):
    X, y = small_mnist.X_train[:96], small_mnist.y_train[:96]
    PROCESS_CACHE.clear()
    first = fit_cached(ImageClassifier(**TINY), X, y)
    again = fit_cached(ImageClassifier(**TINY), X, y)
    assert again is not first and (again.predict_proba(X) == first.predict_proba(X)).all()
    unseeded = {**TINY, "random_state": None}
    fit_cached(ImageClassifier(**unseeded), X, y)
    assert len(PROCESS_CACHE._items) == 1  # the unseeded fit was not stored
