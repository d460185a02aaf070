"""One definition of every enhance option: both command lines and the wire schema come from it."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import pytest

from lowlight_raw.cli import build_parser as lowlight_raw_parser
from lowlight_raw.options import EnhanceOptions, OptionSpec
from lr_bridge.cli import build_parser as lr_bridge_parser

FIELDS = [f.name for f in dataclasses.fields(EnhanceOptions)]


def _enhance_subparser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return commands.choices["enhance"]


def _spellings(parser: argparse.ArgumentParser) -> dict[str, list[str]]:
    return {a.dest: a.option_strings for a in _enhance_subparser(parser)._actions if a.dest in FIELDS}


def test_both_command_lines_spell_every_option_as_its_definition_says() -> None:
    expected = {f.name: list(f.metadata["option"].flags) for f in dataclasses.fields(EnhanceOptions)}
    assert _spellings(lowlight_raw_parser()) == expected
    assert _spellings(lr_bridge_parser()) == expected
    assert expected["output_dir"] == ["-o", "--output-dir"] and expected["output_format"] == ["-f", "--format"]
    assert expected["linear_tiff"] == ["--linear"] and expected["model_choice"] == ["--model"]


@pytest.mark.parametrize("argv", [
    ["-o", "out dir", "-f", "tiff", "--linear", "--ev", "+3", "--strength", "0.25", "--overwrite", "--model", "fast"],
    ["--output-dir", "out dir", "--format", "tiff", "--linear", "--ev", "3", "--strength", ".25", "--overwrite",
     "--model", "fast"],
])
def test_both_command_lines_read_the_same_options(argv: list[str]) -> None:
    ours = EnhanceOptions.from_args(lowlight_raw_parser().parse_args(["enhance", *argv, "a.dng"]))
    bridge = EnhanceOptions.from_args(lr_bridge_parser().parse_args(["enhance", *argv, "a.dng"]))
    assert ours == bridge == EnhanceOptions("tiff", 3.0, 0.25, Path("out dir"), True, True, "fast")


def test_defaults_are_the_definitions() -> None:
    for parser in (lowlight_raw_parser(), lr_bridge_parser()):
        assert EnhanceOptions.from_args(parser.parse_args(["enhance", "a.dng"])) == EnhanceOptions()
    assert EnhanceOptions.from_wire({}) == EnhanceOptions()


@pytest.mark.parametrize(("argv", "message"), [
    (["--ev", "12.5"], "EV must be between -4 and +12, got 12.5"),
    (["--ev", "bright"], "expected 'auto' or a number like +6, got 'bright'"),
    (["--strength", "1.5"], "expected a number between 0 and 1, got '1.5'"),
    (["-f", "png"], "invalid choice: 'png'"),
])
def test_both_command_lines_refuse_the_same_values(argv, message, capsys) -> None:
    for parser in (lowlight_raw_parser(), lr_bridge_parser()):
        with pytest.raises(SystemExit) as exit_info:
            parser.parse_args(["enhance", *argv, "a.dng"])
        assert exit_info.value.code == 2
        assert message in capsys.readouterr().err


def test_a_weight_file_is_named_by_its_absolute_path(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    args = lr_bridge_parser().parse_args(["enhance", "--model", "mine.pt", "a.dng"])
    assert args.model_choice == str(tmp_path / "mine.pt")
    assert lr_bridge_parser().parse_args(["enhance", "--model", "quality", "a.dng"]).model_choice == "quality"


def test_the_wire_round_trips_every_option(tmp_path) -> None:
    options = EnhanceOptions("tiff", -2.5, 0.5, tmp_path / "out", True, True, "/weights/mine.pt")
    wire = options.to_wire()
    assert wire == {"format": "tiff", "ev": -2.5, "strength": 0.5, "output_dir": str(tmp_path / "out"),
                    "overwrite": True, "linear": True, "model": "/weights/mine.pt"}
    assert EnhanceOptions.from_wire(wire) == options
    assert "output_dir" not in options.to_wire(as_bytes=True), "bytes jobs get their results back"
    assert EnhanceOptions().to_wire() == {"format": "dng", "strength": 1.0, "overwrite": False, "linear": False}


@pytest.mark.parametrize(("wire", "message"), [
    ({"format": "png"}, "'format' must be one of dng, tiff, jpeg"),
    ({"ev": True}, "'ev' must be null (automatic) or a number of stops"),
    ({"strength": -0.1}, "'strength' must be a number from 0 to 1"),
    ({"output_dir": "relative"}, "'output_dir' must be null or an absolute path string"),
    ({"linear": 1}, "'linear' must be true or false"),
    ({"model": "best"}, "'model' must be null (the daemon's default), one of auto, fast, fast-licence-clean, quality, or an absolute path"),
    ({"colour": "red", "zoom": 2}, "unknown option(s): colour, zoom"),
])
def test_malformed_wire_options_are_named(wire, message) -> None:
    with pytest.raises(ValueError) as error:
        EnhanceOptions.from_wire(wire)
    assert str(error.value).startswith(message)


def test_every_option_has_a_complete_definition() -> None:
    for f in dataclasses.fields(EnhanceOptions):
        spec = f.metadata["option"]
        assert isinstance(spec, OptionSpec) and spec.help and spec.flags[-1].startswith("--"), f.name
        assert spec.from_wire(f.default) == f.default, f"{f.name}: the default is a valid wire value"
