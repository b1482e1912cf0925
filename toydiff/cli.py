"""What the command-line front ends share (train_cli, sample_cli, study_cli; the only modules that see argparse):
a parser that reports a bad flag in one line, the `error: ...` / exit 2 wrapper, and flag value parsers."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Callable

from .config import MAX_THREADS
from .errors import UserError


class ArgumentParser(argparse.ArgumentParser):
    """argparse that reports a bad flag as one line (not usage + message) and exits 2."""

    def error(self, message: str):  # noqa: D401 - argparse hook
        raise UserError(f"{message} (see {self.prog} --help)")


class Terminated(BaseException):
    """SIGTERM or SIGHUP, raised where the process is, so cleanup runs (an atomic write removes its temp file)
    as for Ctrl-C; the default action would kill the process on the spot and leave the temp file behind."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _terminate(signum, frame):
    raise Terminated(signum)


class QuietStdout:
    """sys.stdout that never fails the command: once the reader is gone (`| head -n 1`) or the disk is full
    (`> /dev/full`), what follows goes to /dev/null, and the files are still written. stdout only reports."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except OSError:
            self._drop()
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except OSError:
            self._drop()

    def _drop(self) -> None:
        """Point the descriptor at /dev/null, so the buffered rest (and Python's flush at exit) succeeds."""
        null = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(null, self._stream.fileno())
        except (OSError, ValueError, AttributeError):           # no descriptor (a test's capture): drop silently
            self._stream = open(os.devnull, "w")
        finally:
            os.close(null)

    def __getattr__(self, name):
        return getattr(self._stream, name)


def run_cli(main: Callable[[], object]) -> None:
    """Run `main`, turning a UserError into `error: ...` on stderr and exit code 2, Ctrl-C into one line and exit
    code 130, SIGTERM / SIGHUP into one line and 128 + the signal (every output is written atomically, so none is
    left half-written). stdout failing (closed early, full) never stops the command. Under torchrun every rank runs
    the same checks on the same input, so rank 0 alone prints the line."""
    speaks = os.environ.get("RANK", "0") == "0"
    stdout, sys.stdout = sys.stdout, QuietStdout(sys.stdout)
    try:                                    # a signal set to be ignored (nohup's SIGHUP) stays ignored
        previous = {s: signal.signal(s, _terminate) for s in (signal.SIGTERM, signal.SIGHUP)
                    if signal.getsignal(s) == signal.SIG_DFL}
    except ValueError:                                          # not the main thread: leave signals alone
        previous = {}
    try:
        main()
    except UserError as err:
        if speaks:
            print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except (KeyboardInterrupt, Terminated) as stop:
        name = "Ctrl-C" if isinstance(stop, KeyboardInterrupt) else str(stop)
        if speaks:
            print(f"interrupted ({name}); files already complete were kept, none is half-written", file=sys.stderr)
        sys.exit(130 if isinstance(stop, KeyboardInterrupt) else 128 + stop.signum)
    finally:
        sys.stdout.flush()                                      # while still quiet: a broken pipe is dropped here
        sys.stdout = stdout
        for s, old in previous.items():
            signal.signal(s, old)


def path(text: str) -> str:
    """A file or folder name: not empty (an empty --run would silently mean the default)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("expected a path, got an empty string")
    return text


def thread_count(text: str) -> int | str:
    """--threads: "auto" or a whole number in 1..MAX_THREADS."""
    if text == "auto":
        return text
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_THREADS:
        raise argparse.ArgumentTypeError(f"expected auto or a whole number in 1..{MAX_THREADS}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """A count that must be >= 1 (samples per row, per cloud, ...)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return value


def positive_float(text: str) -> float:
    """A finite number > 0 (a budget in seconds, ...); NaN and inf are refused."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (0 < value < float("inf")):
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text!r}")
    return value


def int_list(text: str) -> tuple[int, ...]:
    """'1,2,2' -> (1, 2, 2)."""
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like 1,2,2, got {text!r}") from None


def float_list(text: str) -> tuple[float, ...]:
    """'0,1,3' -> (0.0, 1.0, 3.0)."""
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers like 0,1,3, got {text!r}") from None


def negative(text: str) -> tuple[int, float]:
    """'K' or 'K:WEIGHT' -> (K, weight); weight 1 if omitted (the weight's rule lives in guidance.py)."""
    k, sep, w = text.partition(":")
    try:
        return int(k), float(w) if sep else 1.0
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected K or K:WEIGHT (e.g. 7 or 7:0.5), got {text!r}") from None


def interval(text: str) -> tuple[int, int]:
    """'LO:HI' -> (LO, HI), timestep indices (the order rule lives in guidance.py)."""
    lo, sep, hi = text.partition(":")
    try:
        if sep:
            return int(lo), int(hi)
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(f"expected LO:HI with integer timesteps (e.g. 200:800), got {text!r}")


def class_choice(text: str) -> str | int:
    """An integer class, 'all' or 'none'."""
    if text in ("all", "none"):
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, 'all' or 'none', got {text!r}") from None
