"""``python -m segloop``: the ``segloop`` command."""

import sys

from segloop.cli.main import main

sys.exit(main())
