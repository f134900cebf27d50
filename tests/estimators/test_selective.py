import copy
import pickle

import numpy as np
import pandas as pd
import pytest
import sklearn
import torch
from sklearn.base import clone
from sklearn.frozen import FrozenEstimator
from sklearn.model_selection import GridSearchCV

from aimfair_plugin.estimators import (
    FreezeBlockMask,
    ImageClassifier,
    RandomMask,
    SelectiveFinetuneMitigator,
    SelectiveMask,
    UpdateBlockMask,
    _selective,
)
from aimfair_plugin.estimators._cache import PROCESS_CACHE
from aimfair_plugin.metrics import fairness_scorer
from aimfair_plugin.synth import ArrayProvider, SyntheticDataProvider, balanced_group_counts, biased_group_counts

FAST = dict(width=8, max_epochs=2, lr=0.05, batch_size=64, lr_milestones=(1,), lr_gamma=0.1, augment=False)


@pytest.fixture(scope="module")
def setup(small_mnist):
    d = small_mnist
    # Stand-in synthetic data: the held-out balanced split with inverted intensities.
    provider = ArrayProvider(1.0 - d.X_test, d.y_test, d.s_test)
    pretrained = ImageClassifier(random_state=0, **FAST).fit(d.X_train, d.y_train)
    return d, provider, pretrained


def mitigator(provider, estimator, **kw):
    params = dict(finetune_epochs=2, finetune_lr=0.05, finetune_batch_size=64, random_state=0)
    return SelectiveFinetuneMitigator(provider, estimator=estimator, **{**params, **kw})


def test_group_count_helpers():
    assert balanced_group_counts(10) == {(0, 0): 3, (0, 1): 3, (1, 0): 2, (1, 1): 2}
    assert biased_group_counts(1000, 0.9) == {(0, 0): 50, (0, 1): 450, (1, 0): 450, (1, 1): 50}
    with pytest.raises(ValueError, match="bias_ratio"):
        biased_group_counts(100, 1.0)


def test_frozen_tensors_are_unchanged_bit_for_bit(setup):
    d, provider, pretrained = setup
    before = copy.deepcopy(pretrained.net_.module_.state_dict())
    # batchnorm="finetune": the returned model keeps the statistics fine-tuning left (the default "real"
    # re-estimates every layer's afterwards; tested in test_guards.py).
    m = mitigator(provider, FrozenEstimator(pretrained), strategy=SelectiveMask(criterion="abs_diff"),
                  batchnorm="finetune").fit(d.X_train, d.y_train)
    # The paper's abs_diff criterion with k=55 of 62 gives at least 2k - n = 48 tensors.
    assert m.n_selected_ >= 48 and m.mask_report_["min_possible_intersection"] == 48
    after = m.estimator_.net_.module_.state_dict()
    changed = {name for name, _ in m.estimator_.net_.module_.named_parameters() if not torch.equal(before[name], after[name])}
    selected = {name for name, keep in m.selection_mask_.items() if keep}
    assert changed and changed <= selected
    assert set(m.selection_mask_) - selected  # something was frozen
    # BatchNorm layers with both affine tensors frozen keep their running statistics.
    frozen_bn = [
        name for name, mod in m.estimator_.net_.module_.named_modules()
        if isinstance(mod, torch.nn.BatchNorm2d)
        and not (m.selection_mask_[name + ".weight"] or m.selection_mask_[name + ".bias"])
    ]
    assert frozen_bn
    for name in frozen_bn:
        assert torch.equal(before[name + ".running_mean"], after[name + ".running_mean"])
    # The prefit estimator itself is never modified.
    for name, value in pretrained.net_.module_.state_dict().items():
        assert torch.equal(value, before[name])
    assert all(p.requires_grad for p in m.estimator_.net_.module_.parameters())


def test_bn_statistics_drift_when_not_frozen(setup):
    d, provider, pretrained = setup
    m = mitigator(provider, FrozenEstimator(pretrained), strategy="linear_probe",
                  batchnorm="train").fit(d.X_train, d.y_train)
    before, after = pretrained.net_.module_.state_dict(), m.estimator_.net_.module_.state_dict()
    assert not torch.equal(before["bn1.running_mean"], after["bn1.running_mean"])
    assert torch.equal(before["layer1.0.conv1.weight"], after["layer1.0.conv1.weight"])


@pytest.mark.parametrize(
    "strategy, selected_blocks",
    [
        ("full", {"stem", "layer1", "layer2", "layer3", "layer4", "fc"}),
        ("linear_probe", {"fc"}),
        (UpdateBlockMask("layer2"), {"layer2"}),
        (FreezeBlockMask("layer1"), {"stem", "layer2", "layer3", "layer4", "fc"}),
    ],
)
def test_comparison_strategies(setup, strategy, selected_blocks):
    d, provider, pretrained = setup
    m = mitigator(provider, FrozenEstimator(pretrained), strategy=strategy).fit(d.X_train, d.y_train)
    gaps = m.gradient_gaps_
    assert set(gaps.loc[gaps.selected, "block"]) == selected_blocks
    assert set(gaps.loc[~gaps.selected, "block"]).isdisjoint(selected_blocks)
    assert gaps["domain_gap"].isna().all()


def test_random_strategy_uses_top_k_tensors_and_is_seeded(setup):
    d, provider, pretrained = setup
    a = mitigator(provider, FrozenEstimator(pretrained), strategy=RandomMask(top_k=0.25)).fit(d.X_train, d.y_train)
    b = mitigator(provider, FrozenEstimator(pretrained), strategy=RandomMask(top_k=0.25)).fit(d.X_train, d.y_train)
    assert a.n_selected_ == round(0.25 * 62)
    assert a.selection_mask_ == b.selection_mask_
    np.testing.assert_array_equal(a.predict_proba(d.X_test), b.predict_proba(d.X_test))


def test_fit_pretrains_and_predicts_and_pickles(setup):
    d, provider, _ = setup
    m = mitigator(provider, ImageClassifier(random_state=0, **FAST), strategy=SelectiveMask(criterion="cosine"),
                  memory=None)
    m.fit(d.X_train, d.y_train)
    assert hasattr(m.stage_one_estimator_, "net_") and not m.pretrain_cache_hit_
    assert list(m.gradient_gaps_.columns) == ["tensor", "block", "numel", "grad_scale", "domain_gap", "bias_gap", "selected"]
    assert len(m.gradient_gaps_) == 62 and m.gradient_gaps_["domain_gap"].between(0, 2).all()
    assert m.predict(d.X_test).shape == (200,) and len(m.history_) == 2
    restored = pickle.loads(pickle.dumps(m))
    np.testing.assert_array_equal(restored.predict_proba(d.X_test), m.predict_proba(d.X_test))


class ShortProvider(SyntheticDataProvider):
    def __init__(self, inner, drop_cell=None, bad_shape=False):
        self.inner, self.drop_cell, self.bad_shape = inner, drop_cell, bad_shape

    def sample(self, group_counts, *, image_shape=None, random_state=None):
        X, y, s = self.inner.sample(group_counts, image_shape=image_shape, random_state=random_state)
        if self.bad_shape:
            return X[:, :, :8, :8], y, s
        keep = ~((y == self.drop_cell[0]) & (s == self.drop_cell[1]))
        return X[keep], y[keep], s[keep]


@pytest.mark.parametrize(
    "make, X_change, y_change, message",
    [
        (lambda p: ShortProvider(p, drop_cell=(1, 1)), None, None, r"cell \(y=1, s=1\)"),
        (lambda p: ShortProvider(p, bad_shape=True), None, None, "shape"),
        # a third class the binary provider has no image of
        (lambda p: p, None, lambda y: np.where(y == 1, 2, y) + (np.arange(len(y)) == 0),
         r"no image of the cells \(class index, group index\) \[\(2, 0\), \(2, 1\)\]"),
        (lambda p: p, lambda X: X[:-1], None, "one label per image"),
        (lambda p: p, lambda X: np.where(np.arange(len(X))[:, None, None, None] == 0, np.nan, X), None, "NaN"),
        (lambda p: object(), None, None, "sample"),
    ],
)
def test_bad_input_fails_before_training(setup, monkeypatch, make, X_change, y_change, message):
    d, provider, _ = setup
    monkeypatch.setattr(ImageClassifier, "fit", lambda *a, **k: pytest.fail("trained on bad input"))
    X = d.X_train if X_change is None else X_change(d.X_train)
    y = d.y_train if y_change is None else y_change(d.y_train)
    with pytest.raises(ValueError, match=message):
        mitigator(make(provider), ImageClassifier(random_state=0, **FAST)).fit(X, y)


@pytest.mark.parametrize("kw, message", [({"strategy": SelectiveMask(top_k=63)}, "top_k"),
                                         ({"strategy": SelectiveMask(top_k=0.0)}, "top_k"),
                                         ({"strategy": "lora"}, "strategy"),
                                         ({"strategy": "update_block"}, "UpdateBlockMask"),
                                         ({"strategy": UpdateBlockMask("layer9")}, "block"),
                                         ({"strategy": SelectiveMask(criterion="l1")}, "criterion"),
                                         ({"strategy": SelectiveMask(bias_ratio=1.0)}, "bias_ratio"),
                                         ({"batchnorm": "frozen"}, "batchnorm")])
def test_bad_parameters(setup, monkeypatch, kw, message):
    d, provider, _ = setup
    monkeypatch.setattr(ImageClassifier, "fit", lambda *a, **k: pytest.fail("trained with bad parameters"))
    with pytest.raises(ValueError, match=message):
        mitigator(provider, ImageClassifier(random_state=0, **FAST), **kw).fit(d.X_train, d.y_train)


def test_grid_search_over_k_pretrains_once_per_fold(setup, monkeypatch):
    d, provider, _ = setup
    PROCESS_CACHE.clear()
    calls = []
    original_fit = ImageClassifier.fit

    def counting_fit(self, X, y, sample_weight=None):
        calls.append(len(X))
        return original_fit(self, X, y, sample_weight)

    monkeypatch.setattr(ImageClassifier, "fit", counting_fit)
    gradient_sets = []
    original_gradients = _selective.mean_gradients
    monkeypatch.setattr(_selective, "mean_gradients",
                        lambda module, dataset, **kw: gradient_sets.append(len(dataset)) or original_gradients(
                            module, dataset, **kw))
    search = GridSearchCV(
        mitigator(provider, ImageClassifier(random_state=0, **FAST), strategy=SelectiveMask(), finetune_epochs=1),
        {"strategy__top_k": [50, 55, 60]},
        scoring=fairness_scorer("WST"),
        cv=2,
        refit=False,
    )
    with sklearn.config_context(enable_metadata_routing=True):
        search.fit(d.X_train, d.y_train, sensitive_features=d.s_train)
    # 3 candidates x 2 folds = 6 fits, but only one pre-training per fold, and one gradient pass per fold on each
    # of R, S1 and S2 (the candidates of a fold draw the same synthetic sets; only their masks differ).
    assert len(calls) == 2
    assert len(gradient_sets) == 2 * 3
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()


def test_gradients_are_reused_only_for_the_same_pretraining_and_the_same_draws(setup, monkeypatch):
    d, provider, _ = setup
    PROCESS_CACHE.clear()
    passes = []
    original = _selective.mean_gradients
    monkeypatch.setattr(_selective, "mean_gradients",
                        lambda module, dataset, **kw: passes.append(len(dataset)) or original(module, dataset, **kw))

    def fit(**kw):
        passes.clear()
        return mitigator(provider, ImageClassifier(random_state=0, **FAST), finetune_epochs=0, **kw).fit(
            d.X_train, d.y_train)

    first = fit()
    assert len(passes) == 3  # R, S1, S2
    again = fit(strategy=SelectiveMask(criterion="cosine"))  # another criterion, the same draws
    assert passes == []
    assert not again.gradient_gaps_["bias_gap"].equals(first.gradient_gaps_["bias_gap"])
    pd.testing.assert_frame_equal(fit().gradient_gaps_, first.gradient_gaps_)  # bit for bit from the cache
    other_draws = fit(random_state=1)
    assert len(passes) == 2 and len(other_draws.gradient_gaps_) == len(first.gradient_gaps_)  # S1, S2 only
    fit(memory=None)
    assert len(passes) == 3  # no cache: every pass again
    PROCESS_CACHE.clear()


def test_sensitive_features_never_reach_fit(setup):
    d, provider, _ = setup
    with sklearn.config_context(enable_metadata_routing=True):
        with pytest.raises(Exception, match="sensitive_features"):
            mitigator(provider, ImageClassifier(random_state=0, **FAST)).fit(
                d.X_train, d.y_train, sensitive_features=d.s_train
            )
    assert "sensitive_features" not in SelectiveFinetuneMitigator.fit.__code__.co_varnames


def test_clone_keeps_parameters(setup):
    _, provider, _ = setup
    m = mitigator(provider, ImageClassifier(**FAST), strategy=RandomMask(top_k=0.8))
    c = clone(m)
    assert c.get_params()["strategy__top_k"] == 0.8 and c.get_params()["estimator__width"] == 8
    assert c.strategy == m.strategy and c.strategy is not m.strategy  # cloned, not shared
    c.set_params(strategy__top_k=0.5)
    assert m.strategy.top_k == 0.8


def test_array_provider_resizes_and_checks_channels(small_mnist):
    d = small_mnist
    provider = ArrayProvider(d.X_test, d.y_test, d.s_test)
    X, y, s = provider.sample({(0, 0): 3, (1, 1): 2}, image_shape=(3, 24, 24), random_state=0)
    assert X.shape == (5, 3, 24, 24) and X.dtype == np.float32 and 0 <= X.min() and X.max() <= 1
    assert sorted(zip(y.tolist(), s.tolist())) == [(0, 0)] * 3 + [(1, 1)] * 2
    with pytest.raises(ValueError, match="channels"):
        provider.sample({(0, 0): 1}, image_shape=(1, 16, 16))


def test_ratio_selection_normalized_criterion_and_select_only(setup):
    d, provider, pretrained = setup
    ratio = mitigator(provider, FrozenEstimator(pretrained), finetune_epochs=0,
                      strategy=SelectiveMask(top_k=20, criterion="abs_diff", selection="ratio")).fit(d.X_train, d.y_train)
    assert ratio.n_selected_ == 20 and ratio.mask_report_["selection"] == "ratio"
    gaps = ratio.gradient_gaps_
    score = gaps["bias_gap"] / gaps["domain_gap"]
    assert score[gaps["selected"]].min() >= score[~gaps["selected"]].max()
    # finetune_epochs=0 selects only: the model is the pre-trained one, weight for weight
    for name, value in pretrained.net_.module_.state_dict().items():
        assert torch.equal(ratio.estimator_.net_.module_.state_dict()[name], value)
    normalized = mitigator(provider, FrozenEstimator(pretrained), finetune_epochs=0).fit(d.X_train, d.y_train)
    report = normalized.mask_report_
    assert report["criterion"] == "normalized" and report["n_selected"] >= report["min_possible_intersection"]
    g = normalized.gradient_gaps_
    raw = mitigator(provider, FrozenEstimator(pretrained), strategy=SelectiveMask(criterion="abs_diff"),
                    finetune_epochs=0).fit(d.X_train, d.y_train).gradient_gaps_
    assert np.allclose(g["domain_gap"] * g["grad_scale"], raw["domain_gap"], rtol=1e-5)
    # the same tensors by gap ratio whichever of the two criteria (the scale cancels)
    same = mitigator(provider, FrozenEstimator(pretrained), strategy=SelectiveMask(top_k=20, selection="ratio"),
                     finetune_epochs=0).fit(d.X_train, d.y_train)
    assert same.selection_mask_ == ratio.selection_mask_


@pytest.mark.parametrize("kwargs, message", [({"strategy": SelectiveMask(selection="union")}, "selection"),
                                             ({"finetune_epochs": -1}, "finetune_epochs"),
                                             ({"finetune_epochs": True}, "finetune_epochs")])
def test_bad_selection_parameters(setup, kwargs, message):
    d, provider, pretrained = setup
    with pytest.raises(ValueError, match=message):
        mitigator(provider, FrozenEstimator(pretrained), **kwargs).fit(d.X_train, d.y_train)


def test_signature_has_at_most_twelve_parameters():
    import inspect

    assert len(inspect.signature(SelectiveFinetuneMitigator).parameters) <= 12


def test_plot_gradient_gaps(setup):
    import matplotlib

    matplotlib.use("Agg")
    from aimfair_plugin.inspection import plot_gradient_gaps

    d, provider, pretrained = setup
    m = mitigator(provider, FrozenEstimator(pretrained), finetune_epochs=0).fit(d.X_train, d.y_train)
    ax = plot_gradient_gaps(m)
    points = sum(len(c.get_offsets()) for c in ax.collections)
    assert points == 62
    assert "Spearman" in ax.texts[0].get_text() and ax.get_xscale() == "log"
    assert len(ax.lines) == 2  # the two k-th gap thresholds of the intersection rule
    full = mitigator(provider, FrozenEstimator(pretrained), strategy="full", finetune_epochs=0).fit(d.X_train, d.y_train)
    with pytest.raises(ValueError, match="selective"):
        plot_gradient_gaps(full)
    with pytest.raises(ValueError, match="fitted"):
        plot_gradient_gaps(SelectiveFinetuneMitigator(provider))
