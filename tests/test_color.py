"""The one sRGB curve (numpy and torch) against IEC 61966-2-1 reference values."""

import numpy as np
import pytest
import torch

from lowlight_raw.pipeline.color import srgb_decode, srgb_decode_torch, srgb_encode, srgb_encode_torch

# linear → encoded, from the standard's formula evaluated in double precision
REFERENCE = [(0.0, 0.0), (0.001, 0.01292), (0.0031308, 0.040449936), (0.01, 0.099852823),
             (0.18, 0.461356129), (0.5, 0.735356983), (1.0, 1.0)]


@pytest.mark.parametrize(("linear", "encoded"), REFERENCE)
def test_curve_matches_the_standard(linear, encoded):
    assert float(srgb_encode(np.float64(linear))) == pytest.approx(encoded, abs=2e-6)
    assert float(srgb_encode_torch(torch.tensor(linear, dtype=torch.float64))) == pytest.approx(encoded, abs=1e-8)
    assert float(srgb_decode(np.float64(encoded))) == pytest.approx(linear, abs=1e-8)
    assert float(srgb_decode_torch(torch.tensor(encoded, dtype=torch.float64))) == pytest.approx(linear, abs=1e-8)


def test_numpy_and_torch_agree_and_invert_each_other():
    x = np.linspace(-0.1, 1.1, 2001)
    np.testing.assert_allclose(srgb_encode_torch(torch.from_numpy(x)).numpy(), srgb_encode(x), atol=1e-6)
    np.testing.assert_allclose(srgb_decode_torch(torch.from_numpy(x)).numpy(), srgb_decode(x), atol=1e-12)
    inside = x[(x >= 0) & (x <= 1)]
    np.testing.assert_allclose(srgb_decode(srgb_encode(inside).astype(np.float64)), inside, atol=1e-6)


def test_torch_curve_has_finite_gradients_everywhere():
    x = torch.linspace(-0.1, 1.1, 500, dtype=torch.float64, requires_grad=True)
    srgb_encode_torch(x).sum().backward()
    assert torch.isfinite(x.grad).all() and (x.grad >= 0).all()
