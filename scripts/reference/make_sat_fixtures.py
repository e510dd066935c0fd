"""Regenerate the SAT parity fixtures in ``tests/fixtures/sat_parity/`` (run by hand, never by CI).

SwissArmyTransformer's ``GLM130B`` class (``sat/model/official/glm130B_model.py``, SAT 0.4.12)
is the reference for our ``evaluation.model.glm.GLMModel``. This script builds a tiny GLM130B
with seeded random weights, once with 1D and once with 2D rotary embeddings, runs it on

  (a) ``mc``:       a packed multiple-choice batch (block-diagonal mask; row 0 uses ``[MASK]``,
                    row 1 ``[gMASK]`` positions), built with our ``build_multiple_choice``;
  (b) ``prefix``:   a ``[gMASK]`` generation prefix (context + ``[gMASK]`` + ``<sop>``, batch 2),
                    built with our ``build_generation_context``; also records SAT's key/value
                    memory (``mem_kv``, stacked as SAT's ``update_mems`` does);
  (c) ``step``:     one incremental decoding step fed that memory through SAT's own ``mems``
                    argument (the way ``sat.generation.autoregressive_sampling.filling_sequence``
                    calls the model);

and writes, per rotary kind, the weights in our checkpoint layout (``latest``,
``1/mp_rank_00_model_states.pt`` via ``evaluation.model.checkpoint.save_state``), our
``model_config.json`` and ``cases.pt`` (inputs in our conventions plus the reference fp32
logits and memory). ``tests/test_reference_parity.py`` checks our model against them.

SAT is NOT a project dependency. Make a throwaway environment outside the repository:

    python3 -m venv /tmp/satenv
    /tmp/satenv/bin/pip install -c constraints.txt SwissArmyTransformer==0.4.12 \\
        requests numpy pyyaml sentencepiece tqdm
    /tmp/satenv/bin/python scripts/reference/make_sat_fixtures.py      # from the repo root

(``-c constraints.txt`` keeps torch at the local 2.13.0 CPU wheel; ``requests`` is imported by
SAT but not declared. triton and wandb are not installed: see the stubs below.) The script puts
the repository on ``sys.path`` to use our packing and checkpoint code; it takes 10-20 s
(mostly importing SAT) and overwrites the fixtures, byte-for-byte identically for a given
SAT/torch version.

Patches that make SAT 0.4.12's GLM130B run on CPU in fp32 (all applied at runtime in this
script; site-packages stay untouched). None changes the fp32 arithmetic of the reference:

1. ``sat.model.position_embedding.triton_rotary`` is replaced by a stub module before SAT is
   imported: SAT imports it (and through it ``triton``, ~1 GB, CUDA-only) at package import
   for ``FastRotaryEmbedding``, which GLM130B does not use. Stubbing ``triton`` itself is not
   possible: torch's inductor then mistakes the stub for a real triton.
2. ``wandb`` is a ``MagicMock`` in ``sys.modules``: ``sat/__init__`` imports the training loop,
   which imports wandb at module level. Nothing here logs.
3. ``torch.cuda.current_device`` returns ``torch.device("cpu")``: GLM130B's rotary mixin places
   its ``inv_freq`` on it and the fp32-softmax ``attention_fn`` allocates its ``baddbmm``
   output there (with beta=0, so the buffer's contents never matter).
4. ``SelfAttentionWithFP32SoftmaxMixin.attention_fn`` is recompiled from its own source with
   one line changed, ``attention_probs = attention_probs.half()`` ->
   ``attention_probs = attention_probs.to(value_layer.dtype)``: the reference hard-codes fp16
   probabilities (its model ran in fp16 only, where the two are identical); in fp32 ``.half()``
   would make the following ``bmm`` fail on mixed dtypes.
5. The same ``attention_fn`` gets a wrapper that turns a floating mask back into bool
   (``mask > 0.5``): ``BaseTransformer.forward`` in 0.4.12 casts every mask to the parameter
   dtype (``type_as``), but GLM130B's ``attention_fn`` uses ``masked_fill_(mask, -10000.0)``,
   which needs the boolean mask of the GLM-130B code base (True = masked out). We pass that
   boolean mask (the negation of our True = may-attend mask); the round trip is exact.
6. After construction the model is cast to fp32 (``model.float()``): ``DeepNormWithGLUMixin
   .reinit`` re-creates every ``dense_h_to_4h`` with ``params_dtype=torch.half`` and
   ``skip_init=True`` (fp16, uninitialised) regardless of ``--fp16``. All weights are then
   overwritten with the seeded ones.

The rotary tables of 0.4.12 (``RotaryEmbedding``) are computed in fp32 (its ``inv_freq.half()``
line is commented out) and cast to the activation dtype, which is what our model does.
"""

from __future__ import annotations

import argparse
import inspect
import sys
import textwrap
import time
import types
from pathlib import Path
from unittest import mock

import torch

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "tests" / "fixtures" / "sat_parity"
sys.path.insert(0, str(REPO))

# ---------------------------------------------------------------------------------------------
# Patches 1-3: before importing sat.
# ---------------------------------------------------------------------------------------------
_triton_stub = types.ModuleType("sat.model.position_embedding.triton_rotary")


def _no_triton(*args, **kwargs):
    raise RuntimeError("triton rotary kernels are stubbed out (make_sat_fixtures.py)")


_triton_stub.apply_rotary = _no_triton
sys.modules[_triton_stub.__name__] = _triton_stub
sys.modules["wandb"] = mock.MagicMock(name="wandb")
torch.cuda.current_device = lambda: torch.device("cpu")

from sat.generation.autoregressive_sampling import update_mems  # noqa: E402
from sat.model.official import glm130B_model  # noqa: E402
from sat.model.official.glm130B_model import GLM130B, SelfAttentionWithFP32SoftmaxMixin  # noqa: E402

from evaluation.model.checkpoint import save_state  # noqa: E402
from evaluation.model.config import GLMConfig  # noqa: E402
from evaluation.scoring.packing import SpecialIds, build_generation_context, build_multiple_choice  # noqa: E402


# ---------------------------------------------------------------------------------------------
# Patches 4-5: attention_fn without the fp16 cast, fed a boolean mask.
# ---------------------------------------------------------------------------------------------
def _patch_attention_fn() -> None:
    source = textwrap.dedent(inspect.getsource(SelfAttentionWithFP32SoftmaxMixin.attention_fn))
    old = "attention_probs = attention_probs.half()"
    assert source.count(old) == 1, "SAT attention_fn changed; revisit patch 4"
    source = source.replace(old, "attention_probs = attention_probs.to(value_layer.dtype)")
    namespace: dict = {}
    exec(compile(source, inspect.getsourcefile(glm130B_model), "exec"), glm130B_model.__dict__, namespace)
    reference_fn = namespace["attention_fn"]

    def attention_fn(self, query_layer, key_layer, value_layer, attention_mask, *args, **kwargs):
        if attention_mask.dtype != torch.bool:
            attention_mask = attention_mask > 0.5
        return reference_fn(self, query_layer, key_layer, value_layer, attention_mask, *args, **kwargs)

    SelfAttentionWithFP32SoftmaxMixin.attention_fn = attention_fn


_patch_attention_fn()

# ---------------------------------------------------------------------------------------------
# Tiny model, seeded weights, inputs.
# ---------------------------------------------------------------------------------------------
VOCAB = 160
# icetk's command-token layout (150000 + i) scaled down to this vocabulary.
IDS = SpecialIds(mask=150, gmask=151, sop=154, pad=0)
EOP = 155
TEXT_IDS = (20, 150)  # random "text" tokens come from this range
SEEDS = {"rotary_1d": 1234, "rotary_2d": 4321}


def glm_config(position_2d: bool) -> GLMConfig:
    return GLMConfig(
        num_layers=2, hidden_size=48, inner_hidden_size=96, num_attention_heads=4, vocab_size=VOCAB,
        max_sequence_length=64, layernorm_epsilon=1e-5, position_encoding_2d=position_2d,
    )


def sat_args(config: GLMConfig) -> argparse.Namespace:
    return argparse.Namespace(
        num_layers=config.num_layers, vocab_size=config.vocab_size, hidden_size=config.hidden_size,
        num_attention_heads=config.num_attention_heads, inner_hidden_size=config.inner_hidden_size,
        max_sequence_length=config.max_sequence_length, layernorm_epsilon=config.layernorm_epsilon,
        position_encoding_2d=config.position_encoding_2d, no_glu=False, fp16=False, bf16=False,
        layernorm_order="post", skip_init=False, model_parallel_size=1, hidden_dropout=0.0,
        attention_dropout=0.0, seed=1234,
    )


def seeded_state(shapes: dict[str, torch.Size], seed: int) -> dict[str, torch.Tensor]:
    """Weights large enough that any mismatch shows in the logits."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for name, shape in shapes.items():
        noise = torch.randn(shape, generator=g, dtype=torch.float32)
        if "layernorm" in name:
            state[name] = (1.0 + 0.1 * noise) if name.endswith("weight") else 0.1 * noise
        elif name.endswith("bias"):
            state[name] = 0.1 * noise
        else:  # word embeddings and the four linear weights
            state[name] = 0.2 * noise
    return state


def build_sat(config: GLMConfig, state: dict[str, torch.Tensor]) -> GLM130B:
    model = GLM130B(sat_args(config)).float().eval()  # patch 6
    reference_params = {k: v.shape for k, v in model.state_dict().items() if not k.startswith("mixins.")}
    ours = {k: v.shape for k, v in state.items()}
    assert reference_params == ours, f"parameter names/shapes differ: {set(reference_params) ^ set(ours)}"
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert not unexpected and all(k.startswith("mixins.") for k in missing), (missing, unexpected)
    return model


def text(g: torch.Generator, n: int) -> list[int]:
    return torch.randint(*TEXT_IDS, (n,), generator=g).tolist()


def sat_forward(model, input_ids, position_ids, may_attend, mems=None):
    """SAT forward with our inputs: our mask is True = may attend, SAT's is True = masked."""
    logits, *per_layer = model(
        input_ids=input_ids, position_ids=position_ids, attention_mask=(~may_attend).unsqueeze(1), mems=mems,
    )
    return logits.float(), [o["mem_kv"] for o in per_layer]


def make_cases(model, config: GLMConfig, seed: int) -> dict:
    g = torch.Generator().manual_seed(seed + 1)
    position_2d = config.position_encoding_2d
    cases: dict = {}

    # (a) packed multiple choice: same context and choices, [MASK] (row 0) and [gMASK] (row 1).
    context, choices = text(g, 9), [text(g, 3), text(g, 2), text(g, 4)]
    rows = [
        build_multiple_choice(
            context, choices, IDS, use_task_mask=gmask, unidirectional=False, use_multitask_encoding=False,
            max_seq_length=64, position_2d=position_2d,
        )
        for gmask in (False, True)
    ]
    mc = {
        "input_ids": torch.stack([torch.from_numpy(r.tokens) for r in rows]),
        "position_ids": torch.stack([torch.from_numpy(r.positions) for r in rows]),
        "attention_mask": torch.stack([torch.from_numpy(r.mask) for r in rows]),
    }
    with torch.no_grad():
        mc["logits"], _ = sat_forward(model, mc["input_ids"], mc["position_ids"], mc["attention_mask"])
    cases["mc"] = mc

    # (b) [gMASK] generation prefix, batch of two contexts of equal length.
    gens = [
        build_generation_context(
            text(g, 8), IDS, use_task_mask=True, unidirectional=False, max_seq_length=64, max_gen_length=8,
            position_2d=position_2d,
        )
        for _ in range(2)
    ]
    prefix = {
        "input_ids": torch.stack([torch.from_numpy(c.tokens) for c in gens]),
        "position_ids": torch.stack([torch.from_numpy(c.positions) for c in gens]),
        "attention_mask": torch.stack([torch.from_numpy(c.mask) for c in gens]),
    }
    with torch.no_grad():
        prefix["logits"], mem_kv = sat_forward(model, prefix["input_ids"], prefix["position_ids"], prefix["attention_mask"])
    mems = update_mems(mem_kv, None, max_memory_length=100000)  # [layers, b, c, 2 * hidden]
    prefix["mems"] = mems.clone()
    cases["prefix"] = prefix

    # (c) one incremental step with that memory: the token each row would generate greedily.
    c = prefix["input_ids"].shape[1]
    next_ids = prefix["logits"][:, -1].argmax(-1, keepdim=True)
    positions = [gen.generated_position(0) for gen in gens]
    if position_2d:
        step_pos = torch.tensor([[[p], [bp]] for p, bp in positions])
    else:
        step_pos = torch.tensor([[p] for p, _ in positions])
    step = {
        "input_ids": next_ids,
        "position_ids": step_pos,
        "attention_mask": torch.ones(2, 1, c + 1, dtype=torch.bool),
    }
    with torch.no_grad():
        step["logits"], step_kv = sat_forward(model, step["input_ids"], step["position_ids"], step["attention_mask"], mems=mems)
        # Self-check of the reference: the cached step equals a full forward over prefix + token.
        full_mask = torch.zeros(2, c + 1, c + 1, dtype=torch.bool)
        full_mask[:, :c, :c] = prefix["attention_mask"]
        full_mask[:, c, :] = True
        full_logits, _ = sat_forward(
            model, torch.cat([prefix["input_ids"], next_ids], 1),
            torch.cat([prefix["position_ids"], step_pos], -1), full_mask,
        )
    gap = (full_logits[:, -1:] - step["logits"]).abs().max().item()
    assert gap < 1e-5, f"SAT incremental step disagrees with its full forward by {gap}"
    step["mems_after"] = update_mems(step_kv, mems, max_memory_length=100000)[:, :, -1:].clone()  # the new entry
    cases["step"] = step
    cases["meta"] = {"sat_version": "0.4.12", "torch_version": str(torch.__version__), "seed": seed, "self_check_gap": gap}
    return cases


def main() -> None:
    start = time.perf_counter()
    torch.manual_seed(0)
    for kind, seed in SEEDS.items():
        config = glm_config(position_2d=(kind == "rotary_2d"))
        from evaluation.model.glm import GLMModel

        shapes = {k: v.shape for k, v in GLMModel(config).state_dict().items()}
        state = seeded_state(shapes, seed)
        model = build_sat(config, state)
        cases = make_cases(model, config, seed)
        folder = OUT / kind
        folder.mkdir(parents=True, exist_ok=True)
        save_state(state, folder)
        config.save(folder / "model_config.json")
        torch.save(cases, folder / "cases.pt")
        size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
        print(f"{kind}: {size} bytes, reference self-check gap {cases['meta']['self_check_gap']:.2e}")
    total = sum(p.stat().st_size for p in OUT.rglob("*") if p.is_file())
    print(f"total {total} bytes under {OUT}; built in {time.perf_counter() - start:.1f} s after importing SAT")


if __name__ == "__main__":
    main()
