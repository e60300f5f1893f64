"""The ``loragui`` command: the window with no arguments, or a headless subcommand.

    loragui                      open the window
    loragui train ...            train an adapter (or a base model with --full)
    loragui evaluate ...         Dice and IoU of a model on labelled images
    loragui predict ...          write masks for a folder of images
    loragui merge ...            fold an adapter into its base model
    loragui info FILE            what a model or adapter file is and where it came from
    loragui export PATH ...      copy an adapter (one file, PEFT-loadable), write ONNX
                                 or a bioimage.io model package (--bioimageio)

User errors print one line (``loragui: error: ...``) and exit with status 2.
``train`` lives in :mod:`loragui.cli_train`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from . import __version__
from .cli_bioimageio import add_bioimageio_args, cmd_export_bioimageio
from .cli_train import LAUNCHED_ENV, add_train_parser, cmd_train, other_rank
from .terminal import EXIT_USAGE, Progress, fail, fmt, warn


def _add_model_args(p: argparse.ArgumentParser, adapter: bool = True) -> None:
    p.add_argument("--base", metavar="FILE",
                   help="base model (.safetensors); default: the bundled base model")
    if adapter:
        p.add_argument("--adapter", metavar="PATH", help="adapter folder or .safetensors file")
        p.add_argument("--force", action="store_true",
                       help="apply an adapter made for another base model when the shapes match")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default: auto)")


def build_parser() -> argparse.ArgumentParser:
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

    add_train_parser(sub)

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
    x.add_argument("path", metavar="PATH",
                   help="adapter folder or file, or a model file (--onnx, --bioimageio)")
    x.add_argument("--out", metavar="DEST", help="file or folder to write")
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
    add_bioimageio_args(x)
    return parser


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
        status = COMMANDS[args.command](args)
    except LoraGuiError as exc:
        status = EXIT_USAGE if other_rank() else fail(str(exc))  # rank 0 says it once
    except KeyboardInterrupt:
        print("\nloragui: interrupted", file=sys.stderr)
        status = 130
    if os.environ.get(LAUNCHED_ENV):  # started by --devices: rank 0 has reported
        from .engine.distributed import record_status

        record_status(status)
    return status


def _open_window(argv: list[str]) -> int:
    try:
        from .gui.app import main as gui_main
    except ImportError as exc:
        return fail(f"the window cannot open: {exc}. Install the GUI requirements "
                     "(pip install loragui), or use the command line: loragui --help")
    return gui_main(argv)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .engine.predict import evaluate_folders

    result = evaluate_folders(args.images, args.masks, base=args.base, adapter=args.adapter,
                              device=args.device, force=args.force)
    for w in result.pop("warnings"):
        print(f"warning: {w}", file=sys.stderr)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{result['images']} images: Dice {fmt(result['dice'])} (pooled "
              f"{fmt(result['dice_pooled'])}), IoU {fmt(result['iou'])} (pooled "
              f"{fmt(result['iou_pooled'])})")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from .engine.predict import predict_folder

    progress = Progress(sys.stderr)
    written = 0
    try:
        for ev in predict_folder(args.images, args.out, base=args.base, adapter=args.adapter,
                                 device=args.device, force=args.force):
            if ev.message.startswith(("skipped", "warning")) or ev.done == 0:
                progress.line(ev.message)
            else:
                written += 1
                progress.bar(ev.done, ev.total, after=ev.message)
    finally:
        progress.close()
    progress.line(f"wrote {written} mask(s) to {args.out}")
    return 0


def _write_onnx(source: str, dest: str, *, base: str | None, force: bool, opset: int = 17) -> None:
    from .engine.onnx_export import check_onnx, export_model_onnx, onnxruntime_available

    path = export_model_onnx(source, dest, base=base, force=force, opset=opset, on_warning=warn)
    print(f"wrote {path} (ONNX opset {opset}; dynamic batch, height and width)")
    if onnxruntime_available():
        from .engine.basemodel import load_model
        from .engine.exports import merged_model
        from .engine.info import file_kind

        if file_kind(source) == "adapter":
            model = merged_model(base, source, force=force)[0]
        else:
            model = load_model(source)[0]
        diff = check_onnx(path, model)
        print(f"checked with onnxruntime: largest difference from PyTorch {diff:.2e}")


def cmd_merge(args: argparse.Namespace) -> int:
    from .engine.exports import merge_adapter_file

    path = merge_adapter_file(args.base, args.adapter, args.out, force=args.force,
                              on_warning=warn)
    print(f"wrote {path}")
    if args.onnx:
        _write_onnx(str(path), args.onnx, base=None, force=False)
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from .engine.basemodel import resolve_base
    from .engine.info import read_model_info

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
    from .engine.adapters import load_adapter
    from .engine.errors import LoraGuiError
    from .engine.exports import export_adapter
    from .engine.info import adapter_peft_status, file_kind

    if args.bioimageio:
        if args.onnx or args.peft or args.single_file or args.out:
            raise LoraGuiError("--bioimageio writes a package to the file it names; it does not "
                               "combine with --out, --onnx, --peft or --single-file")
        return cmd_export_bioimageio(args)
    if not args.out:
        raise LoraGuiError("say where to write: --out DEST (or --bioimageio OUT.zip)")
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
