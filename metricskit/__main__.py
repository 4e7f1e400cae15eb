"""``python -m metricskit``: the ``metricskit`` command, for environments without its script."""

import sys

from metricskit.cli import main

sys.exit(main())
