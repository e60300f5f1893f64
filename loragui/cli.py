"""The ``loragui`` command: the window with no arguments, or a headless subcommand.

    loragui                      open the window
    loragui train ...            train an adapter (or a base model with --full)
    loragui evaluate ...         Dice and IoU of a model on labelled images
    loragui predict ...          write masks for a folder of images
    loragui merge ...            fold an adapter into its base model
    loragui info FILE            what a model or adapter file is and where it came from
    loragui export PATH ...      copy an adapter (one file, PEFT-loadable) or write ONNX

User errors print one line (``loragui: error: ...``) and exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from . import __version__

EXIT_USAGE = 2


def _add_model_args(p: argparse.ArgumentParser, adapter: bool = True) -> None:
    p.add_argument("--base", metavar="FILE",
                   help="base model (.safetensors); default: the bundled base model")
    if adapter:
        p.add_argument("--adapter", metavar="PATH", help="adapter folder or .safetensors file")
        p.add_argument("--force", action="store_true",
                       help="apply an adapter made for another base model when the shapes match")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default: auto)")


def build_parser() -> argparse.ArgumentParser:
    from .engine.config import TrainConfig  # torch-free

    d = TrainConfig()
    parser = argparse.ArgumentParser(
        prog="loragui",
        description="Adapt a pretrained UNet segmentation model to your images with LoRA. "
                    "Without a command, opens the window.")
    parser.add_argument("--version", action="version", version=f"loragui {__version__}")
    parser.add_argument("--self-test", action="store_true",
                        help="open the window offscreen, train a few steps on the sample, exit")
    parser.add_argument("--sample", action="store_true",
                        help="open the window with the bundled sample data loaded")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    t = sub.add_parser("train", help="train an adapter (or a base model with --full)",
                       description="Train a LoRA adapter on a folder of images and a folder of "
                                   "masks (same file stems).")
    t.add_argument("--images", metavar="DIR", help="folder of images")
    t.add_argument("--masks", metavar="DIR", help="folder of masks (0 = background)")
    t.add_argument("--sample", action="store_true", help="use the bundled sample dataset")
    t.add_argument("--out", metavar="DIR", required=True, help="run folder to write")
    _add_model_args(t, adapter=False)
    t.add_argument("--full", action="store_true",
                   help="train every weight and write a base-model file (OUT/model.safetensors)")
    t.add_argument("--rank", type=int, default=d.rank, help=f"LoRA rank (default {d.rank})")
    t.add_argument("--alpha", type=float, default=d.alpha, help=f"LoRA alpha (default {d.alpha:g})")
    t.add_argument("--rslora", action="store_true", help="scale by alpha/sqrt(rank)")
    t.add_argument("--dropout", type=float, default=d.dropout, help="dropout on the LoRA input")
    t.add_argument("--targets", default=",".join(d.targets),
                   help="comma-separated module-name patterns to adapt (default: every conv)")
    t.add_argument("--no-train-bias", action="store_true",
                   help="keep the biases of adapted layers frozen")
    t.add_argument("--train-modules", default=",".join(d.train_modules),
                   help="comma-separated modules trained whole instead of through LoRA "
                        f"(default: {','.join(d.train_modules) or 'none'}; '' for none)")
    t.add_argument("--epochs", type=int, default=d.epochs, help=f"default {d.epochs}")
    t.add_argument("--steps", type=int, default=None, help="total steps (overrides --epochs)")
    t.add_argument("--steps-per-epoch", type=int, default=None, help="default: from the data size")
    t.add_argument("--batch-size", type=int, default=d.batch_size, help=f"default {d.batch_size}")
    t.add_argument("--lr", type=float, default=d.lr, help=f"peak learning rate (default {d.lr:g})")
    t.add_argument("--crop-size", type=int, default=d.crop_size,
                   help="side of the random training crops; default 0: auto (256 on GPUs, 128 on CPUs)")
    t.add_argument("--val-fraction", type=float, default=d.val_fraction,
                   help=f"share of pairs held out for validation (default {d.val_fraction:g})")
    t.add_argument("--seed", type=int, default=d.seed, help="seed for the split and the crops")
    t.add_argument("--width", type=int, default=d.width, help="--full without --base: first-level channels")
    t.add_argument("--depth", type=int, default=d.depth, help="--full without --base: poolings")
    t.add_argument("--resume", action="store_true", help="continue the run in OUT from its checkpoint")
    t.add_argument("--events", choices=["text", "jsonl"], default="text",
                   help="jsonl: print one JSON event per line (for other programs)")

    e = sub.add_parser("evaluate", help="Dice and IoU on labelled images")
    e.add_argument("--images", metavar="DIR", required=True)
    e.add_argument("--masks", metavar="DIR", required=True)
    _add_model_args(e)
    e.add_argument("--json", action="store_true", help="print one JSON object")

    p = sub.add_parser("predict", help="write a 0/255 PNG mask for every image in a folder")
    p.add_argument("--images", metavar="DIR", required=True)
    p.add_argument("--out", metavar="DIR", required=True)
    _add_model_args(p)

    m = sub.add_parser("merge", help="fold an adapter into its base model")
    m.add_argument("--adapter", metavar="PATH", required=True)
    m.add_argument("--base", metavar="FILE", help="default: the bundled base model")
    m.add_argument("--out", metavar="FILE", required=True, help="merged model (.safetensors)")
    m.add_argument("--onnx", metavar="FILE",
                   help="also write the merged model as ONNX (needs the onnx extra)")
    m.add_argument("--force", action="store_true",
                   help="apply an adapter made for another base model when the shapes match (warns)")

    i = sub.add_parser("info", help="describe a base model, adapter or merged model",
                       description="What a file is and where it came from: base-model SHA-256, "
                                   "architecture, training settings, dataset, metrics, version, "
                                   "date; for an adapter also whether PEFT can load it.")
    i.add_argument("path", nargs="?", help="file or adapter folder (default: the bundled base)")
    i.add_argument("--json", action="store_true", help="print one JSON object")

    x = sub.add_parser("export", help="copy an adapter as one file or PEFT-loadable, or write ONNX",
                       description="Copy an adapter (folder or .safetensors) as a PEFT folder or "
                                   "a single file; --peft makes the copy loadable by PEFT. With "
                                   "--onnx, write a base/merged model, or an adapter merged into "
                                   "its base, as an ONNX file.")
    x.add_argument("path", metavar="PATH", help="adapter folder or file, or a model file (--onnx)")
    x.add_argument("--out", metavar="DEST", required=True, help="file or folder to write")
    x.add_argument("--single-file", action="store_true",
                   help="one .safetensors file with the config in its header")
    x.add_argument("--peft", action="store_true",
                   help="fold ConvTranspose2d updates into full weights (modules_to_save) so "
                        "peft.PeftModel.from_pretrained loads the copy; needs the base model")
    x.add_argument("--onnx", action="store_true", help="write an ONNX model (needs the onnx extra)")
    x.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17, at least 17)")
    x.add_argument("--base", metavar="FILE", help="base model; default: the bundled base model")
    x.add_argument("--force", action="store_true",
                   help="use an adapter made for another base model when the shapes match (warns)")
    return parser


def _fail(message: str) -> int:
    print(f"loragui: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # No sub-command: the window (its own options: --sample, --images, --masks, --self-test).
    if not any(a in COMMANDS or a in ("-h", "--help", "--version") for a in argv):
        return _open_window(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        return _open_window(argv)
    from .engine.errors import LoraGuiError

    try:
        return COMMANDS[args.command](args)
    except LoraGuiError as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:
        print("\nloragui: interrupted", file=sys.stderr)
        return 130


def _open_window(argv: list[str]) -> int:
    try:
        from .gui.app import main as gui_main
    except ImportError as exc:
        return _fail(f"the window cannot open: {exc}. Install the GUI requirements "
                     "(pip install loragui), or use the command line: loragui --help")
    return gui_main(argv)


# ------------------------------------------------------------------------------- train

class _Printer:
    """Progress bar on a terminal, one line per epoch otherwise."""

    def __init__(self, stream=None) -> None:
        self.stream = stream if stream is not None else sys.stdout
        self.tty = self.stream.isatty()
        self.last_len = 0

    def line(self, text: str) -> None:
        if self.tty and self.last_len:
            self.stream.write("\r" + " " * self.last_len + "\r")
            self.last_len = 0
        self.stream.write(text + "\n")
        self.stream.flush()

    def bar(self, text: str) -> None:
        if not self.tty:
            return
        self.stream.write("\r" + text.ljust(self.last_len))
        self.last_len = len(text)
        self.stream.flush()


def _fmt(value: float | None, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _eta(seconds: float) -> str:
    seconds = int(max(0, seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def cmd_train(args: argparse.Namespace) -> int:
    from .engine.config import TrainConfig
    from .engine.errors import LoraGuiError
    from .engine.events import (
        EpochEvent,
        LogEvent,
        RunFailed,
        RunFinished,
        RunStarted,
        StepEvent,
        event_to_dict,
    )

    if args.sample:
        from .engine.files import bundled_sample_dirs

        dirs = bundled_sample_dirs()
        if dirs is None:
            raise LoraGuiError("no sample dataset is bundled with this installation")
        args.images, args.masks = map(str, dirs)
    if not args.images or not args.masks:
        raise LoraGuiError("give --images DIR and --masks DIR (or --sample)")
    for flag, value in (("--images", args.images), ("--masks", args.masks)):
        if not Path(value).is_dir():
            what = "is a file, not a folder" if Path(value).exists() else "no such folder"
            raise LoraGuiError(f"{flag} {value}: {what}")
    config = TrainConfig(
        images=args.images, masks=args.masks, out=args.out, base=args.base, full=args.full,
        rank=args.rank, alpha=args.alpha, rslora=args.rslora, dropout=args.dropout,
        targets=[t.strip() for t in args.targets.split(",") if t.strip()],
        train_bias=not args.no_train_bias,
        train_modules=[m.strip() for m in args.train_modules.split(",") if m.strip()], epochs=args.epochs, steps=args.steps,
        steps_per_epoch=args.steps_per_epoch, batch_size=args.batch_size, lr=args.lr,
        crop_size=args.crop_size, val_fraction=args.val_fraction, seed=args.seed,
        device=args.device, resume=args.resume, width=args.width, depth=args.depth)
    from .engine.train import run_training

    stop = threading.Event()

    def on_sigint(signum, frame):  # first Ctrl-C: stop after this step; second: abort
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        print("\nloragui: stopping after the current step (Ctrl-C again to abort)", file=sys.stderr)

    def on_sigterm(signum, frame):  # logout / shutdown: stop after this step, checkpoint kept
        stop.set()

    previous = previous_term = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGINT, on_sigint)
        previous_term = signal.signal(signal.SIGTERM, on_sigterm)
    out = _Printer()
    status = 0
    try:
        for ev in run_training(config, stop):
            if args.events == "jsonl":
                d = event_to_dict(ev)
                d.pop("previews", None)
                print(json.dumps(d), flush=True)
                if isinstance(ev, RunFailed):
                    status = EXIT_USAGE if not ev.details else 1
                continue
            if isinstance(ev, RunStarted):
                out.line(f"training {ev.mode} on {ev.device}: {ev.n_train} train / {ev.n_val} val "
                         f"pairs, {ev.total_steps} steps ({ev.epochs} epochs × {ev.steps_per_epoch}), "
                         f"{ev.trainable_params:,} trainable of {ev.total_params:,} parameters"
                         + (f", resuming at step {ev.start_step}" if ev.start_step else ""))
            elif isinstance(ev, StepEvent):
                frac = ev.step / ev.total_steps
                filled = int(30 * frac)
                out.bar(f"epoch {ev.epoch} [{'#' * filled}{'.' * (30 - filled)}] {ev.step}/"
                        f"{ev.total_steps} loss {ev.loss:.4f} {ev.images_per_s:.1f} img/s "
                        f"ETA {_eta(ev.eta_s)}")
            elif isinstance(ev, EpochEvent):
                if ev.epoch == 0:
                    out.line(f"base model alone: val Dice {_fmt(ev.dice)} IoU {_fmt(ev.iou)}")
                else:
                    out.line(f"epoch {ev.epoch}/{ev.epochs} step {ev.step}: train loss "
                             f"{_fmt(ev.train_loss)} val loss {_fmt(ev.val_loss)} Dice "
                             f"{_fmt(ev.dice)} IoU {_fmt(ev.iou)}" + (" *best" if ev.is_best else ""))
            elif isinstance(ev, LogEvent):
                out.line(("warning: " if ev.level == "warning" else "") + ev.message)
            elif isinstance(ev, RunFinished):
                verb = "stopped" if ev.stopped else "finished"
                out.line(f"{verb} after {ev.steps} steps in {ev.seconds:.1f} s; best val Dice "
                         f"{_fmt(ev.best_dice)} (epoch {ev.best_epoch}), base model {_fmt(ev.base_dice)}")
                out.line(f"wrote {ev.output}")
            elif isinstance(ev, RunFailed):
                msg = ev.message + (f"\nthe best result so far is kept in {ev.output}" if ev.output else "")
                if ev.details:
                    print(ev.details, file=sys.stderr)
                    print(f"loragui: error: {msg}", file=sys.stderr)
                    status = 1
                else:
                    status = _fail(msg)
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
        if previous_term is not None:
            signal.signal(signal.SIGTERM, previous_term)
    return status


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .engine.predict import evaluate_folders

    result = evaluate_folders(args.images, args.masks, base=args.base, adapter=args.adapter,
                              device=args.device, force=args.force)
    for w in result.pop("warnings"):
        print(f"warning: {w}", file=sys.stderr)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{result['images']} images: Dice {_fmt(result['dice'])} (pooled "
              f"{_fmt(result['dice_pooled'])}), IoU {_fmt(result['iou'])} (pooled "
              f"{_fmt(result['iou_pooled'])})")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from .engine.predict import predict_folder

    printer = _Printer(sys.stderr)
    written = 0
    for ev in predict_folder(args.images, args.out, base=args.base, adapter=args.adapter,
                             device=args.device, force=args.force):
        if ev.message.startswith(("skipped", "warning")) or ev.done == 0:
            printer.line(ev.message)
        else:
            written += 1
            printer.bar(f"{ev.done}/{ev.total} {ev.message}")
    printer.line(f"wrote {written} mask(s) to {args.out}")
    return 0


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def _write_onnx(source: str, dest: str, *, base: str | None, force: bool, opset: int = 17) -> None:
    from .engine.onnx_export import check_onnx, export_model_onnx, onnxruntime_available

    path = export_model_onnx(source, dest, base=base, force=force, opset=opset, on_warning=_warn)
    print(f"wrote {path} (ONNX opset {opset}; dynamic batch, height and width)")
    if onnxruntime_available():
        from .engine.files import file_kind, load_model, merged_model

        if file_kind(source) == "adapter":
            model = merged_model(base, source, force=force)[0]
        else:
            model = load_model(source)[0]
        diff = check_onnx(path, model)
        print(f"checked with onnxruntime: largest difference from PyTorch {diff:.2e}")


def cmd_merge(args: argparse.Namespace) -> int:
    from .engine.files import merge_adapter_file

    path = merge_adapter_file(args.base, args.adapter, args.out, force=args.force,
                              on_warning=_warn)
    print(f"wrote {path}")
    if args.onnx:
        _write_onnx(str(path), args.onnx, base=None, force=False)
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from .engine.files import read_model_info, resolve_base

    path = Path(args.path) if args.path else resolve_base(None)
    info = read_model_info(path)
    if args.json:
        print(json.dumps(info, indent=2, default=str))
        return 0
    for key, value in info.items():
        if key == "peft_loadable":
            value = "yes" if value else "no"
        if isinstance(value, dict | list):
            value = json.dumps(value, default=str)
        print(f"{key}: {value}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from .engine.errors import LoraGuiError
    from .engine.files import adapter_peft_status, export_adapter, file_kind, load_adapter

    kind = file_kind(args.path)
    if args.onnx:
        if args.peft or args.single_file:
            raise LoraGuiError("--onnx writes a model; it does not combine with --peft or "
                               "--single-file")
        _write_onnx(args.path, args.out, base=args.base, force=args.force, opset=args.opset)
        return 0
    if kind != "adapter":
        raise LoraGuiError(f"{args.path} is a {kind}, not an adapter: add --onnx to export it "
                           "as ONNX")
    path = export_adapter(args.path, args.out, args.single_file, peft_compatible=args.peft,
                          base=args.base, force=args.force)
    print(f"wrote {path}")
    loadable, _, note = adapter_peft_status(load_adapter(path))
    if not loadable:
        print(f"note: {note}", file=sys.stderr)
    elif args.single_file:
        print("note: PEFT loads folders; export without --single-file for "
              "PeftModel.from_pretrained", file=sys.stderr)
    return 0


COMMANDS = {"train": cmd_train, "evaluate": cmd_evaluate, "predict": cmd_predict,
            "merge": cmd_merge, "info": cmd_info, "export": cmd_export}

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
