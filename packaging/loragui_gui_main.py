"""Entry point of the frozen build's ``loragui-gui`` program (Windows): the window, with no
console beside it."""

import multiprocessing
import sys

from loragui.cli import window

if __name__ == "__main__":
    multiprocessing.freeze_support()  # child processes of a frozen program re-enter here
    sys.exit(window())
