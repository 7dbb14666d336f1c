"""``python -m deepconv``: the same as the ``deepconv`` command."""

import sys

from deepconv.cli import main

sys.exit(main())
