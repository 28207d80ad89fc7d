import sys

from mftma.cli import main

sys.exit(main())
