"""The ``loragui`` command: the window with no arguments, or a headless subcommand.

    loragui                      open the window
    loragui train ...            train an adapter (or a base model with --full)
    loragui evaluate ...         Dice and IoU of a model on labelled images (cli_evaluate.py)
    loragui predict ...          write masks for a folder of images
    loragui merge ...            fold an adapter into its base model
    loragui info FILE            what a model or adapter file is and where it came from
    loragui export PATH ...      copy an adapter (one file, PEFT-loadable) or write ONNX
    loragui runs [compare ...]   the history of runs, and runs side by side
    loragui export PATH ...      copy an adapter (one file, PEFT-loadable), write ONNX
                                 or a bioimage.io model package (--bioimageio)

User errors print one line (``loragui: error: ...``) and exit with status 2.
``train`` lives in :mod:`loragui.cli_train`, ``runs`` in :mod:`loragui.cli_runs`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from . import __version__
from .cli_bioimageio import add_bioimageio_args, cmd_export_bioimageio
from .cli_evaluate import add_evaluate_parser, cmd_evaluate
from .cli_runs import add_runs_parser, cmd_runs
from .cli_train import LAUNCHED_ENV, add_train_parser, cmd_train, other_rank
from .terminal import EXIT_USAGE, Progress, fail, say, warn


def _add_model_args(p: argparse.ArgumentParser, adapter: bool = True) -> None:
    p.add_argument("--base", metavar="FILE",
                   help="base model (.safetensors); default: the bundled base model")
    if adapter:
        p.add_argument("--adapter", metavar="PATH", help="adapter folder or .safetensors file")
        p.add_argument("--force", action="store_true",
                       help="apply an adapter made for another base model when the shapes match")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default: auto)")


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line, as every user error is (the usage
    is one ``--help`` away); its sub-command parsers are of the same class."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"loragui: error: {self.prog}: {message} (see {self.prog} --help)\n")


def _pixels(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number of pixels, 0 or more, not {text!r}")
    return value


def _add_overwrite(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--overwrite", action="store_true",
                   help=f"replace {what} (nothing else is ever replaced)")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
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

    add_evaluate_parser(sub, _add_model_args)

    p = sub.add_parser("predict", help="write a 0/255 PNG mask for every image in a folder")
    p.add_argument("--images", metavar="DIR", required=True)
    p.add_argument("--out", metavar="DIR", required=True,
                   help="a new or empty folder for the masks")
    _add_overwrite(p, "masks loragui predicted earlier in --out")
    p.add_argument("--objects", action="store_true",
                   help="also split each mask into objects: their labels (16-bit PNG) in "
                        "--out/objects/, one row per object (area, centroid, bounding box, mean "
                        "intensity) in --out/objects.csv, the count per image in --out/counts.csv")
    p.add_argument("--min-size", metavar="PIXELS", type=_pixels, default=0,
                   help="with --objects: drop objects smaller than this many pixels (default 0)")
    _add_model_args(p)

    m = sub.add_parser("merge", help="fold an adapter into its base model")
    m.add_argument("--adapter", metavar="PATH", required=True)
    m.add_argument("--base", metavar="FILE", help="default: the bundled base model")
    m.add_argument("--out", metavar="FILE", required=True, help="merged model (.safetensors)")
    m.add_argument("--onnx", metavar="FILE",
                   help="also write the merged model as ONNX (needs the onnx extra)")
    m.add_argument("--force", action="store_true",
                   help="apply an adapter made for another base model when the shapes match (warns)")
    _add_overwrite(m, "a merged model (or ONNX file) loragui wrote earlier at --out (--onnx)")

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
    _add_overwrite(x, "an adapter or ONNX file loragui wrote earlier at --out, or the "
                      "--bioimageio package")
    add_runs_parser(sub)
    add_bioimageio_args(x)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``loragui ARGV``; the exit status. A reader that goes away (``| head``) ends
    the output quietly."""
    try:
        status = _run(list(sys.argv[1:] if argv is None else argv))
        sys.stdout.flush()  # here, not at exit: a closed pipe is then caught below
    except BrokenPipeError:
        return _closed_pipe()
    return status


def _closed_pipe() -> int:
    """The reader of standard output went away: stop writing, quietly."""
    with contextlib.suppress(OSError, ValueError):  # no complaint when Python flushes at exit
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    return 141  # as a shell reports a program ended by SIGPIPE


def _run(argv: list[str]) -> int:
    word = first_word(argv)
    if word is not None and word not in COMMANDS:
        return fail(unknown_command(word))
    # No command: the window (its own options: --sample, --images, --masks, --self-test).
    if word is None and not any(a in ("-h", "--help", "--version") for a in argv):
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
    except BrokenPipeError:
        raise
    except Exception as exc:  # a bug or an environment fault: one line, the details in a log
        from .errorlog import report_unexpected

        status = report_unexpected(f"{type(exc).__name__}: {exc}", traceback.format_exc())
    if os.environ.get(LAUNCHED_ENV):  # started by --devices: rank 0 has reported
        from .engine.launcher import record_status

        record_status(status)
    return status


# The window's options that take a value, and Qt's (-platform xcb, -style fusion, ...): the
# word after them is that value, not a command.
_VALUE_OPTIONS = frozenset({"--images", "--masks", "-platform", "-platformpluginpath",
                            "-platformtheme", "-plugin", "-style", "-stylesheet", "-display",
                            "-geometry", "-qwindowgeometry", "-qwindowtitle", "-qwindowicon",
                            "-session", "-name", "-title", "-screen"})


def first_word(argv: Sequence[str]) -> str | None:
    """The first argument that is neither an option nor an option's value: the command."""
    after_value_option = False
    for arg in argv:
        if after_value_option:
            after_value_option = False
        elif arg == "--":
            continue
        elif arg.startswith("-"):
            after_value_option = arg in _VALUE_OPTIONS
        else:
            return arg
    return None


def unknown_command(word: str) -> str:
    """One line: the closest command to a mistyped one, and the list of them."""
    import difflib

    close = difflib.get_close_matches(word, list(COMMANDS), n=1, cutoff=0.5)
    guess = f" Did you mean '{close[0]}'?" if close else ""
    return (f"'{word}' is not a loragui command.{guess} Commands: {', '.join(COMMANDS)} "
            "(loragui COMMAND --help); without a command, loragui opens the window")


def window(argv: Sequence[str] | None = None) -> int:
    """The ``loragui-gui`` program: the window and its options only (no console on Windows)."""
    return _open_window(list(sys.argv[1:] if argv is None else argv))


def _open_window(argv: list[str]) -> int:
    from .gui.platform_check import platform_problem

    # Before any Qt library loads: a plugin that cannot load would abort the program in Qt.
    env = {"QT_QPA_PLATFORM": "offscreen", **os.environ} if "--self-test" in argv else os.environ
    problem = platform_problem(env, argv)
    if problem:
        return fail(problem)
    try:
        from .gui.app import main as gui_main
    except ImportError as exc:
        return fail(f"the window cannot open: {exc}. Install the GUI requirements "
                     "(pip install loragui), or use the command line: loragui --help")
    return gui_main(argv)


def cmd_predict(args: argparse.Namespace) -> int:
    from .engine.predict import predict_folder

    if args.min_size and not args.objects:
        return fail("--min-size applies to objects: add --objects")
    progress = Progress(sys.stderr)
    written = 0
    try:
        for ev in predict_folder(args.images, args.out, base=args.base, adapter=args.adapter,
                                 device=args.device, force=args.force, overwrite=args.overwrite,
                                 objects=args.objects, min_size=args.min_size):
            if ev.tiles:  # a large image, tile by tile
                progress.bar(ev.tile, ev.tiles, before=f"image {ev.done + 1}/{ev.total}",
                             after=ev.message)
            elif ev.message.startswith(("skipped", "warning")) or ev.done == 0:
                progress.line(ev.message)
            else:
                written += 1
                progress.bar(ev.done, ev.total, after=ev.message)
    finally:
        progress.close()
    progress.line(f"wrote {written} mask(s) to {args.out}")
    if args.objects:
        progress.line(f"wrote their objects to {Path(args.out) / 'objects'}, objects.csv and "
                      "counts.csv")
    return 0


def _write_onnx(source: str, dest: str, *, base: str | None, force: bool, opset: int = 17,
                overwrite: bool = False) -> None:
    from .engine.onnx_export import check_onnx, export_model_onnx, onnxruntime_available

    path = export_model_onnx(source, dest, base=base, force=force, opset=opset, on_warning=warn,
                             overwrite=overwrite)
    say(f"wrote {path} (ONNX opset {opset}; dynamic batch, height and width)")
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
    from .engine.onnx_export import ONNX_FORMAT
    from .engine.outputs import FILE, OutputRefused, check_output, model_inputs

    if args.onnx:  # both destinations are checked before either is written
        if os.path.abspath(args.onnx) == os.path.abspath(args.out):
            raise OutputRefused("--onnx and --out name the same file; give two file names")
        check_output(args.onnx, FILE, model_inputs(args.adapter, args.base), flag="--onnx",
                     overwrite=args.overwrite, replaces=ONNX_FORMAT)
    path = merge_adapter_file(args.base, args.adapter, args.out, force=args.force,
                              on_warning=warn, overwrite=args.overwrite)
    say(f"wrote {path}")
    if args.onnx:
        _write_onnx(str(path), args.onnx, base=None, force=False, overwrite=args.overwrite)
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
        say(f"{key}: {value}")
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
        _write_onnx(args.path, args.out, base=args.base, force=args.force, opset=args.opset,
                    overwrite=args.overwrite)
        return 0
    if kind != "adapter":
        raise LoraGuiError(f"{args.path} is a {kind}, not an adapter: add --onnx to export it "
                           "as ONNX")
    path = export_adapter(args.path, args.out, args.single_file, peft_compatible=args.peft,
                          base=args.base, force=args.force, overwrite=args.overwrite)
    say(f"wrote {path}")
    loadable, _, note = adapter_peft_status(load_adapter(path))
    if not loadable:
        say(f"note: {note}", sys.stderr)
    elif args.single_file:
        print("note: PEFT loads folders; export without --single-file for "
              "PeftModel.from_pretrained", file=sys.stderr)
    return 0


COMMANDS = {"train": cmd_train, "evaluate": cmd_evaluate, "predict": cmd_predict,
            "merge": cmd_merge, "info": cmd_info, "export": cmd_export, "runs": cmd_runs}

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
