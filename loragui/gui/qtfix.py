"""A work-around for a reference-counting bug of the Qt binding.

shiboken6 6.12.0 hands out ``None``, ``True`` and ``False`` without a new
reference: a C++ method returning ``void`` (``setText``, ``update``,
``processEvents``...) takes one reference from ``None``, and a ``QVariant``
holding a bool (``QObject.property``, which pyqtgraph calls at every
``setData``) takes one from ``True`` or ``False``. On Python 3.10 and 3.11 a
window drawing training curves loses about 700 references to ``None`` a
second, from some 60,000, and fewer are held on the booleans: within minutes
CPython aborts with "Fatal Python error: none_dealloc" (or bool_dealloc).
From Python 3.12 these objects are immortal (PEP 683) and the bug is harmless.

:func:`keep_singletons_alive` checks for the leak and, only where it is found,
gives each of the three 2**40 extra references: as good as immortal (35 years
at a thousand leaked references a second), which is what Python 3.12 makes
them anyway.
"""

from __future__ import annotations

import ctypes
import sys

_EXTRA_REFERENCES = 1 << 40
_checked = False


def singletons_leak(calls: int = 64) -> bool:
    """Whether the binding takes references from ``None`` or the booleans."""
    from PySide6.QtCore import QObject

    probe = QObject()
    probe.setProperty("probe", True)
    before = sys.getrefcount(None), sys.getrefcount(True)
    for _ in range(calls):
        probe.setObjectName("probe")  # returns void: None
        probe.property("probe")  # a QVariant holding true: True
    after = sys.getrefcount(None), sys.getrefcount(True)
    return any(b - a >= calls for b, a in zip(before, after, strict=True))


def keep_singletons_alive() -> bool:
    """Protect None, True and False from the binding's leak (checked once per
    process, before anything is drawn); True when the leak was found."""
    global _checked
    if _checked or sys.version_info >= (3, 12) or sys.implementation.name != "cpython":
        return False
    _checked = True
    if not singletons_leak():
        return False
    for obj in (None, True, False):
        ctypes.c_ssize_t.from_address(id(obj)).value += _EXTRA_REFERENCES  # ob_refcnt
    return True
