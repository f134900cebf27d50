"""Mask strategies as objects, and masked fine-tuning as a skorch callback."""

import numpy as np
import pytest
import torch
from _tiny import tiny_mitigator
from sklearn.base import clone
from sklearn.utils._param_validation import InvalidParameterError

from aimfair_plugin.estimators import (
    AutoRGNMask,
    FullMask,
    LinearProbeMask,
    MaskedFinetune,
    MaskStrategy,
    RandomMask,
    SelectiveMask,
    UpdateBlockMask,
)
from aimfair_plugin.estimators._strategies import BUILTIN_STRATEGIES, resolve_strategy

mitigator = tiny_mitigator


class Layer4Weights(MaskStrategy):
    """A user's strategy: the 4-D convolution weights of layer4."""

    def mask(self, gaps, rng):
        return (gaps["block"] == "layer4").to_numpy() & gaps["tensor"].str.endswith("conv1.weight").to_numpy()


def test_every_builtin_name_maps_to_its_object_with_defaults():
    expected = {"selective": SelectiveMask(), "full": FullMask(), "linear_probe": LinearProbeMask(),
                "random": RandomMask(), "auto_rgn": AutoRGNMask()}
    assert set(BUILTIN_STRATEGIES) == set(expected)
    for name, obj in expected.items():
        assert resolve_strategy(name) == obj
    assert SelectiveMask().get_params() == {"top_k": 0.887, "criterion": "normalized", "selection": "intersection",
                                            "bias_ratio": 0.9, "max_batches": None}
    assert repr(SelectiveMask(top_k=40, selection="ratio")) == "SelectiveMask(top_k=40, selection='ratio')"
    assert SelectiveMask(top_k=40) != SelectiveMask() and hash(SelectiveMask()) == hash(SelectiveMask())
    with pytest.raises(ValueError, match="Invalid parameter"):
        SelectiveMask().set_params(k=3)
    assert SelectiveMask().needs_gradient_gaps and not FullMask().needs_gradient_gaps
    assert AutoRGNMask().optimizer_class("sgd").__name__ == "AutoRGNSGD" and FullMask().optimizer_class("sgd") is None


def test_a_name_and_its_object_give_the_same_model(small_mnist):
    X, y = small_mnist.X_train[:160], small_mnist.y_train[:160]
    for name, obj in (("full", FullMask()), ("random", RandomMask()), ("selective", SelectiveMask())):
        by_name = mitigator(small_mnist, strategy=name).fit(X, y)
        by_object = mitigator(small_mnist, strategy=obj).fit(X, y)
        assert by_name.selection_mask_ == by_object.selection_mask_
        np.testing.assert_array_equal(by_name.predict_proba(small_mnist.X_test),
                                      by_object.predict_proba(small_mnist.X_test))


def test_a_user_strategy_trains_only_its_tensors_and_clones(small_mnist):
    X, y = small_mnist.X_train[:160], small_mnist.y_train[:160]
    model = mitigator(small_mnist, strategy=Layer4Weights())
    assert clone(model).strategy == Layer4Weights()
    model.fit(X, y)
    chosen = {name for name, on in model.selection_mask_.items() if on}
    assert chosen and all(name.startswith("layer4") and name.endswith("conv1.weight") for name in chosen)
    before = dict(model.stage_one_estimator_.net_.module_.named_parameters())
    for name, param in model.estimator_.net_.module_.named_parameters():
        assert torch.equal(param, before[name]) != (name in chosen), name  # frozen bit for bit, the rest moved
        assert param.requires_grad  # unfrozen again after fine-tuning
    assert model.mask_report_["selection"] == "Layer4Weights()" and model.mask_report_["criterion"] is None
    assert model.gradient_gaps_["domain_gap"].isna().all()  # it asked for no gaps: S1 not drawn, none computed


def test_a_strategy_that_needs_gaps_gets_them(small_mnist):
    class SmallestDomainGap(MaskStrategy):
        needs_gradient_gaps = True

        criterion, bias_ratio, max_batches = "abs_diff", 0.9, None  # how its gaps are computed

        def mask(self, gaps, rng):
            return gaps["domain_gap"].rank(method="first").to_numpy() <= 3

    model = mitigator(small_mnist, strategy=SmallestDomainGap(), finetune_epochs=0).fit(
        small_mnist.X_train[:160], small_mnist.y_train[:160])
    gaps = model.gradient_gaps_
    assert gaps["domain_gap"].notna().all() and model.n_selected_ == 3
    assert set(gaps.loc[gaps["selected"], "tensor"]) == set(gaps.nsmallest(3, "domain_gap")["tensor"])


def test_bad_strategies_are_refused(small_mnist):
    X, y = small_mnist.X_train[:160], small_mnist.y_train[:160]

    class WrongLength(MaskStrategy):
        def mask(self, gaps, rng):
            return np.ones(3, dtype=bool)

    class GapsWithoutSettings(MaskStrategy):
        needs_gradient_gaps = True

        def mask(self, gaps, rng):
            return np.ones(len(gaps), dtype=bool)

    with pytest.raises(ValueError, match="one entry per tensor"):
        mitigator(small_mnist, strategy=WrongLength()).fit(X, y)
    with pytest.raises(InvalidParameterError):
        mitigator(small_mnist, strategy=object()).fit(X, y)
    with pytest.raises(InvalidParameterError, match="needs block"):
        mitigator(small_mnist, strategy=UpdateBlockMask(None)).fit(X, y)
    with pytest.raises(InvalidParameterError, match="criterion, bias_ratio and max_batches"):
        mitigator(small_mnist, strategy=GapsWithoutSettings()).fit(X, y)


class TinyBN(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 2, 1)
        self.bn = torch.nn.BatchNorm2d(2)
        self.fc = torch.nn.Linear(2, 2)

    def forward(self, x):
        return self.fc(self.bn(self.conv(x)).mean((2, 3)))


class FakeNet:
    def __init__(self, module):
        self.module_ = module


def test_masked_finetune_callback_freezes_keeps_frozen_bn_statistics_and_unfreezes():
    module = TinyBN()
    mask = {name: name.startswith("fc") for name, _ in module.named_parameters()}
    callback = MaskedFinetune(mask, freeze_bn_stats=True).initialize()
    net = FakeNet(module.train())
    callback.on_train_begin(net)
    assert [p.requires_grad for p in module.parameters()] == list(mask.values())
    stats = module.bn.running_mean.clone()
    module.train()(torch.randn(8, 1, 3, 3) + 5)  # a training-mode forward pass (skorch's train step)
    assert torch.equal(module.bn.running_mean, stats)  # the frozen BN layer kept its statistics
    callback.on_train_end(net)
    assert all(p.requires_grad for p in module.parameters()) and not callback.hooks_
    module.train()(torch.randn(8, 1, 3, 3) + 5)
    assert not torch.equal(module.bn.running_mean, stats)  # after training the layer is an ordinary one again
    drifting = MaskedFinetune(mask, freeze_bn_stats=False).initialize()
    drifting.on_train_begin(net)
    module(torch.randn(8, 1, 3, 3) - 5)
    assert not drifting.hooks_
    with pytest.raises(ValueError, match="name different tensors"):
        MaskedFinetune({"conv.weight": True}).initialize().on_train_begin(net)


def test_fine_tuning_runs_the_callback_inside_the_skorch_loop(small_mnist):
    model = mitigator(small_mnist, strategy="linear_probe").fit(small_mnist.X_train[:160], small_mnist.y_train[:160])
    callbacks = dict(model.estimator_.net_.callbacks_)
    assert isinstance(callbacks["masked_finetune"], MaskedFinetune)
    assert callbacks["masked_finetune"].mask == model.selection_mask_


def test_a_strategy_without_a_mask_cannot_be_made():
    class NoMask(MaskStrategy):
        pass

    with pytest.raises(TypeError, match="abstract"):
        NoMask()
