"""``python -m optrader.report``: see ``optrader.report.cli``; errors it does not report itself
(a file where ``--out`` needs a directory, ...) go through ``optrader.cli_errors``."""

from optrader.cli_errors import main as run_main
from optrader.report.cli import main

if __name__ == "__main__":
    run_main("optrader.report", main)
