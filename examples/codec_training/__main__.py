"""``python -m examples.codec_training``: see :mod:`examples.codec_training.cli`."""

import sys

from examples.codec_training.cli import main

sys.exit(main())
