"""``python -m tfrs_kit.cli``: the ``tfrs-kit`` command."""

import sys

from tfrs_kit.cli._main import main

sys.exit(main())
