"""``python -m thotto``: the same as the ``thotto`` command."""

import sys

from thotto.cli import main

sys.exit(main())
