"""Auto-RGN: per-tensor learning rates from relative gradient norms, as optimisers and as a mitigator strategy."""

import numpy as np
import pytest
import torch
from sklearn.frozen import FrozenEstimator

from aimfair_plugin.estimators import AutoRGNAdam, AutoRGNSGD, ImageClassifier, SelectiveFinetuneMitigator
from aimfair_plugin.estimators._auto_rgn import auto_rgn_factors
from aimfair_plugin.synth import ArrayProvider


def tiny_model():
    """Two tensors with known values: weight [[3, 4]] (norm 5) and bias [2] (norm 2)."""
    layer = torch.nn.Linear(2, 1)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[3.0, 4.0]]))
        layer.bias.copy_(torch.tensor([2.0]))
    return layer


def set_grads(layer):
    layer.weight.grad = torch.tensor([[0.6, 0.8]])  # ||g|| = 1 -> RGN 1 / 5 = 0.2
    layer.bias.grad = torch.tensor([0.8])  # RGN 0.8 / 2 = 0.4 (the largest)


def test_sgd_step_scales_each_tensor_by_its_relative_gradient_norm_and_keeps_the_base_rate():
    layer = tiny_model()
    optimizer = AutoRGNSGD(layer.parameters(), lr=0.1)
    assert len(optimizer.param_groups) == 2  # one group per tensor
    set_grads(layer)
    optimizer.step()
    # factors: 0.2 / 0.4 = 0.5 for the weight, 1 for the bias
    assert optimizer.last_factors_ == pytest.approx([0.5, 1.0])
    torch.testing.assert_close(layer.weight.detach(), torch.tensor([[3 - 0.1 * 0.5 * 0.6, 4 - 0.1 * 0.5 * 0.8]]))
    torch.testing.assert_close(layer.bias.detach(), torch.tensor([2 - 0.1 * 1.0 * 0.8]))
    assert [g["lr"] for g in optimizer.param_groups] == [0.1, 0.1]
    assert [g["lr"] for g in optimizer.state_dict()["param_groups"]] == [0.1, 0.1]


def test_momentum_weight_decay_schedulers_and_adam_see_the_base_rate():
    layer, plain = tiny_model(), tiny_model()
    optimizer = AutoRGNSGD(layer.parameters(), lr=0.1, momentum=0.9, weight_decay=0.01)
    # the same step as plain SGD whose per-tensor groups have the scaled rates
    reference = torch.optim.SGD([{"params": [plain.weight], "lr": 0.05}, {"params": [plain.bias], "lr": 0.1}],
                                momentum=0.9, weight_decay=0.01)
    set_grads(layer)
    set_grads(plain)
    optimizer.step()
    reference.step()
    torch.testing.assert_close(layer.weight.detach(), plain.weight.detach())
    torch.testing.assert_close(layer.bias.detach(), plain.bias.detach())
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[1], gamma=0.1)
    scheduler.step()
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([0.01, 0.01])
    layer = tiny_model()
    adam = AutoRGNAdam(layer.parameters(), lr=0.001)
    set_grads(layer)
    adam.step()
    assert adam.last_factors_ == pytest.approx([0.5, 1.0]) and adam.param_groups[0]["lr"] == 0.001
    assert adam.n_steps_ == 1 and adam.mean_factors_ == pytest.approx([0.5, 1.0])


def test_factors_for_missing_gradients_zero_tensors_and_all_zero_gradients():
    a, b, c = (torch.ones(2, requires_grad=True), torch.zeros(2, requires_grad=True),
               torch.ones(3, requires_grad=True))
    a.grad, b.grad = torch.full((2,), 0.5), torch.ones(2)  # c has no gradient; b is zero with a gradient
    assert auto_rgn_factors([a, b, c]) == [1.0, 1.0, 0.0]
    a.grad = torch.zeros(2)
    b.grad = torch.zeros(2)
    assert auto_rgn_factors([a, b]) == [0.0, 0.0]


def test_mitigator_auto_rgn_tunes_every_tensor_at_its_own_rate(small_mnist):
    d = small_mnist
    provider = ArrayProvider(1.0 - d.X_test, d.y_test, d.s_test)
    fast = dict(width=8, max_epochs=1, lr=0.05, batch_size=64, augment=False)
    pretrained = ImageClassifier(random_state=0, **fast).fit(d.X_train, d.y_train)
    common = dict(estimator=FrozenEstimator(pretrained), finetune_epochs=1, finetune_lr=0.05, finetune_batch_size=64,
                  random_state=0)
    rgn = SelectiveFinetuneMitigator(provider, strategy="auto_rgn", **common).fit(d.X_train, d.y_train)
    full = SelectiveFinetuneMitigator(provider, strategy="full", **common).fit(d.X_train, d.y_train)
    assert rgn.n_selected_ == full.n_selected_ == len(rgn.gradient_gaps_)
    factors = rgn.gradient_gaps_["lr_factor"].to_numpy()
    assert ((factors > 0) & (factors <= 1)).all() and factors.min() < 0.5  # some tensors move much slower
    assert isinstance(rgn.estimator_.net_.optimizer_, AutoRGNSGD)
    assert {g["lr"] for g in rgn.estimator_.net_.optimizer_.param_groups} == {0.05}
    before = dict(pretrained.net_.module_.named_parameters())
    moved = {name: float((p - before[name]).norm()) for name, p in rgn.estimator_.net_.module_.named_parameters()}
    moved_full = {name: float((p - before[name]).norm()) for name, p in full.estimator_.net_.module_.named_parameters()}
    assert all(moved[n] > 0 for n in moved) and sum(moved.values()) < sum(moved_full.values())
    assert "lr_factor" not in full.gradient_gaps_
    np.testing.assert_array_equal(rgn.predict(d.X_test).shape, (len(d.X_test),))
