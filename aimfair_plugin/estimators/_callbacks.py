"""skorch callbacks the mitigator's fine-tuning runs with (behaviour inside the one training loop)."""

import torch
from skorch.callbacks import Callback


def _use_running_stats(module, args):
    """Forward pre-hook: a frozen BatchNorm layer normalises with, and keeps, its running statistics."""
    module.train(False)


class MaskedFinetune(Callback):
    """Train only the tensors of a mask: freeze the others when training begins, unfreeze them when it ends.

    Parameters
    ----------
    mask : dict tensor name -> bool
        True for the tensors to update; a frozen tensor gets no gradient, so no optimiser step (weight decay
        and momentum included) changes it.
    freeze_bn_stats : bool, default=True
        A BatchNorm layer whose weight and bias are both frozen also keeps its running statistics: it
        normalises with them during fine-tuning (a forward pre-hook puts it in evaluation mode). With False
        the running statistics of every BatchNorm layer move toward the fine-tuning data.
    all_bn_eval : bool, default=False
        Every BatchNorm layer, tuned or not, normalises with and keeps its running statistics during fine-tuning
        (its weight and bias may still be tuned).

    skorch's ``Freezer`` is not used: it leaves the tensors frozen after training (the returned model could not
    be trained further) and does not handle BatchNorm statistics.

    Examples
    --------
    >>> import torch
    >>> from aimfair_plugin.estimators import MaskedFinetune
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    >>> callback = MaskedFinetune({'0.weight': True, '0.bias': False, '1.weight': False, '1.bias': False})
    >>> callback.mask['0.weight']
    True
    """

    def __init__(self, mask, freeze_bn_stats=True, all_bn_eval=False):
        self.mask = mask
        self.freeze_bn_stats = freeze_bn_stats
        self.all_bn_eval = all_bn_eval

    def initialize(self):
        self.hooks_ = []
        return self

    def on_train_begin(self, net, X=None, y=None, **kwargs):
        module = net.module_
        unknown = set(self.mask) ^ {name for name, _ in module.named_parameters()}
        if unknown:
            raise ValueError(f"The mask and the module name different tensors: {sorted(unknown)[:5]}.")
        for name, param in module.named_parameters():
            param.requires_grad_(bool(self.mask[name]))
        if self.freeze_bn_stats or self.all_bn_eval:
            for bn in module.modules():
                if isinstance(bn, torch.nn.modules.batchnorm._BatchNorm) and (self.all_bn_eval or not any(
                        p.requires_grad for p in bn.parameters())):
                    self.hooks_.append(bn.register_forward_pre_hook(_use_running_stats))

    def on_train_end(self, net, X=None, y=None, **kwargs):
        for hook in self.hooks_:
            hook.remove()
        self.hooks_ = []
        for param in net.module_.parameters():
            param.requires_grad_(True)


def reestimate_batchnorm_statistics(module, dataset, *, batch_size=128, device="cpu", num_workers=0):
    """Reset every BatchNorm layer's running statistics and re-estimate them on ``dataset`` (AdaBN).

    Forward passes in training mode without gradients; each layer's statistics become the cumulative average
    over the batches (``momentum=None``), so the order of the batches does not matter. Only the images are
    read: the labels of ``dataset`` never reach the module. The weights are unchanged; ``module``'s mode and
    every layer's momentum are restored. Returns the number of images read (0 when there is no BatchNorm layer,
    in which case nothing is read).

    Parameters
    ----------
    module : torch.nn.Module
    dataset : torch.utils.data.Dataset
        Items are images or tuples whose first element is the image (a batch dict's ``"X"`` too).
    batch_size : int, default=128
    device : str, default="cpu"
    num_workers : int, default=0
        DataLoader worker processes.

    Returns
    -------
    n_images : int

    Examples
    --------
    >>> import torch
    >>> from torch.utils.data import TensorDataset
    >>> from aimfair_plugin.estimators import reestimate_batchnorm_statistics
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    >>> images = TensorDataset(torch.rand(32, 3, 8, 8))
    >>> reestimate_batchnorm_statistics(net, images, batch_size=8)
    32
    >>> net[1].num_batches_tracked.item()
    4
    """
    from torch.utils.data import DataLoader

    from .._device import autocast
    from ._data import loader_options

    layers = [m for m in module.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not layers:
        return 0
    momenta = [bn.momentum for bn in layers]
    # Forward pre-hooks on the layers (MaskedFinetune's, which keep frozen layers in evaluation mode during
    # fine-tuning) would stop a layer from re-estimating: they are lifted for the passes and put back after.
    hooks = [dict(bn._forward_pre_hooks) for bn in layers]
    was_training = module.training
    for bn in layers:
        bn.reset_running_stats()
        bn.momentum = None
        bn._forward_pre_hooks.clear()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False,
                        **loader_options(num_workers, dataset, device, persistent=False))
    n_seen = 0
    module.train()
    try:
        with torch.no_grad(), autocast(device):
            for batch in loader:
                images = batch[0] if isinstance(batch, (tuple, list)) else batch
                if isinstance(images, dict):
                    images = images["X"]
                module(images.to(device))
                n_seen += len(images)
    finally:
        for bn, momentum, saved in zip(layers, momenta, hooks):
            bn.momentum = momentum
            bn._forward_pre_hooks.update(saved)
        module.train(was_training)
    return n_seen


class RealBatchNormStatistics(Callback):
    """When fine-tuning ends, re-estimate every BatchNorm layer's running statistics on real images.

    Fine-tuning on synthetic images moves the running statistics of the BatchNorm layers it updates toward the
    synthetic images; when those differ from the real ones, the statistics then normalise real images wrongly
    and the model can collapse to one class although its weights are fine. Re-estimating them on the real
    training images (AdaBN, Li et al., 2016) reads the images only, never their labels.

    Parameters
    ----------
    dataset : torch Dataset
        The real images (paths are decoded batch by batch, as everywhere).
    batch_size : int, default=128
    num_workers : int or "auto", default="auto"

    Examples
    --------
    >>> import torch
    >>> from torch.utils.data import TensorDataset
    >>> from aimfair_plugin.estimators import RealBatchNormStatistics
    >>> callback = RealBatchNormStatistics(TensorDataset(torch.rand(16, 3, 8, 8)), batch_size=8)
    >>> callback.batch_size
    8
    """

    def __init__(self, dataset, batch_size=128, num_workers="auto"):
        self.dataset = dataset
        self.batch_size = batch_size
        self.num_workers = num_workers

    def on_train_end(self, net, X=None, y=None, **kwargs):
        if self.dataset is None:
            raise ValueError("RealBatchNormStatistics has no real images (it was used once already).")
        self.n_images_ = reestimate_batchnorm_statistics(net.module_, self.dataset, batch_size=self.batch_size,
                                              device=net.device, num_workers=self.num_workers)
        self.dataset = None  # the fitted net does not carry the real images (its pickles stay small)


class DivergenceGuard(Callback):
    """Stop a fit whose training loss becomes NaN or infinite, with an error that names the learning rate.

    Without it a diverged network trains on silently and predicts one class (or NaN probabilities).
    """

    def on_batch_end(self, net, batch=None, training=False, loss=None, **kwargs):
        if training and loss is not None and not torch.isfinite(loss.detach()).all():
            from ..exceptions import TrainingDivergedError

            epoch = len(net.history)
            raise TrainingDivergedError(
                f"The training loss became {float(loss.detach())} in epoch {epoch} at learning rate {net.lr} "
                f"({type(net.optimizer_).__name__}); lower the learning rate.")


class ConstantPredictionCheck(Callback):
    """Warn when the last epoch predicted one class for every training example.

    The predictions are the ones training made anyway (the logits of each training batch of the last epoch, in
    training mode), so the check costs no extra pass over the data.
    """

    def on_epoch_begin(self, net, **kwargs):
        self.seen_ = set()

    def on_batch_end(self, net, batch=None, training=False, y_pred=None, **kwargs):
        if len(self.seen_) > 1:  # two classes seen this epoch: nothing left to check until the next one
            return
        if isinstance(y_pred, (tuple, list)):  # several heads (LfF: the debiased model first, the one it returns)
            y_pred = y_pred[0]
        if training and isinstance(y_pred, torch.Tensor) and y_pred.dim() == 2:
            self.seen_.update(torch.unique(y_pred.detach().argmax(1)).tolist())

    def on_train_end(self, net, X=None, y=None, **kwargs):
        n_classes = len(getattr(net, "classes", None) or ()) or 2
        if len(getattr(self, "seen_", ())) == 1 and n_classes > 1:
            import warnings

            from ..exceptions import ConstantPredictionWarning

            warnings.warn(
                f"The fit ended predicting class index {next(iter(self.seen_))} for every training example of its "
                f"last epoch (learning rate {net.lr}): the model has collapsed to a constant classifier. Lower the "
                "learning rate or check the data.", ConstantPredictionWarning, stacklevel=2)
