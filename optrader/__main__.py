"""``python -m optrader registry``: list registered components; ``python -m optrader modes``."""

import sys


def main(argv: list[str]) -> int:
    import optrader
    from optrader.config import available

    commands = {
        "registry": lambda: print(optrader.registry.describe()),
        "modes": lambda: print("\n".join(available("env"))),
        "version": lambda: print(optrader.__version__),
    }
    if len(argv) != 1 or argv[0] not in commands:
        print(f"usage: python -m optrader {{{'|'.join(commands)}}}  "
              f"(training: python -m optrader.train +env=training)", file=sys.stderr)
        return 2
    commands[argv[0]]()
    return 0


if __name__ == "__main__":
    from optrader.cli_errors import main as run_main

    run_main("optrader", main, sys.argv[1:])
