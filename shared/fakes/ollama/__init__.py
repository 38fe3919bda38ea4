"""A protocol-faithful, offline stand-in for an Ollama server.

No real Ollama (and no GPU) runs on the machines that test and demo gpuq, so everything that
talks to Ollama is exercised against this one aiohttp server instead. It follows Ollama's
published REST API (docs/api.md) and the wire details of Ollama's Go server, so the official
``ollama`` Python package, curl, or gpuq's own agent can point at it unchanged.

Reproduced
    * ``POST /api/generate`` and ``POST /api/chat``: NDJSON streaming by default (one JSON object
      per line, ``Content-Type: application/x-ndjson``), ``"stream": false`` gives one JSON object.
      Field names and order as the Go server writes them; ``created_at`` in RFC 3339 with
      nanoseconds; the final line carries ``done_reason`` ("stop" / "length"), ``total_duration``,
      ``load_duration``, ``prompt_eval_count``, ``prompt_eval_duration``, ``eval_count`` and
      ``eval_duration`` (nanoseconds), and for generate ``context`` (not in raw mode).
    * ``POST /api/embed``: ``{"model", "embeddings": [[float]], "total_duration", "load_duration",
      "prompt_eval_count"}``, unit vectors that are a hash of (model, text) (:func:`fake_embedding`).
    * An empty prompt (generate) or empty ``messages`` (chat) only loads the model and answers
      ``done_reason: "load"``; with ``keep_alive: 0`` it unloads and answers ``"unload"``.
    * ``options.num_predict`` caps the output: when it is given (> 0) exactly that many tokens are
      produced and ``done_reason`` is "length"; otherwise ``default_num_tokens`` and "stop".
    * ``keep_alive`` as Ollama parses it (JSON number = seconds, string = Go duration such as
      "5m"; negative = forever; 0 = unload after the request; default 5m) drives ``/api/ps``.
      A model that is not loaded takes ``load_delay_s`` to load on first use (shared by
      concurrent requests) and that time shows up in ``load_duration``.
    * ``GET /api/tags``, ``GET /api/ps``, ``POST /api/show``, ``DELETE /api/delete``,
      ``POST /api/pull`` (progress lines: "pulling manifest"; per layer "pulling <12 hex digits>"
      with ``digest``/``total``/``completed`` - the Go server's wording, the docs' "downloading
      <digest>" is a placeholder; "verifying sha256 digest", "writing manifest", "success";
      ``stream: false`` gives ``{"status": "success"}``; afterwards the model is listed; a name
      outside ``pullable_models`` gets ``pull model manifest: file does not exist``), ``GET
      /api/version``,
      ``GET``/``HEAD /`` -> ``Ollama is running``; gin's plain-text 404/405 for unknown routes.
    * Errors as ``{"error": "..."}`` with Ollama's status codes and texts: unknown model -> 404
      ``model "x" not found, try pulling it first``; missing model -> 400 ``model is required``;
      empty body -> 400 ``missing request body``; malformed JSON / wrong field types -> 400 with
      Go's ``encoding/json`` message; bad ``keep_alive`` -> 400 with Go's ``time`` message;
      ``think`` on a model without thinking -> 400; more than ``max_queue`` requests in flight ->
      503 ``server busy, please try again.  maximum pending requests exceeded``
      (``OLLAMA_MAX_QUEUE``, 512 by default); an error before the first token is a plain HTTP
      error, one after streaming began is an ``{"error": ...}`` line, as Ollama sends them.
    * Client disconnects: generation stops at the next token when the client goes away (Ollama
      cancels the request context and the runner drops the sequence).  Stopped generations are
      counted as interrupted in the stats.

Deterministic output
    The text is a pure function of (canonical model name, prompt, number of tokens), and a
    ``num_predict`` cut is a prefix of the uncut text: see :mod:`shared.fakes.ollama.text`.

Not reproduced
    Real inference (``format``/JSON mode and schemas, ``options.stop``, ``suffix``, ``images``,
    ``tools``/tool calls, ``think`` output, ``seed``/``temperature`` and ``logprobs`` are accepted
    and ignored), the ``context`` input (accepted, counted in ``prompt_eval_count``, but does not
    change the text), create/copy/push/blobs, the OpenAI-compatible ``/v1`` routes,
    VRAM accounting and eviction (any number of models stay loaded; ``size_vram == size``),
    ``OLLAMA_NUM_PARALLEL`` unless ``num_parallel`` is set, CORS / allowed-host checks, and
    registry authentication. ``max_queue`` counts every admitted generate/chat request (loading,
    waiting for a slot or generating), where Ollama counts only those not yet scheduled. Token
    counts are approximations (words and punctuation). Newer Ollama releases word the
    unknown-model error ``model 'x' not found``; this stand-in keeps the long-standing
    ``model "x" not found, try pulling it first`` text.

Test hooks (not part of Ollama; all off by default)
    ``/__fake__/stats`` and ``/__fake__/faults``: see :mod:`shared.fakes.ollama.hooks`.

Modules
    ``config`` settings and injectable faults; ``text`` the deterministic output; ``catalogue`` model
    names, specs and layers; ``state`` what a running server knows; ``goformat`` and ``binding`` Go's
    wire formats and gin's request decoding; ``responses`` JSON answers; ``inference`` generate and
    chat; ``generation`` one NDJSON token stream; ``management`` tags, ps, show, delete, pull;
    ``hooks`` the test hooks; ``app`` routes and servers; ``cli`` the command line.

Run it with ``python -m shared.fakes.ollama --port 11434`` (see :func:`main`), in-process with
:func:`start_fake_ollama`, or from synchronous tests with :func:`serve_in_thread`.
"""

from __future__ import annotations

from shared.fakes.ollama.app import FakeOllamaServer, build_app, serve_in_thread, start_fake_ollama
from shared.fakes.ollama.catalogue import model_not_found_error
from shared.fakes.ollama.cli import main
from shared.fakes.ollama.config import DEFAULT_MODELS, MAX_QUEUE_ERROR, FakeFaults, FakeOllamaConfig
from shared.fakes.ollama.embed import fake_embedding
from shared.fakes.ollama.state import FakeOllamaState, get_state
from shared.fakes.ollama.text import canonical_model_name, fake_completion_text, fake_completion_tokens, prompt_key

__all__ = [
    "DEFAULT_MODELS",
    "MAX_QUEUE_ERROR",
    "FakeFaults",
    "FakeOllamaConfig",
    "FakeOllamaServer",
    "FakeOllamaState",
    "build_app",
    "canonical_model_name",
    "fake_completion_text",
    "fake_completion_tokens",
    "fake_embedding",
    "get_state",
    "main",
    "model_not_found_error",
    "prompt_key",
    "serve_in_thread",
    "start_fake_ollama",
]
