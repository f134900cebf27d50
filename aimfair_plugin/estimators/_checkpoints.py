"""Checkpoint selection inside the training loop: score each candidate on held-out data while training runs and
keep only the best state per criterion (skorch's ``EpochScoring`` + ``Checkpoint(load_best=True)`` pattern).

One callback, :class:`ScoredCheckpoints`, serves the mitigator's held-out candidate selection and the
benchmark's per-epoch checkpoint selection; :func:`predict_indices` and :func:`interpolate_states` are the pieces
it composes.
"""

import math
import time

import numpy as np
import pandas as pd
import torch
from skorch.callbacks import Callback

from ._callbacks import reestimate_batchnorm_statistics
from ._data import ImageInput, check_images


def interpolate_states(pre, post, alpha):
    """WiSE-FT's weight-space interpolation ``(1 - alpha) * pre + alpha * post`` of two state dicts.

    Floating-point entries are interpolated (running statistics too); integer entries (BatchNorm's
    ``num_batches_tracked``) are taken from ``post``. ``alpha=0`` and ``alpha=1`` return copies of ``pre`` and
    ``post`` exactly, bit for bit.

    Parameters
    ----------
    pre, post : dict name -> torch.Tensor
        Two state dicts of one architecture.
    alpha : float in [0, 1]
        The weight of ``post``.

    Returns
    -------
    state : dict name -> torch.Tensor

    Examples
    --------
    >>> import torch
    >>> from aimfair_plugin.estimators import interpolate_states
    >>> interpolate_states({'w': torch.zeros(2)}, {'w': torch.ones(2)}, 0.25)['w'].tolist()
    [0.25, 0.25]
    """
    if alpha == 0:
        return {k: v.clone() for k, v in pre.items()}
    if alpha == 1:
        return {k: v.clone() for k, v in post.items()}
    out = {}
    for key, b in post.items():
        a = pre[key].to(b.device)
        out[key] = torch.lerp(a, b, float(alpha)) if b.is_floating_point() else b.clone()
    return out


def as_image_dataset(X, image_size=None):
    """``X`` as the torch Dataset the package's nets read, checked as ``ImageClassifier`` checks it.

    Parameters
    ----------
    X : ndarray (n_samples, C, H, W), 1-D array of image paths, 2-D feature matrix, or torch Dataset
        Images (paths decoded batch by batch at ``image_size``), the features of ``arch="logistic"``, or a
        Dataset (returned as it is).
    image_size : int or (int, int), optional
        The size paths are decoded at.

    Returns
    -------
    dataset : torch Dataset

    Examples
    --------
    >>> import numpy as np
    >>> from aimfair_plugin.estimators import as_image_dataset
    >>> len(as_image_dataset(np.zeros((5, 3, 8, 8), 'float32')))
    5
    """
    if isinstance(X, torch.utils.data.Dataset):
        return X
    X = np.asarray(X)
    if X.ndim == 2 and X.dtype.kind in "fiub":  # a feature matrix (the logistic model)
        return ImageInput(*check_images(X, tabular=True)).dataset()
    return ImageInput.check(X, image_size).dataset()


def predict_indices(net, X, image_size=None):
    """Class indices (``argmax`` of the probabilities) a skorch net predicts for ``X``, exactly as
    ``ImageClassifier.predict`` computes them (the net's own batch size; map with ``classes_[indices]``).

    Parameters
    ----------
    net : skorch.NeuralNet
        Initialised.
    X : ndarray (n_samples, C, H, W), 1-D array of image paths, or torch Dataset
        Images as the estimator reads them (see :func:`as_image_dataset`).
    image_size : int or (int, int), optional
        The size paths are decoded at (the estimator's ``image_size``).

    Returns
    -------
    indices : ndarray of int

    Examples
    --------
    >>> from aimfair_plugin.datasets import make_colored_mnist
    >>> from aimfair_plugin.estimators import ImageClassifier, predict_indices
    >>> data = make_colored_mnist(n_train=200, n_test=40, minority_share=0.05, image_size=16, random_state=0)
    >>> clf = ImageClassifier(width=4, max_epochs=1, augment=False, random_state=0).fit(data.X_train, data.y_train)
    >>> (clf.classes_[predict_indices(clf.net_, data.X_test)] == clf.predict(data.X_test)).all()
    np.True_
    """
    return np.asarray(net.predict_proba(as_image_dataset(X, image_size))).argmax(axis=1)


def _state(module):
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}


def _rank_key(values):
    """Higher is better; NaN ranks below every number."""
    return tuple(-math.inf if (v is None or (isinstance(v, float) and math.isnan(v))) else float(v) for v in values)


class ScoredCheckpoints(Callback):
    """Score every epoch on held-out data while training runs; keep only the best state per criterion.

    At the end of each epoch the network is scored by ``scoring`` (optionally after its BatchNorm statistics
    are re-estimated on real images, which are restored afterwards so that training continues unchanged); for
    each criterion of ``monitor`` the state of the best candidate so far is kept (one CPU copy per criterion,
    never every epoch's). Scoring draws nothing from torch's random generator (its state is restored), so a
    model trained with this callback has the same weights as one trained without it.

    Candidates, in order (ties go to the earliest):

    - ``"start"`` (epoch 0) with ``score_start=True``: the weights training starts from, as they are;
    - ``"epoch e"``: the weights after epoch ``e``; with ``score_returned_model=True`` the last epoch is
      scored when training ends, on the model as the callbacks before this one leave it (e.g. with BatchNorm
      statistics re-estimated on all real images), instead of at the epoch's end;
    - ``"alpha a"`` for each of ``interpolation_alphas``: WiSE-FT interpolations ``(1 - a) * start + a * last``
      (the start weights are kept for them), scored when training ends.

    Parameters
    ----------
    scoring : callable ``(net, candidate) -> dict``
        The scores of the network as it stands (higher is better), e.g. accuracy and worst-group accuracy on a
        validation set (:func:`aimfair_plugin.metrics.worst_group_accuracy`). ``candidate`` is the row so far:
        ``{"candidate": name, "epoch": e, "alpha": a}``.
    monitor : str, sequence of str, or dict criterion -> sequence of str
        Which scores rank the candidates: one score, a tuple compared in order (a score and its tie-breaks), or
        several named criteria, each keeping its own best state. NaN ranks lowest.
    batchnorm_images : ndarray, 1-D array of image paths or torch Dataset, optional
        Real images (see :func:`as_image_dataset`); before an epoch or an interpolation is scored, every
        BatchNorm layer's statistics are re-estimated on them
        (:func:`~aimfair_plugin.estimators.reestimate_batchnorm_statistics`, the labels are not read). The kept
        state holds the re-estimated statistics.
    batch_size : int, default=128
        Images per forward pass of that re-estimation.
    num_workers : int or "auto", default="auto"
        DataLoader workers of that re-estimation.
    score_start : bool, default=False
        Score the starting weights as candidate ``"start"`` (needed for ``interpolation_alphas``).
    interpolation_alphas : sequence of float in (0, 1), default=()
    score_returned_model : bool, default=False
        Score the last epoch when training ends, after the callbacks before this one (see above).
    batchnorm_variants : bool, default=False
        With ``batchnorm_images``: every epoch and interpolation is a candidate twice, first with its BatchNorm
        statistics as training left them (``"batchnorm": "trained"`` in its row), then re-estimated
        (``"real"``). The pre-trained start and a returned model are scored as they are.
    every_epoch : bool, default=True
        Score every epoch; with False only the last one (and the start and the interpolations when asked): the
        candidates are then the model training returns, e.g. with and without its BatchNorm statistics
        re-estimated (``batchnorm_variants=True``).
    load_best : str, optional
        A criterion of ``monitor`` whose best state is loaded into the network when training ends.

    Attributes
    ----------
    scores_ : pandas.DataFrame
        One row per scored candidate: ``candidate``, ``epoch``, ``alpha`` and every score.
    best_ : dict criterion -> dict
        The row of each criterion's best candidate, with its position ``row`` in ``scores_``.
    best_states_ : dict criterion -> dict
        The kept state dict (CPU) of each criterion's best candidate; :meth:`release` drops them.
    scoring_s_ : float
        Seconds spent scoring (BatchNorm re-estimation included), what the callback adds to training.

    Examples
    --------
    >>> from aimfair_plugin.datasets import make_colored_mnist
    >>> from aimfair_plugin.estimators import ImageClassifier, ScoredCheckpoints, predict_indices
    >>> from aimfair_plugin.metrics import worst_group_accuracy
    >>> data = make_colored_mnist(n_train=300, n_test=100, minority_share=0.05, image_size=16, random_state=0)
    >>> X_val, y_val, s_val = data.X_test[:50], data.y_test[:50], data.s_test[:50]  # a held-out split
    >>> def scoring(net, candidate):
    ...     pred = predict_indices(net, X_val)
    ...     return {"ACC": float((pred == y_val).mean()), "WST": worst_group_accuracy(y_val, pred, s_val)}
    >>> best = ScoredCheckpoints(scoring, {"group": ("WST", "ACC")}, load_best="group")
    >>> clf = ImageClassifier(width=4, max_epochs=2, batch_size=64, augment=False, random_state=0,
    ...                       callbacks=[("best", best)]).fit(data.X_train, data.y_train)
    >>> len(best.scores_), best.best_["group"]["epoch"] in (1, 2)
    (2, True)
    """

    def __init__(self, scoring, monitor, *, batchnorm_images=None, batch_size=128, num_workers="auto",
                 score_start=False, interpolation_alphas=(), score_returned_model=False, batchnorm_variants=False,
                 every_epoch=True, load_best=None):
        self.scoring = scoring
        self.monitor = monitor
        self.batchnorm_images = batchnorm_images
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.score_start = score_start
        self.interpolation_alphas = interpolation_alphas
        self.score_returned_model = score_returned_model
        self.batchnorm_variants = batchnorm_variants
        self.every_epoch = every_epoch
        self.load_best = load_best

    def _criteria(self):
        monitor = self.monitor
        if isinstance(monitor, str):
            return {monitor: (monitor,)}
        if isinstance(monitor, dict):
            return {name: (keys,) if isinstance(keys, str) else tuple(keys) for name, keys in monitor.items()}
        return {monitor[0]: tuple(monitor)}

    def initialize(self):
        criteria = self._criteria()
        if self.load_best is not None and self.load_best not in criteria:
            raise ValueError(f"load_best={self.load_best!r} is not a criterion of monitor ({sorted(criteria)}).")
        alphas = tuple(self.interpolation_alphas)
        if alphas and not self.score_start:
            raise ValueError("interpolation_alphas need score_start=True (they interpolate from the start weights).")
        if not all(0 < a < 1 for a in alphas):
            raise ValueError(f"interpolation_alphas must lie in (0, 1), got {alphas!r}.")
        return self

    # -- the loop -------------------------------------------------------------------------------------

    def on_train_begin(self, net, X=None, y=None, **kwargs):
        # (fitted attributes end in "_": skorch reads every other attribute as a constructor parameter)
        self.rows_, self.best_, self.best_states_, self.keys_, self.scoring_s_ = [], {}, {}, {}, 0.0
        self.criteria_ = self._criteria()
        self.bn_dataset_ = None if self.batchnorm_images is None else as_image_dataset(self.batchnorm_images)
        self.start_ = _state(net.module_) if self.interpolation_alphas else None
        if self.score_start:
            self._score(net, "start", 0, 0.0, reestimate=False)

    def on_epoch_end(self, net, **kwargs):
        epoch = len(net.history)
        if self.score_returned_model and epoch >= net.max_epochs:
            return  # scored when training ends, as returned
        if not self.every_epoch and epoch < net.max_epochs:
            return  # only the last epoch is a candidate
        self._score(net, f"epoch {epoch}", epoch, 1.0, reestimate=True)

    def on_train_end(self, net, X=None, y=None, **kwargs):
        epoch = len(net.history)
        if epoch and not any(row["epoch"] == epoch and row["alpha"] == 1.0 for row in self.rows_):
            # as returned, or (training stopped early with every_epoch=False) as an epoch's end would score it
            self._score(net, f"epoch {epoch}", epoch, 1.0, reestimate=not self.score_returned_model)
        if self.interpolation_alphas and epoch:
            module = net.module_
            last = _state(module)
            for alpha in sorted(set(self.interpolation_alphas)):
                module.load_state_dict(interpolate_states(self.start_, last, alpha))
                self._score(net, f"alpha {alpha:g}", epoch, float(alpha), reestimate=True, restore=False)
            module.load_state_dict(last)
        self.start_ = None
        if self.load_best is not None and self.load_best in self.best_states_:
            net.module_.load_state_dict(self.best_states_[self.load_best])

    @property
    def scores_(self):
        return pd.DataFrame(getattr(self, "rows_", []))

    def release(self):
        """Drop the kept states and the data references (a fitted net then pickles small); returns self."""
        self.best_states_ = {}
        self.scoring = self.batchnorm_images = self.bn_dataset_ = None
        return self

    # -- one candidate --------------------------------------------------------------------------------

    def _score(self, net, name, epoch, alpha, *, reestimate, restore=True):
        row = {"candidate": name, "epoch": int(epoch), "alpha": float(alpha)}
        if not self.batchnorm_variants:
            return self._score_one(net, row, reestimate=reestimate, restore=restore)
        if reestimate and self.bn_dataset_ is not None:  # as trained, then re-estimated
            self._score_one(net, {**row, "batchnorm": "trained"}, reestimate=False, restore=restore)
            return self._score_one(net, {**row, "batchnorm": "real"}, reestimate=True, restore=restore)
        return self._score_one(net, {**row, "batchnorm": "as is"}, reestimate=reestimate, restore=restore)

    def _score_one(self, net, row, *, reestimate, restore=True):
        """Score the network as it stands (after re-estimating its statistics when asked) as candidate ``row``."""
        began = time.perf_counter()
        module = net.module_
        rng = torch.get_rng_state()
        cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
        was_training = module.training
        reestimate = reestimate and self.bn_dataset_ is not None
        buffers = {k: b.detach().clone() for k, b in module.named_buffers()} if reestimate and restore else None
        try:
            if reestimate:
                reestimate_batchnorm_statistics(module, self.bn_dataset_, batch_size=self.batch_size,
                                                device=net.device, num_workers=self.num_workers)
            row = {**row, **self.scoring(net, dict(row))}
            self.rows_.append(row)
            self._keep(module, row)
        finally:
            if buffers is not None:
                with torch.no_grad():
                    for k, b in module.named_buffers():
                        b.copy_(buffers[k])
            module.train(was_training)
            torch.set_rng_state(rng)
            if cuda_rng is not None:
                torch.cuda.set_rng_state_all(cuda_rng)
            self.scoring_s_ += time.perf_counter() - began

    def _keep(self, module, row):
        state = None
        for criterion, keys in self.criteria_.items():
            missing = [k for k in keys if k not in row]
            if missing:
                raise KeyError(f"monitor criterion {criterion!r} reads {missing}, which scoring did not return "
                               f"(it returned {sorted(k for k in row if k not in ('candidate', 'epoch', 'alpha'))}).")
            key = _rank_key(row[k] for k in keys)
            if criterion not in self.keys_ or key > self.keys_[criterion]:
                state = _state(module) if state is None else state
                self.keys_[criterion] = key
                self.best_[criterion] = {**row, "row": len(self.rows_) - 1}
                self.best_states_[criterion] = state
