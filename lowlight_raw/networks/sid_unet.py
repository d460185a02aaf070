"""The SID-style U-Nets, each a plain ``nn.Module`` built from its frozen config (:mod:`.registry` names them).

The SID-style U-Net (``sid-unet``), for any sensor layout (:mod:`lowlight_raw.layouts.base`, named in
the config):

Input: ``(N, 2·C, h, w)`` — the layout's C packed planes in canonical phase (Bayer: R, G on red
rows, G on blue rows, B), already amplified, followed by their C noise-sigma planes
(:func:`lowlight_raw.pipeline.noise.noise_sigma_map`); the layout may add planes of its own (X-Trans: the
cell kind). Output: ``(N, 3, s·h, s·w)`` linear camera RGB (not white balanced, no colour matrix),
the same scale as the amplified input, ``s`` the layout's packing factor.

The last convolution predicts a ``3·s²``-channel residual on top of the layout's crude RGB per
site (Bayer: a nearest-neighbour "demosaic", R, mean of the greens, B at each of the four
sites); pixel-shuffle then lays the channels out at full resolution, as in Chen et al.,
"Learning to See in the Dark" (CVPR 2018).

With ``remosaic`` (X-Trans) the network first turns its input into Bayer planes at half the full
resolution (:meth:`~lowlight_raw.layouts.base.SensorLayout.to_bayer`: the plain demosaic of the
values and of their noise sigma, sampled at RGGB sites) and then is a Bayer U-Net: a trained
Bayer network carries over whole, and fine-tuning on X-Trans raws adapts it.

The context U-Net (``sid-unet-ctx``) is that U-Net with gated residual blocks (NAFNet-style:
layer norm, pointwise expansion, a depthwise 5×5 convolution, a simple gate) at its lowest
resolutions, where they cost little: more capacity and a wider receptive field for the
low-frequency colour blotches of very dark raws. Each block starts as the identity (its output
scales are zero), so a trained ``sid-unet`` fine-tunes into one without a step back.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from ..layouts.base import SensorLayout
from ..layouts.registry import layout_class


@dataclass(frozen=True)
class UNetConfig:
    """Shape of a :class:`SIDUNet`; saved with the weights in the model card."""

    in_channels: int = 8
    width: int = 16
    depth: int = 5
    layout: str = "bayer"  # the sensor layout it was trained for (a key of layouts.LAYOUTS)
    remosaic: bool = False  # first re-mosaic the layout's input to Bayer planes (SensorLayout.to_bayer)
    base: str = "nearest"  # the residual's base, a key of RESIDUAL_BASES (cards without one: "nearest")

    @classmethod
    def for_layout(cls, layout: str, width: int, depth: int, remosaic: bool = False) -> "UNetConfig":
        """The config of a ``width``/``depth`` network for ``layout``, its input channels derived."""
        core = layout_class("bayer" if remosaic else layout)
        return cls(in_channels=core.network_channels(), width=width, depth=depth, layout=layout, remosaic=remosaic)

    @property
    def multiple(self) -> int:
        """Packed height and width must be multiples of this (one per pooling; a re-mosaiced X-Trans
        input's Bayer grid is 3/2 of the packed one, so it needs one factor 2 more)."""
        return 2 ** (self.depth - 1) * (2 if self.remosaic else 1)


RESIDUAL_BASES = {
    # the layout's crude RGB per site (Bayer: each 2×2 cell's R, mean G and B), clamped to [0, 1]:
    # R and B sit half a pixel off their samples, diagonally apart, and clamping lifts noisy blacks
    "nearest": lambda core, planes: core.base_rgb(planes),
    # the layout's plain demosaic, unclamped: every colour registered on its own samples, and zero-mean
    # noise stays zero-mean (weights card v3 and later)
    "naive": lambda core, planes: F.pixel_unshuffle(core.naive_rgb(planes), core.scale),
}


def max_pool_2x2(x: torch.Tensor) -> torch.Tensor:
    """``F.max_pool2d(x, 2)`` (the same values), as the maximum of the four strided views of
    ``(N, C, H, W)``: on the CPU, torch's own max-pooling of channels-last bf16 features took 5–6×
    as long (a 784 × 880 tile's first level: 8.6 against 1.7 ms)."""
    height, width = x.shape[-2] // 2 * 2, x.shape[-1] // 2 * 2
    x = x[..., :height, :width]
    return torch.maximum(torch.maximum(x[..., ::2, ::2], x[..., ::2, 1::2]), torch.maximum(x[..., 1::2, ::2], x[..., 1::2, 1::2]))


def _double_conv(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1),
        nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(c_out, c_out, 3, padding=1),
        nn.LeakyReLU(0.2, inplace=True),
    )


class SIDUNet(nn.Module):
    """U-Net from packed, noise-conditioned planes to full-resolution linear RGB."""

    def __init__(self, config: UNetConfig = UNetConfig()) -> None:
        super().__init__()
        self.config = config
        self.layout: type[SensorLayout] = layout_class(config.layout)  # what the input is packed as
        self.core: type[SensorLayout] = layout_class("bayer") if config.remosaic else self.layout  # what the U-Net sees
        if config.base not in RESIDUAL_BASES:
            raise ValueError(f"unknown residual base {config.base!r} (choose from {', '.join(RESIDUAL_BASES)})")
        if config.in_channels != self.core.network_channels():
            raise ValueError(f"a {config.layout} network{' (re-mosaiced)' if config.remosaic else ''} takes "
                             f"{self.core.network_channels()} input channels, not {config.in_channels}")
        self.scale = self.layout.scale  # output pixels per packed input pixel
        widths = [config.width * 2**i for i in range(config.depth)]
        self.encoders = nn.ModuleList()
        c_in = config.in_channels
        for w in widths:
            self.encoders.append(_double_conv(c_in, w))
            c_in = w
        self.upsamplers = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for w_low, w_high in zip(reversed(widths[1:]), reversed(widths[:-1])):
            self.upsamplers.append(nn.ConvTranspose2d(w_low, w_high, 2, stride=2))
            self.decoders.append(_double_conv(2 * w_high, w_high))
        self.head = nn.Conv2d(widths[0], 3 * self.core.scale**2, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        self.context = nn.ModuleList(self.context_blocks(level, w) for level, w in enumerate(widths))

    @property
    def input_memory_format(self) -> torch.memory_format:
        """How a tile's input is best laid out for this network: channels last for its convolutions,
        or as planes where it first re-mosaics them (:meth:`~..layouts.base.SensorLayout.to_bayer`
        gathers each plane's 2 × 2 blocks: from channels-last input 2.5× as long)."""
        return torch.contiguous_format if self.config.remosaic else torch.channels_last

    def context_blocks(self, level: int, channels: int) -> nn.Module:  # noqa: ARG002 - a seam for subclasses
        """What runs after the encoder of ``level`` (``channels`` wide), before its skip and the
        next pooling: nothing in the plain U-Net."""
        return nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.config.remosaic:
            x = self.layout.to_bayer(x)
        skips = []
        h = self.core.with_extra_planes(x)
        for i, (encoder, context) in enumerate(zip(self.encoders, self.context)):
            if i:
                h = max_pool_2x2(h)
            h = context(encoder(h))
            skips.append(h)
        for upsample, decoder, skip in zip(self.upsamplers, self.decoders, reversed(skips[:-1])):
            h = decoder(torch.cat([upsample(h), skip], dim=1))
        base = RESIDUAL_BASES[self.config.base](self.core, x[:, : self.core.channels])
        return F.pixel_shuffle(self.head(h) + base, self.core.scale)


@dataclass(frozen=True)
class ContextUNetConfig(UNetConfig):
    """Shape of a :class:`ContextUNet`: a :class:`UNetConfig` and its gated blocks."""

    context_levels: int = 2  # the lowest-resolution levels that get blocks
    context_blocks: int = 2  # gated blocks per such level


class LayerNorm2d(nn.Module):
    """Layer norm over the channels of each pixel, with a learnt scale and shift per channel."""

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(1, channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(1, keepdim=True)
        var = (x - mean).pow(2).mean(1, keepdim=True)
        return (x - mean) * torch.rsqrt(var + self.eps) * self.weight + self.bias


class GatedBlock(nn.Module):
    """A NAFNet-style residual block without global pooling (tiles must not see their size):
    norm → 1×1 expand ×2 → depthwise 5×5 → gate → 1×1, then norm → 1×1 expand ×2 → gate → 1×1,
    each branch added with a per-channel scale that starts at zero (the block starts as the identity)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.spatial_norm = LayerNorm2d(channels)
        self.spatial_expand = nn.Conv2d(channels, 2 * channels, 1)
        self.spatial_mix = nn.Conv2d(2 * channels, 2 * channels, 5, padding=2, groups=2 * channels)
        self.spatial_project = nn.Conv2d(channels, channels, 1)
        self.channel_norm = LayerNorm2d(channels)
        self.channel_expand = nn.Conv2d(channels, 2 * channels, 1)
        self.channel_project = nn.Conv2d(channels, channels, 1)
        self.spatial_scale = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.channel_scale = nn.Parameter(torch.zeros(1, channels, 1, 1))

    @staticmethod
    def gate(x: torch.Tensor) -> torch.Tensor:
        first, second = x.chunk(2, dim=1)
        return first * second

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.gate(self.spatial_mix(self.spatial_expand(self.spatial_norm(x))))
        x = x + self.spatial_project(y) * self.spatial_scale
        y = self.gate(self.channel_expand(self.channel_norm(x)))
        return x + self.channel_project(y) * self.channel_scale


class ContextUNet(SIDUNet):
    """:class:`SIDUNet` with :class:`GatedBlock` s after the encoders of its lowest levels."""

    config: ContextUNetConfig

    def context_blocks(self, level: int, channels: int) -> nn.Module:
        if level < self.config.depth - self.config.context_levels:
            return nn.Identity()
        return nn.Sequential(*(GatedBlock(channels) for _ in range(self.config.context_blocks)))
