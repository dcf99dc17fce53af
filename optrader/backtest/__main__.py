"""``python -m optrader.backtest``: see ``optrader.backtest.cli``."""

from optrader.backtest.cli import cli

if __name__ == "__main__":
    cli()
