"""``python run.py`` starts Thotto on its embedded defaults: ``thotto serve``.

Until a Reddit app is configured (THOTTO_REDDIT_CLIENT_ID), it also runs the Reddit sandbox
in-process and posts there, so a first post works in a minute. Extra arguments pass through
(``python run.py --role worker``).
"""

import sys

from thotto.cli import main

if __name__ == "__main__":
    sys.exit(main(["serve", "--demo-unless-configured", *sys.argv[1:]]))
