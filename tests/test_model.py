"""The network's shapes and the one loader's checks (hash, version, card)."""

import json

import pytest
import torch

from lowlight_raw.errors import LowlightError
from lowlight_raw.model import ARCHITECTURES, SIDUNet, UNetConfig, card_path, load_model, save_weights
from lowlight_raw.registry import SHIPPED_MODELS, resolve_model


def test_output_is_full_resolution_rgb():
    net = SIDUNet(UNetConfig(width=4, depth=3))
    out = net(torch.rand(2, 8, 16, 24))
    assert out.shape == (2, 3, 32, 48)


def test_untrained_head_is_a_nearest_demosaic():
    net = SIDUNet(UNetConfig(width=4, depth=3))
    packed = torch.tensor([0.6, 0.2, 0.4, 0.1]).reshape(1, 4, 1, 1).expand(1, 4, 8, 8)
    out = net(torch.cat([packed, torch.zeros_like(packed)], 1))
    torch.testing.assert_close(out[0, :, 5, 5], torch.tensor([0.6, 0.3, 0.1]))


def test_round_trip(tmp_path):
    net = SIDUNet(UNetConfig(width=4, depth=3))
    save_weights(net, tmp_path / "m.pt", name="m", extra={"steps": 3})
    loaded, card = load_model(tmp_path / "m.pt")
    assert card.config == UNetConfig(width=4, depth=3) and card.extra["steps"] == 3
    for a, b in zip(net.state_dict().values(), loaded.state_dict().values()):
        torch.testing.assert_close(a, b)


def test_tampered_weights_are_refused(tmp_path):
    save_weights(SIDUNet(UNetConfig(width=4, depth=3)), tmp_path / "m.pt", name="m")
    with open(tmp_path / "m.pt", "ab") as f:
        f.write(b"x")
    with pytest.raises(LowlightError, match="sha256"):
        load_model(tmp_path / "m.pt")


def test_wrong_version_and_missing_card(tmp_path):
    save_weights(SIDUNet(UNetConfig(width=4, depth=3)), tmp_path / "m.pt", name="m")
    card = json.loads(card_path(tmp_path / "m.pt").read_text())
    card["arch_version"] = 99
    card_path(tmp_path / "m.pt").write_text(json.dumps(card))
    with pytest.raises(LowlightError, match="version 99"):
        load_model(tmp_path / "m.pt")
    card_path(tmp_path / "m.pt").unlink()
    with pytest.raises(LowlightError, match="model card not found"):
        load_model(tmp_path / "m.pt")
    with pytest.raises(LowlightError, match="not found"):
        load_model(tmp_path / "absent.pt")


def test_card_names_a_registered_architecture(tmp_path):
    save_weights(SIDUNet(UNetConfig(width=4, depth=3)), tmp_path / "m.pt", name="m")
    card = json.loads(card_path(tmp_path / "m.pt").read_text())
    assert card["arch"] == "sid-unet" and card["arch_version"] == ARCHITECTURES["sid-unet"].version
    card["arch"] = "transformer-9000"
    card_path(tmp_path / "m.pt").write_text(json.dumps(card))
    with pytest.raises(LowlightError, match="unknown architecture 'transformer-9000'"):
        load_model(tmp_path / "m.pt")


def test_shipped_models_by_name_and_auto_by_device(tmp_path):
    assert resolve_model("auto", torch.device("cpu")) == SHIPPED_MODELS["fast"]["bayer"]
    quality_shipped = SHIPPED_MODELS["quality"]["bayer"].is_file()
    assert resolve_model("auto", torch.device("cuda")) == SHIPPED_MODELS["quality" if quality_shipped else "fast"]["bayer"]
    assert resolve_model("fast", torch.device("cuda")) == SHIPPED_MODELS["fast"]["bayer"]
    assert resolve_model(str(tmp_path / "m.pt"), torch.device("cpu")) == tmp_path / "m.pt"
    if not quality_shipped:
        with pytest.raises(LowlightError, match="'quality' model is not shipped"):
            resolve_model("quality", torch.device("cpu"))
