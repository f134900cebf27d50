"""The ``callbacks`` parameter: extra skorch callbacks in the loop of the model an estimator returns."""

import copy

import pytest
import torch
from _tiny import TINY, tiny_mitigator
from sklearn.base import clone
from sklearn.utils._param_validation import InvalidParameterError
from skorch.callbacks import Callback

from aimfair_plugin.estimators import ImageClassifier, JTTClassifier, SelectiveFinetuneMitigator
from aimfair_plugin.estimators._cache import pretraining_fingerprint


class EpochCheckpoints(Callback):
    """A user's callback: a copy of the weights at the end of every epoch."""

    def on_train_begin(self, net, **kwargs):
        self.states_ = []

    def on_epoch_end(self, net, **kwargs):
        self.states_.append({k: v.detach().clone() for k, v in net.module_.state_dict().items()})


class EpochCounter(Callback):
    def on_train_begin(self, net, **kwargs):
        self.epochs_ = 0

    def on_epoch_end(self, net, **kwargs):
        self.epochs_ += 1


def test_callbacks_run_in_the_training_loop_and_unnamed_ones_take_their_class_name(small_mnist):
    X, y = small_mnist.X_train[:160], small_mnist.y_train[:160]
    model = ImageClassifier(**{**TINY, "max_epochs": 3}, callbacks=[EpochCounter(), ("keep", EpochCheckpoints())])
    model.fit(X, y)
    callbacks = dict(model.net_.callbacks_)
    assert callbacks["EpochCounter"].epochs_ == 3 and len(callbacks["keep"].states_) == 3
    for key, value in model.net_.module_.state_dict().items():  # the last copy is the returned model, bit for bit
        assert torch.equal(callbacks["keep"].states_[-1][key], value)
    # the same fit without callbacks gives the same model: they only observe
    plain = ImageClassifier(**{**TINY, "max_epochs": 3}).fit(X, y)
    for key, value in plain.net_.module_.state_dict().items():
        assert torch.equal(model.net_.module_.state_dict()[key], value)


@pytest.mark.parametrize("bad", [[object()], ["name"], [("name", object())], [(1, EpochCheckpoints())], "text"])
def test_callbacks_that_are_not_skorch_callbacks_are_refused(small_mnist, bad):
    with pytest.raises(InvalidParameterError, match="callbacks"):
        ImageClassifier(**TINY, callbacks=bad).fit(small_mnist.X_train[:64], small_mnist.y_train[:64])


def test_callbacks_are_not_part_of_the_cache_key_and_clone_copies_them():
    with_callbacks = ImageClassifier(**TINY, callbacks=[EpochCheckpoints()])
    X, y = torch.zeros(4, 3, 8, 8).numpy(), [0, 1, 0, 1]
    assert pretraining_fingerprint(with_callbacks, X, y) == pretraining_fingerprint(ImageClassifier(**TINY), X, y)
    cloned = clone(with_callbacks)
    assert isinstance(cloned.callbacks[0], EpochCheckpoints) and cloned.callbacks[0] is not with_callbacks.callbacks[0]


def test_a_two_stage_baseline_runs_the_callbacks_in_its_second_stage_only(small_mnist):
    X, y = small_mnist.X_train[:160], small_mnist.y_train[:160]
    model = JTTClassifier(identification_epochs=1, upweight=5, **{**TINY, "max_epochs": 2},
                          callbacks=[("keep", EpochCheckpoints())]).fit(X, y)
    assert len(dict(model.net_.callbacks_)["keep"].states_) == 2
    assert model.stage_one_estimator_.callbacks is None
    assert "keep" not in dict(model.stage_one_estimator_.net_.callbacks_)


def test_the_mitigator_runs_its_callbacks_in_fine_tuning_and_saves_without_them(small_mnist, tmp_path):
    X, y = small_mnist.X_train[:160], small_mnist.y_train[:160]
    model = tiny_mitigator(small_mnist, strategy="full", finetune_epochs=2, callbacks=[("keep", EpochCheckpoints())])
    model.fit(X, y)
    assert len(dict(model.estimator_.net_.callbacks_)["keep"].states_) == 2  # the fine-tuning epochs
    assert "keep" not in dict(model.stage_one_estimator_.net_.callbacks_)
    model.save_pretrained(tmp_path / "m")
    loaded = SelectiveFinetuneMitigator.from_pretrained(tmp_path / "m", provider=model.provider)
    assert loaded.callbacks is None
    assert (loaded.predict(small_mnist.X_test) == model.predict(small_mnist.X_test)).all()
    # a fit without callbacks pre-trains the same model (shared through the cache) and fine-tunes it identically
    plain = tiny_mitigator(small_mnist, strategy="full", finetune_epochs=2).fit(X, y)
    assert plain.pretrain_cache_hit_
    for key, value in plain.estimator_.net_.module_.state_dict().items():
        assert torch.equal(model.estimator_.net_.module_.state_dict()[key], value)


def test_the_mitigator_re_estimates_statistics_as_its_fit_does_at_any_batch_size(small_mnist):
    X, y = small_mnist.X_train[:160], small_mnist.y_train[:160]
    model = tiny_mitigator(small_mnist, strategy="full", finetune_batch_size=32, batchnorm="real").fit(X, y)
    returned = copy.deepcopy(model.estimator_.net_.module_.state_dict())
    model.reestimate_batchnorm(X)
    for key, value in model.estimator_.net_.module_.state_dict().items():
        assert torch.equal(value, returned[key]), key
    # the estimator's own batch size (64) averages other batches: not the statistics fit made
    other = copy.deepcopy(model.estimator_).reestimate_batchnorm(X)
    assert not all(torch.equal(v, returned[k]) for k, v in other.net_.module_.state_dict().items())
