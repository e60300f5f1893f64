"""Entry point of the frozen (PyInstaller) build: the ``loragui`` command."""

import multiprocessing
import sys

from loragui.cli import main

if __name__ == "__main__":
    multiprocessing.freeze_support()  # child processes of a frozen program re-enter here
    sys.exit(main())
