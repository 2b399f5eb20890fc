"""``python -m byzstress``."""

import sys

from .cli import main

sys.exit(main())
