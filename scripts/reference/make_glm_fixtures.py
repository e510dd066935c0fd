"""Regenerate the THUDM/GLM parity fixtures in ``tests/fixtures/glm_parity/`` (by hand, never by CI).

The reference is THUDM/GLM's own ``GLMModel`` (``model/modeling_glm.py``) with its ``mpu``
(``mpu/transformer.py``: ``GPT2ParallelTransformer``), i.e. the original GLM architecture of
GLM-Base/Large/10B (``--block-lm``). This script builds a tiny ``GLMModel`` with seeded random
weights, once with ``block_position_encoding=True`` (variant ``block``: 2D positions, position +
block position, as ``train_utils.get_model`` builds every ``--block-lm`` model) and once with
``False`` (variant ``noblock``: one learned position table, as for ``--masked-lm``), and records in
fp32 on CPU, eval mode, no grad:

  (a) ``mc``:        multi-token cloze, one row per choice, exactly as ``tasks/superglue/pvp.py``
                     (non ``--fast-decode``) builds it with ``tasks/data_utils.build_input_from_ids``
                     and scores it with ``model/downstream.GLMForMultiTokenCloze`` (``sep`` masks);
      ``mc_packed``: the same context with all choices packed after it in one row and a full
                     ``[1, 1, L, L]`` attention-mask tensor (1 = may attend): not built by THUDM/GLM
                     but accepted by its model; every choice's logits must equal its ``mc`` row;
      ``mc_fast``:   the ``--fast-decode`` path: ``GLMForMultiTokenClozeFast`` (context once with
                     ``return_memory=True``, then all choices as decoder rows on its memory with a
                     ``[b, 1, Ld, Le + Ld]`` mask tensor, ``build_decoder_input`` positions);
  (b) ``prefix``:    a ``[gMASK]`` generation prefix ``[CLS] context [gMASK] <sop>`` with ``sep`` =
                     ``len([CLS] context [gMASK])`` and positions as ``tasks/seq2seq/dataset.py``
                     builds them (batch 2), run with ``return_memory=True`` as
                     ``tasks/seq2seq/evaluate.py`` does; its ``mems``;
  (c) ``step``:      one incremental step on those mems, as ``tasks/seq2seq/evaluate.py`` feeds it
                     (``last_token``, position ``[mask_pos, counter + 1]``, mask ``zeros([b])`` i.e.
                     sep 0, ``*mems``, ``return_memory=True``); its logits and the updated mems.

and writes, per variant, the weights in THUDM/GLM's checkpoint layout
(``latest_checkpointed_iteration.txt`` = ``1``; ``1/mp_rank_00_model_states.pt`` =
``{"module": state_dict}`` with the key names of THUDM/GLM's ``GLMModel``), ``model_config.json``
and ``cases.pt``. See ``tests/fixtures/glm_parity/README.md`` for the contents of each case.

THUDM/GLM is NOT a project dependency. Make a throwaway environment outside the repository:

    python3 -m venv /tmp/glmref
    /tmp/glmref/bin/pip install -c constraints.txt torch==2.13.0 numpy
    mkdir -p /tmp/thudm_glm && git --git-dir=<bare clone of THUDM/GLM> archive HEAD | tar -x -C /tmp/thudm_glm
    /tmp/glmref/bin/python scripts/reference/make_glm_fixtures.py --glm-src /tmp/thudm_glm \\
        --out tests/fixtures/glm_parity                                   # from the repo root

(fixtures made from THUDM/GLM commit 4f61ed7237a3b0187f4d62062429348276a78c84). It takes a few
seconds and overwrites the fixtures, byte-for-byte identically for a given torch version.

Nothing under ``--glm-src`` is edited. Patches applied at runtime (none changes the fp32
arithmetic of the reference model):

1. ``apex`` is a stub package whose ``apex.normalization.fused_layer_norm.FusedLayerNorm`` is
   ``torch.nn.LayerNorm`` (same signature ``(hidden, eps)``, same ``weight``/``bias`` names, same
   formula; apex's fused kernel is CUDA-only). ``mpu/transformer.py`` imports it at module level.
2. ``deepspeed`` is a stub whose ``checkpointing.is_configured()`` returns False (THUDM/GLM's
   default without ``--deepspeed-activation-checkpointing``); only that call is reached.
3. ``torch._six`` is a stub with ``inf`` (removed from torch; ``mpu/grads.py`` imports it for
   gradient clipping, never used here).
4. ``utils`` (THUDM/GLM's top-level ``utils.py``, imported by ``modeling_glm`` for
   ``print_rank_0`` only) is a stub with ``print_rank_0``: the real one imports tensorboardX and
   the fp16 optimizer.
5. ``mpu.get_cuda_rng_tracker().fork`` is a no-op context manager: ``ParallelSelfAttention``
   wraps its (p = 0, eval-mode) attention dropout in a CUDA RNG fork, which needs CUDA.
6. ``torch.distributed`` is initialised with gloo, world size 1 (a file store in a temporary
   folder), then ``mpu.initialize_model_parallel(1)``: all mpu collectives are then identities.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import sys
import tempfile
import types
from pathlib import Path

import torch

GLM_COMMIT = "4f61ed7237a3b0187f4d62062429348276a78c84"

# ---------------------------------------------------------------------------------------------
# Tiny model and the token-id layout (THUDM/GLM's BERT-wordpiece tokenizer, scaled down:
# GLM-Base/Large use bert-base-uncased with [PAD]=0 (also 'eos'), [UNK]=100, [CLS]=101 ('ENC'),
# [SEP]=102, [MASK]=103, then sop/eop/gMASK/sMASK appended after the text vocabulary).
# ---------------------------------------------------------------------------------------------
NUM_TEXT_TOKENS = 120
IDS = {
    "pad": 0, "eos": 0, "unk": 100, "ENC": 101, "sep": 102, "MASK": 103,
    "sop": NUM_TEXT_TOKENS, "eop": NUM_TEXT_TOKENS + 1, "gMASK": NUM_TEXT_TOKENS + 2, "sMASK": NUM_TEXT_TOKENS + 3,
}
TEXT_IDS = [i for i in range(1, NUM_TEXT_TOKENS) if i not in (100, 101, 102, 103)]
CONFIG = {
    "num_layers": 2,
    "vocab_size": 128,  # NUM_TEXT_TOKENS + 4 command tokens, padded to a multiple of 8
    "hidden_size": 40,
    "num_attention_heads": 4,
    "max_sequence_length": 64,
    "max_memory_length": 0,
}
SEEDS = {"block": 2024, "noblock": 4202}
MC_MAX_SEQ_LENGTH = 24  # rows of the per-choice multi-token cloze (padded with 'eos')
MC_MAX_DEC_LENGTH = 4  # decoder rows of the fast-decode path


# ---------------------------------------------------------------------------------------------
# Patches 1-4 (stub modules) and the import of THUDM/GLM.
# ---------------------------------------------------------------------------------------------
def _stub(name: str, **attrs) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__dict__.update(attrs)
    sys.modules[name] = module
    return module


def import_glm(glm_src: Path):
    apex = _stub("apex")
    apex.normalization = _stub("apex.normalization")
    apex.normalization.fused_layer_norm = _stub("apex.normalization.fused_layer_norm", FusedLayerNorm=torch.nn.LayerNorm)
    deepspeed = _stub("deepspeed")
    deepspeed.checkpointing = _stub("deepspeed.checkpointing", is_configured=lambda: False)
    if "torch._six" not in sys.modules:
        _stub("torch._six", inf=math.inf)
    _stub("utils", print_rank_0=lambda message: None)

    sys.path.insert(0, str(glm_src))
    import mpu
    from model.downstream import GLMForMultiTokenCloze, GLMForMultiTokenClozeFast
    from model.modeling_glm import GLMModel
    from tasks.data_utils import build_decoder_input, build_input_from_ids

    # Patch 5: the attention-dropout RNG fork needs CUDA; dropout is p = 0 in eval mode anyway.
    mpu.get_cuda_rng_tracker().fork = lambda *args, **kwargs: contextlib.nullcontext()
    # Patch 6: one process, model parallel size 1.
    if not torch.distributed.is_initialized():
        store = Path(tempfile.mkdtemp(prefix="glmref_dist_")) / "store"
        torch.distributed.init_process_group("gloo", init_method=f"file://{store}", rank=0, world_size=1)
    if not mpu.model_parallel_is_initialized():
        mpu.initialize_model_parallel(1)
    return types.SimpleNamespace(
        mpu=mpu, GLMModel=GLMModel, GLMForMultiTokenCloze=GLMForMultiTokenCloze,
        GLMForMultiTokenClozeFast=GLMForMultiTokenClozeFast, build_input_from_ids=build_input_from_ids,
        build_decoder_input=build_decoder_input,
    )


class FakeTokenizer:
    """The part of THUDM/GLM's tokenizer that the input builders use: ``get_command(name).Id``."""

    def get_command(self, name: str):
        return types.SimpleNamespace(Id=IDS[name])


# ---------------------------------------------------------------------------------------------
# Model and seeded weights.
# ---------------------------------------------------------------------------------------------
def build_model(glm, block: bool, seed: int):
    torch.manual_seed(seed)
    model = glm.GLMModel(
        num_layers=CONFIG["num_layers"], vocab_size=CONFIG["vocab_size"], hidden_size=CONFIG["hidden_size"],
        num_attention_heads=CONFIG["num_attention_heads"], embedding_dropout_prob=0.0, attention_dropout_prob=0.0,
        output_dropout_prob=0.0, max_sequence_length=CONFIG["max_sequence_length"],
        max_memory_length=CONFIG["max_memory_length"], checkpoint_activations=False, checkpoint_num_layers=1,
        parallel_output=False, relative_encoding=False, block_position_encoding=block, output_predict=True,
        spell_length=None, attention_scale=1.0,
    )
    # Re-initialise every parameter so that any mismatch shows in the logits.
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, param in model.named_parameters():
            noise = torch.randn(param.shape, generator=g, dtype=torch.float32)
            if "layernorm" in name:
                param.copy_(1.0 + 0.1 * noise if name.endswith("weight") else 0.05 * noise)
            elif name.endswith("bias"):
                param.copy_(0.05 * noise)
            elif "embeddings" in name:
                param.copy_(0.1 * noise)
            else:  # query_key_value, dense, dense_h_to_4h, dense_4h_to_h
                param.copy_(0.1 * noise)
    return model.float().eval()


class Recorder(torch.nn.Module):
    """Stands in for ``GLMModel`` inside THUDM/GLM's wrappers and records each call."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.calls: list[dict] = []

    def forward(self, input_ids, position_ids, attention_mask, *mems, **kwargs):
        captured = {}

        def hook(module, args):  # returns None: the inputs stay as they are
            captured.setdefault("ltor_mask", args[1].detach().clone())

        handle = self.model.transformer.layers[0].attention.register_forward_pre_hook(hook)
        try:
            logits, *new_mems = self.model(input_ids, position_ids, attention_mask, *mems, **kwargs)
        finally:
            handle.remove()
        self.calls.append({
            "input_ids": input_ids.clone(), "position_ids": position_ids.clone(), "attention_mask": attention_mask.clone(),
            "mems": [m.clone() for m in mems], "logits": logits.detach().float().clone(),
            "new_mems": [m.detach().clone() for m in new_mems], "ltor_mask": captured["ltor_mask"],
        })
        return (logits, *new_mems)


def run(recorder: Recorder, *args, **kwargs) -> dict:
    recorder(*args, **kwargs)
    return recorder.calls[-1]


def may_attend(ltor_mask: torch.Tensor) -> torch.Tensor:
    """The mask the first attention layer received ([b or 1, 1, q, k] floats, 1 = attend) as bool."""
    return (ltor_mask[:, 0] > 0.5).contiguous()


def stack_mems(mems) -> torch.Tensor:
    return torch.stack([m.float() for m in mems]).contiguous()


def text(g: torch.Generator, n: int) -> list[int]:
    picks = torch.randint(0, len(TEXT_IDS), (n,), generator=g).tolist()
    return [TEXT_IDS[i] for i in picks]


# ---------------------------------------------------------------------------------------------
# Cases.
# ---------------------------------------------------------------------------------------------
def make_cases(glm, model, block: bool, seed: int) -> dict:
    g = torch.Generator().manual_seed(seed + 2)
    tokenizer = FakeTokenizer()
    # THUDM/GLM arguments the builders read: block-lm defaults; --masked-lm for the 1D variant.
    args = argparse.Namespace(sentinel_token=False, no_block_position=False, masked_lm=not block)
    recorder = Recorder(model)
    cases: dict = {}
    t = lambda x: torch.tensor(x, dtype=torch.long)

    # (a) multi-token cloze: a context with [MASK] inside (pvp pattern), three choices (+ eop).
    tokens_a = text(g, 9) + [IDS["MASK"]] + text(g, 6)
    answers = [text(g, 2) + [IDS["eop"]], text(g, 3) + [IDS["eop"]], text(g, 1) + [IDS["eop"]]]
    rows = [
        glm.build_input_from_ids(tokens_a, None, answer, MC_MAX_SEQ_LENGTH, tokenizer, args=args, add_cls=True,
                                 add_sep=False, add_piece=True, mask_id=IDS["MASK"])
        for answer in answers
    ]
    # ids, types, paddings, position_ids, sep, target_ids, loss_masks (pvp.py collects these).
    ids = t([r[0] for r in rows]).unsqueeze(0)  # [batch 1, choices, L]
    positions = t([r[3] for r in rows]).unsqueeze(0)  # [1, choices, 2, L] (block) / [1, choices, L]
    seps = t([r[4] for r in rows]).unsqueeze(0)  # [1, choices]
    targets, logit_mask = t([r[5] for r in rows]).unsqueeze(0), t([r[6] for r in rows]).unsqueeze(0)
    cloze = glm.GLMForMultiTokenCloze(recorder)  # take_softmax=True, length_penalty=0.0
    with torch.no_grad():
        scores, *_ = cloze(ids, positions, seps, targets, logit_mask)
    call = recorder.calls[-1]
    mask_position = (tokens_a.index(IDS["MASK"])) + 1  # after [CLS]
    cases["mc"] = {
        "input_ids": call["input_ids"], "position_ids": call["position_ids"], "sep": call["attention_mask"],
        "may_attend": may_attend(call["ltor_mask"]), "target_ids": targets[0], "logit_mask": logit_mask[0],
        "logits": call["logits"], "choice_scores": scores.float()[0].clone(),
        "context": t(tokens_a), "answers": [t(a) for a in answers], "mask_position": mask_position,
    }

    # (a') the same choices packed after one copy of the context, full mask tensor.
    context = rows[0][0][: rows[0][4]]  # [CLS] tokens_a eos
    c = len(context)
    tokens, pos, bpos, blocks = list(context), list(range(c)), [0] * c, []
    for answer in answers:
        start = len(tokens)
        tokens += [IDS["sop"]] + answer[:-1]
        pos += [mask_position] * len(answer)
        bpos += list(range(1, len(answer) + 1))
        blocks.append((start, len(answer)))
    length = len(tokens)
    mask = torch.zeros(length, length)
    mask[:, :c] = 1.0
    mask[:c, c:] = 0.0
    for start, n in blocks:
        mask[start:start + n, start:start + n] = torch.tril(torch.ones(n, n))
    packed_pos = t([pos, bpos]) if block else t(pos)
    with torch.no_grad():
        call = run(recorder, t(tokens).unsqueeze(0), packed_pos.unsqueeze(0), mask.view(1, 1, length, length))
    logprobs = torch.log_softmax(call["logits"][0], -1)
    packed_scores, gap = [], 0.0
    for i, ((start, n), answer) in enumerate(zip(blocks, answers)):
        rows_i = torch.arange(start, start + n)
        packed_scores.append(logprobs[rows_i, t(answer)].sum())
        gap = max(gap, (call["logits"][0, rows_i] - cases["mc"]["logits"][i, c:c + n]).abs().max().item())
    assert gap < 1e-5, f"packed and per-choice rows disagree by {gap}"
    cases["mc_packed"] = {
        "input_ids": call["input_ids"], "position_ids": call["position_ids"], "attention_mask": call["attention_mask"],
        "may_attend": may_attend(call["ltor_mask"]), "choice_rows": [torch.arange(s, s + n) for s, n in blocks],
        "choice_ids": [t(a) for a in answers], "logits": call["logits"],
        "choice_scores": torch.stack(packed_scores).float().clone(),
    }

    # (a'') fast decode: context once, choices as decoder rows on its memory.
    enc = glm.build_input_from_ids(tokens_a, None, None, MC_MAX_SEQ_LENGTH, tokenizer, args=args, add_cls=True,
                                   add_sep=False, add_piece=False)
    enc_ids, enc_pos, enc_sep = enc[0], enc[3], enc[4]
    decs = [glm.build_decoder_input(enc_ids, answer[:MC_MAX_DEC_LENGTH], MC_MAX_SEQ_LENGTH, MC_MAX_DEC_LENGTH, tokenizer)
            for answer in answers]
    dec_pos = t([d[3] for d in decs])  # build_decoder_input always returns [pos, block_pos]
    if not block:
        dec_pos = dec_pos[:, 0]  # adapted: a 1D model takes the position row only
    fast = glm.GLMForMultiTokenClozeFast(recorder)
    with torch.no_grad():
        fast_scores, *_ = fast(
            t(enc_ids).unsqueeze(0), t(enc_pos).unsqueeze(0), t([enc_sep]),
            t([d[0] for d in decs]).unsqueeze(0), dec_pos.unsqueeze(0), t([enc_sep] * len(decs)).unsqueeze(0),
            t([d[5] for d in decs]).unsqueeze(0), t([d[6] for d in decs]).unsqueeze(0),
        )
    enc_call, dec_call = recorder.calls[-2], recorder.calls[-1]
    cases["mc_fast"] = {
        "enc_input_ids": enc_call["input_ids"], "enc_position_ids": enc_call["position_ids"],
        "enc_sep": enc_call["attention_mask"], "enc_may_attend": may_attend(enc_call["ltor_mask"]),
        "enc_logits": enc_call["logits"], "enc_mems": stack_mems(enc_call["new_mems"]),
        "dec_input_ids": dec_call["input_ids"], "dec_position_ids": dec_call["position_ids"],
        "dec_attention_mask": dec_call["attention_mask"].contiguous(), "dec_may_attend": may_attend(dec_call["ltor_mask"]),
        "dec_target_ids": t([d[5] for d in decs]), "dec_logit_mask": t([d[6] for d in decs]),
        "dec_logits": dec_call["logits"], "choice_scores": fast_scores.float()[0].clone(),
    }

    # (b) [gMASK] generation prefix, tasks/seq2seq/dataset.py layout (test split), batch 2.
    sources = [[IDS["ENC"]] + text(g, 10) + [IDS["gMASK"]] for _ in range(2)]
    src_len = len(sources[0])
    mask_positions = [s.index(IDS["gMASK"]) for s in sources]
    prefix_ids = t([s + [IDS["sop"]] for s in sources])
    if block:
        prefix_pos = t([[list(range(src_len)) + [m], [0] * src_len + [1]] for m in mask_positions])
    else:  # generate_samples.py --no-block-position: <sop> takes the mask's position
        prefix_pos = t([list(range(src_len)) + [m] for m in mask_positions])
    with torch.no_grad():
        call = run(recorder, prefix_ids, prefix_pos, t([src_len] * 2), return_memory=True)
    prefix_mems = call["new_mems"]
    cases["prefix"] = {
        "input_ids": call["input_ids"], "position_ids": call["position_ids"], "sep": call["attention_mask"],
        "may_attend": may_attend(call["ltor_mask"]), "logits": call["logits"], "mems": stack_mems(prefix_mems),
        "mask_positions": t(mask_positions),
    }

    # (c) one incremental step (tasks/seq2seq/evaluate.py, counter = 1): the greedy next token.
    next_ids = call["logits"][:, -1].argmax(-1, keepdim=True)
    if block:
        step_pos = t([[[m], [2]] for m in mask_positions])
    else:
        step_pos = t([[m + 1] for m in mask_positions])
    with torch.no_grad():
        step = run(recorder, next_ids, step_pos, torch.zeros(2, dtype=torch.long), *prefix_mems, return_memory=True)
        # Self-check: the cached step equals a full forward over prefix + token.
        full = run(recorder, torch.cat([prefix_ids, next_ids], 1), torch.cat([prefix_pos, step_pos], -1),
                   t([src_len] * 2))
        step_gap = (full["logits"][:, -1:] - step["logits"]).abs().max().item()
        # Self-check: generate_samples.py's way (context alone with scalar sep, then <sop> as the
        # first cached step with sep 0) gives the <sop> row's logits of the prefix.
        gen_gaps = []
        for row in range(2):
            ctx = run(recorder, t(sources[row]).unsqueeze(0), prefix_pos[row:row + 1, ..., :src_len],
                      t([src_len]), return_memory=True)
            sop = run(recorder, t([[IDS["sop"]]]), prefix_pos[row:row + 1, ..., src_len:], t([0]), *ctx["new_mems"],
                      return_memory=True)
            gen_gaps.append((sop["logits"][0, -1] - call["logits"][row, -1]).abs().max().item())
    assert step_gap < 1e-5, f"incremental step disagrees with the full forward by {step_gap}"
    assert max(gen_gaps) < 1e-5, f"generate_samples-style prefix disagrees by {max(gen_gaps)}"
    cases["step"] = {
        "input_ids": step["input_ids"], "position_ids": step["position_ids"], "sep": step["attention_mask"],
        "may_attend": may_attend(step["ltor_mask"]), "logits": step["logits"], "mems_after": stack_mems(step["new_mems"]),
    }
    cases["meta"] = {
        "glm_commit": GLM_COMMIT, "torch_version": str(torch.__version__), "seed": seed, "ids": dict(IDS),
        "self_check": {"packed_vs_rows": gap, "step_vs_full": step_gap, "generate_samples_vs_prefix": max(gen_gaps),
                       "fast_vs_rows_scores": (fast_scores - scores).abs().max().item(),
                       "packed_vs_rows_scores": (cases["mc_packed"]["choice_scores"] - scores[0]).abs().max().item()},
    }
    return cases


def contiguous(obj):
    if isinstance(obj, torch.Tensor):
        return obj.detach().clone().contiguous()
    if isinstance(obj, dict):
        return {k: contiguous(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [contiguous(v) for v in obj]
    return obj


def model_config(model, block: bool, seed: int) -> dict:
    return {
        "architecture": "THUDM/GLM GLMModel (model/modeling_glm.py + mpu/transformer.py)",
        "glm_commit": GLM_COMMIT,
        **CONFIG,
        "block_position_encoding": block,
        "position_embedding_rows": CONFIG["max_sequence_length"] + (1 if block else 0),
        "position_ids": (
            "[b, 2, L]: row 0 indexes position_embeddings, row 1 block_position_embeddings; both added to the word "
            "embeddings" if block else "[b, L]: indexes position_embeddings, added to the word embeddings"
        ),
        "relative_encoding": False,
        "attention_scale": 1.0,
        "layernorm_epsilon": 1e-5,
        "layernorm_order": "pre (input_layernorm, post_attention_layernorm) + final_layernorm",
        "gelu": "tanh approximation: 0.5*x*(1+tanh(0.7978845608028654*x*(1+0.044715*x*x)))",
        "mlp_hidden_size": 4 * CONFIG["hidden_size"],
        "attention_mask_fill": -65504.0,
        "output_layer": "tied: logits = final_layernorm(h) @ word_embeddings.weight.T (no bias)",
        "special_ids": dict(IDS),
        "text_ids": "ids 1..119 except 100-103",
        "seed": seed,
        "iteration": 1,
        "state_dict_keys": {k: list(v.shape) for k, v in model.state_dict().items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--glm-src", type=Path, required=True, help="THUDM/GLM source tree")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[2] / "tests/fixtures/glm_parity")
    opts = parser.parse_args()
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    glm = import_glm(opts.glm_src.resolve())
    for variant, seed in SEEDS.items():
        block = variant == "block"
        model = build_model(glm, block, seed)
        cases = contiguous(make_cases(glm, model, block, seed))
        folder = opts.out / variant
        (folder / "1").mkdir(parents=True, exist_ok=True)
        (folder / "latest_checkpointed_iteration.txt").write_text("1")
        state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
        torch.save({"module": state}, folder / "1" / "mp_rank_00_model_states.pt")
        (folder / "model_config.json").write_text(json.dumps(model_config(model, block, seed), indent=2) + "\n")
        torch.save(cases, folder / "cases.pt")
        size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
        digest = hashlib.sha256(b"".join(p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file())).hexdigest()
        print(f"{variant}: {size} bytes, sha256 {digest[:16]}, self-checks {cases['meta']['self_check']}")
    total = sum(p.stat().st_size for p in opts.out.rglob("*") if p.is_file())
    print(f"total {total} bytes under {opts.out}")


if __name__ == "__main__":
    main()
