"""The shipped models by name and sensor layout, and which one ``--model auto`` picks for a device.

``fast`` is small enough for a laptop CPU (24 MP in seconds); ``quality`` is a larger network
meant for a GPU (it also runs on a CPU, slowly). Each name has one network per sensor layout
(:mod:`lowlight_raw.layouts.base`): a Fujifilm raw gets the X-Trans network of the model the user
chose, a LinearRaw DNG the linear one. ``auto`` picks ``quality`` on CUDA or Apple MPS when its
weights are shipped, else ``fast``; where ``quality`` has no network for a layout, ``fast``'s is
used. ``fast-licence-clean`` is ``fast`` trained without BSDS500 (research use only), on openly
licensed photographs alone: weaker (see the model card), for users who need that provenance, so it
never falls back to a network trained on BSDS500. Anything else given as a model is a path to a
weight file with its ``.json`` card beside it, for the one layout its card names.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import LowlightError

if TYPE_CHECKING:  # the client imports MODEL_CHOICES and must not load torch
    import torch

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"  # package data (lowlight_raw/weights): the wheel carries them
SHIPPED_MODELS: dict[str, dict[str, Path]] = {
    "fast": {
        "bayer": WEIGHTS_DIR / "lowlight-sid12.pt",
        "xtrans": WEIGHTS_DIR / "lowlight-xtrans12.pt",
        "linear": WEIGHTS_DIR / "lowlight-linear12.pt",
    },
    "fast-licence-clean": {"bayer": WEIGHTS_DIR / "lowlight-sid12-licence-clean.pt"},
    "quality": {"bayer": WEIGHTS_DIR / "lowlight-quality.pt"},
}
FALLBACK_MODEL = {"quality": "fast"}  # whose network a model uses for a layout it has none for
MODEL_CHOICES = ("auto", *SHIPPED_MODELS)
MODEL_METAVAR = "|".join((*MODEL_CHOICES, "PATH"))  # how --model is shown in --help
ACCELERATORS = frozenset({"cuda", "mps"})
MAIN_LAYOUT = "bayer"  # the layout a shipped name must have to count as shipped


def shipped_weights(name: str, layout: str = MAIN_LAYOUT) -> Path | None:
    """The weight file of shipped model ``name`` for ``layout``, if this installation has it."""
    path = SHIPPED_MODELS.get(name, {}).get(layout)
    return path if path is not None and path.is_file() else None


def check_shipped(model: str | Path) -> None:
    """Raise :class:`LowlightError` when ``model`` names a shipped model this installation lacks."""
    if isinstance(model, str) and model in SHIPPED_MODELS and shipped_weights(model) is None:
        raise LowlightError(SHIPPED_MODELS[model][MAIN_LAYOUT], f"the {model!r} model is not shipped with this installation")


def is_named(model: str | Path) -> bool:
    """Whether ``model`` is a shipped name or ``auto`` (else it is a weight file)."""
    return isinstance(model, str) and model in MODEL_CHOICES


def resolve_model(model: str | Path, device: torch.device, layout: str = MAIN_LAYOUT) -> Path:
    """The weight file for ``model`` (``auto``, a shipped name, or a path) on ``device`` for ``layout``.

    Raises :class:`LowlightError` when a named model is not shipped with this installation.
    """
    if not is_named(model):
        return Path(model)
    if model == "auto":
        model = "quality" if device.type in ACCELERATORS and shipped_weights("quality") is not None else "fast"
    check_shipped(model)
    names = (model, FALLBACK_MODEL[model]) if model in FALLBACK_MODEL else (model,)
    for name in names:
        path = shipped_weights(name, layout)
        if path is not None:
            return path
    raise LowlightError(SHIPPED_MODELS[names[-1]].get(layout, WEIGHTS_DIR / f"{layout}.pt"),
                        f"the {model!r} model has no network for {layout} sensors in this installation")
