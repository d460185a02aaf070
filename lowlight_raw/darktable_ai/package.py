"""The ``.dtmodel`` package: export our networks as darktable raw-denoise graphs, write the ZIP, check it.

A package is a ZIP ``<id>.dtmodel`` holding ``<id>/config.json`` and one static ONNX graph per
slot, ``<id>/model_bayer.onnx`` and (when the model has a linear network) ``<id>/model_linear.onnx``
(darktable's ``src/common/ai/restore.h`` for the slots' contracts, darktable-org/darktable-ai's
``models/*/model.yaml`` for the config). darktable's sources name a slot's settings two ways:
``attributes.model_bayer.*`` (the released packages' config, the ``<stem>.onnx`` file rule) and
``attributes.variants.bayer.*`` with the file in ``variants.bayer.onnx`` (``restore.c``'s loader in
some revisions); the config carries both, equal, and :func:`validate_package` checks that they agree.
Our choices in the config:

* ``wb_norm: none``: our networks were trained on camera RGB that is not white balanced;
* ``bayer_orientation: force_rggb``, ``edge_pad: mirror_cropped``: the packed planes are R, G1, G2, B
  as ours are, whatever the sensor's phase;
* ``input_colorspace: camRGB`` (one of the three darktable parses): our linear network was trained on
  camera RGB: through the emulated path X-Trans raws score 21.8 dB with it against 17.4 dB with
  the default linear Rec.2020 at ×100, 18.4 against 13.2 dB at ×300 (``bench/dtmodel.py``);
* ``output_scale: absolute``: the blind graph (:mod:`.blind`) returns its result on the input's
  own scale. darktable's ``match_gain`` instead sets each tile's mean over the three output planes
  equal to the mean over the four packed input planes, R + 2G + B weighted: for camera RGB that
  is not white balanced (green well above red and blue) scales each tile by a factor that depends
  on its colour (``bench/dtmodel.py``: 2.0 dB lower than ``absolute`` at ×1–×10, 0.6 dB at ×100).
* ``input_sizes: [TILE]``: one static tile, as darktable's released models have.
"""

from __future__ import annotations

import json
import re
import tempfile
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import LowlightError
from ..files.atomic import write_atomically
from ..networks.catalog import is_named, resolve_model
from ..networks.weights import ModelCard, load_model
from .blind import BlindGraph

PACKAGE_ID = "rawdenoise-lowlight-raw"
PACKAGE_VERSION = "1.0"
TILE = 512  # darktable's tile: Bayer packed pixels (1024 sensor pixels a side), linear pixels
OPSET = 20  # darktable's released models use opset 20
SLOTS = {"bayer": "model_bayer", "linear": "model_linear"}  # our layout → darktable's slot (file stem)
INPUT_NAME, OUTPUT_NAME = "input", "output"
BAYER_ATTRIBUTES = {"input_kind": "bayer_v1", "bayer_orientation": "force_rggb", "edge_pad": "mirror_cropped",
                    "wb_norm": "none", "output_scale": "absolute"}
LINEAR_ATTRIBUTES = {"input_kind": "linear_v1", "input_colorspace": "camRGB", "wb_norm": "none",
                     "output_scale": "absolute", "target_mean": None}
# What darktable accepts per slot attribute (src/common/ai/restore_common.h's enums, restore.h).
ALLOWED = {
    "model_bayer": {"input_kind": {"bayer_v1"}, "bayer_orientation": {"force_rggb", "native"},
                    "edge_pad": {"mirror_cropped", "mirror"}, "wb_norm": {"daylight", "as_shot", "none"},
                    "output_scale": {"match_gain", "absolute"}},
    "model_linear": {"input_kind": {"linear_v1"}, "input_colorspace": {"lin_rec2020", "camRGB", "srgb_linear"},
                     "wb_norm": {"daylight", "as_shot", "none"}, "output_scale": {"match_gain", "absolute"}},
}
REQUIRED = ("id", "name", "description", "task", "arch", "backend", "version", "tiling", "model_card", "attributes")


@dataclass(frozen=True)
class GraphInfo:
    """One checked graph of a package: its slot, file name, input and output shapes and opset."""

    slot: str
    file: str
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    opset: int


@dataclass(frozen=True)
class PackageInfo:
    """What :func:`validate_package` found in a valid package."""

    path: Path
    config: dict
    graphs: dict[str, GraphInfo]  # slot → graph


def networks_for(model: str | Path) -> dict[str, tuple[torch.nn.Module, ModelCard]]:
    """The networks to export, by layout (``bayer``, ``linear``): a shipped model's (``auto``: the CPU
    choice), or one weight file's for the slot its card names. Raises :class:`LowlightError`."""
    device = torch.device("cpu")
    if not is_named(model):
        network, card = load_model(Path(model), device)
        if network.config.layout not in SLOTS:
            raise LowlightError(Path(model), f"a {network.layout.label} network has no slot in darktable's raw denoise "
                                             f"(Bayer or linear only)")
        return {network.config.layout: (network, card)}
    found = {}
    for layout in SLOTS:
        try:
            found[layout] = load_model(resolve_model(model, device, layout), device)
        except LowlightError:
            if layout == "bayer":
                raise
    return found


def export_graph(network: torch.nn.Module, path: Path, tile: int = TILE) -> None:
    """Export ``network`` as a blind, static ``opset`` :data:`OPSET` ONNX graph for a ``tile``-sized
    input of darktable's contract (:class:`.blind.BlindGraph`) to ``path``."""
    graph = BlindGraph(network.to(memory_format=torch.contiguous_format).eval(), tile).eval()
    channels = 4 if network.config.layout == "bayer" else 3
    example = torch.zeros(1, channels, tile, tile)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes on the tile's sizes, which are static here
        torch.onnx.export(graph, (example,), str(path), input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                          opset_version=OPSET, dynamo=False)


def package_config(cards: dict[str, ModelCard], tile: int = TILE) -> dict:
    """``config.json`` of a package holding the networks of ``cards`` (layout → card)."""
    names = ", ".join(card.name for card in cards.values())
    attributes: dict = {"input_sizes": [tile]}
    settings = {"bayer": BAYER_ATTRIBUTES, "linear": LINEAR_ATTRIBUTES}
    for layout in cards:
        attributes[SLOTS[layout]] = dict(settings[layout])
    attributes["variants"] = {layout: {"onnx": f"{SLOTS[layout]}.onnx", **settings[layout]} for layout in cards}
    return {
        "id": PACKAGE_ID,
        "name": "raw denoise lowlight-raw",
        "description": "lowlight-raw's extreme low-light SID U-Net (Bayer" + (" + linear" if "linear" in cards else "")
                       + "), blind: gain and noise measured per tile",
        "task": "rawdenoise",
        "arch": next(iter(cards.values())).arch,
        "backend": "onnx",
        "version": PACKAGE_VERSION,
        "tiling": True,
        "model_card": {
            "long_description": f"{names}: SID-style U-Nets trained on synthetic dark raws (x1 to x300) made "
                                "with a calibrated Poisson-Gaussian sensor model. Each graph measures its tile's "
                                "brightness and noise profile itself. For very dark raws: denoise here, then "
                                "brighten with the exposure module.",
            "scope": "raw denoising of underexposed and high-ISO Bayer raws; X-Trans and linear raws "
                     "through darktable's demosaic",
            "author": "lowlight-raw",
            "source": "lowlight-raw (lowlight_raw/darktable_ai)",
            "license": "GPL-3.0-or-later",
            "training_data": "synthetic dark raws from BSDS500 photos (research use), scikit-image and Debian "
                             "photos; see lowlight_raw/weights/MODEL_CARD.md",
            "training_data_license": "BSDS500: research/non-commercial; others: CC0, public domain, GPL-2+",
            "notes": "built to darktable's documented raw-denoise contract and checked with an emulation of it "
                     "and darktable-cli 5.4; not run inside darktable 5.6",
        },
        "attributes": attributes,
    }


def write_package(output: Path, model: str | Path = "fast", tile: int = TILE, overwrite: bool = False) -> PackageInfo:
    """Export ``model``'s networks (:func:`networks_for`) and write the package to ``output``
    (under a temporary name, renamed when complete and valid; an existing file only replaced when
    ``overwrite``). Returns the validated package."""
    output = Path(output)
    if output.exists() and not overwrite:
        raise LowlightError(output, "already exists (--overwrite replaces it)")
    networks = networks_for(model)
    config = package_config({layout: card for layout, (_, card) in networks.items()}, tile)
    if not output.parent.is_dir():
        raise LowlightError(output, "its folder does not exist")
    validated: list[PackageInfo] = []

    def write(partial: Path) -> None:  # the whole package, checked before it gets its name
        with tempfile.TemporaryDirectory(prefix="dtmodel-") as work:
            with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as archive:
                archive.writestr(f"{PACKAGE_ID}/config.json", json.dumps(config, indent=2) + "\n")
                for layout, (network, _) in networks.items():
                    graph = Path(work) / f"{SLOTS[layout]}.onnx"
                    export_graph(network, graph, tile)
                    archive.write(graph, f"{PACKAGE_ID}/{graph.name}")
        validated.append(validate_package(partial))

    try:
        write_atomically(output, write)
    except OSError as exc:
        raise LowlightError(output, f"cannot write the package ({exc.strerror or exc})") from exc
    return PackageInfo(output, validated[0].config, validated[0].graphs)


def validate_package(path: Path) -> PackageInfo:
    """Check a ``.dtmodel`` against darktable's contract: the ZIP's layout, ``config.json``'s fields
    and values, and every graph (loads in onnxruntime; one float32 input and output of the slot's
    static shapes for each declared tile size; opset ≤ :data:`OPSET`). Raises :class:`LowlightError`
    with the first problem."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            config = _check_config(path, _read_config(path, archive, names))
            package_id = config["id"]
            expected = {f"{package_id}/config.json"} | {f"{package_id}/{slot}.onnx" for slot in ALLOWED if slot in config["attributes"]}
            if names != expected:
                raise LowlightError(path, f"holds {sorted(names)}, darktable expects {sorted(expected)}")
            graphs = {slot: _check_graph(path, slot, archive.read(f"{package_id}/{slot}.onnx"), config["attributes"]["input_sizes"])
                      for slot in ALLOWED if slot in config["attributes"]}
    except zipfile.BadZipFile as exc:
        raise LowlightError(path, f"not a ZIP archive ({exc})") from exc
    except OSError as exc:
        raise LowlightError(path, f"cannot read ({exc.strerror or exc})") from exc
    return PackageInfo(path, config, graphs)


def _read_config(path: Path, archive: zipfile.ZipFile, names: set[str]) -> dict:
    configs = [name for name in names if name.count("/") == 1 and name.endswith("/config.json")]
    if len(configs) != 1:
        raise LowlightError(path, "needs exactly one <id>/config.json")
    try:
        config = json.loads(archive.read(configs[0]))
    except ValueError as exc:
        raise LowlightError(path, f"config.json is not JSON ({exc})") from exc
    if not isinstance(config, dict) or config.get("id") != configs[0].split("/")[0]:
        raise LowlightError(path, "config.json's id must name the folder it is in")
    return config


def _check_config(path: Path, config: dict) -> dict:
    """``config`` if it is a valid raw-denoise config, else :class:`LowlightError`."""
    def fail(reason: str) -> LowlightError:
        return LowlightError(path, f"config.json: {reason}")

    missing = [key for key in REQUIRED if key not in config]
    if missing:
        raise fail(f"missing {', '.join(missing)}")
    if not re.fullmatch(r"[a-z0-9][a-z0-9._-]*", str(config["id"])):
        raise fail(f"id {config['id']!r} is not a plain lower-case name")
    for key, want in (("task", "rawdenoise"), ("backend", "onnx"), ("tiling", True)):
        if config[key] != want:
            raise fail(f"{key} is {config[key]!r}, not {want!r}")
    if not re.fullmatch(r"\d+\.\d+", str(config["version"])):
        raise fail(f"version {config['version']!r} is not X.Y")
    card = config["model_card"]
    if not isinstance(card, dict) or not all(isinstance(card.get(k), str) and card[k] for k in ("license", "training_data")):
        raise fail("model_card needs license and training_data")
    attributes = config["attributes"]
    if not isinstance(attributes, dict) or "model_bayer" not in attributes:
        raise fail("attributes need model_bayer")
    sizes = attributes.get("input_sizes")
    if not isinstance(sizes, list) or not sizes or not all(isinstance(s, int) and s > 0 for s in sizes):
        raise fail("attributes.input_sizes must be a list of tile sizes")
    for slot, allowed in ALLOWED.items():
        if slot not in attributes:
            continue
        values = attributes[slot]
        unknown = set(values) - set(allowed) - ({"target_mean"} if slot == "model_linear" else set())
        if unknown:
            raise fail(f"{slot} has unknown keys {sorted(unknown)}")
        for key, choices in allowed.items():
            if values.get(key) not in choices:
                raise fail(f"{slot}.{key} is {values.get(key)!r}, not one of {sorted(choices)}")
        target = values.get("target_mean")
        if target is not None and not (isinstance(target, int | float) and target > 0):
            raise fail(f"{slot}.target_mean must be null or positive")
    variants = attributes.get("variants", {})
    for layout, slot in SLOTS.items():
        if (layout in variants or slot in attributes) and variants.get(layout) != {"onnx": f"{slot}.onnx", **attributes.get(slot, {})}:
            raise fail(f"variants.{layout} must repeat {slot} with onnx {slot}.onnx")
    return config


def _check_graph(path: Path, slot: str, data: bytes, sizes: list[int]) -> GraphInfo:
    import onnx
    import onnxruntime

    def fail(reason: str) -> LowlightError:
        return LowlightError(path, f"{slot}.onnx: {reason}")

    try:
        graph = onnx.load_from_string(data)
        onnx.checker.check_model(graph)
        session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnx and onnxruntime raise many types; each means a broken graph
        raise fail(f"does not load ({exc.__class__.__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from exc
    opset = max((o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")), default=0)
    if not 1 <= opset <= OPSET:
        raise fail(f"opset {opset}, darktable's runtime takes ≤ {OPSET}")
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if len(inputs) != 1 or len(outputs) != 1:
        raise fail(f"{len(inputs)} inputs and {len(outputs)} outputs, the contract has one of each (no ISO, no noise level)")
    for port in (inputs[0], outputs[0]):
        if port.type != "tensor(float)" or not all(isinstance(d, int) for d in port.shape):
            raise fail(f"{port.name} is {port.type} {port.shape}: the contract wants static float32")
    tile = inputs[0].shape[-1]
    scale = 2 if slot == "model_bayer" else 1
    want_in, want_out = (1, 4 if slot == "model_bayer" else 3, tile, tile), (1, 3, scale * tile, scale * tile)
    if tuple(inputs[0].shape) != want_in or tuple(outputs[0].shape) != want_out or tile not in sizes:
        raise fail(f"takes {inputs[0].shape} → {outputs[0].shape}, the contract wants {list(want_in)} → {list(want_out)} "
                   f"with the tile in input_sizes {sizes}")
    return GraphInfo(slot, f"{slot}.onnx", tuple(inputs[0].shape), tuple(outputs[0].shape), opset)
