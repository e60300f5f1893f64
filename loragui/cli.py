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
import contextlib
import json
import os
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
    _record_given_options(t)  # --config FILE: options given on the command line win
    t.add_argument("--config", metavar="FILE",
                   help="JSON file of training settings (TrainConfig fields, as the window "
                        "writes RUN/config.json); options given as well override it")
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
    t.add_argument("--whole-lr-scale", type=float, default=d.whole_lr_scale,
                   help="learning rate of the weights trained whole (biases, --train-modules) "
                        f"as a share of --lr (default {d.whole_lr_scale:g})")
    t.add_argument("--crop-size", type=int, default=d.crop_size,
                   help="side of the random training crops; default 0: auto (256 on GPUs, 128 on CPUs)")
    t.add_argument("--val-fraction", type=float, default=d.val_fraction,
                   help=f"share of pairs held out for validation (default {d.val_fraction:g})")
    t.add_argument("--seed", type=int, default=d.seed, help="seed for the split and the crops")
    t.add_argument("--width", type=int, default=d.width, help="--full without --base: first-level channels")
    t.add_argument("--depth", type=int, default=d.depth, help="--full without --base: poolings")
    t.add_argument("--resume", action="store_true", help="continue the run in OUT from its checkpoint")
    t.add_argument("--devices", metavar="LIST",
                   help="data-parallel training in one process per device, through torchrun: "
                        "all (every CUDA GPU), a list such as cuda:0,cuda:1, or cpu,cpu (gloo; "
                        "for tests). --batch-size is per device; the peak --lr is scaled by "
                        "the square root of the number of devices")
    t.add_argument("--events", choices=["text", "jsonl"], default="text",
                   help="jsonl: print one JSON event per line (for other programs); each "
                        "epoch's preview images go to OUT/previews/epoch_NNNN.npz, named in "
                        "the line")

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


class _GivenStore(argparse._StoreAction):
    def __call__(self, parser, namespace, values, option_string=None):
        super().__call__(parser, namespace, values, option_string)
        _mark_given(namespace, self.dest)


class _GivenStoreTrue(argparse._StoreTrueAction):
    def __call__(self, parser, namespace, values, option_string=None):
        super().__call__(parser, namespace, values, option_string)
        _mark_given(namespace, self.dest)


def _mark_given(namespace: argparse.Namespace, dest: str) -> None:
    given = getattr(namespace, "given_options", None)
    if given is None:
        given = set()
        namespace.given_options = given
    given.add(dest)


def _record_given_options(parser: argparse.ArgumentParser) -> None:
    """Options added to ``parser`` afterwards note themselves in ``args.given_options``
    when given on the command line (a value equal to the default included)."""
    parser.register("action", None, _GivenStore)
    parser.register("action", "store", _GivenStore)
    parser.register("action", "store_true", _GivenStoreTrue)


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
        status = COMMANDS[args.command](args)
    except LoraGuiError as exc:
        status = EXIT_USAGE if _other_rank() else _fail(str(exc))  # rank 0 says it once
    except KeyboardInterrupt:
        print("\nloragui: interrupted", file=sys.stderr)
        status = 130
    if os.environ.get("LORAGUI_LAUNCH_STATUS"):  # started by --devices: rank 0 has reported
        from .engine.distributed import record_status

        record_status(status)
    return status


def _other_rank() -> bool:
    """A process of a multi-process run (torchrun) other than rank 0."""
    return os.environ.get("WORLD_SIZE", "1") not in ("", "0", "1") and \
        os.environ.get("RANK", "0") != "0"


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
        from .engine.resources import bundled_sample_dirs

        dirs = bundled_sample_dirs()
        if dirs is None:
            raise LoraGuiError("no sample dataset is bundled with this installation")
        args.images, args.masks = map(str, dirs)
        _mark_given(args, "images")
        _mark_given(args, "masks")
    flags = dict(
        images=args.images, masks=args.masks, out=args.out, base=args.base, full=args.full,
        rank=args.rank, alpha=args.alpha, rslora=args.rslora, dropout=args.dropout,
        targets=[t.strip() for t in args.targets.split(",") if t.strip()],
        train_bias=not args.no_train_bias,
        train_modules=[m.strip() for m in args.train_modules.split(",") if m.strip()], epochs=args.epochs, steps=args.steps,
        steps_per_epoch=args.steps_per_epoch, batch_size=args.batch_size, lr=args.lr,
        whole_lr_scale=args.whole_lr_scale,
        crop_size=args.crop_size, val_fraction=args.val_fraction, seed=args.seed,
        device=args.device, resume=args.resume, width=args.width, depth=args.depth)
    if args.config:  # the file's settings, then the options given on the command line
        given = getattr(args, "given_options", set())
        values = _read_train_config(args.config)
        values |= {k: v for k, v in flags.items() if _FLAG_DEST.get(k, k) in given}
    else:
        values = flags
    if not values["images"] or not values["masks"]:
        raise LoraGuiError("give --images DIR and --masks DIR (or --sample)")
    for flag, value in (("--images", values["images"]), ("--masks", values["masks"])):
        if not Path(value).is_dir():
            what = "is a file, not a folder" if Path(value).exists() else "no such folder"
            raise LoraGuiError(f"{flag} {value}: {what}")
    config = TrainConfig.from_dict(values)
    if getattr(args, "devices", None):  # several devices: torchrun runs this command in each
        launched = _train_on_devices(args, config)
        if launched is not None:
            return launched

    stop = threading.Event()

    def on_sigint(signum, frame):  # first Ctrl-C: stop after this step; second: abort
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        if not _other_rank():
            print("\nloragui: stopping after the current step (Ctrl-C again to abort)",
                  file=sys.stderr)

    def on_sigterm(signum, frame):  # logout / shutdown: stop after this step, checkpoint kept
        stop.set()

    previous = previous_term = previous_break = None
    # Installed before the engine (and torch) is imported: a stop sent by the window
    # while this process starts is not lost. SIGBREAK: the window's CTRL_BREAK_EVENT (Windows).
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGINT, on_sigint)
        previous_term = signal.signal(signal.SIGTERM, on_sigterm)
        if hasattr(signal, "SIGBREAK"):
            previous_break = signal.signal(signal.SIGBREAK, on_sigterm)
    out = _Printer()
    status = 0
    reader_gone = False  # jsonl: the program reading the lines has gone
    try:
        from .engine.train import run_training

        for ev in run_training(config, stop):
            if args.events == "jsonl":
                if isinstance(ev, EpochEvent) and ev.previews:
                    previews, ev.previews = ev.previews, []  # arrays: to a file, not the line
                    ev.previews_file = _write_previews_file(config.out, ev.epoch, previews)
                if reader_gone:
                    continue
                try:
                    print(json.dumps(event_to_dict(ev)), flush=True)
                except (BrokenPipeError, OSError):  # the window went away: stop, keep the best
                    reader_gone = True
                    stop.set()
                    with contextlib.suppress(OSError, ValueError):  # what is left goes nowhere
                        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
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
        if previous_break is not None:
            signal.signal(signal.SIGBREAK, previous_break)
    return status


def _train_on_devices(args: argparse.Namespace, config) -> int | None:
    """``--devices``: run this ``train`` command in one process per device through
    torchrun and return the exit status; None when one device is listed (then
    ``config.device`` is set and this process trains alone)."""
    from .engine.distributed import in_torchrun, launch, parse_devices
    from .engine.errors import LoraGuiError

    if in_torchrun():
        raise LoraGuiError("--devices starts its own processes; under torchrun leave it out "
                           "(each process uses the GPU of its local rank)")
    if "device" in getattr(args, "given_options", ()) and args.device != "auto":
        raise LoraGuiError("give --devices or --device, not both")
    plan = parse_devices(args.devices)
    if plan.count == 1:
        config.device = plan.names[0]
        return None
    result = launch(plan, _forwarded_train_options(args))
    if result.interrupted and result.status is None:
        print("loragui: stopped waiting; the training processes stop after their current step",
              file=sys.stderr)
    if result.status is not None:  # rank 0 reported the outcome (and printed it)
        died = {r: how for r, how in result.failures.items() if r != 0}
        for r, how in sorted(died.items()):  # say which process, when one died
            print(f"loragui: training process {r} of {plan.count} {how}", file=sys.stderr)
        return 1 if died and result.status == 0 else result.status
    if result.interrupted and not result.failures:
        return 130
    # Rank 0 never reported: it was killed, or crashed before it could.
    from .engine.train import find_resumable

    failures = result.failures
    if any("SIGTERM" not in h for h in failures.values()):  # torchrun's own SIGTERMs aside
        failures = {r: h for r, h in failures.items() if "SIGTERM" not in h}
    how = "; ".join(f"process {r} of {plan.count} {h}" for r, h in sorted(failures.items()))
    message = (f"a training process ended unexpectedly ({how or 'no outcome was reported'})"
               " and the run stopped.")
    info = find_resumable(config.out)
    if info is not None:
        message += (f" The checkpoint from step {info['step']} of {info['total_steps']} is "
                    "intact: resume the run (loragui train --resume, or Resume in the window) "
                    "to continue from there.")
    adapter = Path(config.out) / ("model.safetensors" if config.full else "adapter")
    if args.events == "jsonl":
        from .engine.events import RunFailed, event_to_dict

        event = RunFailed(message, details=how, run_dir=config.out,
                          output=str(adapter) if adapter.exists() else None)
        with contextlib.suppress(OSError):
            print(json.dumps(event_to_dict(event)), flush=True)
    else:
        print(f"loragui: error: {message}", file=sys.stderr)
    return 1


def _forwarded_train_options(args: argparse.Namespace) -> list[str]:
    """The ``train`` options as given on this command line (the resolved --images and
    --masks for --sample), without --devices and --device, for each process."""
    parser = build_parser()
    train = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    given = getattr(args, "given_options", None)
    out: list[str] = []
    for action in train.choices["train"]._actions:
        dest = action.dest
        if not action.option_strings or dest in ("help", "devices", "device", "sample"):
            continue
        value = getattr(args, dest, None)
        if (dest not in given) if given is not None else (value == action.default):
            continue
        if isinstance(action, argparse._StoreTrueAction):
            if value:
                out.append(action.option_strings[0])
        elif value is not None:
            out += [action.option_strings[0], str(value)]
    return out


# TrainConfig field -> the train option's dest, where they differ.
_FLAG_DEST = {"train_bias": "no_train_bias"}


def _read_train_config(path: str) -> dict:
    """TrainConfig values from a JSON file (``TrainConfig.to_dict()``): defaults for what
    it leaves out; LoraGuiError for a file that cannot be read, an unknown setting or a
    value of the wrong type."""
    import dataclasses

    from .engine.config import TrainConfig
    from .engine.errors import LoraGuiError

    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise LoraGuiError(f"--config {path}: cannot read it ({exc.strerror or exc})") from None
    except ValueError as exc:
        raise LoraGuiError(f"--config {path}: not a JSON file ({exc})") from None
    if not isinstance(data, dict):
        raise LoraGuiError(f"--config {path}: expected a JSON object of settings")
    kinds = {"str": str, "int": int, "float": (int, float), "bool": bool, "None": type(None),
             "list[str]": list}
    allowed = {f.name: tuple(kinds[t.strip()] for t in str(f.type).split("|"))
               for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise LoraGuiError(f"--config {path}: unknown setting(s) {', '.join(unknown)}")
    for key, value in data.items():
        ok = isinstance(value, allowed[key]) and not (
            isinstance(value, bool) and bool not in allowed[key])
        if isinstance(value, list):
            ok = ok and all(isinstance(v, str) for v in value)
        if not ok:
            raise LoraGuiError(f"--config {path}: {key} cannot be {json.dumps(value)}")
    return TrainConfig().to_dict() | data


def _write_previews_file(out: str, epoch: int, previews: list) -> str | None:
    """``OUT/previews/epoch_NNNN.npz`` (written atomically); None, with a warning on
    stderr, when it cannot be written (the run goes on without previews)."""
    from .engine.events import write_previews

    path = Path(out).absolute() / "previews" / f"epoch_{epoch:04d}.npz"
    try:
        return str(write_previews(path, previews))
    except Exception as exc:  # noqa: BLE001 - previews are not worth stopping a run for
        print(f"warning: the previews of epoch {epoch} were not written: {exc}", file=sys.stderr)
        return None


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
                              on_warning=_warn)
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
