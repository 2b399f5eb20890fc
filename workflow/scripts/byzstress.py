"""Run the byzstress CLI from this repository's src/ (works inside conda envs, which strip
PYTHONPATH, and without installing the package)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

from byzstress.cli import main

sys.exit(main())
