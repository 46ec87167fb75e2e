"""`python -m mlimages`."""

import sys

from mlimages.cli import main

sys.exit(main())
