"""`python -m zcopy` runs the command line."""

import sys

from zcopy.cli import main

sys.exit(main())
