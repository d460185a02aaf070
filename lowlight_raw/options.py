"""Every option of an enhance request, defined once.

:class:`EnhanceOptions` is the definition: each field carries an :class:`OptionSpec` (its
command-line spellings, its key on the wire, its help and how to read it). From it come the
options of both command lines (:func:`add_arguments`, used by ``lowlight-raw enhance`` and
``lr-bridge enhance``), the wire's ``enhance.options`` object (:meth:`EnhanceOptions.to_wire`,
:meth:`EnhanceOptions.from_wire`) and the engine's checks (:meth:`EnhanceOptions.validate`).
The output formats and the EV and strength bounds live here too; the darktable plugin's copies
are checked against them by the tests.

This module imports neither torch nor numpy: the ``lr-bridge`` client uses it.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any

from .files.formats import FORMATS
from .networks.catalog import MODEL_CHOICES, MODEL_METAVAR

MIN_EV, MAX_MANUAL_EV = -4.0, 12.0  # what a user may ask for; --ev auto stays within [0, MAX_EV]
MIN_STRENGTH, MAX_STRENGTH = 0.0, 1.0


def check_manual_ev(ev: float) -> float:
    """Validate a user-given EV; raises ``ValueError`` with a plain message when out of range."""
    if not math.isfinite(ev) or not MIN_EV <= ev <= MAX_MANUAL_EV:
        raise ValueError(f"EV must be between {MIN_EV:+g} and {MAX_MANUAL_EV:+g}, got {ev}")
    return float(ev)


def parse_ev(text: str) -> float | None:
    """argparse type for ``--ev``: ``auto`` (None) or a number of stops within the allowed range."""
    if text.lower() == "auto":
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'auto' or a number like +6, got {text!r}") from None
    try:
        return check_manual_ev(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def parse_strength(text: str) -> float:
    """argparse type for ``--strength``: a number in [0, 1]."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not MIN_STRENGTH <= value <= MAX_STRENGTH:
        raise argparse.ArgumentTypeError(f"expected a number between {MIN_STRENGTH:g} and {MAX_STRENGTH:g}, got {text!r}")
    return value


def parse_model(text: str) -> str:
    """argparse type for ``--model``: a shipped model's name, or a weight file as an absolute path."""
    return text if text in MODEL_CHOICES else str(Path(text).expanduser().absolute())


# -- reading the wire's values (each raises ValueError naming the key) --------------------------


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _wire_format(value: Any) -> str:
    if value not in FORMATS:
        raise ValueError(f"'format' must be one of {', '.join(FORMATS)}")
    return value


def _wire_ev(value: Any) -> float | None:
    if value is not None and not _number(value):
        raise ValueError("'ev' must be null (automatic) or a number of stops")
    return None if value is None else float(value)


def _wire_strength(value: Any) -> float:
    if not (_number(value) and MIN_STRENGTH <= value <= MAX_STRENGTH):
        raise ValueError(f"'strength' must be a number from {MIN_STRENGTH:g} to {MAX_STRENGTH:g}")
    return float(value)


def _wire_output_dir(value: Any) -> Path | None:
    if value is not None and not (isinstance(value, str) and PurePath(value).is_absolute() and "\0" not in value):
        raise ValueError("'output_dir' must be null or an absolute path string")
    return None if value is None else Path(value)


def _wire_bool(key: str) -> Callable[[Any], bool]:
    def read(value: Any) -> bool:
        if not isinstance(value, bool):
            raise ValueError(f"'{key}' must be true or false")
        return value

    return read


def _wire_model(value: Any) -> str | None:
    if value is None or value in MODEL_CHOICES:
        return value
    if not (isinstance(value, str) and PurePath(value).is_absolute() and "\0" not in value and len(value) <= 4096):
        raise ValueError(f"'model' must be null (the daemon's default), one of {', '.join(MODEL_CHOICES)}, "
                         "or an absolute path to a weight file")
    return value


@dataclass(frozen=True)
class OptionSpec:
    """How one option is spelled and read on the command lines and on the wire."""

    flags: tuple[str, ...]  # command-line spellings, e.g. ("-f", "--format")
    wire: str  # its key in the wire's ``enhance.options``
    help: str
    from_wire: Callable[[Any], Any]  # the JSON value → the Python value (ValueError if malformed)
    parse: Callable[[str], Any] | None = None  # argparse ``type`` (None: a flag without value)
    choices: tuple[str, ...] | None = None
    metavar: str | None = None


def _option(default: Any, spec: OptionSpec) -> Any:
    return field(default=default, metadata={"option": spec})


@dataclass(frozen=True)
class EnhanceOptions:
    """What the user asked for one batch of files (every field is a command-line and wire option)."""

    output_format: str = _option("dng", OptionSpec(
        ("-f", "--format"), "format", "output format (default dng)", _wire_format, str, FORMATS))
    ev: float | None = _option(None, OptionSpec(
        ("--ev",), "ev", f"brightening in stops ({MIN_EV:+g} to {MAX_MANUAL_EV:+g}), or auto (default)",
        _wire_ev, parse_ev, metavar="auto|N"))
    strength: float = _option(1.0, OptionSpec(
        ("--strength",), "strength", "0 = the amplified input (plain demosaic), 1 = the network (default)",
        _wire_strength, parse_strength, metavar="S"))
    output_dir: Path | None = _option(None, OptionSpec(
        ("-o", "--output-dir"), "output_dir", "folder for the outputs, created if needed (default: beside each source)",
        _wire_output_dir, Path, metavar="DIR"))
    overwrite: bool = _option(False, OptionSpec(
        ("--overwrite",), "overwrite", "replace an existing output instead of numbering a new one",
        _wire_bool("overwrite")))
    linear_tiff: bool = _option(False, OptionSpec(
        ("--linear",), "linear", "TIFF: write linear values (with a linear ICC profile) instead of the sRGB curve",
        _wire_bool("linear")))
    model_choice: str | None = _option(None, OptionSpec(
        ("--model",), "model", "auto (quality on a GPU when shipped, else fast), a shipped model "
        "(fast-licence-clean: trained on openly licensed photos only), or a weight file "
        "(default: auto; through the daemon: the daemon's own --model)", _wire_model, parse_model,
        metavar=MODEL_METAVAR))

    def validate(self) -> EnhanceOptions:
        """Raise ``ValueError`` with a plain message for options that make no sense."""
        if self.output_format not in FORMATS:
            raise ValueError(f"unknown output format {self.output_format!r} (choose from {', '.join(FORMATS)})")
        if self.ev is not None:
            check_manual_ev(self.ev)
        if not MIN_STRENGTH <= self.strength <= MAX_STRENGTH:
            raise ValueError(f"strength must be between {MIN_STRENGTH:g} and {MAX_STRENGTH:g}, got {self.strength}")
        if self.linear_tiff and self.output_format != "tiff":
            raise ValueError("--linear applies to TIFF output only")
        return self

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> EnhanceOptions:
        """The options :func:`add_arguments` put into parsed ``args``."""
        return cls(**{f.name: getattr(args, f.name) for f in dataclasses.fields(cls)})

    def to_wire(self, as_bytes: bool = False) -> dict[str, Any]:
        """The wire's ``enhance.options``: every option that is set (paths made absolute).

        ``as_bytes``: the files travel as bytes, so the results come back and ``output_dir`` stays here.
        """
        wire: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is None or (as_bytes and f.name == "output_dir"):
                continue
            wire[f.metadata["option"].wire] = str(Path(value).absolute()) if isinstance(value, Path) else value
        return wire

    @classmethod
    def from_wire(cls, options: Any) -> EnhanceOptions:
        """Read the wire's ``enhance.options`` (any subset); ``ValueError`` names what is malformed.

        Types and shapes only: :meth:`validate` then checks that the values make sense together.
        """
        if not isinstance(options, dict):
            raise ValueError("'options' must be an object")
        fields = {f.metadata["option"].wire: f for f in dataclasses.fields(cls)}
        unknown = set(options) - set(fields)
        if unknown:
            raise ValueError(f"unknown option(s): {', '.join(sorted(map(str, unknown)))[:200]}")
        return cls(**{fields[key].name: fields[key].metadata["option"].from_wire(value) for key, value in options.items()})


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add every :class:`EnhanceOptions` field to ``parser``, spelled as its :class:`OptionSpec` says."""
    for f in dataclasses.fields(EnhanceOptions):
        spec: OptionSpec = f.metadata["option"]
        if spec.parse is None:
            parser.add_argument(*spec.flags, dest=f.name, action="store_true", help=spec.help)
        else:
            parser.add_argument(*spec.flags, dest=f.name, default=f.default, type=spec.parse, choices=spec.choices,
                                metavar=spec.metavar, help=spec.help)
