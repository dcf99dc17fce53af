"""``python -m optrader.report``: see ``optrader.report.cli``."""

import sys

from optrader.report.cli import main

if __name__ == "__main__":
    sys.exit(main())
