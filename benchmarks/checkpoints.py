"""Checkpoint selection for every method (SubpopBench's protocol): score each epoch on both validation sets and
keep one checkpoint per selection rule.

Every estimator a run fits gets an :class:`~aimfair_plugin.estimators.EpochCheckpoints` callback in the training
loop of the model it returns (``callbacks=``: ERM's loop, a baseline's last stage, the mitigator's fine-tuning),
so after the fit the run holds the weights of every epoch. :func:`select_checkpoints` then scores each epoch on
the two validation sets (``val_train``: overall and worst-group accuracy; ``val_group``: the same), picks for each
rule of :data:`benchmarks.selection.RULES` the epoch with the best rule score (ties: its tie-break score, then the
earliest epoch), and evaluates the chosen epochs on the test split. The test split is read only for the chosen
epochs, never to choose.

BatchNorm statistics: a run whose method re-estimates them on the real training images after training
(``bn_statistics="real"``, the mitigator's default) returns, at epoch ``e``, epoch ``e``'s weights with re-estimated
statistics. Each epoch is scored so, with the statistics estimated on ``bn_images`` real training images (a fixed
random subset; all of them when None); the chosen epochs are then evaluated with statistics from all of them, which
is exactly the model the method would have returned had it stopped there. The validation scores a rule reads at
its checkpoint are the curve's (what the epoch was chosen on), so the variant and the epoch are chosen on the same
numbers. The records keep the curve, the chosen epochs with their test metrics, and what scoring cost.

A run without epochs to choose from (AFR's closed-form last stage, an empty mask, a model read from a cache that
kept no checkpoints, the mitigator's own held-out guard) keeps its returned model under every rule, with the reason.
"""

import time

import numpy as np
from sklearn.utils import check_random_state

from aimfair_plugin.estimators import EpochCheckpoints

# The name of the benchmark's checkpoint callback in every net it trains.
CALLBACK = "benchmark_checkpoints"
# Real training images the BatchNorm statistics of a scored epoch are estimated on (the chosen epochs: all).
BN_IMAGES = 512


def checkpoint_callbacks(job=None):
    """The ``callbacks`` argument that makes an estimator keep every epoch's weights for :func:`select_checkpoints`
    (None for a job that runs without checkpoint selection, ``job.checkpoints`` False)."""
    if job is not None and not job.checkpoints:
        return None
    return [(CALLBACK, EpochCheckpoints())]


def returned_classifier(model):
    """The fitted classifier whose net the method's last training loop trained (the mitigator's ``estimator_``)."""
    return getattr(model, "estimator_", model)


def epoch_states(model):
    """``(states, reason)``: each epoch's weights of the returned model's training loop, or None and why not."""
    if getattr(model, "selected_candidate_", None) is not None:
        return None, "the mitigator's held-out guard chose the returned model"
    net = getattr(returned_classifier(model), "net_", None)
    callback = dict(getattr(net, "callbacks_", None) or ()).get(CALLBACK)
    if callback is None:
        return None, "its last stage has no training loop (or ran without the checkpoint callback)"
    states = getattr(callback, "states_", None)
    if not states:
        return None, "no training epoch (nothing was fine-tuned, or the model came from a cache without checkpoints)"
    return states, None


def validation_scores(y, pred, s):
    """Overall and worst-(y, s)-group accuracy in %, rounded as the records round them (WST is NaN when a cell
    is empty, as in :func:`aimfair_plugin.metrics.fairness_report`)."""
    y, pred, s = np.asarray(y), np.asarray(pred), np.asarray(s)
    correct = y == pred
    cells = [correct[(y == a) & (s == b)] for a in np.unique(y) for b in np.unique(s)]
    worst = min(c.mean() for c in cells) if all(len(c) for c in cells) else np.nan
    return {"ACC": round(100.0 * float(correct.mean()), 3), "WST": round(100.0 * float(worst), 3)}


def choose_epoch(curve, score, tie):
    """The 1-based epoch with the highest ``curve[score]``, then ``curve[tie]``; ties go to the earliest."""
    keys = list(zip(curve[score], curve[tie]))
    return 1 + max(range(len(keys)), key=lambda i: (keys[i], -i))


def select_checkpoints(model, data, validation_sets, rules, evaluate, *, last, reestimate_batchnorm=False,
                       bn_images=BN_IMAGES, random_state=0):
    """Score every epoch of ``model`` on the validation sets, choose one per rule, evaluate the chosen ones.

    Parameters
    ----------
    model : fitted estimator
        Trained with :func:`checkpoint_callbacks`; it is restored to its returned state before this returns.
    data : Bunch
        The task's splits (``X_{split}``, ``y_{split}``, ``s_{split}``; ``X_train`` for the BatchNorm statistics).
    validation_sets : dict record name -> split name
        ``{"train": "val_train", "group": "val"}``: the curve's keys are ``val_{name}_{ACC,WST}``.
    rules : dict rule -> (score, tie-break score)
        Curve keys, e.g. ``{"label_free": ("val_train_ACC", "val_train_ACC")}``.
    evaluate : callable ``(model, X, y, s) -> dict``
        The runner's evaluation (the fairness report and cell accuracies of a model on a split).
    last : dict
        The returned model's evaluation, ``{"metrics": test, "validation": {name: ...}, "pred": {name: predictions}}``;
        the last epoch is scored from it without another pass.
    reestimate_batchnorm : bool
        Whether the method re-estimates BatchNorm statistics on the real training images after training.
    bn_images : int or None
        Real training images a scored epoch's statistics are estimated on (None: all).
    random_state : int
        Seeds the choice of those images.

    Returns
    -------
    dict
        ``{"n_epochs", "curve", "selected": {rule: {"epoch", "metrics", "validation"}}, "bn_images", "scoring_s"}``,
        or ``{"reason": ...}`` when there are no epochs to choose from.
    """
    states, reason = epoch_states(model)
    if states is None:
        return {"reason": reason}
    start = time.perf_counter()
    classifier = returned_classifier(model)
    module = classifier.net_.module_
    returned = {k: v.detach().clone() for k, v in module.state_dict().items()}
    X_bn = data.X_train
    if reestimate_batchnorm and bn_images is not None and bn_images < len(X_bn):
        X_bn = X_bn[np.sort(check_random_state(random_state).permutation(len(X_bn))[:bn_images])]

    def load(epoch, X_statistics):
        module.load_state_dict(states[epoch - 1])
        if reestimate_batchnorm:  # as the method does it (the mitigator: in batches of finetune_batch_size)
            model.reestimate_batchnorm(X_statistics)

    curve = {"epoch": list(range(1, len(states) + 1))}
    try:
        for epoch in curve["epoch"]:
            if epoch == len(states):  # the returned model itself
                preds = last["pred"]
            else:
                load(epoch, X_bn)
                preds = {name: model.predict(data[f"X_{split}"]) for name, split in validation_sets.items()}
            for name, split in validation_sets.items():
                for key, value in validation_scores(data[f"y_{split}"], preds[name], data[f"s_{split}"]).items():
                    curve.setdefault(f"val_{name}_{key}", []).append(value)
        selected, tested = {}, {len(states): last["metrics"]}
        for rule, (score, tie) in rules.items():
            epoch = choose_epoch(curve, score, tie)
            if epoch not in tested:  # each chosen epoch is tested once, whichever rules chose it
                load(epoch, data.X_train)
                tested[epoch] = evaluate(model, data.X_test, data.y_test, data.s_test)
            validation = (last["validation"] if epoch == len(states) else
                          {name: {key: curve[f"val_{name}_{key}"][epoch - 1] for key in ("ACC", "WST")}
                           for name in validation_sets})
            selected[rule] = {"epoch": epoch, "metrics": tested[epoch], "validation": validation}
    finally:
        module.load_state_dict(returned)
        dict(classifier.net_.callbacks_)[CALLBACK].states_ = []  # the copies are no longer needed
    return {"n_epochs": len(states), "curve": curve, "selected": selected,
            "bn_images": (len(X_bn) if reestimate_batchnorm else None),
            "scoring_s": round(time.perf_counter() - start, 3)}
