"""Checkpoint selection in the benchmark: every epoch scored on both validation sets while training runs, one
checkpoint kept per rule."""

import copy
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from sklearn.utils import Bunch
from skorch.callbacks import Callback
from test_runner import TOY, fake_record, untuned_path

from aimfair_bench.checkpoints import (
    BN_IMAGES,
    CALLBACK,
    RULES,
    checkpoint_callbacks,
    last_predictions,
    select_checkpoints,
    validation_scores,
)
from aimfair_bench.cli import main
from aimfair_bench.methods import VALIDATION_SETS
from aimfair_bench.report import markdown_report, records_frame, summarise
from aimfair_bench.selection import at_checkpoint, checkpoint_frame, paired_frame, select_variants
from aimfair_plugin.datasets import make_colored_mnist
from aimfair_plugin.estimators import ImageClassifier, ScoredCheckpoints, SelectiveFinetuneMitigator
from aimfair_plugin.metrics import fairness_report
from aimfair_plugin.synth import RenderedDigitsProvider

TINY = dict(width=4, batch_size=64, augment=False, random_state=0)
JOB = SimpleNamespace(checkpoints=True, seed=0)


class KeepEpochs(Callback):
    """Every epoch's weights as trained (to rebuild the candidates by hand)."""

    def on_train_begin(self, net, **kwargs):
        self.states_ = []

    def on_epoch_end(self, net, **kwargs):
        self.states_.append({k: v.detach().clone() for k, v in net.module_.state_dict().items()})


class BreakLastEpoch(Callback):
    """Makes the model a constant classifier at the end of its last epoch."""

    def on_epoch_end(self, net, **kwargs):
        if len(net.history) == net.max_epochs:
            with torch.no_grad():
                net.module_.fc.weight.zero_()
                net.module_.fc.bias.copy_(torch.tensor([5.0, 0.0]))


def test_the_best_score_then_the_tie_break_then_the_earliest_epoch_is_kept(small_mnist):
    script = {"a": [50, 70, 70, 70, float("nan"), 60], "b": [1, 2, 3, 3, 9, 9]}
    callback = ScoredCheckpoints(lambda net, c: {k: v[c["epoch"] - 1] for k, v in script.items()},
                                 {"ab": ("a", "b"), "aa": ("a", "a"), "ba": ("b", "a")})
    ImageClassifier(max_epochs=6, callbacks=[("scores", callback)], **TINY).fit(small_mnist.X_train[:64],
                                                                                small_mnist.y_train[:64])
    # b = 9 at epochs 5 and 6; the tie-break a is NaN at epoch 5, and NaN ranks lowest
    assert {k: v["epoch"] for k, v in callback.best_.items()} == {"ab": 3, "aa": 2, "ba": 6}
    assert len(callback.best_states_) == 3 and len(callback.scores_) == 6


def test_validation_scores_equal_the_fairness_report():
    rng = np.random.RandomState(0)
    y, s, pred = rng.randint(0, 2, 300), rng.randint(0, 2, 300), rng.randint(0, 2, 300)
    report = fairness_report(y, pred, sensitive_features=s)
    scores = validation_scores(y, pred, s)
    assert scores["ACC"] == pytest.approx(round(float(report["ACC"]), 3))
    assert scores["WST"] == pytest.approx(round(float(report["WST"]), 3))
    keep = ~((y == 1) & (s == 1))  # an empty cell: WST undefined in both
    with pytest.warns(UserWarning, match="empty"):
        assert np.isnan(fairness_report(y[keep], pred[keep], sensitive_features=s[keep])["WST"])
    assert np.isnan(validation_scores(y[keep], pred[keep], s[keep])["WST"])


@pytest.fixture(scope="module")
def data():
    d = make_colored_mnist(n_train=400, n_test=400, minority_share=0.05, image_size=16, random_state=0)
    val, test = np.arange(0, 400, 2), np.arange(1, 400, 2)  # both balanced: every (y, s) cell present
    return Bunch(X_train=d.X_train[:300], y_train=d.y_train[:300], X_val_train=d.X_train[300:],
                 y_val_train=d.y_train[300:], s_val_train=d.s_train[300:], X_val=d.X_test[val], y_val=d.y_test[val],
                 s_val=d.s_test[val], X_test=d.X_test[test], y_test=d.y_test[test], s_test=d.s_test[test])


def scores(model, X, y, s):
    return {k: v for k, v in fairness_report(y, model.predict(X), sensitive_features=s).round(3).to_dict().items()}


def last_evaluation(model, data):
    return {"metrics": scores(model, data.X_test, data.y_test, data.s_test),
            "validation": {name: scores(model, data[f"X_{split}"], data[f"y_{split}"], data[f"s_{split}"])
                           for name, split in VALIDATION_SETS.items()}}


def callbacks(data, **options):
    return checkpoint_callbacks(JOB, data, RULES, VALIDATION_SETS, **options)


def test_an_earlier_epoch_is_kept_evaluated_as_a_model_with_its_weights_and_the_model_is_restored(data):
    keep = KeepEpochs()
    model = ImageClassifier(max_epochs=3, lr=0.05, callbacks=[keep, ("break", BreakLastEpoch()), *callbacks(data)],
                            **TINY).fit(data.X_train, data.y_train)
    returned = copy.deepcopy(model.net_.module_.state_dict())
    last = last_evaluation(model, data)
    # the runner reads the returned model's validation predictions from the callback: they are the model's own
    for name, split in VALIDATION_SETS.items():
        np.testing.assert_array_equal(last_predictions(model)[name], model.predict(data[f"X_{split}"]))
    result = select_checkpoints(model, data, VALIDATION_SETS, scores, last=last)
    assert result["n_epochs"] == 3 and result["curve"]["epoch"] == [1, 2, 3]
    assert result["curve"]["val_train_ACC"][2] == pytest.approx(last["validation"]["train"]["ACC"])
    for rule, (score, tie) in RULES.items():  # the constant last epoch is never the best
        keys = list(zip(result["curve"][score], result["curve"][tie]))
        assert result["selected"][rule]["epoch"] == 1 + max(range(3), key=lambda i: (keys[i], -i)) < 3
    # independent: a fresh model with the chosen epoch's weights
    epoch = result["selected"]["group_val"]["epoch"]
    fresh = copy.deepcopy(model)
    fresh.net_.module_.load_state_dict(keep.states_[epoch - 1])
    assert result["selected"]["group_val"]["metrics"] == scores(fresh, data.X_test, data.y_test, data.s_test)
    assert result["selected"]["group_val"]["validation"]["group"]["WST"] == result["curve"]["val_group_WST"][epoch - 1]
    for key, value in model.net_.module_.state_dict().items():  # restored bit for bit
        assert torch.equal(value, returned[key])
    assert dict(model.net_.callbacks_)[CALLBACK].best_states_ == {}  # the copies are released


def test_a_model_without_epochs_keeps_its_returned_model_and_says_why(data):
    model = ImageClassifier(max_epochs=1, **TINY).fit(data.X_train, data.y_train)  # no checkpoint callback
    result = select_checkpoints(model, data, VALIDATION_SETS, scores, last=last_evaluation(model, data))
    assert set(result) == {"reason"} and "checkpoint callback" in result["reason"]


@pytest.mark.parametrize("bn_images", [None, 100])
def test_batchnorm_real_checkpoints_are_scored_with_re_estimated_statistics(data, bn_images):
    keep = KeepEpochs()
    erm = ImageClassifier(max_epochs=1, lr=0.05, **TINY)
    mitigator = SelectiveFinetuneMitigator(
        RenderedDigitsProvider(), estimator=erm, strategy="full", finetune_epochs=2, finetune_lr=0.01,
        batchnorm="real", random_state=0,
        # the last epoch made a constant classifier, so the rules choose epoch 1
        callbacks=[BreakLastEpoch(), keep, *callbacks(data, bn_batch_size=128, bn_images=bn_images)],
    ).fit(data.X_train, data.y_train)
    # the last epoch's weights with statistics re-estimated on all real images are the returned model, bit for bit
    rebuilt = copy.deepcopy(mitigator)
    rebuilt.estimator_.net_.module_.load_state_dict(keep.states_[1])
    rebuilt.reestimate_batchnorm(data.X_train)
    for key, value in mitigator.estimator_.net_.module_.state_dict().items():
        assert torch.equal(value, rebuilt.estimator_.net_.module_.state_dict()[key])
    result = select_checkpoints(mitigator, data, VALIDATION_SETS, scores, last=last_evaluation(mitigator, data))
    # epoch 1 was scored as a hand-made model: its weights, statistics re-estimated on the BatchNorm images
    from aimfair_bench.checkpoints import bn_subset

    hand = copy.deepcopy(mitigator)
    hand.estimator_.net_.module_.load_state_dict(keep.states_[0])
    hand.estimator_.reestimate_batchnorm(bn_subset(data.X_train, bn_images, JOB.seed),
                                         batch_size=mitigator.finetune_batch_size)
    expected = validation_scores(data.y_val, hand.predict(data.X_val), data.s_val)
    assert result["curve"]["val_group_WST"][0] == expected["WST"]
    assert result["curve"]["val_group_ACC"][0] == expected["ACC"]
    assert result["bn_images"] == (len(data.X_train) if bn_images is None else bn_images)
    # a chosen epoch is tested as it was scored (skorch's Checkpoint(load_best=True)): the last one as returned,
    # an earlier one with the BatchNorm images' statistics; the returned model is restored afterwards
    assert {chosen["epoch"] for chosen in result["selected"].values()} == {1}
    for rule, chosen in result["selected"].items():
        expected = scores(hand if chosen["epoch"] == 1 else mitigator, data.X_test, data.y_test, data.s_test)
        assert chosen["metrics"] == expected, rule
    for key, value in mitigator.estimator_.net_.module_.state_dict().items():
        assert torch.equal(value, rebuilt.estimator_.net_.module_.state_dict()[key])


def checkpointed(method, seed, last_wst, checkpoint_wst, epoch, val_wst, variant=""):
    """A fake record whose group_val checkpoint (epoch ``epoch`` of 10) differs from its last epoch."""
    record = fake_record(method, seed, 80, last_wst, variant, val_wst=50)
    chosen = fake_record(method, seed, 81, checkpoint_wst, variant, val_wst=val_wst)
    record["checkpoints"] = {"n_epochs": 10, "scoring_s": 0.5, "selected": {
        "group_val": {"epoch": epoch, "metrics": chosen["metrics"], "validation": chosen["validation"]},
        "label_free": {"epoch": 10, "metrics": record["metrics"], "validation": record["validation"]}}}
    return record


def test_tables_and_pairs_read_each_rule_at_its_checkpoint():
    records = []
    for seed in (0, 1, 2):
        records += [checkpointed("erm", seed, 50 + seed, 60 + seed, 4, 70),
                    checkpointed("full", seed, 20, 80 + seed, 2, 85, "ft_lr=0.01"),
                    # the variant whose last epoch validates better but whose checkpoint validates worse
                    checkpointed("full", seed, 30, 70, 3, 75, "ft_lr=0.001")]
    records.append(fake_record("jtt", 0, 70, 40))  # made without checkpoint selection: its returned model
    frame = records_frame(records)
    summary = summarise(frame)
    assert frame.loc[frame["method"] == "jtt", "group_val:WST"].item() == 40
    assert np.isnan(frame.loc[frame["method"] == "jtt", "group_val:epoch"].item())
    assert at_checkpoint(frame, "group_val")["WST"].tolist()[:3] == [60, 80, 70]
    chosen = select_variants(summary, "group_val").set_index("method")
    assert chosen.loc["full", "variant"] == "ft_lr=0.01" and chosen.loc["full", "WST_mean"] == 81
    assert chosen.loc["erm", "WST_mean"] == 61
    paired = paired_frame(frame, summary)
    row = paired[(paired["method_key"] == "full") & (paired["rule"] == "group_val") & (paired["metric"] == "WST")]
    assert row["mean_diff"].item() == pytest.approx(20)  # (80, 81, 82) - (60, 61, 62)
    # label_free keeps the last epoch here
    assert select_variants(summary, "label_free").set_index("method").loc["erm", "WST_mean"] == 51
    table = checkpoint_frame(frame, summary).set_index(["rule", "method"])
    full = table.loc[("group_val", "full")]
    assert full["epoch_mean"] == 2 and full["earlier_share"] == 1 and full["WST_last"] == 20
    assert full["mean_diff"] == pytest.approx(61) and full["n_with_epochs"] == 3
    assert table.loc[("group_val", "jtt"), "n_with_epochs"] == 0
    text = markdown_report(frame, "title")
    assert "## Checkpoint selection" in text and "| +61.00 [" in text


@pytest.mark.slow
def test_every_run_of_a_suite_records_its_curve_and_checkpoints(tmp_path):
    out = tmp_path / "out"
    toy = [a if a != "1" else "2" for a in TOY]  # two epochs of pre-training and of fine-tuning
    assert main(["quick", "--out", str(out), "--methods", "erm", "jtt", "synthetic_only", "full", *toy,
                 "--tuned", str(untuned_path())]) == 0
    import json

    for path in sorted(out.glob("records/*/*/seed0.json")):
        record = json.loads(path.read_text())
        checkpoints = record["checkpoints"]
        assert checkpoints["n_epochs"] == 2, path
        assert len(checkpoints["curve"]["val_group_WST"]) == 2 and set(checkpoints["selected"]) == set(RULES)
        assert record["settings"]["checkpoints"]["every_epoch"] is True
        if record["method"] == "full":  # BatchNorm statistics re-estimated per scored epoch, on a subset
            assert checkpoints["bn_images"] == min(BN_IMAGES, record["n_train"])
            assert record["settings"]["checkpoints"]["test"] == "as scored"
    assert (out / "checkpoints.csv").is_file()
    assert "## Checkpoint selection" in (out / "report.md").read_text()


@pytest.mark.slow
def test_no_checkpoints_keeps_the_last_epoch_and_is_another_setting(tmp_path):
    out = tmp_path / "out"
    args = ["quick", "--out", str(out), "--methods", "erm", "full", *TOY, "--tuned", str(untuned_path())]
    assert main([*args, "--no-checkpoints"]) == 0
    import json

    for path in sorted(out.glob("records/*/*/seed0.json")):
        record = json.loads(path.read_text())
        assert "turned off" in record["checkpoints"]["reason"]
        assert record["settings"]["checkpoints"] == {"every_epoch": False}
    frame = records_frame([json.loads(p.read_text()) for p in out.glob("records/*/*/seed0.json")])
    assert frame["group_val:epoch"].isna().all() and (frame["group_val:WST"] == frame["WST"]).all()
    # the same runs with checkpoint selection are other settings: a re-run in the folder redoes them
    from aimfair_bench.runner import make_jobs
    from aimfair_bench.suites import build_suite

    suite = build_suite("quick", tuned_path=untuned_path())
    assert all(j.settings_hash != k.settings_hash for j, k in zip(make_jobs(suite), make_jobs(suite, checkpoints=False)))
    # one cache folder: the cached ERM model has no curve, so the checkpointed ERM run trains its own
    assert main(args) == 0
    assert (out / "cache").is_dir() and not (out / "cache-checkpoints").exists()
    for path in sorted(out.glob("records/*/*/seed0.json")):
        assert json.loads(path.read_text())["checkpoints"]["n_epochs"] == 1, path
