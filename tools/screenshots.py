"""Screenshots of the loragui window: empty, with data, while training, after.

Runs the real app under the current DISPLAY (for example Xvfb), loads data (the
bundled sample, or --images/--masks), trains a few epochs on the CPU and saves
PNG files into OUTDIR. It also prints the start-up time and the worst gap of a
10 ms timer on the GUI thread while training.

    Xvfb :99 -screen 0 1600x1000x24 &
    DISPLAY=:99 python tools/screenshots.py OUTDIR \\
        --images /path/to/images --masks /path/to/masks
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

T0 = time.perf_counter()
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("outdir", type=Path)
    parser.add_argument("--images", type=Path, help="default: the bundled sample images")
    parser.add_argument("--masks", type=Path, help="default: the bundled sample masks")
    parser.add_argument("--base", type=Path, help="base model (default: the bundled one; without "
                        "one, a randomly initialised base is written into OUTDIR)")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--steps-per-epoch", type=int, default=8)
    parser.add_argument("--crop-size", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--size", default="1500x950", help="window size, WIDTHxHEIGHT")
    parser.add_argument("--dark", action="store_true", help="also shoot a dark-theme variant")
    args = parser.parse_args()
    args.outdir.mkdir(parents=True, exist_ok=True)

    from PySide6.QtWidgets import QApplication

    from loragui.gui.app import make_app
    from loragui.gui.window import MainWindow
    from tests.gui.watch import EventLoopMonitor, WorkerWatch

    app = make_app(sys.argv[:1])
    watch = WorkerWatch().__enter__()  # the window's background threads
    window = MainWindow()
    width, height = (int(v) for v in args.size.split("x"))
    window.resize(width, height)
    shown = {}
    window.firstShown.connect(lambda: shown.setdefault("t", time.perf_counter() - T0))
    window.show()

    def wait_until(predicate, timeout: float = 600.0, what: str = "") -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise SystemExit(f"timed out waiting for {what}")
            app.processEvents()
            time.sleep(0.01)

    def settle(seconds: float = 0.4) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            app.processEvents()
            time.sleep(0.01)

    def shoot(name: str) -> None:
        settle()
        path = args.outdir / f"{name}.png"
        window.grab().save(str(path))
        print(f"saved {path}")

    wait_until(lambda: "t" in shown, 30, "the window")
    print(f"window shown {1000 * shown['t']:.0f} ms after the script started")
    wait_until(lambda: "devices" in window.info and not watch.running(), 120,
               "start-up (torch, devices)")
    shoot("01-empty")

    # Data: the bundled sample, or the folders given.
    if args.images and args.masks:
        window.load_folders(args.images, args.masks)
    elif window.sample_dirs is not None:
        window.open_sample_data()
    else:
        raise SystemExit("no bundled sample data: pass --images and --masks")
    wait_until(lambda: window.data.report is not None and not watch.running(), 300,
               "the report")
    shoot("02-data")

    # A base model.
    base = args.base
    if base is None and window.settings.needs_base:
        import torch

        from loragui.engine.basemodel import save_model
        from loragui.engine.preprocessing import Preprocessing
        from loragui.engine.unet import UNet

        print("no bundled base model: using a randomly initialised one (Dice starts near 0)")
        torch.manual_seed(0)
        base = save_model(UNet(), args.outdir / "random-base.safetensors",
                          preprocessing=Preprocessing().to_dict())
    if base is not None:
        window.settings.set_base(str(base))
    window.settings.set_values({"device": "cpu", "epochs": args.epochs,
                                "crop_size": args.crop_size, "batch_size": args.batch_size})
    window.config_overrides = {"steps_per_epoch": args.steps_per_epoch}

    monitor = EventLoopMonitor()
    monitor.start()
    window.start_training()
    wait_until(lambda: window.run.last_epoch is not None
               and window.run.last_epoch.epoch >= max(1, args.epochs // 2), 1800,
               "the middle of training")
    shoot("03-training")
    wait_until(lambda: not window.training(), 1800, "the end of training")
    monitor.stop()
    shoot("04-finished")
    print(f"GUI thread while training: {monitor.summary()}")
    print(f"result: {window.result}")

    if args.dark:
        from PySide6.QtGui import QColor, QPalette

        app.setStyle("Fusion")
        dark = QPalette()
        for role, colour in [("Window", "#2b2b2b"), ("WindowText", "#e6e6e6"),
                             ("Base", "#1e1e1e"), ("AlternateBase", "#333333"),
                             ("Text", "#e6e6e6"), ("Button", "#3a3a3a"),
                             ("ButtonText", "#e6e6e6"), ("Highlight", "#3d7bd9"),
                             ("HighlightedText", "#ffffff"), ("Mid", "#555555"),
                             ("ToolTipBase", "#333333"), ("ToolTipText", "#e6e6e6"),
                             ("PlaceholderText", "#9a9a9a"), ("Link", "#6ea8ff")]:
            dark.setColor(getattr(QPalette.ColorRole, role), QColor(colour))
        QApplication.setPalette(dark)
        shoot("05-finished-dark")

    window.close()
    wait_until(lambda: not window.isVisible(), 60, "the window to close")
    return 0


if __name__ == "__main__":
    sys.exit(main())
