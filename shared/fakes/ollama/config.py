"""How one stand-in is set up: its settings, the faults it can inject, and the live changes the test
hooks accept (``POST /__fake__/faults``)."""

from __future__ import annotations

from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "DEFAULT_MODELS",
    "FAULT_FIELDS",
    "LIVE_CONFIG_FIELDS",
    "MAX_QUEUE_ERROR",
    "FakeFaults",
    "FakeOllamaConfig",
    "LiveUpdate",
]


DEFAULT_MODELS: Final[tuple[str, ...]] = ("llama3.2:1b", "qwen2.5:0.5b")
MAX_QUEUE_ERROR: Final = "server busy, please try again.  maximum pending requests exceeded"


class FakeFaults(BaseModel):
    """Faults to inject, armed for the next ``times`` requests they apply to (-1: until cleared).

    Precedence when several are set: ``error_status`` (checked when a generate/chat/pull request
    has been validated, including load-only requests), then the token faults, which apply to
    requests that actually generate: ``fail_after_tokens`` (close the connection after N tokens,
    without a final line - for ``stream: false`` before any response), ``stall_after_tokens``
    (stop sending after N tokens and hold the connection open until the client leaves) and
    ``error_after_tokens`` (send Ollama's mid-stream ``{"error": ...}`` line after N tokens; with
    ``stream: false`` a 500). Once the fault has fired ``times`` times, all of them are cleared.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    error_status: int | None = Field(default=None, ge=400, le=599)
    error_message: str | None = None
    fail_after_tokens: int | None = Field(default=None, ge=0)
    stall_after_tokens: int | None = Field(default=None, ge=0)
    error_after_tokens: int | None = Field(default=None, ge=0)
    times: int = Field(default=1, ge=-1)

    def armed(self) -> bool:
        return self.times != 0 and (self.error_status is not None or self.token_fault() is not None)

    def token_fault(self) -> tuple[Literal["fail", "stall", "error"], int] | None:
        if self.fail_after_tokens is not None:
            return "fail", self.fail_after_tokens
        if self.stall_after_tokens is not None:
            return "stall", self.stall_after_tokens
        if self.error_after_tokens is not None:
            return "error", self.error_after_tokens
        return None

    def message_for(self, status: int) -> str:
        if self.error_message is not None:
            return self.error_message
        return {
            404: "model not found",
            500: "llama runner process has terminated: exit status 2",
            503: MAX_QUEUE_ERROR,
        }.get(status, "fake ollama: injected fault")


class FakeOllamaConfig(BaseModel):
    """Settings of one stand-in server. Delays are in seconds."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    models: list[str] = Field(default_factory=lambda: list(DEFAULT_MODELS))
    """Models already pulled when the server starts (listed by /api/tags)."""
    token_delay_s: float = Field(default=0.005, ge=0)
    """Time per generated token; 0 streams as fast as the event loop allows."""
    load_delay_s: float = Field(default=0.2, ge=0)
    """Time to load a model that is not loaded (first use, or after keep_alive expired)."""
    default_num_tokens: int = Field(default=24, ge=1)
    """Tokens generated when options.num_predict is not given."""
    max_queue: int = Field(default=512, ge=1)
    """OLLAMA_MAX_QUEUE: generate/chat requests in flight beyond this get a 503."""
    num_parallel: int = Field(default=0, ge=0)
    """OLLAMA_NUM_PARALLEL per model; 0 = no limit (the stand-in never slows concurrent streams)."""
    default_keep_alive_s: float = 300.0
    """OLLAMA_KEEP_ALIVE in seconds; negative keeps models loaded forever."""
    pull_delay_s: float = Field(default=0.05, ge=0)
    """Time a pull takes from the first progress line to "success"."""
    pullable_models: list[str] | None = None
    """Names /api/pull can find in the "registry"; None means any well-formed name."""
    version: str = "0.5.7"
    """What GET /api/version reports."""
    faults: FakeFaults = Field(default_factory=FakeFaults)


class LiveUpdate(BaseModel):
    """Body of POST /__fake__/faults."""

    # The title keeps the model's old private name in the hook's 400 text ("validation error for _LiveUpdate").
    model_config = ConfigDict(extra="forbid", title="_LiveUpdate")

    clear: bool = False
    error_status: int | None = Field(default=None, ge=400, le=599)
    error_message: str | None = None
    fail_after_tokens: int | None = Field(default=None, ge=0)
    stall_after_tokens: int | None = Field(default=None, ge=0)
    error_after_tokens: int | None = Field(default=None, ge=0)
    times: int | None = Field(default=None, ge=-1)
    token_delay_s: float | None = Field(default=None, ge=0)
    load_delay_s: float | None = Field(default=None, ge=0)
    pull_delay_s: float | None = Field(default=None, ge=0)
    default_num_tokens: int | None = Field(default=None, ge=1)
    max_queue: int | None = Field(default=None, ge=1)
    num_parallel: int | None = Field(default=None, ge=0)


FAULT_FIELDS: Final = frozenset(FakeFaults.model_fields)
LIVE_CONFIG_FIELDS: Final = frozenset(
    {"token_delay_s", "load_delay_s", "pull_delay_s", "default_num_tokens", "max_queue", "num_parallel"}
)
