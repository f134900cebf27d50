"""The project's estimator contract on image inputs, where scikit-learn has no check suite.

For every estimator of the registry (``aimfair_plugin.estimators.all_estimators``): clone,
get_params/set_params round trip, NotFittedError before fit, pickle round trip with equal predictions, same
seed -> same predictions, n_features_in_ / image_shape_, ValueError for bad X and y, every parameter
declared, and the ``save_pretrained`` / ``from_pretrained`` round trip without pickle.
"""

import inspect
import pickle

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from aimfair_plugin.estimators import (
    GroupDROClassifier,
    ImageClassifier,
    InfluenceReweightingClassifier,
    JTTClassifier,
    SelectiveFinetuneMitigator,
    all_estimators,
)
from aimfair_plugin.synth import ArrayProvider

TINY = dict(width=4, max_epochs=1, lr=0.05, batch_size=64, augment=False, random_state=0)


def _provider(data):
    return ArrayProvider(data.X_test, data.y_test, data.s_test)


def make(kind, data):
    if kind is SelectiveFinetuneMitigator:
        return SelectiveFinetuneMitigator(_provider(data), estimator=ImageClassifier(**TINY), finetune_epochs=1,
                                          finetune_batch_size=64, synthetic_ratio=0.25, random_state=0)
    return kind(**TINY)


def fit(model, data, X=None, y=None):
    X = data.X_train[:160] if X is None else X
    y = data.y_train[:160] if y is None else y
    if isinstance(model, InfluenceReweightingClassifier):
        return model.fit(X, y, X_val=data.X_test[:80], y_val=data.y_test[:80], sensitive_features_val=data.s_test[:80])
    if isinstance(model, GroupDROClassifier):  # the oracle reads the training group labels
        return model.fit(X, y, sensitive_features=data.s_train[:160])
    return model.fit(X, y)


KINDS = [cls for _, cls in all_estimators()]


def test_the_registry_holds_every_exported_estimator():
    from sklearn.base import BaseEstimator

    import aimfair_plugin.estimators as estimators

    exported = {name for name in estimators.__all__
                if isinstance(getattr(estimators, name), type) and issubclass(getattr(estimators, name), BaseEstimator)}
    assert {name for name, _ in all_estimators()} == exported
    assert {"AFRClassifier", "GroupDROClassifier", "SelectiveFinetuneMitigator"} <= exported


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.__name__)
def test_image_estimator_contract(kind, small_mnist):
    data = small_mnist
    model = make(kind, data)
    params = model.get_params(deep=False)
    assert clone(model).get_params(deep=False).keys() == params.keys()
    assert model.set_params(**params) is model and model.get_params(deep=False) == params
    with pytest.raises(NotFittedError):
        model.predict(data.X_test)
    first = fit(model, data).predict(data.X_test)
    fitted = model.estimator_ if kind is SelectiveFinetuneMitigator else model
    assert fitted.image_shape_ == (3, 16, 16) and fitted.n_features_in_ == 3 * 16 * 16
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(model)).predict(data.X_test), first)
    np.testing.assert_array_equal(fit(clone(model), data).predict(data.X_test), first)  # same seed, same model
    bad_inputs = [
        dict(X=data.X_train[:160].transpose(0, 2, 3, 1)),  # channel-last
        dict(X=data.X_train[:160, 0]),  # no channel axis
        dict(X=np.where(np.arange(160)[:, None, None, None] == 3, np.nan, data.X_train[:160])),  # NaN
        dict(y=data.y_train[:150]),  # one label short
        dict(y=np.zeros(160)),  # one class
    ]
    for bad in bad_inputs:
        with pytest.raises(ValueError):
            fit(clone(model), data, **bad)


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.__name__)
def test_every_parameter_is_declared(kind):
    assert set(kind._get_param_names()) == set(kind._parameter_constraints)


@pytest.mark.parametrize("bad", [{"stem": "vgg"}, {"augment": "yes"}, {"lr_milestones": (10, -1)},
                                 {"lr_milestones": 10}, {"num_workers": -1}, {"max_epochs": True},
                                 {"optimizer": "rmsprop"}, {"momentum": 1.5}, {"image_size": 4}])
def test_parameters_checked_nowhere_before_are_checked_now(bad, small_mnist):
    with pytest.raises(ValueError, match=next(iter(bad))):
        ImageClassifier(**{**TINY, **bad}).fit(small_mnist.X_train[:64], small_mnist.y_train[:64])


def test_names_never_released_are_gone():
    from aimfair_plugin.synth import DiffusersProvider, FairTabularDiffusion

    assert "epochs" not in FairTabularDiffusion._get_param_names()
    assert "seed" not in inspect.signature(DiffusersProvider).parameters
    for cls, old in ((JTTClassifier, "identifier_"), (SelectiveFinetuneMitigator, "pretrained_estimator_")):
        assert not hasattr(cls, old)


def test_the_mitigator_takes_its_device_from_its_estimator():
    assert "device" not in inspect.signature(SelectiveFinetuneMitigator).parameters  # one place: the estimator's


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.__name__)
def test_save_pretrained_round_trip_without_pickle(kind, small_mnist, tmp_path, monkeypatch):
    data = small_mnist
    model = fit(make(kind, data), data)
    expected = model.predict_proba(data.X_test)
    model.save_pretrained(tmp_path / "saved")
    files = sorted(p.relative_to(tmp_path / "saved").as_posix() for p in (tmp_path / "saved").rglob("*") if p.is_file())
    assert all(f.endswith((".json", ".safetensors", ".csv")) for f in files), files  # nothing pickled
    monkeypatch.setattr(pickle, "load", lambda *a, **k: pytest.fail("loading unpickled something"))
    loaded = kind.from_pretrained(tmp_path / "saved", **({"provider": _provider(data)} if kind is
                                                          SelectiveFinetuneMitigator else {}))
    np.testing.assert_array_equal(loaded.predict_proba(data.X_test), expected)
    assert loaded.get_params(deep=False).keys() == model.get_params(deep=False).keys()
    assert type(loaded) is kind
    if kind is not SelectiveFinetuneMitigator:  # every fitted attribute comes back (the network aside)
        for name, value in vars(model).items():
            if name.endswith("_") and not name.startswith("_") and name != "net_":
                back = getattr(loaded, name)
                if isinstance(value, ImageClassifier):
                    np.testing.assert_array_equal(back.predict(data.X_test), value.predict(data.X_test))
                else:
                    np.testing.assert_array_equal(np.asarray(back, dtype=object), np.asarray(value, dtype=object))
    if kind is SelectiveFinetuneMitigator:
        assert loaded.selection_mask_ == model.selection_mask_ and loaded.n_selected_ == model.n_selected_
        np.testing.assert_array_equal(loaded.stage_one_estimator_.predict(data.X_test),
                                      model.stage_one_estimator_.predict(data.X_test))
        refit = loaded.fit(data.X_train[:160], data.y_train[:160]).predict(data.X_test)  # and it fits again
        np.testing.assert_array_equal(refit, model.predict(data.X_test))


def test_select_is_fit_without_fine_tuning(small_mnist):
    data = small_mnist
    selected = make(SelectiveFinetuneMitigator, data).set_params(strategy="selective").select(
        data.X_train[:160], data.y_train[:160])
    zero = make(SelectiveFinetuneMitigator, data).set_params(strategy="selective", finetune_epochs=0).fit(
        data.X_train[:160], data.y_train[:160])
    assert selected.selection_mask_ == zero.selection_mask_ and selected.mask_report_ == zero.mask_report_
    np.testing.assert_array_equal(selected.predict(data.X_test), selected.stage_one_estimator_.predict(data.X_test))


def test_providers_declare_their_parameters(small_mnist, tmp_path):
    from aimfair_plugin.synth import ImageFolderProvider, RenderedDigitsProvider, balanced_group_counts

    counts = balanced_group_counts(8)
    bad = [ArrayProvider(small_mnist.X_test, small_mnist.y_test, small_mnist.s_test, replace="sometimes"),
           ImageFolderProvider(tmp_path, image_size=4), RenderedDigitsProvider(image_size="32"),
           RenderedDigitsProvider(colors="red")]
    for provider in bad:
        with pytest.raises(ValueError, match="parameter of"):
            provider.sample(counts, random_state=0)
