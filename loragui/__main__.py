import sys

from loragui.cli import main

sys.exit(main())
