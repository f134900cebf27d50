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

    skorch's ``Freezer`` is not used: it leaves the tensors frozen after training (the returned model could not
    be trained further) and does not handle BatchNorm statistics.
    """

    def __init__(self, mask, freeze_bn_stats=True):
        self.mask = mask
        self.freeze_bn_stats = freeze_bn_stats

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
        if self.freeze_bn_stats:
            for bn in module.modules():
                if isinstance(bn, torch.nn.modules.batchnorm._BatchNorm) and not any(
                        p.requires_grad for p in bn.parameters()):
                    self.hooks_.append(bn.register_forward_pre_hook(_use_running_stats))

    def on_train_end(self, net, X=None, y=None, **kwargs):
        for hook in self.hooks_:
            hook.remove()
        self.hooks_ = []
        for param in net.module_.parameters():
            param.requires_grad_(True)
