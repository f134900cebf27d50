"""ResNet-18/34/50 and a small Vision Transformer in plain PyTorch, and what the package needs to know about any
network: its classification head, what the head reads, the block each parameter belongs to.

torchvision cannot be installed next to the CPU build of torch this project
pins, so the backbone is written here. Module and parameter names follow
``torchvision.models.resnet`` exactly (``conv1``, ``bn1``, ``layer1.0.conv1``,
``layer2.0.downsample.0``, ``fc``...), so a torchvision checkpoint loads with
:func:`load_checkpoint` and masks computed here name the same tensors as the
AIM-Fair reference code (62 tensors for ResNet-18). :class:`VisionTransformer` follows timm's names
(``patch_embed.proj``, ``cls_token``, ``pos_embed``, ``blocks.0.attn.qkv``, ``norm``, ``head``).

Any other ``torch.nn.Module`` works with the estimators (``ImageClassifier(module=...)``): its head is the
``fc`` or ``head`` linear layer, else its last ``nn.Linear`` (:func:`classifier_head`); what the head reads is
``module.features(x)`` where the module has it, else the head's input caught by a forward hook
(:func:`penultimate_features`).
"""

from pathlib import Path

import torch
from torch import nn

ARCHS = {
    "resnet18": ("basic", (2, 2, 2, 2)),
    "resnet34": ("basic", (3, 4, 6, 3)),
    "resnet50": ("bottleneck", (3, 4, 6, 3)),
}


def _conv3x3(in_planes, out_planes, stride=1):
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


def _conv1x1(in_planes, out_planes, stride=1):
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with an identity (or 1x1 projection) shortcut.

    Parameters
    ----------
    inplanes, planes : int
        Input and output channels.
    stride : int, default=1
    downsample : torch.nn.Module, optional
        The projection shortcut (when the shape changes).

    Examples
    --------
    >>> import torch
    >>> from aimfair_plugin.nets import BasicBlock
    >>> BasicBlock(8, 8)(torch.zeros(1, 8, 4, 4)).shape
    torch.Size([1, 8, 4, 4])
    """

    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = _conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 -> 3x3 (strided, as torchvision's "ResNet v1.5") -> 1x1 with expansion 4.

    Parameters
    ----------
    inplanes, planes : int
        Input channels and the bottleneck's width (the output has ``4 * planes`` channels).
    stride : int, default=1
    downsample : torch.nn.Module, optional
        The projection shortcut (when the shape changes).

    Examples
    --------
    >>> import torch
    >>> from aimfair_plugin.nets import Bottleneck
    >>> downsample = torch.nn.Conv2d(8, 32, 1)
    >>> Bottleneck(8, 8, downsample=downsample)(torch.zeros(1, 8, 4, 4)).shape
    torch.Size([1, 32, 4, 4])
    """

    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = _conv1x1(inplanes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = _conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    """ResNet with torchvision-compatible names.

    Parameters
    ----------
    arch : {"resnet18", "resnet34", "resnet50"}, default="resnet18"
    num_outputs : int, default=2
        Size of the final fully connected layer (``fc``).
    width : int, default=64
        Base number of channels (64 is the standard ResNet; 16 is a fast
        narrow network for CPUs and tests). Stages use width x (1, 2, 4, 8).
    in_channels : int, default=3
    stem : {"imagenet", "cifar"}, default="imagenet"
        ``"imagenet"``: 7x7 stride-2 convolution and 3x3 max-pool (the
        standard, checkpoint-compatible stem). ``"cifar"``: a 3x3 stride-1
        convolution without pooling, for tiny images (much slower).

    Examples
    --------
    >>> import torch
    >>> from aimfair_plugin.nets import ResNet
    >>> ResNet('resnet18', num_outputs=2, width=8).eval()(torch.zeros(1, 3, 32, 32)).shape
    torch.Size([1, 2])
    """

    def __init__(self, arch="resnet18", num_outputs=2, *, width=64, in_channels=3, stem="imagenet"):
        super().__init__()
        if arch not in ARCHS:
            raise ValueError(f"arch must be one of {sorted(ARCHS)}, got {arch!r}.")
        if stem not in ("imagenet", "cifar"):
            raise ValueError(f"stem must be 'imagenet' or 'cifar', got {stem!r}.")
        if int(width) < 1 or int(num_outputs) < 1:
            raise ValueError(f"width and num_outputs must be positive, got {width} and {num_outputs}.")
        block_kind, layers = ARCHS[arch]
        block = BasicBlock if block_kind == "basic" else Bottleneck
        self.inplanes = int(width)
        if stem == "imagenet":
            self.conv1 = nn.Conv2d(in_channels, self.inplanes, kernel_size=7, stride=2, padding=3, bias=False)
            self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        else:
            self.conv1 = _conv3x3(in_channels, self.inplanes)
            self.maxpool = nn.Identity()
        self.bn1 = nn.BatchNorm2d(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = self._make_layer(block, width, layers[0])
        self.layer2 = self._make_layer(block, width * 2, layers[1], stride=2)
        self.layer3 = self._make_layer(block, width * 4, layers[2], stride=2)
        self.layer4 = self._make_layer(block, width * 8, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(width * 8 * block.expansion, num_outputs)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _make_layer(self, block, planes, blocks, stride=1):
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                _conv1x1(self.inplanes, planes * block.expansion, stride),
                nn.BatchNorm2d(planes * block.expansion),
            )
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        layers.extend(block(self.inplanes, planes) for _ in range(1, blocks))
        return nn.Sequential(*layers)

    def features(self, x):
        """The penultimate representation: what ``fc`` reads."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.avgpool(x), 1)

    def forward(self, x):
        return self.fc(self.features(x))


class LinearModel(nn.Module):
    """Logistic / softmax regression on flat features, for tabular data.

    Its one layer is named ``fc`` like the ResNet head, so last-layer tools
    (FairIF's influence, linear probes) treat both alike.

    Parameters
    ----------
    in_features : int
    num_outputs : int

    Examples
    --------
    >>> import torch
    >>> from aimfair_plugin.nets import LinearModel
    >>> LinearModel(5, 2)(torch.zeros(3, 5)).shape
    torch.Size([3, 2])
    """

    def __init__(self, in_features, num_outputs):
        super().__init__()
        self.fc = nn.Linear(in_features, num_outputs)

    def features(self, x):
        return x.flatten(1)

    def forward(self, x):
        # Elementwise product and a per-row sum instead of a matrix product: a sample's logits then do not
        # depend on which other samples share its batch (BLAS blocking changes float32 sums in the last bits),
        # so predicting a subset gives exactly the same numbers, as scikit-learn's checks require.
        x = self.features(x)
        return (x[:, None, :] * self.fc.weight[None]).sum(-1) + self.fc.bias


class _Attention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        n, t, d = x.shape
        q, k, v = self.qkv(x).reshape(n, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        out = nn.functional.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(n, t, d))


class _Block(nn.Module):
    def __init__(self, dim, heads, mlp_ratio):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = _Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, dim * mlp_ratio), nn.GELU(), nn.Linear(dim * mlp_ratio, dim))

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class VisionTransformer(nn.Module):
    """A small Vision Transformer (Dosovitskiy et al., 2021) with timm's parameter names, no BatchNorm.

    Patches are embedded by a strided convolution (``patch_embed.proj``); a class token (``cls_token``) and
    learnt position embeddings (``pos_embed``) are added; ``depth`` pre-norm blocks (``blocks.i``: LayerNorm,
    multi-head self-attention ``attn.qkv`` / ``attn.proj``, LayerNorm, MLP) follow; the class token's final
    representation (after ``norm``) goes to the linear ``head``. ViT-S/32 is ``dim=384, depth=12, heads=6,
    patch_size=32`` at 224 px; the defaults are a CPU-sized one for 32 px images.

    Parameters
    ----------
    num_outputs : int, default=2
    image_size : int, default=32
    patch_size : int, default=8
        ``image_size`` must be a multiple of it.
    in_channels : int, default=3
    dim : int, default=64
    depth : int, default=4
    heads : int, default=4
        ``dim`` must be a multiple of it.
    mlp_ratio : int, default=2

    Examples
    --------
    >>> import torch
    >>> from aimfair_plugin.nets import VisionTransformer
    >>> vit = VisionTransformer(num_outputs=3, image_size=16, patch_size=8, dim=16, depth=1, heads=2)
    >>> vit(torch.zeros(2, 3, 16, 16)).shape
    torch.Size([2, 3])
    >>> sum(1 for _ in vit.named_parameters())
    20
    """

    def __init__(self, num_outputs=2, *, image_size=32, patch_size=8, in_channels=3, dim=64, depth=4, heads=4,
                 mlp_ratio=2):
        super().__init__()
        if image_size % patch_size or dim % heads:
            raise ValueError(f"image_size ({image_size}) must be a multiple of patch_size ({patch_size}) and dim "
                             f"({dim}) a multiple of heads ({heads}).")
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(in_channels, dim, kernel_size=patch_size, stride=patch_size)
        n_patches = (image_size // patch_size) ** 2
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.randn(1, n_patches + 1, dim) * 0.02)
        self.blocks = nn.Sequential(*(_Block(dim, heads, mlp_ratio) for _ in range(depth)))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_outputs)

    def features(self, x):
        """The class token's final representation: what ``head`` reads."""
        x = self.patch_embed.proj(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(len(x), -1, -1), x], dim=1) + self.pos_embed
        return self.norm(self.blocks(x))[:, 0]

    def forward(self, x):
        return self.head(self.features(x))


def classifier_head(module):
    """``(name, layer)`` of ``module``'s classification head: its ``fc`` or ``head`` linear layer, else the last
    ``nn.Linear`` it holds (in registration order).

    Parameters
    ----------
    module : torch.nn.Module

    Returns
    -------
    name : str
    layer : torch.nn.Linear

    Examples
    --------
    >>> from torch import nn
    >>> from aimfair_plugin.nets import classifier_head
    >>> classifier_head(nn.Sequential(nn.Flatten(), nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)))[0]
    '3'
    """
    for name in ("fc", "head"):
        if isinstance(getattr(module, name, None), nn.Linear):
            return name, getattr(module, name)
    linear = [(n, m) for n, m in module.named_modules() if isinstance(m, nn.Linear)]
    if not linear:
        raise ValueError(f"{type(module).__name__} has no nn.Linear layer to use as its classification head.")
    return linear[-1]


def penultimate_features(module, x):
    """What ``module``'s classification head reads for the batch ``x``: ``module.features(x)`` when the module
    has that method, else the head's input caught by a forward pre-hook during a forward pass.

    Parameters
    ----------
    module : torch.nn.Module
    x : torch.Tensor

    Returns
    -------
    features : torch.Tensor of shape (len(x), head.in_features)

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from aimfair_plugin.nets import penultimate_features
    >>> net = nn.Sequential(nn.Flatten(), nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    >>> penultimate_features(net, torch.zeros(3, 2, 2)).shape
    torch.Size([3, 8])
    """
    if callable(getattr(module, "features", None)):
        return module.features(x)
    caught = []
    handle = classifier_head(module)[1].register_forward_pre_hook(lambda _, inputs: caught.append(inputs[0]))
    try:
        module(x)
    finally:
        handle.remove()
    return caught[0].flatten(1)


BLOCK_ORDER = ("stem", "layer1", "layer2", "layer3", "layer4", "fc")


def block_of(name, head="fc"):
    """The block a parameter belongs to: ``"fc"`` for the classification head's tensors (``head``, a module
    name), ``"stem"`` for a ResNet's ``conv1`` / ``bn1``, else the first component of the name (``"layer1"``..
    ``"layer4"`` in a ResNet, ``"blocks"`` or ``"patch_embed"`` in a ViT).

    Parameters
    ----------
    name : str
        A parameter name as ``named_parameters`` gives it.
    head : str, default="fc"
        The module name of the classification head (:func:`classifier_head`).

    Returns
    -------
    block : str

    Examples
    --------
    >>> from aimfair_plugin.nets import block_of
    >>> block_of('layer3.1.conv2.weight'), block_of('conv1.weight'), block_of('fc.bias')
    ('layer3', 'stem', 'fc')
    """
    if name.startswith(head + "."):
        return "fc"
    first = name.split(".", 1)[0]
    return "stem" if first in ("conv1", "bn1") else first


def read_state_dict(path):
    """Read a checkpoint without unpickling arbitrary objects.

    ``.safetensors`` files are read with safetensors; anything else with
    ``torch.load(weights_only=True)``. A checkpoint that wraps its weights
    (``{"state_dict": ...}`` or ``{"model": ...}``) is unwrapped and a
    ``module.`` prefix (DataParallel) is stripped.

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    state_dict : dict of str to torch.Tensor

    Examples
    --------
    >>> import tempfile, os, torch
    >>> from aimfair_plugin.nets import ResNet, read_state_dict
    >>> path = os.path.join(tempfile.mkdtemp(), 'resnet.pth')
    >>> torch.save(ResNet(width=8).state_dict(), path)
    >>> len(read_state_dict(path))
    122
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No checkpoint at {path}.")
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError:
            raise ImportError("Reading .safetensors needs `pip install safetensors`.") from None
        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise ValueError(f"{path} does not hold a state dict (got {type(state).__name__}).")
    return {k.removeprefix("module."): v for k, v in state.items()}


def load_checkpoint(module, path, *, strict_head=False):
    """Load a (torchvision) ResNet checkpoint into ``module``.

    The classification head ``fc`` is kept from ``module`` when its shape
    differs from the checkpoint's (e.g. ImageNet's 1000 classes vs 2), unless
    ``strict_head=True``. Every other tensor must match in name and shape.

    Returns
    -------
    skipped : list of str
        Names of the checkpoint tensors that were not loaded.

    Parameters
    ----------
    module : ResNet
    path : str or Path
        A ``.pth`` / ``.pt`` or ``.safetensors`` file (see :func:`read_state_dict`).
    strict_head : bool, default=False
        Refuse a head of another shape instead of keeping ``module``'s.

    Examples
    --------
    >>> import tempfile, os, torch
    >>> from aimfair_plugin.nets import ResNet, load_checkpoint
    >>> path = os.path.join(tempfile.mkdtemp(), 'resnet.pth')
    >>> torch.save(ResNet(num_outputs=1000, width=8).state_dict(), path)
    >>> module = ResNet(num_outputs=2, width=8)
    >>> load_checkpoint(module, path)
    ['fc.weight', 'fc.bias']
    >>> module.fc.out_features
    2
    """
    state = read_state_dict(path)
    own = module.state_dict()
    skipped = []
    if not strict_head:
        for key in ("fc.weight", "fc.bias"):
            if key in state and key in own and state[key].shape != own[key].shape:
                skipped.append(key)
                del state[key]
    missing = set(own) - set(state) - set(skipped)
    unexpected = set(state) - set(own)
    wrong = [k for k in set(state) & set(own) if state[k].shape != own[k].shape]
    if missing or unexpected or wrong:
        raise ValueError(
            f"Checkpoint {path} does not fit this ResNet: missing {sorted(missing)[:5]}, "
            f"unexpected {sorted(unexpected)[:5]}, wrong shape {sorted(wrong)[:5]} "
            "(check arch, width and stem)."
        )
    module.load_state_dict(state, strict=False)
    return skipped
