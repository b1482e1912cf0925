"""User-facing errors and notes. The CLI modules turn a UserError into one line on stderr and exit code 2."""

from __future__ import annotations

import sys


class UserError(Exception):
    """Bad input from the user. The message says what was wrong and what to do."""


def note(message: str) -> None:
    """A one-line `note: ...` on stderr: a default was adjusted, nothing is wrong."""
    print(f"note: {message}", file=sys.stderr)
