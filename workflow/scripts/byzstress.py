"""Run the byzstress CLI from this repository's src/ (works inside conda envs, which strip
PYTHONPATH, and without installing the package)."""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

from byzstress.cli import main

rc = main()
if len(sys.argv) > 1 and sys.argv[1] == "train":
    # A training job's outputs are written (atomically) and closed by now; skipping the
    # interpreter's teardown of torch saves every job of a study about half a second.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(rc)
sys.exit(rc)
