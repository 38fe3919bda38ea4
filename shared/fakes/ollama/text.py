"""The stand-in's deterministic "inference": the text is a pure function of (canonical model name,
prompt, number of tokens).

The prompt is ``prompt`` for generate and the content of the last ``user`` message for chat (system
prompt, template, images, context and sampling options do not change it). Use
:func:`fake_completion_tokens` / :func:`fake_completion_text` to compute it. Tokens are words with a
leading space, and ``fake_completion_tokens(m, p, k)`` is a prefix of the list for any larger count,
so a ``num_predict`` cut is a prefix of the uncut text. Token counts are approximations (words and
punctuation)."""

from __future__ import annotations

import hashlib
import itertools
import re
import zlib
from collections.abc import Iterator
from typing import Final

__all__ = [
    "canonical_model_name",
    "fake_completion_text",
    "fake_completion_tokens",
    "fake_token_count",
    "fake_token_ids",
    "prompt_key",
    "token_stream",
]


_VOCAB_TEXT: Final = """
    the a model light sky blue because of and to in is it that this with as for on are be by
    from at or an which when more than water air sun scattering shorter longer wavelengths
    colors we see during day night energy small large particles molecules atmosphere called
    effect result each other some many most through into between can will would also very much
    its their there these those how why what where answer question example simple clear
    important different same first next finally data system process value time number point part
    way kind case
"""
_VOCAB: Final[tuple[str, ...]] = tuple(_VOCAB_TEXT.split())


def canonical_model_name(name: str) -> str:
    """Ollama's short display name: registry/library prefix dropped, ``:latest`` added if no tag."""
    n = name.strip()
    for prefix in ("registry.ollama.ai/", "library/"):
        if n.lower().startswith(prefix):
            n = n[len(prefix) :]
    if ":" not in n.rsplit("/", 1)[-1]:
        n += ":latest"
    return n


def token_stream(model: str, prompt: str) -> Iterator[str]:
    """The endless token sequence for (model, prompt); every output is a prefix of it."""
    seed = hashlib.blake2b(f"{canonical_model_name(model).lower()}\x00{prompt}".encode(), digest_size=32).digest()
    in_sentence = 0
    for block in itertools.count():
        chunk = hashlib.blake2b(seed + block.to_bytes(8, "little"), digest_size=64).digest()
        for i in range(0, len(chunk), 2):
            word = _VOCAB[chunk[i] % len(_VOCAB)]
            if in_sentence == 0:
                word = word.capitalize()
            in_sentence += 1
            if in_sentence >= 4 and chunk[i + 1] % 6 == 0:
                word += "."
                in_sentence = 0
            elif in_sentence >= 5 and chunk[i + 1] % 11 == 1:
                word += ","
            yield " " + word


def fake_completion_tokens(model: str, prompt: str, num_tokens: int) -> list[str]:
    """The tokens the stand-in produces for (model, prompt) when it generates ``num_tokens``.

    ``prompt`` is the generate ``prompt`` or the chat's last user message content. Model names are
    compared the way Ollama does (``llama3.2`` is ``llama3.2:latest``; case does not matter). The
    result for a smaller count is always a prefix of the result for a larger one.
    """
    return list(itertools.islice(token_stream(model, prompt), max(num_tokens, 0)))


def fake_completion_text(model: str, prompt: str, num_tokens: int) -> str:
    """``"".join(fake_completion_tokens(model, prompt, num_tokens))``."""
    return "".join(fake_completion_tokens(model, prompt, num_tokens))


def prompt_key(prompt: str) -> str:
    """The key under which ``/__fake__/stats`` counts generations for a prompt."""
    if len(prompt) <= 64:
        return prompt
    return prompt[:48] + "...sha256:" + hashlib.sha256(prompt.encode()).hexdigest()[:12]


_WORD_RE: Final = re.compile(r"\w+|[^\w\s]")


def fake_token_count(text: str) -> int:
    return len(_WORD_RE.findall(text))


def fake_token_ids(text: str) -> list[int]:
    return [zlib.crc32(w.encode()) % 128_000 for w in _WORD_RE.findall(text)]
