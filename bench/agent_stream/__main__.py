"""``python -m bench.agent_stream``: run the benchmark (see the package's docstring)."""

from __future__ import annotations

from bench.agent_stream.run import main

raise SystemExit(main())
