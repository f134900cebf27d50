"""Auto-RGN (Lee et al., ICLR 2023, "Surgical Fine-Tuning Improves Adaptation to Distribution Shifts").

At every optimisation step each parameter tensor is updated with the learning rate

    lr_i = lr * RGN_i / max_j RGN_j,        RGN_i = ||g_i|| / ||theta_i||,

its relative gradient norm on the current batch, normalised by the largest over the tensors. Tensors whose
gradients are large relative to their weights learn at the full rate and the others slower, so what to tune
is chosen from the fine-tuning data alone.

It is implemented as optimisers (:class:`AutoRGNSGD`, :class:`AutoRGNAdam`): each tensor gets its own
parameter group; ``step`` scales every group's ``lr`` by its factor, takes the wrapped optimiser's step, and
puts the base rates back, so a learning-rate scheduler, ``state_dict`` and skorch see the base rates only.
Differences to the authors' code: the factors come from the current batch at every step (theirs from a pass
over the training data once per epoch), and BatchNorm tensors are scaled like the others (theirs leaves them
out of the optimiser).
"""

import torch


def one_group_per_tensor(params):
    """Parameter groups with one tensor each, keeping each group's options (tensors, (name, tensor) pairs or
    group dicts, as optimisers accept them)."""
    params = list(params)
    groups = params if params and isinstance(params[0], dict) else [{"params": params}]
    out = []
    for group in groups:
        tensors = group["params"]
        tensors = [tensors] if isinstance(tensors, torch.Tensor) else list(tensors)
        options = {k: v for k, v in group.items() if k != "params"}
        out += [{"params": [p[1] if isinstance(p, tuple) else p], **options} for p in tensors]
    return out


def relative_gradient_norms(tensors):
    """``||g|| / ||theta||`` per tensor (NaN without a gradient; inf for a zero tensor with a gradient)."""
    norms = []
    for p in tensors:
        if p.grad is None:
            norms.append(float("nan"))
            continue
        grad, weight = float(p.grad.detach().norm()), float(p.detach().norm())
        norms.append(grad / weight if weight > 0 else (float("inf") if grad > 0 else 0.0))
    return norms


def auto_rgn_factors(tensors):
    """Learning-rate factors in [0, 1]: RGN / max RGN over the tensors with a finite RGN.

    A tensor without a gradient gets 0; a tensor of zeros with a gradient (its RGN is infinite, e.g. a bias
    initialised at zero) gets 1 and does not enter the maximum; if every RGN is 0 every factor is 0.
    """
    norms = relative_gradient_norms(tensors)
    finite = [r for r in norms if r == r and r != float("inf")]
    top = max(finite, default=0.0)
    return [0.0 if r != r else 1.0 if r == float("inf") else (r / top if top > 0 else 0.0) for r in norms]


class AutoRGNMixin:
    """Turns a torch optimiser into its Auto-RGN version (see the module docstring).

    ``last_factors_`` holds the factors of the last step and ``mean_factors_`` their mean over the steps so
    far, in parameter order; ``n_steps_`` counts the steps.
    """

    def __init__(self, params, *args, **kwargs):
        super().__init__(one_group_per_tensor(params), *args, **kwargs)
        self.last_factors_ = self.mean_factors_ = None
        self.n_steps_ = 0

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:  # gradients first: the factors are computed from them
            with torch.enable_grad():
                loss = closure()
        factors = auto_rgn_factors([group["params"][0] for group in self.param_groups])
        base = [group["lr"] for group in self.param_groups]
        try:
            for group, lr, factor in zip(self.param_groups, base, factors):
                group["lr"] = lr * factor
            super().step()
        finally:
            for group, lr in zip(self.param_groups, base):
                group["lr"] = lr
        self.last_factors_ = factors
        self.n_steps_ += 1
        previous = self.mean_factors_ or [0.0] * len(factors)
        self.mean_factors_ = [m + (f - m) / self.n_steps_ for m, f in zip(previous, factors)]
        return loss


class AutoRGNSGD(AutoRGNMixin, torch.optim.SGD):
    """``torch.optim.SGD`` with Auto-RGN per-tensor learning rates.

    Parameters
    ----------
    params : iterable of torch.nn.Parameter or dict
        As for ``torch.optim.SGD``; each tensor becomes its own parameter group.
    *args, **kwargs
        ``torch.optim.SGD``'s other arguments (``lr``, ``momentum``, ``weight_decay``...).

    Examples
    --------
    >>> import torch
    >>> from aimfair_plugin.estimators import AutoRGNSGD
    >>> layer = torch.nn.Linear(3, 2)
    >>> optimizer = AutoRGNSGD(layer.parameters(), lr=0.1)
    >>> layer(torch.ones(4, 3)).sum().backward()
    >>> optimizer.step()
    >>> type(optimizer).__name__
    'AutoRGNSGD'
    """


class AutoRGNAdam(AutoRGNMixin, torch.optim.Adam):
    """``torch.optim.Adam`` with Auto-RGN per-tensor learning rates.

    Parameters
    ----------
    params : iterable of torch.nn.Parameter or dict
        As for ``torch.optim.Adam``; each tensor becomes its own parameter group.
    *args, **kwargs
        ``torch.optim.Adam``'s other arguments (``lr``, ``betas``, ``weight_decay``...).

    Examples
    --------
    >>> import torch
    >>> from aimfair_plugin.estimators import AutoRGNAdam
    >>> layer = torch.nn.Linear(3, 2)
    >>> optimizer = AutoRGNAdam(layer.parameters(), lr=0.01)
    >>> layer(torch.ones(4, 3)).sum().backward()
    >>> optimizer.step()
    >>> type(optimizer).__name__
    'AutoRGNAdam'
    """


AUTO_RGN_OPTIMIZERS = {"sgd": AutoRGNSGD, "adam": AutoRGNAdam}
