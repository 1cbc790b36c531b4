"""`python -m training` / `faceage-train`: build the crop cache, train, export a bundle."""

from __future__ import annotations

import sys

from training.cli import main

if __name__ == "__main__":
    sys.exit(main())
