"""``python -m loragui.gui``: open the window."""

import sys

from .app import main

sys.exit(main())
