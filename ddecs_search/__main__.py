"""``python -m ddecs_search`` = ``ddecs-search``."""

import sys

from ddecs_search.cli import main

sys.exit(main())
