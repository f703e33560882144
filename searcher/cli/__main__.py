"""`python -m searcher.cli ...`: the same as the `searcher` console script."""

import sys

from searcher.cli.entry import main

if __name__ == "__main__":
    sys.exit(main())
