"""The fused RMS block (``reppo_torch.networks._RmsBlock``): the same forward values as the
unfused Linear → RMSNorm → SiLU, its hand-derived backward against float64 finite differences,
and no weight gradients where the weights are frozen (the critic inside the actor step)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from reppo_torch.networks import Layer, _RmsBlock, rms_norm


def _inputs(shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*shape, 5, dtype=torch.float64, generator=g, requires_grad=True)
    w = torch.randn(6, 5, dtype=torch.float64, generator=g, requires_grad=True)
    b = torch.randn(6, dtype=torch.float64, generator=g, requires_grad=True)
    s = torch.randn(6, dtype=torch.float64, generator=g, requires_grad=True)
    return x, w, b, s


@pytest.mark.parametrize("shape", [(7,), (3, 7)])
def test_rms_block_forward_equals_unfused_and_backward_matches_finite_differences(shape):
    x, w, b, s = _inputs(shape)
    fused = _RmsBlock.apply(x, w, b, s, 1e-6)
    assert torch.equal(fused, F.silu(rms_norm(F.linear(x, w, b), s, 1e-6)))
    assert torch.autograd.gradcheck(lambda *a: _RmsBlock.apply(*a, 1e-6), (x, w, b, s))


def test_layer_uses_fused_block_only_with_grad_and_frozen_weights_get_no_gradient():
    layer = Layer(5, 6, "rms", block=True, dtype=torch.float64)
    x = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
    y = layer(x)
    assert type(y.grad_fn).__name__ == "_RmsBlockBackward"
    with torch.no_grad():
        assert torch.equal(layer(x), y.detach())
    layer.requires_grad_(False)
    layer(x).sum().backward()
    assert x.grad is not None and all(p.grad is None for p in layer.parameters())
