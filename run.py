"""``python run.py`` starts Thotto on its embedded defaults: ``thotto serve``.

Extra arguments pass through (``python run.py --role worker``).
"""

import sys

from thotto.cli import main

if __name__ == "__main__":
    sys.exit(main(["serve", *sys.argv[1:]]))
