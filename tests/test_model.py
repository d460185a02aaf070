"""The network's shapes and the one loader's checks (hash, version, card)."""

import json

import pytest
import torch
from torch.nn import functional as F

from lowlight_raw.errors import LowlightError
from lowlight_raw.networks.catalog import SHIPPED_MODELS, resolve_model
from lowlight_raw.networks.registry import ARCHITECTURES
from lowlight_raw.networks.sid_unet import SIDUNet, UNetConfig, max_pool_2x2
from lowlight_raw.networks.weights import card_path, load_model, save_weights


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


def test_licence_clean_model_never_falls_back_to_a_network_trained_on_bsds500():
    """``quality`` borrows ``fast``'s network for a layout it lacks; ``fast-licence-clean`` must
    not, since its users chose it for its training data: a clear error instead."""
    assert resolve_model("fast-licence-clean", torch.device("cpu")) == SHIPPED_MODELS["fast-licence-clean"]["bayer"]
    with pytest.raises(LowlightError, match="'fast-licence-clean' model has no network for xtrans sensors"):
        resolve_model("fast-licence-clean", torch.device("cpu"), "xtrans")


def test_context_unet_starts_as_the_unet_it_is_fine_tuned_from(tmp_path):
    """A trained sid-unet carries over into sid-unet-ctx whole: the gated blocks start as the
    identity, so the output is the same; the card names the new architecture and the loader
    builds it from that name."""
    from lowlight_raw.networks.sid_unet import ContextUNet, ContextUNetConfig
    from lowlight_raw.training.train import transfer_weights

    torch.manual_seed(0)
    plain = SIDUNet(UNetConfig(width=4, depth=3)).eval()
    torch.nn.init.normal_(plain.head.weight, std=0.1)
    context = ContextUNet(ContextUNetConfig(width=4, depth=3, context_levels=2, context_blocks=2)).eval()
    fresh = transfer_weights(plain, context)
    assert fresh and all(name.startswith("context.") for name in fresh)
    assert sum(p.numel() for p in context.parameters()) > sum(p.numel() for p in plain.parameters())
    x = torch.rand(1, 8, 16, 24)
    torch.testing.assert_close(context(x), plain(x))
    save_weights(context, tmp_path / "ctx.pt", name="ctx")
    loaded, card = load_model(tmp_path / "ctx.pt")
    assert card.arch == "sid-unet-ctx" and isinstance(loaded, ContextUNet)
    assert card.config == ContextUNetConfig(width=4, depth=3, context_levels=2, context_blocks=2)
    assert [type(m).__name__ for m in loaded.context] == ["Identity", "Sequential", "Sequential"]


def test_context_unet_tiles_like_one_pass():
    """No global pooling: a tiled run equals the whole-image pass (tiles must not see their size)."""
    import numpy as np

    from lowlight_raw.networks.sid_unet import ContextUNet, ContextUNetConfig
    from lowlight_raw.pipeline.tiling import run_tiled

    torch.manual_seed(0)
    net = ContextUNet(ContextUNetConfig(width=8, depth=4)).eval()
    for name, p in net.named_parameters():
        if name.endswith("_scale") or name.startswith("head."):
            torch.nn.init.normal_(p, std=0.1)  # blocks and head that do something
    x = np.random.default_rng(0).random((8, 101, 163), dtype=np.float32)
    whole = run_tiled(net, x, torch.device("cpu"), tile=4096)
    tiled = run_tiled(net, x, torch.device("cpu"), tile=64, overlap=32)
    assert np.abs(tiled - whole).max() < 1e-3


@pytest.mark.parametrize("shape", [(1, 12, 34, 46), (2, 3, 33, 47)])
def test_the_max_pooling_is_torchs_to_the_bit(shape):
    x = torch.randn(shape)
    for features in (x, x.contiguous(memory_format=torch.channels_last), x.to(torch.bfloat16)):
        assert torch.equal(max_pool_2x2(features), F.max_pool2d(features, 2))
