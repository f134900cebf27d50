"""Your own network: any torch.nn.Module as the backbone (a ViT, a CNN without BatchNorm), with the mitigator,
strategies by module-name prefix, persistence and the cache."""

import numpy as np
import pytest
import torch
from sklearn.base import clone
from torch import nn

from aimfair_plugin.estimators import (
    ImageClassifier,
    SelectiveFinetuneMitigator,
    SelectiveMask,
    UpdateBlockMask,
)
from aimfair_plugin.nets import VisionTransformer, block_of, classifier_head, penultimate_features
from aimfair_plugin.synth import ArrayProvider

TRAIN = dict(max_epochs=2, lr=0.05, batch_size=64, lr_milestones=(1,), lr_gamma=0.1, augment=False, random_state=0)


class TinyCNN(nn.Module):
    """A CNN without BatchNorm and without a ``features`` method: its head is found as its last linear layer."""

    def __init__(self, num_classes=2, in_channels=3):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(in_channels, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                                  nn.Flatten())
        self.classifier = nn.Linear(8, num_classes)

    def forward(self, x):
        return self.classifier(self.body(x))


def tiny_vit(num_outputs, image_size):
    return VisionTransformer(num_outputs, image_size=image_size, patch_size=4, dim=16, depth=2, heads=2)


def _finetune(d, estimator, **params):
    provider = ArrayProvider(1.0 - d.X_test, d.y_test, d.s_test)
    settings = dict(finetune_epochs=2, finetune_lr=0.05, finetune_batch_size=64, random_state=0)
    return SelectiveFinetuneMitigator(provider, estimator=estimator, **{**settings, **params}).fit(d.X_train, d.y_train)


@pytest.mark.parametrize("module", [TinyCNN, tiny_vit(2, 16)], ids=["cnn-class", "vit-instance"])
def test_own_network_fits_predicts_saves_and_loads(small_mnist, module, tmp_path):
    d = small_mnist
    clf = ImageClassifier(module=module, **TRAIN).fit(d.X_train, d.y_train)
    assert clf.score(d.X_train, d.y_train) > 0.7  # it learnt (the colour, at least: the training bias)
    proba = clf.predict_proba(d.X_test)
    clf.save_pretrained(tmp_path / "clf")
    with pytest.raises(ValueError, match="your own network"):
        ImageClassifier.from_pretrained(tmp_path / "clf")
    loaded = ImageClassifier.from_pretrained(tmp_path / "clf", module=module)
    np.testing.assert_array_equal(loaded.predict_proba(d.X_test), proba)
    if isinstance(module, nn.Module):  # an instance is copied, never trained in place
        assert not torch.equal(module.head.weight, clf.net_.module_.head.weight)


@pytest.mark.parametrize("module", [TinyCNN, tiny_vit(2, 16)], ids=["cnn-class", "vit-instance"])
def test_mitigator_on_own_network_keeps_frozen_tensors_bit_for_bit(small_mnist, module, tmp_path):
    d = small_mnist
    m = _finetune(d, ImageClassifier(module=module, **TRAIN), strategy=SelectiveMask(top_k=0.75))
    before = m.stage_one_estimator_.net_.module_.state_dict()
    after = m.estimator_.net_.module_.state_dict()
    selected = {name for name, keep in m.selection_mask_.items() if keep}
    frozen = set(m.selection_mask_) - selected
    assert selected and frozen
    assert all(torch.equal(before[n], after[n]) for n in frozen)
    assert any(not torch.equal(before[n], after[n]) for n in selected)
    head = classifier_head(m.estimator_.net_.module_)[0]
    assert set(m.gradient_gaps_.loc[m.gradient_gaps_["block"] == "fc", "tensor"]) == {f"{head}.weight", f"{head}.bias"}
    m.save_pretrained(tmp_path / "m")
    loaded = SelectiveFinetuneMitigator.from_pretrained(tmp_path / "m", module=module)
    np.testing.assert_array_equal(loaded.predict_proba(d.X_test), m.predict_proba(d.X_test))


def test_block_strategies_take_module_name_prefixes(small_mnist):
    d = small_mnist
    m = _finetune(d, ImageClassifier(module=tiny_vit(2, 16), **TRAIN), strategy=UpdateBlockMask("blocks.1"))
    selected = {name for name, keep in m.selection_mask_.items() if keep}
    assert selected and all(name.startswith("blocks.1.") for name in selected)
    assert selected == {n for n in m.selection_mask_ if n.startswith("blocks.1.")}
    head_only = _finetune(d, ImageClassifier(module=TinyCNN, **TRAIN), strategy="linear_probe")
    assert {n for n, keep in head_only.selection_mask_.items() if keep} == {"classifier.weight", "classifier.bias"}


def test_settings_the_network_cannot_satisfy_fail_before_training(small_mnist, monkeypatch):
    d = small_mnist
    monkeypatch.setattr(ImageClassifier, "_fit_net", lambda *a, **k: pytest.fail("trained"))
    with pytest.raises(ValueError, match="no parameter of the network is in block 'layer4'"):
        _finetune(d, ImageClassifier(module=TinyCNN, **TRAIN), strategy=UpdateBlockMask("layer4"))
    with pytest.raises(ValueError, match=r"one logit per class, shape \(2, 2\)"):
        _finetune(d, ImageClassifier(module=lambda: TinyCNN(num_classes=3), **TRAIN))
    monkeypatch.undo()  # the classifier builds its network at the start of _fit_net, before its first step
    with pytest.raises(ValueError, match="cannot read images of shape"):
        ImageClassifier(module=tiny_vit(2, 32), **TRAIN).fit(d.X_train, d.y_train)  # a 32 px ViT, 16 px images
    with pytest.raises(TypeError, match="not a torch.nn.Module"):
        ImageClassifier(module=lambda: "resnet", **TRAIN).fit(d.X_train, d.y_train)


def test_every_batchnorm_setting_runs_on_a_network_without_batchnorm(small_mnist):
    d = small_mnist
    base = ImageClassifier(module=TinyCNN, **TRAIN)
    probas = [_finetune(d, base, batchnorm=b).predict_proba(d.X_test) for b in ("real", "finetune", "eval")]
    # without BatchNorm the settings have nothing to act on: the same model each time
    np.testing.assert_array_equal(probas[0], probas[1])
    np.testing.assert_array_equal(probas[0], probas[2])


def test_an_unhashable_module_is_not_cached_and_a_class_is(small_mnist):
    from aimfair_plugin.estimators._cache import PROCESS_CACHE, pretraining_cache_and_key

    X, y = small_mnist.X_train[:8], small_mnist.y_train[:8]
    lam = ImageClassifier(module=lambda: TinyCNN(), random_state=0)
    assert pretraining_cache_and_key(lam, "process", X, y)[0] is None
    assert pretraining_cache_and_key(ImageClassifier(module=TinyCNN, random_state=0), "process", X, y)[0] is PROCESS_CACHE
    clf = ImageClassifier(module=lambda num_classes: TinyCNN(num_classes), **TRAIN)
    assert clone(clf).fit(small_mnist.X_train, small_mnist.y_train).score(small_mnist.X_test, small_mnist.y_test) > 0


def test_the_package_vit_by_name_and_the_network_helpers():
    clf = ImageClassifier(arch="vit", width=4, **TRAIN)
    rng = np.random.RandomState(0)
    X, y = rng.uniform(size=(64, 3, 16, 16)).astype(np.float32), np.tile([0, 1], 32)
    clf.fit(X, y)
    vit = clf.net_.module_
    assert isinstance(vit, VisionTransformer) and vit.head.in_features == 16
    assert not any(isinstance(m, nn.BatchNorm2d) for m in vit.modules())
    assert block_of("head.bias", "head") == "fc" and block_of("blocks.3.attn.qkv.weight", "head") == "blocks"
    cnn = TinyCNN()
    x = torch.zeros(5, 3, 8, 8)
    assert classifier_head(cnn)[0] == "classifier"
    torch.testing.assert_close(penultimate_features(cnn, x), cnn.body(x))


def test_the_baselines_take_your_network_and_fairif_says_where_it_stops(small_mnist):
    from aimfair_plugin.estimators import AFRClassifier, InfluenceReweightingClassifier, JTTClassifier

    d = small_mnist
    X, y = d.X_train[:200], d.y_train[:200]
    settings = dict(module=TinyCNN, max_epochs=1, lr=0.05, batch_size=64, augment=False, random_state=0)
    for model in (JTTClassifier(**settings), AFRClassifier(**settings)):
        assert model.fit(X, y).predict(d.X_test).shape == (len(d.X_test),)
        assert isinstance(model.net_.module_, TinyCNN)
    fairif = InfluenceReweightingClassifier(**settings, lissa_iterations=5)
    fairif.fit(X, y, X_val=d.X_test[:80], y_val=d.y_test[:80], sensitive_features_val=d.s_test[:80])
    assert fairif.predict(d.X_test).shape == (len(d.X_test),)
    y3 = np.where(np.arange(len(y)) % 7 == 0, 2, y)  # a third class: FairIF's TPR/TNR constraints are binary
    with pytest.raises(ValueError, match="needs a binary target"):
        InfluenceReweightingClassifier(**settings).fit(X, y3, X_val=d.X_test[:80], y_val=d.y_test[:80],
                                                       sensitive_features_val=d.s_test[:80])
