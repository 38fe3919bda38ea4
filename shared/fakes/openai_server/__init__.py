"""A protocol-faithful, offline stand-in for an OpenAI-compatible model server (vLLM / llama.cpp's
``llama-server`` flavour), for the agent's ``openai`` backend, the demo and the benchmarks.

Reproduced
    * ``POST /v1/chat/completions`` and ``POST /v1/completions``. ``"stream": true`` answers Server-Sent
      Events (``Content-Type: text/event-stream``): ``data: <chunk>`` and a blank line per event, the
      first chat chunk carrying ``delta: {"role": "assistant", "content": ""}``, one chunk per token
      (``delta.content`` / ``text``), the last one with ``finish_reason`` ("length" when ``max_tokens``
      was given: exactly that many tokens are made; else "stop" after ``default_num_tokens``), with
      ``stream_options.include_usage`` one more chunk with ``"choices": []`` and ``usage``
      (``prompt_tokens``, ``total_tokens``, ``completion_tokens``; with ``continuous_usage_stats`` every
      chunk carries it), then ``data: [DONE]``. Without ``stream``, one ``chat.completion`` /
      ``text_completion`` object with ``usage``. ``max_completion_tokens`` is chat's ``max_tokens``.
    * ``POST /v1/embeddings``: ``{"object": "list", "data": [{"object": "embedding", "index",
      "embedding"}], "model", "usage"}``, the Ollama stand-in's deterministic unit vectors.
    * ``GET /v1/models`` (``{"object": "list", "data": [{"id", "object": "model", "owned_by": "vllm",
      "max_model_len", ...}]}``), ``GET /version``, and ``GET /health``: llama.cpp's 503
      ``{"error": {"code": 503, "message": "Loading model", "type": "unavailable_error"}}`` for
      ``load_delay_s`` after start (the inference routes answer the same meanwhile; ``/v1/models``
      answers, as llama.cpp's does), then 200 ``{"status": "ok"}``.
    * Errors in vLLM's shape ``{"error": {"message", "type", "param", "code"}}`` (``code`` the HTTP
      status): an unknown model 404 ``NotFoundError`` "The model `x` does not exist."; malformed JSON,
      a field of the wrong type or out of range, ``stream_options`` without ``stream``, a request past
      the context length (``max_model_len`` 8192) 400 ``BadRequestError``; unknown routes FastAPI's
      ``{"detail": "Not Found"}``. An error after the stream began is a ``data: {"error": ...}``
      event followed by ``data: [DONE]``, as vLLM sends it.
    * Model names are matched exactly (vLLM's ``--served-model-name``); a request without ``model``
      gets the first served model.
    * A client that goes away stops the generation at the next token.

Deterministic output
    The Ollama stand-in's: the text is a pure function of (model, prompt, number of tokens) — the prompt
    being ``prompt`` for completions and the last ``user`` message for chat — so
    :func:`~shared.fakes.ollama.fake_completion_text` says what either stand-in streams.

Not reproduced
    Real inference (``temperature``, ``top_p``, ``seed``, ``stop``, penalties, ``logprobs``, tools and
    response formats are accepted and ignored), ``n`` > 1 and batched prompts (400), tokenizer routes,
    API keys, and the chat template.

Test hooks (not part of the API): the Ollama stand-in's ``/__fake__/stats`` and ``/__fake__/faults``
(:mod:`shared.fakes.ollama.hooks`): ``error_status`` answers the next inference request with that
status in the error shape above; ``fail_after_tokens`` closes the connection after N tokens (a server
that died mid-stream); ``stall_after_tokens``; ``error_after_tokens`` sends the error event.

Modules: ``requests`` decoding and checks; ``generation`` one stream or answer; ``responses`` the
shapes; ``routes`` the endpoints; ``app`` the application and servers; ``cli`` the command line.
Run it with ``python -m shared.fakes.openai_server --port 8001`` (or ``gpuq fake-openai``), in-process
with :func:`start_fake_openai`, or from synchronous tests with :func:`serve_in_thread`.
"""

from __future__ import annotations

from shared.fakes.openai_server.app import FakeOpenAIServer, build_app, serve_in_thread, start_fake_openai
from shared.fakes.openai_server.cli import main

__all__ = ["FakeOpenAIServer", "build_app", "main", "serve_in_thread", "start_fake_openai"]
