"""The model server behind the agent, whichever API it speaks: one interface, two implementations.

- ``ollama`` (the default): Ollama's native API, :class:`~agent.ollama.OllamaClient` (NDJSON streams,
  pulls, ``keep_alive``);
- ``openai``: an OpenAI-compatible server (vLLM, llama.cpp's ``llama-server``, SGLang, TGI),
  :class:`~agent.openai_backend.OpenAIBackend` (SSE streams, usage from the final chunk).

``GPUQ_AGENT_BACKEND`` chooses; ``GPUQ_AGENT_BACKEND_URL`` (or the older ``GPUQ_AGENT_OLLAMA_URL``) says
where it listens. Every failure of a job leaves a backend as an :class:`~shared.errors.OllamaError`
whose ``code`` becomes the job's error code (``model_not_found``, ``unsupported_option``, …).
"""

from __future__ import annotations

import logging
from typing import Protocol

from agent.model_stream import Sink
from agent.ollama import OllamaClient, Progress
from agent.openai_backend import OpenAIBackend
from shared.jobs.events import AgentJob
from shared.models import JobResult
from shared.settings import AgentSettings

__all__ = ["ModelBackend", "build_backend"]

log = logging.getLogger("gpuq.agent.backend")


class ModelBackend(Protocol):
    """What the agent needs of its model server."""

    async def available_models(self) -> list[str]:
        """The models the server has now; ``aiohttp.ClientError`` or ``TimeoutError`` while it does not
        answer or is not ready yet (start-up waits on this)."""
        ...

    async def pull(self, model: str) -> None:
        """Get a model the server lacks (or refuse: ``OllamaError``)."""
        ...

    async def load(self, model: str) -> None:
        """Load a model and keep it loaded."""
        ...

    async def generate(self, job: AgentJob, sink: Sink, progress: Progress | None = None) -> JobResult:
        """Run one job (generation, chat or embeddings), each read's texts to ``sink``; its final counters."""
        ...

    async def aclose(self) -> None: ...


def build_backend(settings: AgentSettings) -> ModelBackend:
    """The backend the settings choose, at ``settings.model_server_url()``."""
    if settings.backend == "openai":
        if settings.pull_on_demand:
            log.warning("GPUQ_AGENT_PULL_ON_DEMAND is ignored on the openai backend: its server serves its own models")
        return OpenAIBackend(settings.model_server_url(), api_key=settings.backend_api_key)
    return OllamaClient(settings.model_server_url(), pull_on_demand=settings.pull_on_demand)
