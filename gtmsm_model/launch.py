"""The ``gtmsm`` command's entry point: imports the CLI (and with it torch, about a second) where a
Ctrl-C still ends in one line and exit status 130 instead of an import traceback."""

from __future__ import annotations

import sys


def main() -> int:
    try:
        from gtmsm_model.cli import exit_process
        from gtmsm_model.cli import main as cli_main
    except KeyboardInterrupt:
        print("\ngtmsm: interrupted by SIGINT (while starting)", file=sys.stderr)
        return 130
    return exit_process(cli_main())


if __name__ == "__main__":
    raise SystemExit(main())
