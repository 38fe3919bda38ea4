"""``python -m shared.fakes.ollama``."""

from shared.fakes.ollama import main

raise SystemExit(main())
