"""Weight files and their model cards: the one way to save a network and the one way to load one.

A weight file ``name.pt`` has its card ``name.json`` beside it: the architecture's name and version
(:mod:`.registry`), its config, the file's sha256 and how it was trained. :func:`load_model` builds
exactly the network the card describes and checks the hash and version. Shipped models by name:
:mod:`.catalog`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from ..errors import LowlightError
from ..files.atomic import write_atomically
from .registry import ARCHITECTURES, architecture_of, build_model


@dataclass(frozen=True)
class ModelCard:
    """What the JSON card beside a weight file says about it."""

    name: str
    arch: str  # a key of ARCHITECTURES
    config: object  # that architecture's config dataclass
    sha256: str
    extra: dict

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "arch": self.arch,
            "arch_version": ARCHITECTURES[self.arch].version,
            "config": asdict(self.config),
            "sha256": self.sha256,
            **self.extra,
        }


def card_path(weights: Path) -> Path:
    """The model card that belongs to a weight file: ``name.pt`` → ``name.json``."""
    return weights.with_suffix(".json")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_weights(
    model: nn.Module, path: Path, name: str, extra: dict | None = None, dtype: torch.dtype = torch.float32
) -> ModelCard:
    """Write ``model``'s weights to ``path`` and its card beside it (atomically, each).

    ``dtype``: how floating-point weights are stored (``torch.float16`` halves the file, e.g. to
    fit a transfer limit); :func:`load_model` loads any of them into the float32 network.
    """
    path = Path(path)
    state = {k: (v.to(dtype) if v.is_floating_point() else v).detach().cpu().contiguous() for k, v in model.state_dict().items()}
    write_atomically(path, lambda temp: torch.save(state, temp))
    card = ModelCard(name=name, arch=architecture_of(model).name, config=model.config, sha256=file_sha256(path), extra=dict(extra or {}))
    write_card(card, path)
    return card


def write_card(card: ModelCard, weights: Path) -> None:
    """Write ``card`` beside ``weights`` (atomically), leaving the weight file and its sha256 as they are."""
    write_atomically(card_path(Path(weights)), json.dumps(card.to_json(), indent=2) + "\n")


def read_card(weights: Path) -> ModelCard:
    """Read and check the card of ``weights``; raises :class:`LowlightError` on any mismatch."""
    weights = Path(weights)
    cpath = card_path(weights)
    if not weights.is_file():
        raise LowlightError(weights, "weight file not found")
    if not cpath.is_file():
        raise LowlightError(cpath, "model card not found (every weight file needs its .json card)")
    try:
        data = json.loads(cpath.read_text())
        arch = ARCHITECTURES.get(data.get("arch"))
        if arch is None:
            raise LowlightError(
                cpath, f"unknown architecture {data.get('arch')!r} (this engine has {', '.join(sorted(ARCHITECTURES))})"
            )
        if data.get("arch_version") != arch.version:
            raise LowlightError(
                cpath,
                f"architecture version {data.get('arch_version')} does not match this engine's "
                f"{arch.name} version {arch.version}",
            )
        config = arch.config(**data["config"])
        extra = {k: v for k, v in data.items() if k not in {"name", "arch", "arch_version", "config", "sha256"}}
        card = ModelCard(name=data["name"], arch=arch.name, config=config, sha256=data["sha256"], extra=extra)
    except LowlightError:
        raise
    except (ValueError, KeyError, TypeError) as exc:
        raise LowlightError(cpath, f"malformed model card ({exc})") from exc
    actual = file_sha256(weights)
    if actual != card.sha256:
        raise LowlightError(weights, f"sha256 {actual[:12]}… does not match the card's {card.sha256[:12]}…")
    return card


def load_model(weights: Path, device: torch.device | str = "cpu") -> tuple[nn.Module, ModelCard]:
    """Build the network its card describes and load ``weights`` into it.

    Checks the architecture name and version and the file's sha256 against the card. Shipped
    models by name (``fast``, ``fast-licence-clean``, ``quality``): :func:`lowlight_raw.networks.catalog.resolve_model`.
    """
    weights = Path(weights)
    card = read_card(weights)
    model = build_model(card.arch, card.config)
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
        model.load_state_dict(state, strict=True)
    except Exception as exc:  # torch raises many types for a bad file; all mean the same to a user
        raise LowlightError(weights, f"cannot load weights ({exc.__class__.__name__}: {str(exc).splitlines()[0]})") from exc
    return for_inference(model, device), card


def for_inference(model: nn.Module, device: torch.device | str = "cpu") -> nn.Module:
    """Eval mode, no gradients, channels-last on ``device``: how the engine runs every model.

    Channels-last runs the convolutions ~1.5× faster on CPU (oneDNN) and suits GPU tensor cores.
    """
    model.eval().requires_grad_(False)
    return model.to(device, memory_format=torch.channels_last)
