"""What the command line prints: one-line errors and warnings, and progress.

User errors print one line (``loragui: error: ...``) on standard error and the
command exits with status 2. Progress is a tqdm bar on a terminal and nothing
otherwise; the lines around it (epochs, warnings, results) are printed either way.

Everything printed goes through :func:`printable`: a file name holding terminal
escape sequences or control characters is shown with them escaped, never obeyed.
"""

from __future__ import annotations

import functools
import re
import sys
from typing import IO

EXIT_USAGE = 2

# Control characters (C0 but the line break and tab, DEL, C1) and the bidirectional
# overrides that reorder what a terminal shows.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f"
                      "\u202a-\u202e\u2066-\u2069]")


def printable(text: str) -> str:
    """``text`` with control characters escaped as Python writes them (``\\x1b``)."""
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), str(text))


def say(text: str, stream: IO[str] | None = None) -> None:
    """Print a line (standard output unless ``stream``), escaped."""
    print(printable(text), file=stream if stream is not None else sys.stdout)


def fail(message: str) -> int:
    """Print a user error; the exit status to return."""
    say(f"loragui: error: {message}", sys.stderr)
    return EXIT_USAGE


def warn(message: str) -> None:
    say(f"warning: {message}", sys.stderr)


def fmt(value: float | None, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def eta(seconds: float) -> str:
    seconds = int(max(0, seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class Progress:
    """Lines, with a progress bar under them on a terminal (none in a pipe or a file).

    The bar is tqdm's: it fits the terminal's width, redraws at most ten times a
    second and moves out of the way of each line printed.
    """

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream if stream is not None else sys.stdout
        self.tty = self.stream.isatty()
        self._bar = None

    def line(self, text: str) -> None:
        text = printable(text)
        if self._bar is not None:
            self._bar.write(text, file=self.stream)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def bar(self, done: int, total: int, before: str = "", after: str = "") -> None:
        """Show ``done`` of ``total``, with ``before`` and ``after`` the bar."""
        if not self.tty:
            return
        before, after = printable(before), printable(after)
        if self._bar is None or self._bar.total != total:
            self.close()
            self._bar = _bar_type()(total=total, initial=done, desc=before, postfix=after,
                                    file=self.stream, leave=False, dynamic_ncols=True,
                                    bar_format="{desc} [{bar}] {n_fmt}/{total_fmt}{postfix}")
        self._bar.set_description_str(before, refresh=False)
        self._bar.set_postfix_str(after, refresh=False)
        self._bar.update(done - self._bar.n)

    def close(self) -> None:
        """Take the bar away (the lines stay)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None


@functools.cache
def _bar_type() -> type:
    from tqdm import tqdm  # imported for the first bar only: most commands never draw one

    class Bar(tqdm):
        monitor_interval = 0  # no monitor thread: the bar is updated from this one

    return Bar
