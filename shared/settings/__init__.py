"""Settings: one pydantic model per component, read from ``GPUQ_*`` environment variables.

Build them once at the edge (a function's module, the agent's ``__main__``, the CLI) and pass
them in; nothing else reads ``os.environ``. Every field is in docs/configuration.md. One module
per component: ``control_plane``, ``agent``, ``vast``, ``ovh``, ``blobs``, ``logs``, ``client``.
"""

from __future__ import annotations

from shared.settings.agent import AgentSettings
from shared.settings.blobs import BlobSettings
from shared.settings.client import ClientSettings
from shared.settings.control_plane import ControlPlaneSettings
from shared.settings.logs import LogSettings
from shared.settings.ovh import OvhSettings
from shared.settings.values import split_csv
from shared.settings.vast import VastSelfStopSettings, VastSettings

__all__ = [
    "AgentSettings",
    "BlobSettings",
    "ClientSettings",
    "ControlPlaneSettings",
    "LogSettings",
    "OvhSettings",
    "VastSelfStopSettings",
    "VastSettings",
    "split_csv",
]
