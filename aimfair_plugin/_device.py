"""Device handling in one place: ``"auto"`` means CUDA (with mixed precision) when present, else CPU."""

import torch


def resolve_device(device="auto"):
    """Map ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` to a torch device string.

    Raises a ``ValueError`` when CUDA is asked for explicitly but unavailable,
    so a GPU job never silently runs on the CPU.

    Parameters
    ----------
    device : str, default="auto"

    Returns
    -------
    device : str

    Examples
    --------
    >>> from aimfair_plugin.utils import resolve_device
    >>> resolve_device('cpu')
    'cpu'
    """
    if device in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    device = str(device)
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} was requested but CUDA is not available; use device='auto' or 'cpu'.")
    if device != "cpu" and not device.startswith("cuda") and device != "mps":
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps', got {device!r}.")
    return device


def autocast(device):
    """Mixed-precision context for the forward pass: bfloat16 autocast on CUDA, a no-op elsewhere.

    bfloat16 keeps float32's exponent range, so no gradient scaler is needed.

    Parameters
    ----------
    device : str or torch.device

    Returns
    -------
    context : context manager

    Examples
    --------
    >>> import torch
    >>> from aimfair_plugin.utils import autocast
    >>> with autocast(torch.device('cpu')):
    ...     y = torch.ones(2) * 2
    ...
    >>> y.dtype
    torch.float32
    """
    enabled = str(device).startswith("cuda")
    return torch.autocast(device_type="cuda" if enabled else "cpu", dtype=torch.bfloat16, enabled=enabled)
