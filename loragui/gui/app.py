"""Start the window: ``main(argv)`` (the ``loragui`` command with no sub-command).

The window is shown before torch and pyqtgraph are imported (they take 0.5-3 s);
both are loaded in a background thread after the first paint.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

_T0 = time.perf_counter()

DESKTOP_FILE_NAME = "io.github.loragui.LoraGui"


def _parse(argv: list[str]) -> argparse.Namespace:
    import loragui

    parser = argparse.ArgumentParser(prog="loragui", description="The loragui window.")
    parser.add_argument("--version", action="version", version=f"loragui {loragui.__version__}")
    parser.add_argument("--images", help="folder of images to load at start")
    parser.add_argument("--masks", help="folder of masks to load at start")
    parser.add_argument("--sample", action="store_true", help="open the bundled sample data")
    parser.add_argument("--self-test", action="store_true",
                        help="open the window (offscreen unless a platform is set), train a few "
                        "CPU steps on the bundled sample, exit with status 0 when all worked")
    # For measurements: print the launch-to-window time; quit once the window is shown.
    parser.add_argument("--startup-time", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--quit-after-show", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_known_args(argv)[0]  # Qt options (-platform, -style) pass through


def make_icon():
    """A small drawn icon in several sizes (a mask outline on a cell)."""
    from PySide6.QtCore import QRectF, Qt
    from PySide6.QtGui import QColor, QIcon, QPainter, QPen, QPixmap

    icon = QIcon()
    for size in (16, 24, 32, 48, 64, 128, 256):
        pixmap = QPixmap(size, size)
        pixmap.fill(Qt.GlobalColor.transparent)
        p = QPainter(pixmap)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        p.setPen(Qt.PenStyle.NoPen)
        p.setBrush(QColor("#1f2a44"))
        p.drawRoundedRect(QRectF(0, 0, size, size), size * 0.18, size * 0.18)
        p.setBrush(QColor("#ff28dc"))
        p.drawEllipse(QRectF(size * 0.2, size * 0.22, size * 0.55, size * 0.5))
        p.setBrush(Qt.BrushStyle.NoBrush)
        p.setPen(QPen(QColor("#28e65a"), max(1.0, size / 16)))
        p.drawEllipse(QRectF(size * 0.26, size * 0.3, size * 0.55, size * 0.5))
        p.end()
        icon.addPixmap(pixmap)
    return icon


def make_app(argv: list[str]):
    """The QApplication with the names, desktop file and high-DPI policy set."""
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QGuiApplication
    from PySide6.QtWidgets import QApplication

    import loragui

    from .qtfix import keep_singletons_alive

    keep_singletons_alive()  # a binding bug that would abort the program in minutes: qtfix.py
    app = QApplication.instance()
    if app is None:
        QGuiApplication.setHighDpiScaleFactorRoundingPolicy(
            Qt.HighDpiScaleFactorRoundingPolicy.PassThrough)
        app = QApplication(argv)
    app.setApplicationName("loragui")
    app.setApplicationDisplayName("loragui")
    app.setApplicationVersion(loragui.__version__)
    app.setOrganizationName("loragui")
    app.setOrganizationDomain("loragui.github.io")
    app.setDesktopFileName(DESKTOP_FILE_NAME)
    from . import icons

    app.setWindowIcon(icons.app_icon() if icons.png_paths() else make_icon())
    return app


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parse(argv)
    if args.self_test:
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    app = make_app([sys.argv[0] if sys.argv else "loragui", *argv])

    from .dialogs import install_excepthook
    from .window import MainWindow

    install_excepthook()
    user_dirs = None
    if args.self_test:  # the user's preferences stay untouched
        from .selftest import private_user_dirs

        user_dirs = private_user_dirs()
    window = MainWindow()
    window.setWindowIcon(app.windowIcon())
    if args.startup_time:
        def report() -> None:
            print(f"window shown after {1000 * (time.perf_counter() - _T0):.0f} ms "
                  f"(torch imported: {'torch' in sys.modules})", flush=True)

        window.firstShown.connect(report)
    window.show()
    if args.images or args.masks:
        from pathlib import Path

        if args.images and args.masks:
            window.load_folders(Path(args.images), Path(args.masks))
        else:
            window.data.choose("images" if args.images else "masks", Path(args.images or args.masks))
    elif args.sample:
        window.open_sample_when_ready = True
    if args.self_test:
        from .selftest import SelfTest

        return SelfTest(app, window, user_dirs=user_dirs).run()
    if args.quit_after_show:
        def quit_() -> None:
            window.close()
            app.quit()

        window.firstShown.connect(quit_)
    return app.exec()


if __name__ == "__main__":
    sys.exit(main())
