"""FairIF (Wang et al.): influence-function sample weights that equalise TPR and TNR on a validation set.

Stage one trains ERM to convergence. The influence of up-weighting training
sample i by eps_i on a differentiable fairness measure F of the validation
groups is (Eq. 9-11) ``-(mean grad F)^T H^{-1} grad l(z_i) eps_i``, with H the
Hessian of the training loss, so the change in the gap
``F(D^0) - F(D^1)`` is linear in eps: ``c^T eps`` with
``c_i = (H^{-1} v)^T grad l(z_i)`` and ``v = mean_{D^1} grad F - mean_{D^0} grad F``.
Eq. 14 picks eps to close the smoothed TPR gap and the smoothed TNR gap,
with a penalty ``lambda ||eps||_2``; stage two retrains with weights
``1/n + eps`` (Eq. 15).

Computation: ``H^{-1} v`` by LiSSA (stochastic Neumann series with
Hessian-vector products, Appendix C); ``c_i`` for all i by forward-mode
differentiation (one Jacobian-vector product per batch), never materialising
per-sample gradients; Eq. 14 exactly, since its minimiser lies in the span
of the two influence vectors (a 2-D problem).
"""

import os
from numbers import Integral, Real

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import minimize
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from torch.func import functional_call, jvp
from torch.utils.data import DataLoader, TensorDataset, default_collate

from .._device import resolve_device
from ..nets import classifier_head
from ._classifier import ImageClassifier, fit_stage_one, head_inputs, validate_labels, with_backbone_params
from ._data import loader_options


def lissa(hvp, v, batches, *, scale, damping=0.0, iterations=100, repeats=1, random_state=None):
    """Inverse-Hessian-vector product ``(H + damping I)^{-1} v`` by LiSSA.

    Repeats ``h <- v + h - (H_b h + damping h) / scale`` for ``iterations``
    random minibatches ``b`` (a Neumann series that converges when
    ``scale`` exceeds the largest eigenvalue of ``H + damping I``), returns
    ``h / scale`` averaged over ``repeats`` independent runs.

    Parameters
    ----------
    hvp : callable (batch, vector) -> vector
        Hessian of the mean training loss on ``batch`` times ``vector``.
    v : 1-D tensor
    batches : sequence
        Minibatches to draw from.
    scale, damping : float
    iterations, repeats : int
    """
    rng = check_random_state(random_state)
    estimates = []
    for _ in range(repeats):
        h = v.clone()
        for _ in range(iterations):
            batch = batches[rng.randint(len(batches))]
            h = v + h - (hvp(batch, h) + damping * h) / scale
        estimates.append(h / scale)
    return torch.stack(estimates).mean(0)


class Batches:
    """The minibatches of a dataset, read on demand: ``batches[i]`` collates batch ``i`` (LiSSA draws random
    ones), iteration streams them in order through a DataLoader (files decoded in its workers). Nothing is
    kept, so memory does not grow with the dataset."""

    def __init__(self, dataset, batch_size, loader_kwargs=None):
        self.dataset, self.batch_size, self.loader_kwargs = dataset, int(batch_size), dict(loader_kwargs or {})

    def __len__(self):
        return -(-len(self.dataset) // self.batch_size)

    def __getitem__(self, i):
        if not 0 <= i < len(self):
            raise IndexError(i)
        stop = min(len(self.dataset), (i + 1) * self.batch_size)
        return default_collate([self.dataset[j] for j in range(i * self.batch_size, stop)])

    def __iter__(self):
        return iter(DataLoader(self.dataset, batch_size=self.batch_size, shuffle=False, **self.loader_kwargs))


def solve_weights(gaps, influence, reg_lambda):
    """Eq. 14: ``argmin_eps ||gaps + influence @ eps||^2 + reg_lambda * ||eps||_2``.

    ``gaps`` (k,) are the current validation gaps, ``influence`` (k, n) their
    linear change per unit of each sample's weight. The minimiser lies in the
    row space of ``influence`` (any other component only adds norm), so it is
    ``influence.T @ beta`` with ``beta`` from a k-dimensional problem.
    """
    gaps, influence = np.asarray(gaps, float), np.asarray(influence, float)
    gram = influence @ influence.T

    def objective(beta):
        residual = gaps + gram @ beta
        return residual @ residual + reg_lambda * np.sqrt(max(beta @ gram @ beta, 0.0))

    start = -np.linalg.pinv(gram) @ gaps
    best = min((minimize(objective, x0, method="Nelder-Mead", options={"xatol": 1e-12, "fatol": 1e-14,
                                                                       "maxiter": 4000})
                for x0 in (start, 0.5 * start, np.zeros_like(gaps))), key=lambda r: r.fun)
    return influence.T @ best.x


def _flat(tensors):
    return torch.cat([t.reshape(-1) for t in tensors])


def _unflat(vector, like):
    out, start = [], 0
    for t in like:
        out.append(vector[start : start + t.numel()].view_as(t))
        start += t.numel()
    return out


@with_backbone_params(
    influence_layers="last",
    reg_lambda=0.1,
    temperature=1.0,
    lissa_iterations=200,
    lissa_repeats=1,
    lissa_scale="auto",
    lissa_damping=0.1,
    lissa_batch_size=256,
    max_weight=5.0,
    stage_two_lr=None,
    memory=None,
)
class InfluenceReweightingClassifier(ImageClassifier):
    """FairIF: retrain with influence-function sample weights that equalise validation TPR and TNR.

    Needs no protected attribute for the training data, only for a small
    validation set passed to ``fit`` (routable with sklearn metadata
    routing: ``set_fit_request(X_val=True, y_val=True,
    sensitive_features_val=True)``). Works with the ResNet and, with
    ``arch="logistic"``, as logistic regression on tabular features.

    Parameters
    ----------
    influence_layers : {"last", "all"}, default="last"
        Parameters the influence is computed for: the final linear layer
        (``fc``; exact for logistic regression) or every parameter.
    reg_lambda : float, default=0.1
        lambda of Eq. 14 (penalty on ``||eps||_2``).
    temperature : float, default=1.0
        TPR and TNR are smoothed as the mean softmax probability of the true
        class at this temperature (the deterministic limit of the paper's
        Gumbel-softmax relaxation).
    lissa_iterations, lissa_repeats : int, default=200, 1
    lissa_scale : float or "auto", default="auto"
        "auto": 1.5 times the largest Hessian eigenvalue, estimated by power
        iteration on a minibatch.
    lissa_damping : float, default=0.1
        Added to the Hessian's diagonal: keeps it positive definite and the
        LiSSA recursion stable; the package's tuning choice (results page "Tuned settings").
    lissa_batch_size : int, default=256
    max_weight : float or None, default=5.0
        Cap on each sample's weight (weights have mean 1 before the cap;
        ``None`` = no cap). Single influence weights can be far above the
        mean, and stage two is unstable with them at the backbone's learning
        rate; a cap of 5 keeps the reweighting without letting a few samples
        dominate (results page "Tuned settings").
    stage_two_lr : float or None, default=None
        Learning rate of the weighted retraining (``None`` = ``lr``: the
        weighted retraining is an ordinary training run).
    memory : "process", str path, joblib.Memory or None, default=None
        Cache for the stage-one ERM model, keyed by the data and every
        backbone parameter (the same key :class:`SelectiveFinetuneMitigator`
        uses), so fits that differ only in the influence or stage-two
        settings train stage one once. Used only without ``sample_weight``
        and with an int ``random_state``.
    **backbone
        All :class:`ImageClassifier` parameters.

    Attributes
    ----------
    stage_one_estimator_ : ImageClassifier
        The ERM model the influences are computed at.
    sample_weights_ : ndarray of shape (n_samples,)
        ``n * (1/n + eps_i)``, clipped at 0: 1 means unchanged.
    validation_gaps_ : dict
        Smoothed ``TPR`` and ``TNR`` gaps (group 0 minus group 1) of stage one.
    predicted_gaps_ : dict
        The same gaps after reweighting, as the influence function predicts.
    lissa_scale_ : float

    Examples
    --------
    >>> from sklearn.datasets import make_classification
    >>> from aimfair_plugin.estimators import InfluenceReweightingClassifier
    >>> X, y = make_classification(n_samples=200, n_features=5, random_state=0)
    >>> s = (X[:, 0] > 0).astype(int)
    >>> clf = InfluenceReweightingClassifier(arch='logistic', max_epochs=5, lissa_iterations=20, random_state=0)
    >>> X = X.astype('float32')
    >>> clf.fit(X, y, X_val=X[:50], y_val=y[:50], sensitive_features_val=s[:50]).sample_weights_.shape
    (200,)
    """

    _parameter_constraints = {
        **ImageClassifier._parameter_constraints,
        "influence_layers": [StrOptions({"last", "all"})],
        "reg_lambda": [Interval(Real, 0, None, closed="left")],
        "temperature": [Interval(Real, 0, None, closed="neither")],
        "lissa_iterations": [Interval(Integral, 1, None, closed="left")],
        "lissa_repeats": [Interval(Integral, 1, None, closed="left")],
        "lissa_scale": [StrOptions({"auto"}), Interval(Real, 0, None, closed="neither")],
        "lissa_damping": [Interval(Real, 0, None, closed="left")],
        "lissa_batch_size": [Interval(Integral, 1, None, closed="left")],
        "max_weight": [None, Interval(Real, 1, None, closed="left")],
        "stage_two_lr": [None, Interval(Real, 0, None, closed="neither")],
        "memory": [None, str, os.PathLike, HasMethods(["cache"])],
    }

    def _check_validation(self, X_val, y_val, sensitive_features_val):
        if X_val is None or y_val is None or sensitive_features_val is None:
            raise ValueError(
                "InfluenceReweightingClassifier.fit needs X_val, y_val and sensitive_features_val: a small "
                "validation set that carries the protected attribute."
            )
        val = self._check_X(X_val)
        y_val = validate_labels(y_val, len(val))
        s_val = np.asarray(sensitive_features_val)
        if s_val.ndim != 1 or len(s_val) != len(val):
            raise ValueError(f"sensitive_features_val must be 1-D with one value per validation sample ({len(val)}).")
        if len(self.classes_) != 2 or not np.isin(y_val, self.classes_).all():
            raise ValueError("FairIF equalises TPR and TNR: it needs a binary target, the same labels in y and y_val.")
        groups = np.unique(s_val)
        if len(groups) != 2:
            raise ValueError(f"sensitive_features_val must have exactly two groups, got {groups.tolist()}.")
        y_enc = np.searchsorted(self.classes_, y_val)
        s_enc = (s_val == groups[1]).astype(int)
        for cls in (0, 1):
            for g in (0, 1):
                if not np.any((y_enc == cls) & (s_enc == g)):
                    raise ValueError(f"The validation set has no sample with y={self.classes_[cls]}, s={groups[g]}.")
        return val, y_enc, s_enc

    def fit(self, X, y, sample_weight=None, *, X_val=None, y_val=None, sensitive_features_val=None):
        """Stage one (ERM), influence weights from the validation set, stage two (weighted retraining)."""
        data = self._validate_fit_input(X, y, sample_weight)
        X, y, weights = data.images.X, data.y, data.sample_weight
        val_images, y_val, s_val = self._check_validation(X_val, y_val, sensitive_features_val)
        self.stage_one_estimator_ = fit_stage_one(self, X, y, sample_weight)
        module = self.stage_one_estimator_.net_.module_.eval()
        device = resolve_device(self.device)
        y_train = np.searchsorted(self.classes_, y)
        train = self.stage_one_estimator_._dataset(data.images, y_train)
        val = self.stage_one_estimator_._dataset(val_images, y_val)
        if self.influence_layers == "last":
            # Only ``fc`` varies: its inputs are fixed, so compute them once instead of in every LiSSA step.
            net = classifier_head(module)[1]
            train, val = (self._head_inputs(module, data, device) for data in (train, val))
        else:
            net = module
        params = {n: p.detach() for n, p in net.named_parameters()}

        def loss_on(p, batch, per_sample=False):
            x, target = batch
            logits = functional_call(net, p, (x.to(device),)).float()
            losses = F.cross_entropy(logits, target.to(device), reduction="none")
            return losses if per_sample else losses.mean()

        def hvp(batch, vector):
            p = {n: t.clone().requires_grad_(True) for n, t in params.items()}
            grads = torch.autograd.grad(loss_on(p, batch), list(p.values()), create_graph=True)
            dot = sum((g * v).sum() for g, v in zip(grads, _unflat(vector, list(p.values()))))
            return _flat(torch.autograd.grad(dot, list(p.values()))).detach()

        gaps, directions = self._validation_gaps(net, params, val, s_val, y_val, device)
        batches = Batches(train, self.lissa_batch_size, self._loader_options(train, device))
        rng = check_random_state(self.random_state)
        self.lissa_scale_ = self._lissa_scale(hvp, batches, directions[0], rng)
        inverse = [lissa(hvp, d, batches, scale=self.lissa_scale_, damping=self.lissa_damping,
                         iterations=self.lissa_iterations, repeats=self.lissa_repeats, random_state=rng)
                   for d in directions]
        influence = np.stack([self._directional_losses(loss_on, params, batches, a) for a in inverse])
        n = len(y)
        eps = solve_weights(gaps, influence, self.reg_lambda)
        w = np.clip(1.0 / n + eps, 0.0, None)
        if self.max_weight is not None:
            w = np.minimum(w, self.max_weight / n)
        self.sample_weights_ = w * n
        self.validation_gaps_ = dict(zip(("TPR", "TNR"), np.round(gaps, 6).tolist()))
        predicted = gaps + influence @ (w - 1.0 / n)
        self.predicted_gaps_ = dict(zip(("TPR", "TNR"), np.round(predicted, 6).tolist()))
        final = self.sample_weights_ if weights is None else self.sample_weights_ * weights
        return self._fit_net(data._replace(sample_weight=final.astype(np.float32)), lr=self.stage_two_lr)

    def _loader_options(self, dataset, device):
        return loader_options(self.num_workers, dataset, device, persistent=False)  # each loader makes one pass

    def _head_inputs(self, module, dataset, device):
        """``(features, label)`` pairs: what the final layer of ``module`` reads for each item of ``dataset``.

        Images are streamed batch by batch; the features are kept (``n x d`` floats: 2 KB per image for the
        standard ResNet-18's 512 features, 41 MB for 20,000 images, less than one batch of 224 px images), so
        the LiSSA loop runs the last layer only instead of the whole network 200+ times.
        """
        loader = DataLoader(dataset, batch_size=self.lissa_batch_size, shuffle=False,
                            **self._loader_options(dataset, device))
        return TensorDataset(*head_inputs(module, loader, device))

    def _validation_gaps(self, module, params, val, s_val, y_val, device):
        """Smoothed TPR and TNR gaps (group 0 - group 1) and the gradients v of group 1 - group 0."""
        p = {n: t.clone().requires_grad_(True) for n, t in params.items()}
        loader = DataLoader(val, batch_size=self.lissa_batch_size, shuffle=False, **self._loader_options(val, device))
        probs = torch.cat([
            F.softmax(functional_call(module, p, (x.to(device),)).float() / self.temperature, dim=1)
            for x, _ in loader
        ])
        y_t, s_t = torch.as_tensor(y_val, device=probs.device), torch.as_tensor(s_val, device=probs.device)
        gaps, directions = [], []
        for cls in (1, 0):  # TPR: mean P(h=1) over positives; TNR: mean P(h=0) over negatives
            rate = [probs[(y_t == cls) & (s_t == g), cls].mean() for g in (0, 1)]
            gaps.append(float((rate[0] - rate[1]).detach()))
            grads = torch.autograd.grad(rate[1] - rate[0], list(p.values()), retain_graph=True)
            directions.append(_flat(grads).detach())
        return np.array(gaps), directions

    def _lissa_scale(self, hvp, batches, start, rng):
        if self.lissa_scale != "auto":
            return float(self.lissa_scale)
        v = torch.as_tensor(rng.standard_normal(start.numel()), dtype=start.dtype, device=start.device)
        eigen = 0.0
        for _ in range(20):  # power iteration for the largest eigenvalue of a minibatch Hessian
            hv = hvp(batches[0], v / v.norm())
            eigen, v = float(hv.norm()), hv
        return 1.5 * (eigen + float(self.lissa_damping)) + 1e-8

    @staticmethod
    def _directional_losses(loss_on, params, batches, direction):
        """``c_i = direction . grad l(z_i)`` for every training sample, by forward-mode differentiation."""
        tangent = dict(zip(params, _unflat(direction, list(params.values()))))
        out = []
        for batch in batches:
            _, dots = jvp(lambda p: loss_on(p, batch, per_sample=True), (params,), (tangent,))
            out.append(dots.detach().cpu().numpy())
        return np.concatenate(out)
