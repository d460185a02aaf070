"""The architectures: every network this engine can build, by the name a model card gives.

Every architecture is a plain ``nn.Module`` built from a frozen config dataclass; a weight file's
card names the architecture, its version and its config, and
:func:`lowlight_raw.networks.weights.load_model` builds exactly that. Adding an architecture is a
module and a row in :data:`ARCHITECTURES`.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from .sid_unet import ContextUNet, ContextUNetConfig, SIDUNet, UNetConfig


@dataclass(frozen=True)
class Architecture:
    """A network the engine can build: its name, module class, config class and the version of its layout.

    Bump ``version`` whenever a change makes old weight files load into a different network.
    """

    name: str
    version: int
    module: type[nn.Module]
    config: type


ARCHITECTURES: dict[str, Architecture] = {
    arch.name: arch
    for arch in (
        Architecture("sid-unet", 1, SIDUNet, UNetConfig),
        Architecture("sid-unet-ctx", 1, ContextUNet, ContextUNetConfig),
    )
}


def architecture_of(model: nn.Module) -> Architecture:
    """The architecture ``model`` was built as (its exact class, not a subclass's)."""
    for arch in ARCHITECTURES.values():
        if type(model) is arch.module:
            return arch
    raise ValueError(f"{type(model).__name__} is not a registered architecture (known: {', '.join(ARCHITECTURES)})")


def build_model(arch: str, config: object) -> nn.Module:
    """A freshly initialised network of a registered architecture."""
    return ARCHITECTURES[arch].module(config)
