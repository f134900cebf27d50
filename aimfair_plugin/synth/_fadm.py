"""FairTabularDiffusion: FADM (fairness-aware diffusion with meta-learning) for tabular data.

A denoising diffusion model over the encoded features (numeric standardised, categorical one-hot),
a label classifier p(y | x_t, t) and a sensitive-attribute classifier p(z | x_t, t), all three trained
on noisy inputs and, with ``meta_learning=True``, with the MAML-style meta-learning of the paper's
Algorithm 1 over the given domains. Sampling solves the reverse process with classifier guidance
towards the requested labels (λ_y ∇ log p(y | x_t)) plus entropy guidance that makes the sensitive
attribute hard to predict (λ_z ∇ H(p(z | x_t))), the paper's Eq. 11.

Relation to the image providers: :class:`SyntheticDataProvider` returns images per (y, s) cell, with
s stated in each prompt. FADM does the opposite with s: it generates rows *per label* whose sensitive
attribute is as unpredictable as the model can make it, so a per-(y, s) ``sample(group_counts)`` does
not apply; call ``sample(n, y=labels)`` and train any downstream classifier on the result.
"""

from numbers import Integral, Real

import numpy as np
import pandas as pd
import torch
from sklearn.base import BaseEstimator
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import check_is_fitted
from skorch.history import History
from torch import nn
from torch.func import functional_call
from tqdm.auto import tqdm

from .._device import resolve_device
from .._validation import check_int, validate_declared
from ._tabular import TabularEncoder


def timestep_embedding(t, dim, n_steps):
    """Sinusoidal embedding of integer timesteps, scaled to [0, 1000]: diffusers' ``get_timestep_embedding``
    (sines then cosines, frequencies ``10000 ** (-i / (dim // 2))``)."""
    from diffusers.models.embeddings import get_timestep_embedding

    return get_timestep_embedding(t.float() * (1000.0 / n_steps), dim, flip_sin_to_cos=False,
                                  downscale_freq_shift=0)


class TimeConditionedMLP(nn.Module):
    """MLP on [x, embedding(t)]: the score (noise) network and the two guiding classifiers."""

    def __init__(self, in_features, out_features, *, hidden=256, n_layers=3, n_steps=100, t_dim=32):
        super().__init__()
        self.n_steps, self.t_dim = n_steps, t_dim
        layers, width = [], in_features + t_dim
        for _ in range(n_layers):
            layers += [nn.Linear(width, hidden), nn.SiLU()]
            width = hidden
        layers.append(nn.Linear(width, out_features))
        self.net = nn.Sequential(*layers)

    def forward(self, x, t):
        return self.net(torch.cat([x, timestep_embedding(t, self.t_dim, self.n_steps)], dim=1))


def _entropy(logits):
    logp = torch.log_softmax(logits, dim=1)
    return -(logp.exp() * logp).sum(dim=1)


class FairTabularDiffusion(BaseEstimator):
    """Fair tabular data generation: a guided, meta-learned diffusion model (FADM).

    Parameters
    ----------
    n_steps : int, default=100
        Diffusion steps of the DDPM noise schedule (diffusers' ``DDPMScheduler``,
        linear betas), used for training and sampling.
    guidance_label : float, default=1.0
        λ_y, the weight of the label classifier's guidance ∇ log p(y | x_t).
    guidance_fair : float, default=1.0
        λ_z, the weight of the entropy guidance ∇ H(p(z | x_t)) on the
        sensitive classifier. 0 and 0 give the unguided model.
    meta_learning : bool, default=True
        Train all three networks with the MAML scheme of Algorithm 1: each
        iteration holds one domain out (B_out), takes an inner step of size
        ``inner_lr`` on the other domains (B_in), and updates with
        L(B_in, θ) + ``meta_weight`` · L(B_out, θ̂) (second order). Needs
        ``domains`` with at least two values. ``False``: plain training.
    max_epochs : int, default=30
        Passes over the training rows (iterations = max_epochs · n / batch_size);
        named like every other estimator's epochs.
    batch_size : int, default=256
        Rows per iteration; with meta-learning each domain contributes an equal
        share (drawn with replacement from small domains), so rare domains are
        held out as often as large ones.
    lr : float, default=1e-3
        Adam learning rate of the outer update (γ).
    inner_lr : float, default=1e-3
        Inner step size (α).
    meta_weight : float, default=1.0
        β, the weight of the held-out-domain loss.
    hidden, n_layers : int, default=256, 3
        Width and depth of the three MLPs.
    categorical : list of str, optional
        Columns to one-hot encode (default: the non-numeric columns).
    random_state : int, RandomState or None
    device : str, default="auto"
    verbose : int, default=0
        1 shows progress bars for training and sampling.

    Attributes
    ----------
    encoder_ : TabularEncoder
    score_net_, label_classifier_, sensitive_classifier_ : torch modules
    classes_, sensitive_classes_ : ndarray
    class_prior_ : ndarray
        Label frequencies in the training data (used when ``sample`` gets no ``y``).
    target_name_ : str
        Name of the label column ``sample`` appends.
    domains_ : ndarray or None
    history_ : skorch.history.History
        Per epoch (a dict each, as every estimator's ``history_``): mean score,
        label and sensitive losses (on B_in + B_out); ``pandas.DataFrame(history_)``
        gives a table.

    References
    ----------
    "Fairness-Aware Diffusion with Meta-learning" (FADM), Algorithm 1 and Eq. 11.

    Examples
    --------
    >>> import numpy as np
    >>> from aimfair_plugin.synth import FairTabularDiffusion
    >>> rng = np.random.RandomState(0)
    >>> import pandas as pd
    >>> X = pd.DataFrame(rng.normal(size=(200, 3)), columns=['a', 'b', 'c'])
    >>> y = (X['a'] > 0).astype(int).to_numpy()
    >>> s = rng.randint(0, 2, 200)
    >>> model = FairTabularDiffusion(n_steps=10, max_epochs=2, hidden=16, n_layers=1, meta_learning=False, random_state=0)
    >>> model.fit(X, y, sensitive_features=s).sample(50, random_state=0).shape
    (50, 4)
    """

    def __init__(
        self,
        *,
        n_steps=100,
        guidance_label=1.0,
        guidance_fair=1.0,
        meta_learning=True,
        max_epochs=30,
        batch_size=256,
        lr=1e-3,
        inner_lr=1e-3,
        meta_weight=1.0,
        hidden=256,
        n_layers=3,
        categorical=None,
        random_state=None,
        device="auto",
        verbose=0,
    ):
        self.n_steps = n_steps
        self.guidance_label = guidance_label
        self.guidance_fair = guidance_fair
        self.meta_learning = meta_learning
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.lr = lr
        self.inner_lr = inner_lr
        self.meta_weight = meta_weight
        self.hidden = hidden
        self.n_layers = n_layers
        self.categorical = categorical
        self.random_state = random_state
        self.device = device
        self.verbose = verbose

    # -- validation -------------------------------------------------------------------------------

    _parameter_constraints = {
        "n_steps": [Interval(Integral, 1, None, closed="left")],
        "guidance_label": [Interval(Real, 0, None, closed="left")],
        "guidance_fair": [Interval(Real, 0, None, closed="left")],
        "meta_learning": ["boolean"],
        "max_epochs": [Interval(Integral, 1, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "lr": [Interval(Real, 0, None, closed="neither")],
        "inner_lr": [Interval(Real, 0, None, closed="neither")],
        "meta_weight": [Interval(Real, 0, None, closed="left")],
        "hidden": [Interval(Integral, 1, None, closed="left")],
        "n_layers": [Interval(Integral, 1, None, closed="left")],
        "categorical": [None, "array-like"],
        "random_state": ["random_state"],
        "device": [str, torch.device],
        "verbose": ["verbose"],
    }

    def _validate_params(self):
        super()._validate_params()
        validate_declared(self)

    def _scheduler(self):
        from diffusers import DDPMScheduler

        return DDPMScheduler(num_train_timesteps=self.n_steps, beta_schedule="linear", clip_sample=False,
                             prediction_type="epsilon")

    # -- fit --------------------------------------------------------------------------------------

    def fit(self, X, y, *, sensitive_features, domains=None):
        """Train the diffusion model and the two guiding classifiers.

        Parameters
        ----------
        X : pandas.DataFrame (n_samples, n_columns)
            Features (numeric and categorical columns); the sensitive attribute
            and the domain label need not be among them.
        y : array-like (n_samples,)
            Labels (any number of classes).
        sensitive_features : array-like (n_samples,)
            The sensitive attribute z; required.
        domains : array-like (n_samples,), optional
            Domain of each row (e.g. race for Adult); required with
            ``meta_learning=True`` (at least two distinct values).

        Returns
        -------
        self
        """
        self._validate_params()
        if not isinstance(X, pd.DataFrame):
            raise TypeError(f"X must be a pandas DataFrame (columns are decoded back), got {type(X).__name__}.")
        if sensitive_features is None:
            raise ValueError("fit needs sensitive_features: the attribute the entropy guidance hides.")
        target_name = getattr(y, "name", None)
        y, z = np.asarray(y).ravel(), np.asarray(sensitive_features).ravel()
        if not (len(X) == len(y) == len(z)):
            raise ValueError(f"X has {len(X)} rows, y {len(y)} and sensitive_features {len(z)}.")
        if pd.isna(y).any() or pd.isna(z).any():
            raise ValueError("y and sensitive_features must not contain missing values.")
        self.classes_, y_idx = np.unique(y, return_inverse=True)
        self.sensitive_classes_, z_idx = np.unique(z, return_inverse=True)
        if len(self.classes_) < 2 or len(self.sensitive_classes_) < 2:
            raise ValueError("y and sensitive_features each need at least two distinct values.")
        if domains is not None:
            domains = np.asarray(domains).ravel()
            if len(domains) != len(y):
                raise ValueError(f"domains has {len(domains)} values for {len(y)} rows.")
        if self.meta_learning and (domains is None or len(np.unique(domains)) < 2):
            raise ValueError(
                "meta_learning=True holds one domain out per step, so it needs domains= with at least two "
                "distinct values; pass domains or set meta_learning=False."
            )
        self.domains_ = None if domains is None else np.unique(domains)
        self.target_name_ = str(target_name) if target_name is not None else "label"
        if self.target_name_ in X.columns:
            raise ValueError(f"X already has a column {self.target_name_!r}, the name of y; rename one of them.")
        self.class_prior_ = np.bincount(y_idx, minlength=len(self.classes_)) / len(y_idx)
        self.encoder_ = TabularEncoder(categorical=self.categorical).fit(X)
        self.feature_names_in_ = np.asarray(X.columns, dtype=object)
        self.n_features_in_ = X.shape[1]

        device = resolve_device(self.device)
        rng = check_random_state(self.random_state)
        torch.manual_seed(int(rng.randint(0, 2**31 - 1)))
        d = self.encoder_.n_features_out_
        kw = dict(hidden=self.hidden, n_layers=self.n_layers, n_steps=self.n_steps)
        self.score_net_ = TimeConditionedMLP(d, d, **kw).to(device)
        self.label_classifier_ = TimeConditionedMLP(d, len(self.classes_), **kw).to(device)
        self.sensitive_classifier_ = TimeConditionedMLP(d, len(self.sensitive_classes_), **kw).to(device)
        data = dict(x=torch.from_numpy(self.encoder_.transform(X)).to(device),
                    y=torch.from_numpy(y_idx).long().to(device), z=torch.from_numpy(z_idx).long().to(device))
        domain_idx = None if domains is None else np.unique(domains, return_inverse=True)[1]
        self.history_ = History(self._train(data, domain_idx, rng, device).to_dict("records"))
        return self

    def _losses(self):
        """(module, loss(params, batch)) for the score net and the two classifiers."""
        def score(params, b):
            return nn.functional.mse_loss(functional_call(self.score_net_, params, (b["xt"], b["t"])), b["noise"])

        def label(params, b):
            return nn.functional.cross_entropy(functional_call(self.label_classifier_, params, (b["xt"], b["t"])),
                                               b["y"])

        def sensitive(params, b):
            return nn.functional.cross_entropy(
                functional_call(self.sensitive_classifier_, params, (b["xt"], b["t"])), b["z"])

        return [("score", self.score_net_, score), ("label", self.label_classifier_, label),
                ("sensitive", self.sensitive_classifier_, sensitive)]

    def _batches(self, n, domain_idx, rng):
        """Index arrays per iteration: (B_in, B_out) with meta-learning, (batch, None) without."""
        epochs = self.max_epochs
        iterations = max(1, epochs * n // self.batch_size)
        if not self.meta_learning:
            order = np.concatenate([rng.permutation(n) for _ in range(epochs + 1)])
            return [(order[i * self.batch_size: (i + 1) * self.batch_size], None) for i in range(iterations)]
        members = [np.flatnonzero(domain_idx == d) for d in range(domain_idx.max() + 1)]
        members = [m for m in members if len(m)]
        share = max(1, self.batch_size // len(members))
        out = []
        for _ in range(iterations):
            held = rng.randint(len(members))
            picks = [rng.choice(m, size=share, replace=len(m) < share) for m in members]
            out.append((np.concatenate([p for i, p in enumerate(picks) if i != held]), picks[held]))
        return out

    def _noisy(self, data, idx, scheduler, device, gen):
        x0 = data["x"][idx]
        t = torch.randint(0, self.n_steps, (len(idx),), device=device, generator=gen)
        noise = torch.randn(x0.shape, device=device, generator=gen)
        return dict(xt=scheduler.add_noise(x0, noise, t), t=t, noise=noise, y=data["y"][idx], z=data["z"][idx])

    def _train(self, data, domain_idx, rng, device):
        scheduler = self._scheduler()
        scheduler.alphas_cumprod = scheduler.alphas_cumprod.to(device)
        gen = torch.Generator(device=device).manual_seed(int(rng.randint(0, 2**31 - 1)))
        models = self._losses()
        optims = [torch.optim.Adam(m.parameters(), lr=self.lr) for _, m, _ in models]
        batches = self._batches(len(data["y"]), domain_idx, rng)
        per_epoch = max(1, len(batches) // self.max_epochs)
        rows, sums = [], {name: 0.0 for name, _, _ in models}
        for it, (b_in, b_out) in enumerate(tqdm(batches, desc="FADM training", disable=not self.verbose)):
            batch_in = self._noisy(data, b_in, scheduler, device, gen)
            batch_out = None if b_out is None else self._noisy(data, b_out, scheduler, device, gen)
            for (name, module, loss_fn), opt in zip(models, optims):
                params = dict(module.named_parameters())
                loss_in = loss_fn(params, batch_in)
                total = loss_in
                if batch_out is not None:
                    grads = torch.autograd.grad(loss_in, list(params.values()), create_graph=True)
                    fast = {k: p - self.inner_lr * g for (k, p), g in zip(params.items(), grads)}
                    total = loss_in + self.meta_weight * loss_fn(fast, batch_out)
                opt.zero_grad(set_to_none=True)
                total.backward()
                opt.step()
                sums[name] += float(total.detach())
            if (it + 1) % per_epoch == 0:
                rows.append({"epoch": len(rows) + 1, **{k: v / per_epoch for k, v in sums.items()}})
                sums = {k: 0.0 for k in sums}
        for _, module, _ in models:
            module.eval()
        return pd.DataFrame(rows)

    # -- sample -----------------------------------------------------------------------------------

    def _labels(self, n, y, rng):
        if y is None:
            return rng.choice(len(self.classes_), size=n, p=self.class_prior_)
        y = np.asarray(y)
        y = np.full(n, y.item()) if y.ndim == 0 else y.ravel()
        if len(y) != n:
            raise ValueError(f"y has {len(y)} labels for n={n} rows.")
        unknown = ~np.isin(y, self.classes_)
        if unknown.any():
            raise ValueError(f"y has labels {np.unique(y[unknown]).tolist()} not seen in fit {self.classes_.tolist()}.")
        return np.searchsorted(self.classes_, y)

    def sample_encoded(self, n, *, y=None, random_state=None, batch_size=4096):
        """Guided reverse diffusion in the encoded space: ``(Z, label indices)``, Z of shape (n, d)."""
        check_is_fitted(self, "score_net_")
        check_int("n", n)
        rng = check_random_state(random_state)
        labels = self._labels(int(n), y, rng)
        device = next(self.score_net_.parameters()).device
        gen = torch.Generator(device=device).manual_seed(int(rng.randint(0, 2**31 - 1)))
        scheduler = self._scheduler()
        scheduler.set_timesteps(self.n_steps)
        alphas = scheduler.alphas_cumprod
        out = []
        for start in range(0, int(n), batch_size):
            y_b = torch.from_numpy(labels[start: start + batch_size]).long().to(device)
            x = torch.randn((len(y_b), self.encoder_.n_features_out_), device=device, generator=gen)
            for t in tqdm(scheduler.timesteps, desc="FADM sampling", disable=not self.verbose, leave=False):
                tt = torch.full((len(y_b),), int(t), device=device, dtype=torch.long)
                with torch.no_grad():
                    eps = self.score_net_(x, tt)
                if self.guidance_label > 0 or self.guidance_fair > 0:
                    x_in = x.detach().requires_grad_(True)
                    logp_y = torch.log_softmax(self.label_classifier_(x_in, tt), dim=1)
                    objective = (self.guidance_label * logp_y.gather(1, y_b[:, None]).sum()
                                 + self.guidance_fair * _entropy(self.sensitive_classifier_(x_in, tt)).sum())
                    grad = torch.autograd.grad(objective, x_in)[0]
                    # score = -eps / sqrt(1 - abar): adding λ∇log p to the score subtracts sqrt(1 - abar) λ∇ from eps
                    eps = eps - torch.sqrt(1 - alphas[int(t)]).to(device) * grad
                x = scheduler.step(eps, int(t), x, generator=gen).prev_sample.detach()
            out.append(x.cpu().numpy())
        return np.concatenate(out), labels

    def sample(self, n, *, y=None, random_state=None):
        """Generate ``n`` rows with the requested labels, in the original schema.

        Parameters
        ----------
        n : int
        y : label, array-like of n labels, or None
            None draws labels from the training label frequencies.
        random_state : int, RandomState or None

        Returns
        -------
        pandas.DataFrame
            The columns of ``X`` (categorical columns hold only categories seen
            in ``fit``) followed by the label column ``target_name_``.
        """
        Z, labels = self.sample_encoded(n, y=y, random_state=random_state)
        frame = self.encoder_.inverse_transform(Z)
        frame[self.target_name_] = self.classes_[labels]
        return frame

    def predict_proba_noisy(self, X, t=0, which="label"):
        """Probabilities of the label (or ``which="sensitive"``) classifier on rows of X at timestep t."""
        check_is_fitted(self, "score_net_")
        module = self.label_classifier_ if which == "label" else self.sensitive_classifier_
        device = next(module.parameters()).device
        Z = X if isinstance(X, np.ndarray) else self.encoder_.transform(X)
        with torch.no_grad():
            x = torch.from_numpy(np.asarray(Z, dtype=np.float32)).to(device)
            logits = module(x, torch.full((len(x),), int(t), device=device, dtype=torch.long))
        return torch.softmax(logits, dim=1).cpu().numpy()
