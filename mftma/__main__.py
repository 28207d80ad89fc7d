"""``python -m mftma``: the ``mftma`` command line."""
import sys

from mftma.cli import main

sys.exit(main())
