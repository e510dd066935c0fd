"""A Llama of SmolLM2-135M's shape with random weights, for speed benchmarks.

Why random weights: a speed figure needs only the shape (30 layers, hidden 576, 9 heads, 3
key/value heads, MLP 1536, vocabulary 49152, tied head), so benchmarks built on it read no
files and run on a bare GPU machine. It imports nothing from ``evaluation``, so a benchmark
can pair it with the ``evaluation`` package of another checkout (``--code``)."""

from __future__ import annotations

VOCAB = 49152


def build_model(device: str, dtype):
    """The model in eval mode, seeded, on ``device`` in ``dtype`` (a torch dtype)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=VOCAB, hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                         num_key_value_heads=3, max_position_embeddings=2048, tie_word_embeddings=True, attn_implementation="sdpa")
    torch.manual_seed(0)
    return LlamaForCausalLM(config).to(device=device, dtype=dtype).eval()
