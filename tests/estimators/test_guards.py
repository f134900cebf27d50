"""Fine-tuning that says what happened: BatchNorm statistics on real images, empty masks, divergence, collapse."""

import warnings

import numpy as np
import pytest
import sklearn
import torch
from _tiny import TINY, tiny_mitigator
from sklearn.frozen import FrozenEstimator
from sklearn.model_selection import GridSearchCV
from torch.utils.data import Dataset

from aimfair_plugin.estimators import (
    CandidateSelection,
    CVaRDROClassifier,
    ImageClassifier,
    MaskStrategy,
    SelectiveFinetuneMitigator,
    SelectiveMask,
    interpolate_states,
    reestimate_batchnorm_statistics,
)
from aimfair_plugin.exceptions import (
    ConstantPredictionWarning,
    EmptyMaskWarning,
    FineTuningWarning,
    TrainingDivergedError,
)
from aimfair_plugin.metrics import fairness_scorer
from aimfair_plugin.synth import ArrayProvider


def mitigator(data, **params):
    return tiny_mitigator(data, invert=True, **params)  # synthetic images of another style


class ImagesOnly(Dataset):
    """Images and nothing else: whatever reads it cannot read a label."""

    def __init__(self, X):
        self.X = torch.as_tensor(X)

    def __len__(self):
        return len(self.X)

    def __getitem__(self, i):
        return self.X[i]


def test_reestimated_statistics_equal_a_hand_computation_and_read_no_labels():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 3, 1), torch.nn.BatchNorm2d(3), torch.nn.ReLU(),
                              torch.nn.BatchNorm2d(3))
    net[1].running_mean.fill_(7.0)  # stale statistics from another domain
    X = torch.randn(12, 1, 4, 4) * 2 + 1
    weights = {k: v.clone() for k, v in net.state_dict().items() if not k.endswith(("running_mean", "running_var",
                                                                                   "num_batches_tracked"))}
    net.eval()
    assert reestimate_batchnorm_statistics(net, ImagesOnly(X), batch_size=12) == 12
    with torch.no_grad():
        h = net[0](X)
        mean, var = h.mean((0, 2, 3)), h.var((0, 2, 3), unbiased=True)
        h2 = torch.relu((h - h.mean((0, 2, 3), keepdim=True)) / (h.var((0, 2, 3), unbiased=False, keepdim=True)
                                                                 + net[1].eps).sqrt())
    torch.testing.assert_close(net[1].running_mean, mean)
    torch.testing.assert_close(net[1].running_var, var)
    torch.testing.assert_close(net[3].running_mean, h2.mean((0, 2, 3)))
    assert not net.training and net[1].momentum == 0.1  # mode and momentum restored
    for k, v in weights.items():
        assert torch.equal(net.state_dict()[k], v)  # weights untouched
    # batches of 4: the cumulative average of the three batch means is still the overall mean (equal batches)
    reestimate_batchnorm_statistics(net, ImagesOnly(X), batch_size=4)
    torch.testing.assert_close(net[1].running_mean, mean)
    assert reestimate_batchnorm_statistics(torch.nn.Linear(2, 2), ImagesOnly(X)) == 0


def test_bn_statistics_real_is_the_fine_tuned_weights_with_statistics_from_the_real_images(small_mnist):
    X, y = small_mnist.X_train[:160], small_mnist.y_train[:160]
    kept = mitigator(small_mnist, strategy="full", batchnorm="finetune").fit(X, y)
    real = mitigator(small_mnist, strategy="full", batchnorm="real").fit(X, y)
    by_hand = kept.estimator_.reestimate_batchnorm(X)  # the same weights, statistics re-estimated on X
    for (name, a), b in zip(real.estimator_.net_.module_.state_dict().items(),
                            by_hand.net_.module_.state_dict().values()):
        torch.testing.assert_close(a, b, msg=name)
    np.testing.assert_allclose(real.predict_proba(small_mnist.X_test), by_hand.predict_proba(small_mnist.X_test),
                               atol=1e-6)
    assert dict(real.estimator_.net_.callbacks_)["real_bn_statistics"].dataset is None  # no real images kept


def test_bn_statistics_eval_keeps_every_layer_at_the_pretrained_statistics(small_mnist):
    model = mitigator(small_mnist, strategy="full", batchnorm="eval").fit(small_mnist.X_train[:160],
                                                                            small_mnist.y_train[:160])
    before = model.stage_one_estimator_.net_.module_.state_dict()
    after = model.estimator_.net_.module_.state_dict()
    stats = [k for k in before if k.endswith(("running_mean", "running_var"))]
    assert stats and all(torch.equal(before[k], after[k]) for k in stats)
    assert not all(torch.equal(before[k], after[k]) for k in before if k.endswith("weight"))  # weights moved


def test_an_empty_mask_warns_and_returns_the_pretrained_model(small_mnist):
    X, y = small_mnist.X_train[:160], small_mnist.y_train[:160]
    class NoTensor(MaskStrategy):
        def mask(self, gaps, rng):
            return np.zeros(len(gaps), dtype=bool)

    with pytest.warns(EmptyMaskWarning, match="selects no tensor"):
        model = mitigator(small_mnist, strategy=NoTensor()).fit(X, y)
    assert model.n_selected_ == 0 and not any(model.selection_mask_.values())
    np.testing.assert_array_equal(model.predict_proba(small_mnist.X_test),
                                  model.stage_one_estimator_.predict_proba(small_mnist.X_test))


def test_grid_search_over_top_k_finishes_with_empty_masks(small_mnist):
    search = GridSearchCV(mitigator(small_mnist, strategy=SelectiveMask()), {"strategy__top_k": [10, 20, 30, 40, 50, 60]},
                          scoring=fairness_scorer("WST"), cv=2)
    with sklearn.config_context(enable_metadata_routing=True), warnings.catch_warnings():
        warnings.simplefilter("ignore", EmptyMaskWarning)
        search.fit(small_mnist.X_train[:200], small_mnist.y_train[:200], sensitive_features=small_mnist.s_train[:200])
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()
    assert search.best_estimator_.n_selected_ >= 0


def test_a_diverging_fit_stops_with_an_error_naming_the_learning_rate(small_mnist):
    with pytest.raises(TrainingDivergedError, match="learning rate 1e\\+30"):
        ImageClassifier(**{**TINY, "lr": 1e30}).fit(small_mnist.X_train[:128], small_mnist.y_train[:128])
    with pytest.raises(TrainingDivergedError):  # the baselines train through the same loop
        CVaRDROClassifier(**{**TINY, "lr": 1e30}).fit(small_mnist.X_train[:128], small_mnist.y_train[:128])


def test_a_fit_that_predicts_one_class_warns(small_mnist):
    X, y = small_mnist.X_train[:128], small_mnist.y_train[:128]
    with pytest.warns(ConstantPredictionWarning, match="constant classifier"):
        ImageClassifier(arch="logistic", max_epochs=1, lr=1e-12, random_state=0, device="cpu").fit(
            np.c_[np.zeros(len(y)), np.ones(len(y))], y)  # constant features: one class for every example
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConstantPredictionWarning)
        ImageClassifier(**TINY).fit(X, y)  # a normal fit does not warn


# -- held-out selection among candidates -------------------------------------------------------------------


def test_interpolation_endpoints_are_the_two_models_bit_for_bit():
    torch.manual_seed(0)
    a, b = torch.nn.BatchNorm2d(3).state_dict(), torch.nn.BatchNorm2d(3)
    b.weight.data.normal_(), b.running_mean.normal_(), b.num_batches_tracked.fill_(5)
    b = b.state_dict()
    for alpha, want in ((0, a), (1, b)):
        got = interpolate_states(a, b, alpha)
        assert all(torch.equal(got[k], want[k]) for k in want)
    half = interpolate_states(a, b, 0.5)
    torch.testing.assert_close(half["weight"], (a["weight"] + b["weight"]) / 2)
    assert half["num_batches_tracked"] == 5


def test_a_fine_tuning_that_only_hurts_hands_back_the_pretrained_model(small_mnist):
    X, y = small_mnist.X_train, small_mnist.y_train
    flipped = ArrayProvider(small_mnist.X_test, 1 - small_mnist.y_test, small_mnist.s_test)  # labels inverted
    model = SelectiveFinetuneMitigator(
        flipped, estimator=ImageClassifier(**{**TINY, "max_epochs": 3}), strategy="full", finetune_epochs=3,
        finetune_lr=0.05, finetune_batch_size=64, synthetic_ratio=0.5,
        candidate_selection=CandidateSelection(validation_fraction=0.2, score="worst_class_accuracy",
                                               batchnorm_variants=False, candidates="all"),
        random_state=0)  # a synthetic score cannot see it: labels flipped
    with pytest.warns(FineTuningWarning, match="pre-trained model is returned"):
        model.fit(X, y)
    scores = model.finetune_scores_
    assert list(scores["candidate"]) == ["pretrained", "epoch 1", "epoch 2", "epoch 3", "alpha 0.25", "alpha 0.5",
                                         "alpha 0.75"]
    assert model.selected_candidate_["candidate"] == "pretrained"
    assert scores["worst_class_accuracy"].iloc[3] < scores["worst_class_accuracy"].iloc[0]  # it really hurt
    np.testing.assert_array_equal(model.predict_proba(small_mnist.X_test),
                                  model.stage_one_estimator_.predict_proba(small_mnist.X_test))


def test_held_out_rows_never_reach_pre_training_and_the_best_candidate_is_returned(small_mnist, monkeypatch):
    X, y = small_mnist.X_train[:200], small_mnist.y_train[:200]
    seen = []
    fit = ImageClassifier.fit

    def spy(self, X_, y_, sample_weight=None):
        seen.append(np.asarray(X_))
        return fit(self, X_, y_, sample_weight=sample_weight)

    monkeypatch.setattr(ImageClassifier, "fit", spy)
    model = mitigator(small_mnist, strategy="full", finetune_epochs=2, batchnorm="real",
                      candidate_selection=CandidateSelection(validation_fraction=0.25, score="pseudo_group",
                                                             interpolation_alphas=(0.5,), candidates="all"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(X, y)
    held = model.validation_indices_
    assert len(held) == 50 and len(seen) == 1 and len(seen[0]) == 150
    trained = {row.tobytes() for row in seen[0]}
    assert not any(X[i].tobytes() in trained for i in held)  # no held-out image was pre-trained on
    scores = model.finetune_scores_
    assert set(scores["candidate"]) == {"pretrained", "epoch 1", "epoch 2", "alpha 0.5"}
    best = scores["pseudo_group"].to_numpy().argmax()
    assert model.selected_candidate_["candidate"] == scores["candidate"].iloc[best]
    assert model.predict(X[held]).shape == (50,)


def test_validation_data_given_to_fit_and_its_errors(small_mnist):
    X, y, s = small_mnist.X_train[:160], small_mnist.y_train[:160], small_mnist.s_train[:160]
    Xv, yv, sv = small_mnist.X_test[:80], small_mnist.y_test[:80], small_mnist.s_test[:80]
    model = mitigator(small_mnist, finetune_epochs=1,
                      candidate_selection=CandidateSelection(score="worst_group", interpolation_alphas=()))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(X, y, X_val=Xv, y_val=yv, sensitive_features_val=sv)
    assert {"accuracy", "worst_class_accuracy", "pseudo_group", "worst_group"} <= set(model.finetune_scores_)
    with pytest.raises(ValueError, match="both X_val and y_val"):
        mitigator(small_mnist).fit(X, y, X_val=Xv)
    with pytest.raises(ValueError, match="prefit"):
        pre = ImageClassifier(**TINY).fit(X, y)
        SelectiveFinetuneMitigator(ArrayProvider(Xv, yv, sv), estimator=FrozenEstimator(pre),
                                   candidate_selection=CandidateSelection(validation_fraction=0.2)).fit(X, y)
    with pytest.raises(ValueError, match="needs held-out data"):
        mitigator(small_mnist, candidate_selection=CandidateSelection()).fit(X, y)
    for score in ("worst_group", "mean_group"):
        with pytest.raises(ValueError, match=f"'{score}' needs sensitive_features_val"):
            mitigator(small_mnist, candidate_selection=CandidateSelection(score=score)).fit(X, y, X_val=Xv, y_val=yv)
        with pytest.raises(ValueError, match=f"'{score}' needs X_val, y_val and sensitive_features_val"):
            mitigator(small_mnist, candidate_selection=CandidateSelection(validation_fraction=0.2,
                                                                          score=score)).fit(X, y)
    with pytest.raises(ValueError, match="score"):
        mitigator(small_mnist, candidate_selection=CandidateSelection(score="best")).fit(X, y, X_val=Xv, y_val=yv)
    assert len(s) == 160


def test_a_refit_keeps_nothing_of_the_last_fit(small_mnist):
    X, y = small_mnist.X_train[:160], small_mnist.y_train[:160]
    Xv, yv = small_mnist.X_test[:80], small_mnist.y_test[:80]
    model = mitigator(small_mnist, candidate_selection=CandidateSelection(validation_fraction=0.25))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(X, y)
        first = {k: v for k, v in vars(model).items() if k.endswith("_")}
        assert first["validation_indices_"] is not None and first["finetune_scores_"] is not None
        model.set_params(candidate_selection=None).fit(X, y, X_val=Xv, y_val=yv)  # given validation data
    assert model.validation_indices_ is None and model.finetune_scores_ is not None
    model.fit(X, y)  # unguarded
    assert model.validation_indices_ is None and model.finetune_scores_ is None and model.selected_candidate_ is None
    fresh = mitigator(small_mnist).fit(X, y)
    assert sorted(k for k in vars(model) if k.endswith("_")) == sorted(k for k in vars(fresh) if k.endswith("_"))
    for name in vars(fresh):
        if name.endswith("_") and isinstance(getattr(fresh, name), (int, float, str, type(None))):
            assert getattr(model, name) == getattr(fresh, name), name
    np.testing.assert_array_equal(model.predict_proba(small_mnist.X_test), fresh.predict_proba(small_mnist.X_test))
    assert model.n_features_in_ == int(np.prod(X.shape[1:]))


def _hand_made(pre_state, post_state, model_like, X_real, bn_real):
    """A candidate made by hand: load the weights into a copy of the fitted model, re-estimate if asked."""
    import copy

    clf = copy.deepcopy(model_like)
    clf.net_.module_.load_state_dict(post_state if pre_state is None else pre_state)
    if bn_real:
        clf.reestimate_batchnorm(X_real, batch_size=64)
    return clf


@pytest.mark.parametrize("batchnorm", ["real", "finetune"])
def test_the_chosen_candidate_equals_a_hand_made_model_bit_for_bit(small_mnist, batchnorm):
    from skorch.callbacks import Callback

    X, y = small_mnist.X_train[:160], small_mnist.y_train[:160]
    Xv, yv, sv = small_mnist.X_test[:80], small_mnist.y_test[:80], small_mnist.s_test[:80]
    states = []

    class Keep(Callback):  # keeps every epoch's weights as trained, to rebuild the candidates by hand
        def on_epoch_end(self, net, **kwargs):
            states.append({k: v.detach().clone() for k, v in net.module_.state_dict().items()})

    keep = Keep()
    params = dict(strategy="full", finetune_epochs=3, batchnorm=batchnorm, callbacks=[("keep", keep)],
                  candidate_selection=CandidateSelection(score="worst_group", interpolation_alphas=(0.5,),
                                                         batchnorm_variants=False, candidates="all"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = mitigator(small_mnist, **params).fit(X, y, X_val=Xv, y_val=yv, sensitive_features_val=sv)
    scores = model.finetune_scores_
    assert list(scores["candidate"]) == ["pretrained", "epoch 1", "epoch 2", "epoch 3", "alpha 0.5"]
    pre = {k: v.detach().clone() for k, v in model.stage_one_estimator_.net_.module_.state_dict().items()}
    real = batchnorm == "real"
    hand = [model.stage_one_estimator_] + [_hand_made(None, st, model.estimator_, X, real) for st in states]
    hand.append(_hand_made(interpolate_states(pre, states[-1], 0.5), None, model.estimator_, X, real))
    from aimfair_plugin.metrics import worst_group_accuracy

    for row, clf in zip(scores.itertuples(), hand):  # every candidate scored as a hand-made model scores
        pred = clf.predict(Xv)
        assert row.worst_group == worst_group_accuracy(yv, pred, np.column_stack([yv, sv]))
        assert row.accuracy == float(np.mean(pred == yv))
        # mean_group: the four cells' accuracies averaged, computed here with plain numpy
        cell_means = [np.mean(pred[(yv == a) & (sv == b)] == a) for a in (0, 1) for b in (0, 1)]
        assert row.mean_group == pytest.approx(float(np.mean(cell_means)), abs=1e-12)
    chosen = hand[int(scores["worst_group"].to_numpy().argmax())]
    for (name, a), b in zip(model.estimator_.net_.module_.state_dict().items(),
                            chosen.net_.module_.state_dict().values()):
        assert torch.equal(a, b), name
    assert model.selected_candidate_["candidate"] == scores["candidate"].iloc[scores["worst_group"].to_numpy().argmax()]


def test_scoring_during_training_changes_no_weight(small_mnist):
    from aimfair_plugin.estimators import ScoredCheckpoints, predict_indices

    X, y = small_mnist.X_train[:160], small_mnist.y_train[:160]
    Xv, yv = small_mnist.X_test[:80], small_mnist.y_test[:80]
    plain = mitigator(small_mnist, strategy="full", finetune_epochs=2).fit(X, y)
    scored = ScoredCheckpoints(lambda net, c: {"acc": float(np.mean(predict_indices(net, Xv) == yv))}, "acc",
                               batchnorm_images=X, batch_size=64, score_returned_model=True)
    watched = mitigator(small_mnist, strategy="full", finetune_epochs=2, callbacks=[("scored", scored)]).fit(X, y)
    for (name, a), b in zip(plain.estimator_.net_.module_.state_dict().items(),
                            watched.estimator_.net_.module_.state_dict().values()):
        assert torch.equal(a, b), name  # BatchNorm re-estimation, predictions and RNG state all restored
    assert list(scored.scores_["epoch"]) == [1, 2]
    # the last epoch was scored on the returned model (statistics re-estimated on all of X)
    assert scored.scores_["acc"].iloc[-1] == float(np.mean(watched.predict(Xv) == yv))
    best = scored.best_["acc"]
    assert best["epoch"] == 1 + int(scored.scores_["acc"].to_numpy().argmax())
    assert set(scored.best_states_) == {"acc"}  # one state kept, not one per epoch


def test_the_probe_infers_known_groups_and_scores_candidates_without_group_labels(small_mnist, tmp_path):
    """Coloured digits: the colour is the protected attribute; a probe trained on the (inverted) synthetic
    images must find it on the real ones, and its scores are the worst / mean accuracy over the inferred cells."""
    from aimfair_plugin.estimators._selection import mean_group_accuracy
    from aimfair_plugin.metrics import worst_group_accuracy

    X, y = small_mnist.X_train[:200], small_mnist.y_train[:200]
    Xv, yv, sv = small_mnist.X_test[:100], small_mnist.y_test[:100], small_mnist.s_test[:100]
    provider = ArrayProvider(small_mnist.X_test[100:], small_mnist.y_test[100:], small_mnist.s_test[100:])
    model = SelectiveFinetuneMitigator(
        provider, estimator=ImageClassifier(**{**TINY, "max_epochs": 2}), strategy="full", finetune_epochs=2,
        finetune_batch_size=64, synthetic_ratio=0.5, random_state=0,
        candidate_selection=CandidateSelection(score="probe_worst_group", interpolation_alphas=(), candidates="all"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FineTuningWarning)
        model.fit(X, y, X_val=Xv, y_val=yv, sensitive_features_val=sv)
    probe = model.group_probe_
    assert probe["reliable"] and probe["synthetic_accuracy"] > 0.9 and probe["real_accuracy"] > 0.9
    assert probe["groups"].shape == sv.shape and np.mean(probe["groups"] == sv) == probe["real_accuracy"]
    model.save_pretrained(tmp_path / "m")  # the inferred groups survive the JSON round trip as an array
    loaded = SelectiveFinetuneMitigator.from_pretrained(tmp_path / "m", provider=provider)
    assert isinstance(loaded.group_probe_["groups"], np.ndarray)
    np.testing.assert_array_equal(loaded.group_probe_["groups"], probe["groups"])
    scores = model.finetune_scores_
    assert {"probe_worst_group", "probe_mean_group", "worst_group"} <= set(scores)
    # with a probe that is right on (nearly) every image, the inferred cells are the true ones
    if probe["real_accuracy"] == 1.0:
        assert (scores["probe_worst_group"] == scores["worst_group"]).all()
    pred = model.stage_one_estimator_.predict(Xv)
    cells = np.column_stack([yv, sv])
    assert scores["worst_group"].iloc[0] == worst_group_accuracy(yv, pred, cells)
    assert scores["probe_mean_group"].iloc[0] >= scores["probe_worst_group"].iloc[0]
    assert mean_group_accuracy([0, 0, 1, 1], [0, 1, 1, 1], [0, 0, 1, 1]) == 0.75
    # a labelled cell without examples makes the mean NaN, as it makes the worst group NaN
    assert np.isnan(mean_group_accuracy([0, 1], [0, 1], [[0, 0], [1, 0]], cells=[(0, 0), (0, 1), (1, 0), (1, 1)]))
    # one-column groups name their cells by value, as worst_group_accuracy's do
    assert mean_group_accuracy([0, 0, 1], [0, 1, 1], ["a", "a", "b"], cells=["a", "b"]) == 0.75
    assert np.isnan(mean_group_accuracy([0, 1], [0, 1], ["a", "a"], cells=["a", "b"]))
    best = int(scores["probe_worst_group"].to_numpy().argmax())
    assert model.selected_candidate_["candidate"] == scores["candidate"].iloc[best]


def test_a_probe_near_chance_warns_and_falls_back(small_mnist):
    X, y = small_mnist.X_train[:200], small_mnist.y_train[:200]
    Xv, yv = small_mnist.X_test[:100], small_mnist.y_test[:100]
    rng = np.random.RandomState(0)
    provider = ArrayProvider(small_mnist.X_test, small_mnist.y_test, rng.permutation(small_mnist.s_test))
    model = SelectiveFinetuneMitigator(  # the synthetic groups are shuffled: nothing to learn about them
        provider, estimator=ImageClassifier(**TINY), strategy="full", finetune_epochs=1, finetune_batch_size=64,
        synthetic_ratio=0.5, random_state=0,
        candidate_selection=CandidateSelection(score="probe_mean_group", interpolation_alphas=()))
    with pytest.warns(FineTuningWarning, match="near chance"):
        model.fit(X, y, X_val=Xv, y_val=yv)
    assert not model.group_probe_["reliable"] and model.group_probe_["real_accuracy"] is None
    assert "synthetic_worst_group" in model.finetune_scores_


def test_batchnorm_variants_score_each_candidate_as_trained_and_re_estimated(small_mnist):
    X, y = small_mnist.X_train[:160], small_mnist.y_train[:160]
    Xv, yv, sv = small_mnist.X_test[:80], small_mnist.y_test[:80], small_mnist.s_test[:80]
    model = mitigator(small_mnist, strategy="full", finetune_epochs=2, batchnorm="finetune",
                      candidate_selection=CandidateSelection(score="worst_group", interpolation_alphas=(0.5,),
                                                             batchnorm_variants=True, candidates="all"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(X, y, X_val=Xv, y_val=yv, sensitive_features_val=sv)
    scores = model.finetune_scores_
    assert list(zip(scores["candidate"], scores["batchnorm"])) == [
        ("pretrained", "as is"), ("epoch 1", "trained"), ("epoch 1", "real"), ("epoch 2", "trained"),
        ("epoch 2", "real"), ("alpha 0.5", "trained"), ("alpha 0.5", "real")]
    best = int(scores["worst_group"].to_numpy().argmax())
    assert model.selected_candidate_["batchnorm"] == scores["batchnorm"].iloc[best]
    if scores["batchnorm"].iloc[best] == "real":  # the returned model is re-estimated on the real images
        import copy

        again = copy.deepcopy(model.estimator_).reestimate_batchnorm(X, batch_size=64)
        for (name, a), b in zip(model.estimator_.net_.module_.state_dict().items(),
                                again.net_.module_.state_dict().values()):
            assert torch.equal(a, b), name


def test_last_epoch_candidates_choose_only_the_batchnorm_handling(small_mnist):
    """candidates="last": the two candidates are the last epoch as fine-tuned and re-estimated on the real images,
    each equal bit for bit to the model a fixed BatchNorm setting returns; pseudo groups and the accuracy-drop
    warning still read the pre-trained model's predictions."""
    from aimfair_plugin.estimators._selection import pseudo_groups
    from aimfair_plugin.metrics import worst_group_accuracy

    X, y = small_mnist.X_train[:160], small_mnist.y_train[:160]
    Xv, yv, sv = small_mnist.X_test[:80], small_mnist.y_test[:80], small_mnist.s_test[:80]
    selection = CandidateSelection(score="worst_group", interpolation_alphas=(0.5,), candidates="last")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = mitigator(small_mnist, strategy="full", finetune_epochs=2, batchnorm="real",
                          candidate_selection=selection).fit(X, y, X_val=Xv, y_val=yv, sensitive_features_val=sv)
        fixed = {bn: mitigator(small_mnist, strategy="full", finetune_epochs=2, batchnorm=bn).fit(X, y)
                 for bn in ("real", "finetune")}
    scores = model.finetune_scores_
    assert list(zip(scores["candidate"], scores["batchnorm"])) == [("epoch 2", "trained"), ("epoch 2", "real")]
    cells = np.column_stack([yv, sv])
    for row, bn in zip(scores.itertuples(), ("finetune", "real")):  # scored as the fixed setting's model scores
        assert row.worst_group == worst_group_accuracy(yv, fixed[bn].predict(Xv), cells)
    start = model.stage_one_estimator_.predict(Xv)
    assert scores["pseudo_group"].iloc[0] == worst_group_accuracy(yv, fixed["finetune"].predict(Xv),
                                                                  pseudo_groups(yv, start))
    chosen = fixed["real" if model.selected_candidate_["batchnorm"] == "real" else "finetune"]
    for (name, a), b in zip(model.estimator_.net_.module_.state_dict().items(),
                            chosen.estimator_.net_.module_.state_dict().values()):
        assert torch.equal(a, b), name
    with pytest.raises(sklearn.utils._param_validation.InvalidParameterError, match="candidates"):
        mitigator(small_mnist, candidate_selection=CandidateSelection(candidates="first")).fit(X, y, X_val=Xv,
                                                                                             y_val=yv)


def test_the_default_guard_chooses_the_last_epochs_batchnorm_by_worst_group_or_accuracy(small_mnist):
    X, y = small_mnist.X_train[:160], small_mnist.y_train[:160]
    Xv, yv, sv = small_mnist.X_test[:80], small_mnist.y_test[:80], small_mnist.s_test[:80]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        labelled = mitigator(small_mnist, strategy="full", finetune_epochs=1).fit(
            X, y, X_val=Xv, y_val=yv, sensitive_features_val=sv)
        label_free = mitigator(small_mnist, strategy="full", finetune_epochs=1).fit(X, y, X_val=Xv, y_val=yv)
    assert labelled.selected_candidate_["score"] == "worst_group"
    assert label_free.selected_candidate_["score"] == "accuracy" and label_free.group_probe_ is None
    for model in (labelled, label_free):  # the candidates: the last epoch as fine-tuned and re-estimated
        scores = model.finetune_scores_
        assert list(scores["candidate"]) == ["epoch 1", "epoch 1"]
        assert list(scores["batchnorm"]) == ["trained", "real"]
    assert CandidateSelection().score == "auto"  # the parameter is never rewritten
    assert CandidateSelection().candidates == "last"
    with warnings.catch_warnings():  # over every candidate the label-free "auto" is the probe's worst cell
        warnings.simplefilter("ignore")
        every = mitigator(small_mnist, strategy="full", finetune_epochs=1,
                          candidate_selection=CandidateSelection(candidates="all", interpolation_alphas=()))
        every.fit(X, y, X_val=Xv, y_val=yv)
    assert every.selected_candidate_["score"] in ("probe_worst_group", "synthetic_worst_group")  # or fallback
    assert list(every.finetune_scores_["candidate"]) == ["pretrained", "epoch 1", "epoch 1"]
