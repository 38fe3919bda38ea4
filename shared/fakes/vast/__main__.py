"""``python -m shared.fakes.vast``."""

from shared.fakes.vast import main

raise SystemExit(main())
