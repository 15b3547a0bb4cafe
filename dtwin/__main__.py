"""``python -m dtwin``: the same as the ``dtwin`` command."""

import sys

from dtwin.cli import main

sys.exit(main())
