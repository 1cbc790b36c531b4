"""`python -m faceage_video` runs the CLI."""

import sys

from faceage_video.cli import main

sys.exit(main())
