"""Checkpoint selection for every method (SubpopBench's protocol): score each epoch on both validation sets while
training runs and keep one checkpoint per selection rule.

Every estimator a run fits gets a :class:`~aimfair_plugin.estimators.ScoredCheckpoints` callback in the training
loop of the model it returns (``callbacks=``: ERM's loop, a baseline's last stage, the mitigator's fine-tuning).
At the end of each epoch it scores the network on the two validation sets (``val_train``: overall and
worst-group accuracy; ``val``: the same, through :func:`aimfair_plugin.metrics.worst_group_accuracy`) and keeps,
for each rule of :data:`RULES`, the state of the epoch with the best rule score (ties: its
tie-break score, then the earliest epoch); no other epoch's weights are kept. :func:`select_checkpoints` then
evaluates the chosen epochs on the test split. The test split is read only for the chosen epochs, never to choose.

BatchNorm statistics: a run whose method re-estimates them on the real training images after training
(``bn_statistics="real"``, the mitigator's default) has each epoch scored with its statistics re-estimated on
``bn_images`` real training images (a fixed random subset; all of them when None). The state a rule keeps is the
state it was scored as (skorch's ``Checkpoint(load_best=True)``): a chosen epoch is tested exactly as it was
validated, with the subset's statistics. The last epoch is scored when training ends, on the model the method
returns (statistics from all images). The records keep the curve, the chosen epochs with their test metrics, and
what scoring cost.

A run without epochs to choose from (AFR's closed-form last stage, an empty mask, the mitigator's own held-out
guard) keeps its returned model under every rule, with the reason.
"""

import time

import numpy as np
from sklearn.utils import check_random_state

from aimfair_plugin.estimators import ScoredCheckpoints, as_image_dataset, predict_indices
from aimfair_plugin.metrics import worst_group_accuracy

# The selection rules: rule -> (the validation score it maximises, its tie-break); ties then go to the earliest
# epoch. label_free reads the training-distribution validation split (no group labels), group_val the balanced
# group-labelled one.
RULES = {
    "label_free": ("val_train_ACC", "val_train_ACC"),
    "group_val": ("val_group_WST", "val_group_ACC"),
}
# The name of the benchmark's checkpoint callback in every net it trains.
CALLBACK = "benchmark_checkpoints"
# Real training images the BatchNorm statistics of a scored epoch are estimated on (a chosen epoch is tested with
# them, as it was scored).
BN_IMAGES = 256


def validation_scores(y, pred, s):
    """Overall and worst-(y, s)-cell accuracy in %, rounded as the records round them (WST is NaN when a cell
    of the product of the values present is empty, the package's one worst-group rule)."""
    y, pred, s = np.asarray(y), np.asarray(pred), np.asarray(s)
    cells = [(a, b) for a in np.unique(y).tolist() for b in np.unique(s).tolist()]
    worst = worst_group_accuracy(y, pred, np.column_stack([y, s]), cells=cells)
    return {"ACC": round(100.0 * float(np.mean(y == pred)), 3), "WST": round(100.0 * worst, 3)}


def bn_subset(X_train, bn_images, random_state):
    """The real training images a scored epoch's BatchNorm statistics are estimated on: ``bn_images`` of them
    drawn once per seed (all of them when None or when there are fewer)."""
    if bn_images is None or bn_images >= len(X_train):
        return X_train
    return X_train[np.sort(check_random_state(random_state).permutation(len(X_train))[:bn_images])]


class ValidationScoring:
    """The benchmark's per-epoch scores: overall and worst-cell accuracy on each validation set (a picklable
    ``scoring`` for :class:`~aimfair_plugin.estimators.ScoredCheckpoints`, so a cached model keeps its curve).

    Parameters
    ----------
    sets : dict name -> (X, y, s)
        The validation sets (checked once into datasets here, read every epoch).
    classes : ndarray
        The labels the network's class indices stand for.

    Attributes
    ----------
    predictions_ : dict name -> ndarray
        The last scored candidate's predictions on each set: after training, the returned model's (the last
        epoch is scored last, as returned), so the runner's validation report needs no second pass.
    """

    def __init__(self, sets, classes):
        self.sets = {name: (as_image_dataset(X), np.asarray(y), np.asarray(s)) for name, (X, y, s) in sets.items()}
        self.classes = np.asarray(classes)
        self.predictions_ = {}

    def __call__(self, net, candidate):
        row = {}
        for name, (X, y, s) in self.sets.items():
            pred = self.predictions_[name] = self.classes[predict_indices(net, X)]
            row.update({f"val_{name}_{key}": value for key, value in validation_scores(y, pred, s).items()})
        return row


def checkpoint_callbacks(job, data, rules, validation_sets, *, bn_batch_size=None, bn_images=BN_IMAGES):
    """The ``callbacks`` argument that scores every epoch of an estimator's training loop for
    :func:`select_checkpoints` (None for a job without checkpoint selection, ``job.checkpoints`` False).

    ``bn_batch_size``: the batch size the method re-estimates BatchNorm statistics with, or None when it does
    not re-estimate them (then the networks are scored as trained).
    """
    if not job.checkpoints:
        return None
    scoring = ValidationScoring({name: (data[f"X_{split}"], data[f"y_{split}"], data[f"s_{split}"])
                                 for name, split in validation_sets.items()}, np.unique(data.y_train))
    images = None if bn_batch_size is None else bn_subset(data.X_train, bn_images, job.seed)
    callback = ScoredCheckpoints(scoring, {rule: keys for rule, keys in rules.items()}, batchnorm_images=images,
                                 batch_size=bn_batch_size or 128, score_returned_model=True)
    return [(CALLBACK, callback)]


def returned_classifier(model):
    """The fitted classifier whose net the method's last training loop trained (the mitigator's ``estimator_``)."""
    return getattr(model, "estimator_", model)


def scored_checkpoints(model):
    """``(callback, reason)``: the benchmark's callback of the returned model's training loop, or None and why not."""
    if getattr(model, "selected_candidate_", None) is not None:
        return None, "the mitigator's held-out guard chose the returned model"
    net = getattr(returned_classifier(model), "net_", None)
    callback = dict(getattr(net, "callbacks_", None) or ()).get(CALLBACK)
    if callback is None:
        return None, "its last stage has no training loop (or ran without the checkpoint callback)"
    if not getattr(callback, "rows_", None):
        return None, "no training epoch (nothing was fine-tuned)"
    return callback, None


def last_predictions(model):
    """The returned model's predictions on each validation set, as its loop's benchmark callback made them when
    training ended (None when the model has no such callback)."""
    callback, _ = scored_checkpoints(model)
    return None if callback is None or callback.scoring is None else dict(callback.scoring.predictions_)


def select_checkpoints(model, data, validation_sets, evaluate, *, last):
    """Evaluate the epoch each rule chose while ``model`` trained (its :func:`checkpoint_callbacks`), in the state
    the rule kept: as it was scored (an earlier epoch with the statistics of the BatchNorm images it was scored
    with, the last one as the method returned it).

    Parameters
    ----------
    model : fitted estimator
        Trained with :func:`checkpoint_callbacks`; it is restored to its returned state before this returns.
    data : Bunch
        The task's splits (``X_test``, ``y_test``, ``s_test`` are read).
    validation_sets : dict record name -> split name
        ``{"train": "val_train", "group": "val"}``: the curve's keys are ``val_{name}_{ACC,WST}``.
    evaluate : callable ``(model, X, y, s) -> dict``
        The runner's evaluation (the fairness report and cell accuracies of a model on a split).
    last : dict
        The returned model's evaluation, ``{"metrics": test, "validation": {name: ...}}`` (its validation
        predictions are the callback's last ones, :func:`last_predictions`).

    Returns
    -------
    dict
        ``{"n_epochs", "curve", "selected": {rule: {"epoch", "metrics", "validation"}}, "bn_images", "scoring_s"}``,
        or ``{"reason": ...}`` when there are no epochs to choose from.
    """
    callback, reason = scored_checkpoints(model)
    if callback is None:
        return {"reason": reason}
    start = time.perf_counter()
    scores = callback.scores_
    n_epochs = int(scores["epoch"].max())
    curve = {"epoch": scores["epoch"].astype(int).tolist(),
             **{key: scores[key].tolist() for key in scores.columns if key.startswith("val_")}}
    n_bn = None if callback.bn_dataset_ is None else len(callback.bn_dataset_)
    module = returned_classifier(model).net_.module_
    returned = {k: v.detach().clone() for k, v in module.state_dict().items()}
    selected, tested = {}, {n_epochs: last["metrics"]}
    try:
        for rule, best in callback.best_.items():
            epoch = int(best["epoch"])
            if epoch not in tested:  # each chosen epoch is tested once, whichever rules chose it, as it was scored
                module.load_state_dict(callback.best_states_[rule])
                tested[epoch] = evaluate(model, data.X_test, data.y_test, data.s_test)
            validation = (last["validation"] if epoch == n_epochs else
                          {name: {key: curve[f"val_{name}_{key}"][epoch - 1] for key in ("ACC", "WST")}
                           for name in validation_sets})
            selected[rule] = {"epoch": epoch, "metrics": tested[epoch], "validation": validation}
    finally:
        module.load_state_dict(returned)
        callback.release()  # the kept states are no longer needed
    return {"n_epochs": n_epochs, "curve": curve, "selected": selected, "bn_images": n_bn,
            "scoring_s": round(callback.scoring_s_ + time.perf_counter() - start, 3)}
