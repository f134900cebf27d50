import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from aimfair_plugin.estimators._masking import (
    gradient_gaps,
    mask_statistics,
    mean_gradients,
    resolve_top_k,
    select_tensors,
    tensor_gap,
    top_k_intersection,
    top_k_ratio,
)


def test_top_k_intersection_by_hand():
    domain = [0.1, 0.5, 0.2, 0.9, 0.3]  # ascending order: 0, 2, 4, 1, 3
    bias = [0.7, 0.8, 0.1, 0.6, 0.9]    # descending order: 4, 1, 0, 3, 2
    # k=3: {0, 2, 4} ∩ {4, 1, 0} = {0, 4}
    assert top_k_intersection(domain, bias, 3).tolist() == [True, False, False, False, True]
    # k=2: {0, 2} ∩ {4, 1} = {}
    assert not top_k_intersection(domain, bias, 2).any()
    assert top_k_intersection(domain, bias, 5).all()


def test_tensor_gaps_by_hand():
    a = torch.tensor([1.0, -2.0, 3.0, 0.0])
    b = torch.tensor([0.0, -2.0, 1.0, 2.0])
    assert tensor_gap(a, b, "abs_diff") == pytest.approx((1 + 0 + 2 + 2) / 4)
    cos = (0 + 4 + 3 + 0) / (np.sqrt(14) * np.sqrt(9))
    assert tensor_gap(a, b, "cosine") == pytest.approx(1 - cos)
    assert tensor_gap(a, torch.zeros(4), "cosine") == 1.0
    with pytest.raises(ValueError, match="criterion"):
        tensor_gap(a, b, "l2")


@pytest.mark.parametrize("top_k, expected", [(55, 55), (1, 1), (62, 62), (0.5, 31), (1.0, 62), (0.001, 1)])
def test_resolve_top_k(top_k, expected):
    assert resolve_top_k(top_k, 62) == expected


@pytest.mark.parametrize("top_k", [0, 63, -1, 1.5, 0.0, "55", True])
def test_resolve_top_k_out_of_range(top_k):
    with pytest.raises(ValueError, match="top_k"):
        resolve_top_k(top_k, 62)


def test_mean_gradients_equal_the_full_batch_gradient_and_leave_the_module_alone():
    torch.manual_seed(0)
    module = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2))
    module.eval()
    before = {k: v.clone() for k, v in module.state_dict().items()}
    X, y = torch.randn(10, 3), torch.randint(0, 2, (10,))
    # With batch_size = n the batch statistics are those of the full set, so the accumulated
    # gradient equals autograd's gradient of the mean loss on the whole set in train mode.
    grads = mean_gradients(module, TensorDataset(X, y), batch_size=10)
    reference = __import__("copy").deepcopy(module).train()
    nn.functional.cross_entropy(reference(X), y).backward()
    for name, p in reference.named_parameters():
        torch.testing.assert_close(grads[name], p.grad)
    for k, v in module.state_dict().items():
        torch.testing.assert_close(v, before[k])
    assert not module.training
    # A cap on batches uses only the first batches.
    capped = mean_gradients(nn.Sequential(nn.Linear(3, 2)), TensorDataset(X, y), batch_size=4, max_batches=1)
    assert set(capped) == {"0.weight", "0.bias"}


def test_mean_gradients_sample_weighting_across_uneven_batches():
    torch.manual_seed(0)
    module = nn.Linear(3, 2)
    X, y = torch.randn(7, 3), torch.randint(0, 2, (7,))
    grads = mean_gradients(module, TensorDataset(X, y), batch_size=3)
    module.zero_grad()
    nn.functional.cross_entropy(module(X), y).backward()
    torch.testing.assert_close(grads["weight"], module.weight.grad)


def test_gradient_gaps_and_statistics():
    module = nn.Sequential(nn.Linear(2, 2))
    g = lambda w, b: {"0.weight": torch.full((2, 2), w), "0.bias": torch.full((2,), b)}  # noqa: E731
    gaps = gradient_gaps(module, g(1.0, 0.0), g(0.5, 1.0), g(0.0, 4.0))
    assert gaps["tensor"].tolist() == ["0.weight", "0.bias"]
    assert gaps["domain_gap"].tolist() == [0.5, 1.0]
    assert gaps["bias_gap"].tolist() == [0.5, 3.0]
    stats = mask_statistics(gaps, np.array([True, False]), 1)
    assert stats["n_selected"] == 1 and stats["min_possible_intersection"] == 0


def test_normalized_gaps_by_hand():
    """Each tensor's abs_diff gaps divided by its mean |g| over R, S1 and S2; a zero-gradient tensor gets 0."""
    module = nn.Sequential(nn.Linear(2, 1))  # 0.weight (1, 2), 0.bias (1,)
    g_r = {"0.weight": torch.tensor([[2.0, -2.0]]), "0.bias": torch.zeros(1)}
    g_s1 = {"0.weight": torch.tensor([[1.0, -1.0]]), "0.bias": torch.zeros(1)}
    g_s2 = {"0.weight": torch.tensor([[0.0, 0.0]]), "0.bias": torch.zeros(1)}
    gaps = gradient_gaps(module, g_r, g_s1, g_s2, criterion="normalized").set_index("tensor")
    scale = (2 + 1 + 0) / 3
    assert gaps.loc["0.weight", "grad_scale"] == pytest.approx(scale)
    assert gaps.loc["0.weight", "domain_gap"] == pytest.approx(1.0 / scale)
    assert gaps.loc["0.weight", "bias_gap"] == pytest.approx(1.0 / scale)
    assert gaps.loc["0.bias", ["domain_gap", "bias_gap"]].tolist() == [0.0, 0.0]
    # scaling one tensor's gradients by 1000 leaves its normalized gaps unchanged
    big = {k: {n: v * (1000 if n == "0.weight" else 1) for n, v in g.items()} for k, g in
           (("r", g_r), ("s1", g_s1), ("s2", g_s2))}
    again = gradient_gaps(module, big["r"], big["s1"], big["s2"], criterion="normalized").set_index("tensor")
    assert again.loc["0.weight", "domain_gap"] == pytest.approx(gaps.loc["0.weight", "domain_gap"])
    raw = gradient_gaps(module, big["r"], big["s1"], big["s2"]).set_index("tensor")
    assert raw.loc["0.weight", "domain_gap"] == pytest.approx(1000.0)
    with pytest.raises(ValueError, match="criterion"):
        gradient_gaps(module, g_r, g_s1, g_s2, criterion="l2")


def test_ratio_selection_by_hand():
    domain = [0.1, 0.5, 0.2, 0.0, 0.4, 0.0]
    bias = [0.3, 0.5, 0.8, 0.2, 0.4, 0.0]
    # ratios: 3, 1, 4, inf (0.2 / 0), 1, 0/0 (last); ties keep tensor order
    assert np.flatnonzero(top_k_ratio(domain, bias, 2)).tolist() == [2, 3]
    assert np.flatnonzero(top_k_ratio(domain, bias, 3)).tolist() == [0, 2, 3]
    assert np.flatnonzero(top_k_ratio(domain, bias, 4)).tolist() == [0, 1, 2, 3]
    assert top_k_ratio(domain, bias, 6).all()
    # the ratio is unchanged when both gaps of a tensor share a factor
    scaled = np.array([10, 1, 1, 1, 1, 1])
    assert (top_k_ratio(np.array(domain) * scaled, np.array(bias) * scaled, 3) == top_k_ratio(domain, bias, 3)).all()
    assert (select_tensors(domain, bias, 3, "ratio") == top_k_ratio(domain, bias, 3)).all()
    assert (select_tensors(domain, bias, 3) == top_k_intersection(domain, bias, 3)).all()
    with pytest.raises(ValueError, match="selection"):
        select_tensors(domain, bias, 3, "union")
