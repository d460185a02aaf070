"""The network's shapes and the one loader's checks (hash, version, card)."""

import json

import pytest
import torch

from lowlight_raw.errors import LowlightError
from lowlight_raw.model import SIDUNet, UNetConfig, card_path, load_model, save_weights


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
