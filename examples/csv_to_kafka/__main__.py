"""``python -m examples.csv_to_kafka``: see :mod:`examples.csv_to_kafka.cli`."""

import sys

from examples.csv_to_kafka.cli import main

sys.exit(main())
