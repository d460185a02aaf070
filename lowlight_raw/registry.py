"""The shipped models by name, and which one ``--model auto`` picks for a device.

``fast`` is small enough for a laptop CPU (24 MP in seconds); ``quality`` is a larger network
meant for a GPU (it also runs on a CPU, slowly). ``auto`` picks ``quality`` on CUDA or Apple MPS
when its weights are shipped, else ``fast``. Anything else given as a model is a path to a
weight file with its ``.json`` card beside it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from .errors import LowlightError

if TYPE_CHECKING:  # the client imports MODEL_CHOICES and must not load torch
    import torch

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
SHIPPED_MODELS = {
    "fast": WEIGHTS_DIR / "lowlight-sid12.pt",
    "quality": WEIGHTS_DIR / "lowlight-quality.pt",
}
MODEL_CHOICES = ("auto", *SHIPPED_MODELS)
ACCELERATORS = frozenset({"cuda", "mps"})


def check_shipped(model: str | Path) -> None:
    """Raise :class:`LowlightError` when ``model`` names a shipped model this installation lacks."""
    if isinstance(model, str) and model in SHIPPED_MODELS and not SHIPPED_MODELS[model].is_file():
        raise LowlightError(SHIPPED_MODELS[model], f"the {model!r} model is not shipped with this installation")


def resolve_model(model: str | Path, device: torch.device) -> Path:
    """The weight file for ``model`` (``auto``, a shipped name, or a path) on ``device``.

    Raises :class:`LowlightError` when a named model is not shipped with this installation.
    """
    if isinstance(model, Path) or model not in MODEL_CHOICES:
        return Path(model)
    if model == "auto":
        quality = SHIPPED_MODELS["quality"]
        return quality if device.type in ACCELERATORS and quality.is_file() else SHIPPED_MODELS["fast"]
    check_shipped(model)
    return SHIPPED_MODELS[model]
