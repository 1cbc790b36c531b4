"""The generator's shape options: the full-resolution detail head."""

from __future__ import annotations

import numpy as np
import pytest

from models.networks import GeneratorConfig, build_generator


def test_the_detail_head_sees_the_inputs_finest_detail_and_starts_at_zero() -> None:
    """`detail_head`: untrained, the generator is still the identity; with its last convolution set, the
    change follows a one-pixel pattern of the input, which the head-less network's path cannot resolve."""
    with pytest.raises(ValueError, match="detail_head"):
        GeneratorConfig(residual=False, detail_head=True)
    cfg = GeneratorConfig(size=32, ngf=4, n_blocks=1, detail_head=True)
    g = build_generator(cfg)
    x = np.zeros((1, 32, 32, 3), np.float32)
    x[0, ::2, :, :] = 0.2  # alternate rows: a pattern at the finest scale
    np.testing.assert_allclose(np.asarray(g(x)), x, atol=1e-6)
    # A head that passes the input's luminance through: conv0 copies the RGB channels, conv1 negates them.
    conv0, conv1 = g.get_layer("head_conv0"), g.get_layer("head_conv1")
    k0 = np.zeros(conv0.kernel.shape, np.float32)
    for c in range(3):
        k0[1, 1, cfg.ngf + c, c] = 1.0
    conv0.kernel.assign(k0)
    k1 = np.zeros(conv1.kernel.shape, np.float32)
    for c in range(3):
        k1[1, 1, c, c] = -0.5
    conv1.kernel.assign(k1)
    out = np.asarray(g(x))
    # Half of each bright row is taken away and the dark rows stay: the change follows the finest detail.
    np.testing.assert_allclose(out[0, ::2], 0.1, atol=1e-5)
    np.testing.assert_allclose(out[0, 1::2], 0.0, atol=1e-5)


def test_a_zero_detail_head_is_dropped_and_a_trained_one_kept() -> None:
    """`without_zero_head`: a head whose last convolution is zero adds nothing, so the head-less copy computes
    the same; a head that does something is never dropped."""
    from models.networks import without_zero_head

    cfg = GeneratorConfig(size=32, ngf=4, n_blocks=1, cond=2, film=True, detail_head=True)
    g = build_generator(cfg, name="G")
    rng = np.random.default_rng(1)
    for w in g.weights:  # a trained body: any weights but the head's last convolution
        if not w.path.startswith("head_conv1/"):
            w.assign(0.1 * rng.standard_normal(tuple(w.shape)).astype(np.float32))
    x = rng.uniform(-1, 1, (2, 32, 32, 5)).astype(np.float32)
    lean = without_zero_head(g, cfg)
    assert lean is not None and "head_conv1" not in [layer.name for layer in lean.layers]
    assert len(lean.weights) == len(g.weights) - 4 and lean.name == "G"
    np.testing.assert_allclose(np.asarray(lean(x)), np.asarray(g(x)), atol=1e-6)
    bias = g.get_layer("head_conv1").bias
    bias.assign(np.full(tuple(bias.shape), 1e-4, np.float32))
    assert without_zero_head(g, cfg) is None
    assert (
        without_zero_head(build_generator(GeneratorConfig(size=32, ngf=4, n_blocks=1)), GeneratorConfig())
        is None
    )
