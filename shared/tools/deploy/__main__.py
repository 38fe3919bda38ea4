"""``python -m shared.tools.deploy`` (infra/deploy.sh)."""

import sys

from shared.tools.deploy import main

sys.exit(main())
