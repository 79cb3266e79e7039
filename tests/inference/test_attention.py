"""The CPU attention path: block-causal prefill and short queries on a cache equal SDPA (fp32: to rounding)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from petool_lib.inference.attention import BLOCK, blocked_causal_attention, short_query_attention


@pytest.mark.parametrize("n", [1, 7, BLOCK, BLOCK + 37, 3 * BLOCK])
@pytest.mark.parametrize("heads", [(4, 4), (6, 2)])
def test_blocked_prefill_equals_causal_sdpa(n, heads):
    torch.manual_seed(n)
    h, kvh = heads
    q, k, v = torch.randn(2, h, n, 16), torch.randn(2, kvh, n, 16), torch.randn(2, kvh, n, 16)
    want = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
    got = blocked_causal_attention(q, k, v, 16 ** -0.5)
    assert torch.allclose(got, want, atol=1e-5)


def test_blocked_prefill_in_bf16_is_within_rounding():
    torch.manual_seed(0)
    q, k, v = (torch.randn(1, 9, 600, 64, dtype=torch.bfloat16) for _ in range(3))
    k, v = k[:, :3], v[:, :3]
    want = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), is_causal=True, enable_gqa=True)
    got = blocked_causal_attention(q, k, v, 64 ** -0.5).float()
    assert (got - want).abs().max() < 0.05


def test_short_queries_on_a_cache_follow_the_boolean_mask():
    """A tree of new tokens: each sees the cache and some of the others (True = may attend), as in SDPA."""
    torch.manual_seed(1)
    past, n = 50, 5
    q = torch.randn(1, 6, n, 16)
    k, v = torch.randn(1, 2, past + n, 16), torch.randn(1, 2, past + n, 16)
    allow = torch.zeros(n, past + n, dtype=torch.bool)
    allow[:, :past] = True
    for i, parent in enumerate([-1, 0, 0, 2, -1]):  # node i sees itself and its ancestors
        allow[i, past + i] = True
        while parent != -1:
            allow[i, past + parent] = True
            parent = [-1, 0, 0, 2, -1][parent]
    mask = allow[None, None]
    want = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True)
    assert torch.allclose(short_query_attention(q, k, v, 16 ** -0.5, mask), want, atol=1e-5)
    one = q[:, :, :1]
    want1 = F.scaled_dot_product_attention(one, k, v, enable_gqa=True)
    assert torch.allclose(short_query_attention(one, k, v, 16 ** -0.5, None), want1, atol=1e-5)
