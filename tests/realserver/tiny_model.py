"""A tiny llama model with random weights, written as GGUF with the ``gguf`` package: a real model file that
a real llama.cpp server loads in well under a second and generates real (meaningless) tokens from.

Architecture ``llama``: 2 blocks, 64-wide embeddings, 4 heads of 16 (2 KV heads: grouped-query attention),
a SwiGLU feed-forward of 128, RMS norms, RoPE over the whole head. Tokenizer ``llama`` (SentencePiece):
``<unk>``, ``<s>``, ``</s>``, the 256 byte tokens llama.cpp's SPM tokenizer needs (it looks up ``<0x0A>``
for the newline at load time and falls back to bytes for anything else), then whole words with ``▁``
for a leading space, scored so that longer pieces win. Matrices are F16, norms F32 (about 350 KB).

The weights are a seeded normal draw, so the file is the same bytes on every run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["TINY_MODEL_NAME", "TinyLlama", "write_tiny_llama"]

TINY_MODEL_NAME = "tiny-llama"

_WORD_TEXT = (
    "the a an and or of to in on for with is are was be it this that he she they we you I not but "
    "one two three red green blue cat dog box GPU queue job token model server ready fast slow hello world "
    "yes no up down left right day night time run stop start load wait go come see say make take"
)
WORDS = tuple(_WORD_TEXT.split())

CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>\n{{ message['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


@dataclass(frozen=True)
class TinyLlama:
    """The model's sizes (the defaults make a file of about 350 KB)."""

    n_embd: int = 64
    n_head: int = 4
    n_head_kv: int = 2
    n_ff: int = 128
    n_layer: int = 2
    n_ctx: int = 512
    seed: int = 1234

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head


def _vocab() -> tuple[list[str], list[float], list[int]]:
    from gguf import TokenType

    tokens = ["<unk>", "<s>", "</s>"]
    types = [int(TokenType.UNKNOWN), int(TokenType.CONTROL), int(TokenType.CONTROL)]
    tokens += [f"<0x{b:02X}>" for b in range(256)]
    types += [int(TokenType.BYTE)] * 256
    pieces = sorted({*WORDS, *(f"\u2581{w}" for w in WORDS), *"abcdefghijklmnopqrstuvwxyz", "\u2581"})
    tokens += pieces
    types += [int(TokenType.NORMAL)] * len(pieces)
    # SentencePiece scores are log-probabilities: special and byte pieces score 0 (never merged into),
    # words score by length so the tokenizer prefers whole words to letters.
    scores = [0.0] * (3 + 256) + [-10.0 + len(p) for p in pieces]
    return tokens, scores, types


def _tensors(spec: TinyLlama, n_vocab: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(spec.seed)

    def matrix(rows: int, cols: int) -> np.ndarray:
        # numpy (rows, cols) is ggml's ne = [cols, rows]: a weight that maps cols inputs to rows outputs.
        return (rng.standard_normal((rows, cols)) * 0.05).astype(np.float16)

    def norm() -> np.ndarray:
        return np.ones(spec.n_embd, dtype=np.float32)

    kv = spec.n_head_kv * spec.head_dim
    # The output layer scores only the word pieces (the other rows are zero and their logits 0, far below the
    # words' spread): the sampled text is words, never control bytes, and never ends early at ``</s>``.
    output = matrix(n_vocab, spec.n_embd) * np.float16(2.0)
    output[: 3 + 256] = 0
    out = {"token_embd.weight": matrix(n_vocab, spec.n_embd)}
    for i in range(spec.n_layer):
        out |= {
            f"blk.{i}.attn_norm.weight": norm(),
            f"blk.{i}.attn_q.weight": matrix(spec.n_embd, spec.n_embd),
            f"blk.{i}.attn_k.weight": matrix(kv, spec.n_embd),
            f"blk.{i}.attn_v.weight": matrix(kv, spec.n_embd),
            f"blk.{i}.attn_output.weight": matrix(spec.n_embd, spec.n_embd),
            f"blk.{i}.ffn_norm.weight": norm(),
            f"blk.{i}.ffn_gate.weight": matrix(spec.n_ff, spec.n_embd),
            f"blk.{i}.ffn_up.weight": matrix(spec.n_ff, spec.n_embd),
            f"blk.{i}.ffn_down.weight": matrix(spec.n_embd, spec.n_ff),
        }
    out |= {"output_norm.weight": norm(), "output.weight": output}
    return out


def write_tiny_llama(path: Path, spec: TinyLlama | None = None) -> Path:
    """Write the model to ``path`` (a ``.gguf`` file) and return the path."""
    import gguf

    spec = spec or TinyLlama()
    tokens, scores, types = _vocab()
    writer = gguf.GGUFWriter(str(path), arch="llama")
    writer.add_name(TINY_MODEL_NAME)
    writer.add_file_type(int(gguf.LlamaFileType.MOSTLY_F16))
    writer.add_context_length(spec.n_ctx)
    writer.add_embedding_length(spec.n_embd)
    writer.add_block_count(spec.n_layer)
    writer.add_feed_forward_length(spec.n_ff)
    writer.add_head_count(spec.n_head)
    writer.add_head_count_kv(spec.n_head_kv)
    writer.add_rope_dimension_count(spec.head_dim)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(len(tokens))
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_unk_token_id(0)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(False)
    writer.add_chat_template(CHAT_TEMPLATE)
    for name, tensor in _tensors(spec, len(tokens)).items():
        writer.add_tensor(name, tensor)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
