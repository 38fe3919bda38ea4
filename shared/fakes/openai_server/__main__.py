"""``python -m shared.fakes.openai_server``."""

from shared.fakes.openai_server import main

raise SystemExit(main())
