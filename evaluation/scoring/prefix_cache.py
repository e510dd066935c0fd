"""A transformers key/value cache that holds a shared prefix, which a forward reads but does
not extend (for shared-prefix reuse, ``prefix_reuse.py``).

Why: scoring a batch of requests after their shared prefix needs, in each layer, the
prefix's keys and values followed by the batch's own. transformers' ``DynamicCache``
appends the batch's keys to the stored prefix and keeps the result, so by the end of the
forward every layer holds ``rows x (prefix + own tokens)`` keys and values, none of which
is read again (the next batch starts from the prefix alone). On SmolLM2-135M (30 layers)
that was 50-100 MB for a batch of 1,000 tokens, the largest allocation of a scoring run
after the weights. Here each layer returns the concatenation to its attention and keeps
only the prefix, so one layer's worth exists at a time. The tensors attention sees are the
same, so the scores are bit-identical (``tests/test_prefix_cache.py``).

transformers' cache API changed in 4.5x; where its layer classes are missing,
``read_only_prefix_cache`` returns None and the caller falls back to ``DynamicCache``, as
``HFScorer`` does when its start-up probe finds different scores on the read-only cache.
"""

from __future__ import annotations

import functools
from typing import Any, Optional, Sequence

import torch


@functools.cache
def _layer_class() -> Optional[type]:
    """The read-only layer class, built on first use (transformers is an optional import)."""
    try:
        from transformers.cache_utils import Cache, DynamicLayer  # noqa: F401 - Cache checked below
    except ImportError:
        return None

    class ReadOnlyPrefixLayer(DynamicLayer):
        """A ``DynamicLayer`` holding a fixed prefix: ``update`` returns prefix + new states
        and stores nothing."""

        def __init__(self, keys: torch.Tensor, values: torch.Tensor) -> None:
            super().__init__()
            self.device = keys.device
            self.keys, self.values = keys, values
            self.is_initialized = True

        def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any,
                   **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
            return torch.cat([self.keys, key_states], dim=-2), torch.cat([self.values, value_states], dim=-2)

    return ReadOnlyPrefixLayer


def read_only_prefix_cache(prefix: Sequence[tuple[torch.Tensor, torch.Tensor]], rows: int) -> Any:
    """A cache whose layer ``i`` reads ``prefix[i]`` (keys, values of shape [1, heads, length, d])
    broadcast to ``rows`` rows without copying it, or None where this transformers has no
    layered cache API."""
    layer_class = _layer_class()
    if layer_class is None:
        return None
    from transformers.cache_utils import Cache

    try:
        return Cache(layers=[layer_class(keys.expand(rows, -1, -1, -1), values.expand(rows, -1, -1, -1))
                             for keys, values in prefix])
    except TypeError:  # a Cache without the ``layers`` argument
        return None


def read_only_prefix_cache_available() -> bool:
    """Whether ``batch_cache_on_prefix`` gives the read-only cache (one layer's batch keys and
    values at a time) rather than ``DynamicCache`` (every layer's, until the forward ends)."""
    return read_only_prefix_cache([(torch.zeros(1, 1, 1, 1), torch.zeros(1, 1, 1, 1))], 1) is not None


def dynamic_cache_from_states(states: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> Any:
    """transformers' ``DynamicCache`` holding each layer's (keys, values) as given."""
    from transformers import DynamicCache

    cache = DynamicCache()
    for layer, (keys, values) in enumerate(states):
        cache.update(keys, values, layer)
    return cache


def dynamic_prefix_cache(prefix: Sequence[tuple[torch.Tensor, torch.Tensor]], rows: int) -> Any:
    """transformers' ``DynamicCache`` holding the prefix for ``rows`` rows (it keeps what each
    forward appends: the fallback for a transformers without the layered API)."""
    return dynamic_cache_from_states([(k.expand(rows, -1, -1, -1), v.expand(rows, -1, -1, -1)) for k, v in prefix])


def batch_cache_on_prefix(prefix: Sequence[tuple[torch.Tensor, torch.Tensor]], rows: int, read_only: bool = True) -> Any:
    """The read-only cache when ``read_only`` and transformers allows it, else a ``DynamicCache``
    (``HFScorer`` turns ``read_only`` off when its start-up probe finds the model's attention
    scores differently on it)."""
    cache = read_only_prefix_cache(prefix, rows) if read_only else None
    return cache if cache is not None else dynamic_prefix_cache(prefix, rows)
