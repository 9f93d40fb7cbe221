"""``python -m processor`` runs the command line."""

import sys

from processor.cli import main

sys.exit(main())
