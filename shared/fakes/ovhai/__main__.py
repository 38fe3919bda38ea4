"""``python -m shared.fakes.ovhai``: one call of the fake ``ovhai`` CLI."""

from shared.fakes.ovhai.cli import main

raise SystemExit(main())
