"""Baselines: algorithm pieces against hand-computed values, and the estimator contract."""

import pickle

import numpy as np
import pytest
import sklearn
import torch
from sklearn.base import clone
from sklearn.pipeline import Pipeline

from aimfair_plugin.estimators import (
    AFRClassifier,
    CVaRDROClassifier,
    GroupDROClassifier,
    ImageClassifier,
    InfluenceReweightingClassifier,
    JTTClassifier,
    LfFClassifier,
)
from aimfair_plugin.estimators._afr import afr_weights
from aimfair_plugin.estimators._dro import cvar_weights
from aimfair_plugin.estimators._fairif import lissa, solve_weights

TINY = dict(width=4, max_epochs=1, lr=0.05, batch_size=64, augment=False, random_state=0)


def test_cvar_weights_match_hand_computed_values():
    losses = torch.tensor([1.0, 4.0, 2.0, 3.0])
    np.testing.assert_allclose(cvar_weights(losses, 0.5), [0, 0.5, 0, 0.5])
    # alpha = 0.3: all of the worst sample's mass 0.25 and 0.05 of the next (the fractional boundary sample)
    q = cvar_weights(losses, 0.3)
    np.testing.assert_allclose(q, [0, 0.25 / 0.3, 0, 0.05 / 0.3], rtol=1e-6)
    np.testing.assert_allclose(float((q * losses).sum()), (4 * 0.25 + 3 * 0.05) / 0.3, rtol=1e-6)
    np.testing.assert_allclose(cvar_weights(losses, 1.0), [0.25] * 4)
    # sample masses 1, 1, 2, 0: worst-first 4 (0.25), 3 (0), 2 (0.5 of which 0.25 fits)
    q = cvar_weights(losses, 0.5, p=torch.tensor([1.0, 1.0, 2.0, 0.0]))
    np.testing.assert_allclose(q, [0, 0.5, 0.5, 0])


def test_cvar_with_alpha_one_is_erm(small_mnist):
    X, y = small_mnist.X_train, small_mnist.y_train
    erm = ImageClassifier(**TINY).fit(X, y)
    cvar = CVaRDROClassifier(alpha=1.0, **TINY).fit(X, y)
    for a, b in zip(erm.net_.module_.parameters(), cvar.net_.module_.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_cvar_small_alpha_changes_training(small_mnist):
    X, y = small_mnist.X_train, small_mnist.y_train
    erm = ImageClassifier(**TINY).fit(X, y)
    cvar = CVaRDROClassifier(alpha=0.1, **TINY).fit(X, y)
    assert not torch.allclose(erm.net_.module_.fc.weight, cvar.net_.module_.fc.weight)


def test_jtt_error_set_and_upweights(small_mnist, monkeypatch):
    X, y = small_mnist.X_train, small_mnist.y_train
    seen = {}
    fit_net = JTTClassifier._fit_net

    def spy(self, data, **kwargs):
        seen["weights"] = data.sample_weight
        return fit_net(self, data, **kwargs)

    monkeypatch.setattr(JTTClassifier, "_fit_net", spy)
    jtt = JTTClassifier(identification_epochs=1, upweight=7, **TINY).fit(X, y)
    wrong = np.flatnonzero(jtt.stage_one_estimator_.predict(X) != y)
    np.testing.assert_array_equal(jtt.error_set_, wrong)
    assert 0 < len(wrong) < len(y)
    expected = np.ones(len(y), int)
    expected[wrong] = 7
    np.testing.assert_array_equal(jtt.upweights_, expected)
    # stage two weights the loss 7:1 (rescaled to mean 1) and keeps an epoch n samples long: no copies
    np.testing.assert_allclose(seen["weights"], expected / expected.mean(), rtol=1e-6)
    assert len(jtt.net_.history[-1, "batches"]) == int(np.ceil(len(y) / TINY["batch_size"]))
    assert jtt.stage_one_estimator_.max_epochs == 1 and jtt.stage_one_estimator_.width == TINY["width"]


def _logistic_problem(seed=0, n=60, d=3):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g)
    y = (X[:, 0] + 0.5 * torch.randn(n, generator=g) > 0).float()
    w = torch.randn(d, generator=g) * 0.3

    def mean_loss(weights, rows=slice(None)):
        return torch.nn.functional.binary_cross_entropy_with_logits(X[rows] @ weights, y[rows])

    return X, y, w, mean_loss


def test_lissa_matches_the_exact_inverse_hessian_product():
    X, y, w, mean_loss = _logistic_problem()
    H = torch.autograd.functional.hessian(mean_loss, w)
    v = torch.tensor([1.0, -2.0, 0.5])
    damping = 0.05
    exact = torch.linalg.solve(H + damping * torch.eye(3), v)

    def hvp(rows, vector):
        return torch.autograd.functional.hvp(lambda weights: mean_loss(weights, rows), w, vector)[1]

    scale = 1.2 * float(torch.linalg.eigvalsh(H).max() + damping)
    full = lissa(hvp, v, [slice(None)], scale=scale, damping=damping, iterations=3000)
    torch.testing.assert_close(full, exact, rtol=1e-4, atol=1e-5)
    # minibatches: an unbiased stochastic estimate that averages close to the exact product
    batches = [slice(i, i + 20) for i in range(0, 60, 20)]
    scale = 2.0 * float(max(torch.linalg.eigvalsh(torch.autograd.functional.hessian(
        lambda weights, r=r: mean_loss(weights, r), w)).max() for r in batches) + damping)
    stochastic = lissa(hvp, v, batches, scale=scale, damping=damping, iterations=3000, repeats=8, random_state=0)
    assert float((stochastic - exact).norm() / exact.norm()) < 0.1


def test_solve_weights_closes_the_gaps_with_the_smallest_weights():
    rng = np.random.RandomState(0)
    influence = rng.randn(2, 30)
    gaps = np.array([0.3, -0.2])
    eps = solve_weights(gaps, influence, reg_lambda=0.0)
    np.testing.assert_allclose(gaps + influence @ eps, 0, atol=1e-6)
    minimum_norm = -np.linalg.pinv(influence) @ gaps
    np.testing.assert_allclose(eps, minimum_norm, atol=1e-6)
    # a penalty shrinks the weights and leaves part of the gap
    shrunk = solve_weights(gaps, influence, reg_lambda=1.0)
    assert np.linalg.norm(shrunk) < np.linalg.norm(eps)
    assert 0 < np.linalg.norm(gaps + influence @ shrunk) < np.linalg.norm(gaps)
    objective = lambda e: np.sum((gaps + influence @ e) ** 2) + np.linalg.norm(e)  # noqa: E731
    for _ in range(20):
        assert objective(shrunk) <= objective(shrunk + 1e-3 * rng.randn(30)) + 1e-12


def _tabular(seed=0, n=600):
    """Group 1 is the majority; its positives are easy, group 0's are shifted: unequal TPR/TNR."""
    rng = np.random.RandomState(seed)
    s = (rng.rand(n) < 0.75).astype(int)
    y = (rng.rand(n) < 0.5).astype(int)
    X = rng.randn(n, 4).astype(np.float32)
    X[:, 0] += 1.5 * (2 * y - 1) * np.where(s == 1, 1.0, 0.3)
    X[:, 1] += s
    return X, y, s


def test_fairif_reweights_to_close_validation_gaps_on_tabular_data():
    X, y, s = _tabular(0)
    Xv, yv, sv = _tabular(1, 300)
    params = dict(arch="logistic", max_epochs=20, lr=0.1, batch_size=64, weight_decay=0.0, random_state=0)
    # uncapped: the exact Eq. 14 solution (the default cap of 5 trades some of the predicted gap closing for
    # a stable stage two)
    model = InfluenceReweightingClassifier(max_weight=None, **params).fit(
        X, y, X_val=Xv, y_val=yv, sensitive_features_val=sv)
    w = model.sample_weights_
    assert w.shape == (len(y),) and (w >= 0).all() and abs(w.mean() - 1) < 0.5 and w.std() > 0
    before = np.abs(list(model.validation_gaps_.values())).sum()
    after = np.abs(list(model.predicted_gaps_.values())).sum()
    assert before > 0.05 and after < 0.5 * before
    assert model.stage_one_estimator_.arch == "logistic" and model.predict(Xv).shape == (300,)


def test_fairif_weight_cap_stage_two_lr_and_stage_one_cache(tmp_path, monkeypatch):
    X, y, s = _tabular(0)
    Xv, yv, sv = _tabular(1, 300)
    params = dict(arch="logistic", max_epochs=20, lr=0.1, batch_size=64, weight_decay=0.0, random_state=0)
    fit = dict(X_val=Xv, y_val=yv, sensitive_features_val=sv)
    free = InfluenceReweightingClassifier(max_weight=None, **params).fit(X, y, **fit)
    assert free.sample_weights_.max() > 1.5
    capped = InfluenceReweightingClassifier(max_weight=1.5, stage_two_lr=0.01, memory=str(tmp_path), **params)
    capped.fit(X, y, **fit)
    # the cap clips exactly the weights above it and leaves the others as they were
    np.testing.assert_allclose(capped.sample_weights_, np.minimum(free.sample_weights_, 1.5), rtol=1e-6)
    assert capped.net_.lr == 0.01 and capped.stage_one_estimator_.net_.lr == 0.1
    # a second fit with other stage-two settings reads stage one from the cache: no ERM training
    calls = []
    original = ImageClassifier.fit
    monkeypatch.setattr(ImageClassifier, "fit", lambda self, *a, **k: calls.append(1) or original(self, *a, **k))
    again = InfluenceReweightingClassifier(max_weight=None, stage_two_lr=0.05, memory=str(tmp_path), **params).fit(
        X, y, **fit)
    assert calls == [] and again.net_.lr == 0.05
    np.testing.assert_allclose(again.sample_weights_, free.sample_weights_, rtol=1e-6)
    for bad in ({"max_weight": 0.5}, {"stage_two_lr": 0.0}, {"memory": 3}):
        with pytest.raises(ValueError):
            InfluenceReweightingClassifier(**bad, **params).fit(X, y, **fit)


def test_adam_optimiser_option(small_mnist):
    X, y = small_mnist.X_train, small_mnist.y_train
    model = LfFClassifier(optimizer="adam", **{**TINY, "lr": 0.001}).fit(X, y)
    assert isinstance(model.net_.optimizer_, torch.optim.Adam)
    assert isinstance(ImageClassifier(**TINY).fit(X[:64], y[:64]).net_.optimizer_, torch.optim.SGD)
    with pytest.raises(ValueError, match="optimizer"):
        ImageClassifier(optimizer="rmsprop", **TINY).fit(X, y)


def test_fairif_metadata_routing_in_a_pipeline():
    X, y, s = _tabular(0, 200)
    Xv, yv, sv = _tabular(1, 100)
    with sklearn.config_context(enable_metadata_routing=True):
        clf = InfluenceReweightingClassifier(arch="logistic", max_epochs=2, random_state=0).set_fit_request(
            X_val=True, y_val=True, sensitive_features_val=True)
        pipe = Pipeline([("fairif", clf)]).fit(X, y, X_val=Xv, y_val=yv, sensitive_features_val=sv)
    assert pipe.named_steps["fairif"].sample_weights_.shape == (200,)


def test_fairif_needs_a_usable_validation_set(small_mnist):
    X, y = small_mnist.X_train, small_mnist.y_train
    with pytest.raises(ValueError, match="needs X_val, y_val and sensitive_features_val"):
        InfluenceReweightingClassifier(**TINY).fit(X, y)
    with pytest.raises(ValueError, match="exactly two groups"):
        InfluenceReweightingClassifier(**TINY).fit(X, y, X_val=X[:20], y_val=y[:20], sensitive_features_val=np.zeros(20))
    only_one_class = y == 1
    with pytest.raises(ValueError, match="no sample with y=0"):
        InfluenceReweightingClassifier(**TINY).fit(
            X, y, X_val=X[only_one_class], y_val=y[only_one_class],
            sensitive_features_val=small_mnist.s_train[only_one_class])


def test_group_dro_oracle_uses_training_groups(small_mnist):
    X, y, s = small_mnist.X_train, small_mnist.y_train, small_mnist.s_train
    model = GroupDROClassifier(step_size=1.0, **TINY).fit(X, y, sensitive_features=s)
    assert [tuple(g) for g in model.groups_] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert model.group_weights_.sum() == pytest.approx(1.0) and model.group_weights_.std() > 0
    assert GroupDROClassifier.uses_training_group_labels
    with pytest.raises(TypeError):
        GroupDROClassifier(**TINY).fit(X, y)


def test_lff_trains_a_biased_and_a_debiased_network(small_mnist):
    X, y = small_mnist.X_train, small_mnist.y_train
    model = LfFClassifier(**TINY).fit(X, y)
    module = model.net_.module_
    assert set(dict(module.named_children())) == {"debiased", "biased"}
    assert (model.net_.loss_ema_ > 0).all()  # every sample's loss average was updated
    module.eval()
    torch.testing.assert_close(module(torch.from_numpy(X[:4])), module.debiased(torch.from_numpy(X[:4])))


BASELINES = [
    (CVaRDROClassifier, {"alpha": 0.5}, {"alpha": 0.0}),
    (JTTClassifier, {"upweight": 3}, {"upweight": 0}),
    (LfFClassifier, {"gce_q": 0.5}, {"gce_q": 2.0}),
    (InfluenceReweightingClassifier, {"lissa_iterations": 5}, {"influence_layers": "middle"}),
    (GroupDROClassifier, {"step_size": 0.1}, {"step_size": -1.0}),
    (AFRClassifier, {"gamma": 2.0, "reg_lambda": 0.1, "memory": None}, {"validation_fraction": 1.5}),
]


def _fit(model, data):
    X, y, s = data.X_train[:160], data.y_train[:160], data.s_train[:160]
    if isinstance(model, InfluenceReweightingClassifier):
        return model.fit(X, y, X_val=data.X_test[:80], y_val=data.y_test[:80], sensitive_features_val=data.s_test[:80])
    if isinstance(model, GroupDROClassifier):
        return model.fit(X, y, sensitive_features=s)
    return model.fit(X, y)


@pytest.mark.parametrize("cls, own, bad", BASELINES, ids=lambda v: getattr(v, "__name__", ""))
def test_baselines_share_the_backbone_parameters_clone_pickle_and_reproduce(cls, own, bad, small_mnist):
    model = cls(**own, **TINY)
    params = model.get_params()
    assert set(ImageClassifier().get_params()) <= set(params) and all(params[k] == v for k, v in own.items())
    twin = clone(model)
    assert twin.get_params() == params
    first = _fit(model, small_mnist).predict(small_mnist.X_test)
    again = _fit(clone(model), small_mnist).predict(small_mnist.X_test)
    np.testing.assert_array_equal(first, again)
    restored = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(restored.predict(small_mnist.X_test), first)
    with pytest.raises(ValueError):
        _fit(cls(**{**own, **bad}, **TINY), small_mnist)
    with pytest.raises(ValueError):
        _fit(cls(**own, **{**TINY, "width": 0}), small_mnist)
    with pytest.raises(TypeError):
        cls(not_a_parameter=1)


# -- AFR ---------------------------------------------------------------------------------------------------


def test_afr_weights_match_hand_computed_values():
    p_true, y = np.array([0.9, 0.2, 0.5, 0.6]), np.array([0, 0, 1, 1])
    e = np.exp(-2 * p_true)  # gamma = 2
    expected = np.array([e[0] / (e[0] + e[1]), e[1] / (e[0] + e[1]), e[2] / (e[2] + e[3]), e[3] / (e[2] + e[3])]) / 2
    np.testing.assert_allclose(afr_weights(p_true, y, 2.0), expected)
    np.testing.assert_allclose(afr_weights(p_true, y, 0.0), [0.25] * 4)  # gamma 0: class-balanced uniform
    # three of class 0, one of class 1: each class still carries half
    w = afr_weights([0.1, 0.1, 0.1, 0.9], [0, 0, 0, 1], 5.0)
    np.testing.assert_allclose(w, [1 / 6, 1 / 6, 1 / 6, 0.5])


def test_afr_stage_one_never_sees_the_held_out_part_and_only_the_last_layer_changes(small_mnist, monkeypatch):
    X, y = small_mnist.X_train[:200], small_mnist.y_train[:200]
    seen = []
    fit = ImageClassifier.fit

    def spy(self, X_fit, y_fit, sample_weight=None):
        seen.append(X_fit)
        return fit(self, X_fit, y_fit, sample_weight=sample_weight)

    monkeypatch.setattr(ImageClassifier, "fit", spy)
    model = AFRClassifier(gamma=4.0, memory=None, **TINY).fit(X, y)
    assert len(seen) == 1 and len(seen[0]) == 160 and len(model.holdout_indices_) == 40
    held = {X[i].tobytes() for i in model.holdout_indices_}
    assert not held & {x.tobytes() for x in seen[0]}
    # stratified hold-out; weights sum to 1 with each class carrying half
    assert np.isclose(model.afr_weights_.sum(), 1.0)
    for c in (0, 1):
        assert np.isclose(model.afr_weights_[y[model.holdout_indices_] == c].sum(), 0.5)
    # the ERM model gets the weights from its probability of the true class: lower probability, larger weight
    probs = model.stage_one_estimator_.predict_proba(X[model.holdout_indices_])
    p_true = probs[np.arange(40), y[model.holdout_indices_]]
    np.testing.assert_allclose(model.afr_weights_, afr_weights(p_true, y[model.holdout_indices_], 4.0), rtol=1e-4)
    # only fc differs from the ERM model
    erm = dict(model.stage_one_estimator_.net_.module_.named_parameters())
    for name, param in model.net_.module_.named_parameters():
        assert torch.equal(param, erm[name]) != name.startswith("fc."), name
