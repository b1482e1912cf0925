"""User-facing errors: one line on stderr, exit code 2, no traceback."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable


class UserError(Exception):
    """Bad input from the user. The message says what was wrong and what to do."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse that reports a bad flag as one line (not usage + message) and exits 2."""

    def error(self, message: str):  # noqa: D401 - argparse hook
        raise UserError(f"{message} (see {self.prog} --help)")


def run_cli(main: Callable[[], object]) -> None:
    """Run `main`, turning a UserError into `error: ...` on stderr and exit code 2."""
    try:
        main()
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
