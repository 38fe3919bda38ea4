"""``python -m bench.control_plane``: run the benchmark (see the package's docstring)."""

from __future__ import annotations

from bench.control_plane.run import main

raise SystemExit(main())
