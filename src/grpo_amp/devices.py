"""Where tensors live: the one place that reads a device setting.

    resolve_device("auto")   # "cuda" when a GPU is visible, else "cpu"
    resolve_device("cuda:1") # as given

Ground layer: imports nothing of ours, and torch only when it has to look for a GPU.
"""

from __future__ import annotations


def resolve_device(device) -> str:
    """ "auto" means cuda when available, else cpu; anything else (a name or a torch.device) as given."""
    name = str(device)
    if name != "auto":
        return name
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
