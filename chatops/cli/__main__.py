"""``python -m chatops.cli``: the ``chatops`` command."""

import sys

from chatops.cli import main

sys.exit(main())
