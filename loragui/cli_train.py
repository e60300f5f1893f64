"""``loragui train``: its options, made from TrainConfig's fields, and the command.

Every TrainConfig field has an option (:data:`~loragui.engine.config.TRAIN_OPTIONS`).
The options default to ``argparse.SUPPRESS``, so the parsed namespace holds only
what was typed: those settings override a ``--config`` file, and they are what a
``--devices`` launch forwards to each process.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from .engine.config import (
    TRAIN_OPTIONS,
    TrainConfig,
    check_settings,
    check_values,
    train_options,
)
from .terminal import EXIT_USAGE, Progress, eta, fail, fmt, say

# Set in the processes that ``--devices`` starts (engine.launcher.ENV_STATUS).
LAUNCHED_ENV = "LORAGUI_LAUNCH_STATUS"


def add_train_parser(sub: Any) -> argparse.ArgumentParser:
    """The ``train`` sub-command's parser, in ``sub`` (``add_subparsers()``'s result)."""
    t = sub.add_parser("train", help="train an adapter (or a base model with --full)",
                       description="Train a LoRA adapter on a folder of images and a folder of "
                                   "masks (same file stems).")
    t.add_argument("--config", metavar="FILE",
                   help="JSON file of training settings (TrainConfig fields, as the window "
                        "writes RUN/config.json); options given as well override it")
    for option in TRAIN_OPTIONS:
        kwargs: dict[str, Any] = {"dest": option.name, "default": argparse.SUPPRESS,
                                  "help": option.help}
        if option.kind in ("on", "off"):
            kwargs["action"] = "store_true" if option.kind == "on" else "store_false"
        else:
            kwargs["type"] = option.parse if option.kind == "list" else option.type
            kwargs["metavar"] = option.metavar or option.name.upper()
        t.add_argument(option.flag, required=option.required, **kwargs)
        if option.name == "masks":
            t.add_argument("--sample", action="store_true",
                           help="use the bundled sample dataset")
    t.add_argument("--events", choices=["text", "jsonl"], default="text",
                   help="jsonl: print one JSON event per line (for other programs); each "
                        "epoch's preview images go to OUT/previews/epoch_NNNN.npz, named in "
                        "the line")
    return t


def given_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The TrainConfig fields given on the command line (``--sample``: its folders)."""
    given = {o.name: getattr(args, o.name) for o in TRAIN_OPTIONS if hasattr(args, o.name)}
    if args.sample:
        from .engine.errors import LoraGuiError
        from .engine.resources import bundled_sample_dirs

        dirs = bundled_sample_dirs()
        if dirs is None:
            raise LoraGuiError("no sample dataset is bundled with this installation")
        given["images"], given["masks"] = map(str, dirs)
    return given


def forwarded_options(args: argparse.Namespace) -> list[str]:
    """The ``train`` options as given on this command line (the resolved --images and
    --masks for --sample), without --devices and --device, for each process."""
    words = ["--config", args.config] if args.config else []
    words += train_options({k: v for k, v in given_settings(args).items()
                            if k not in ("device", "devices")})
    if args.events != "text":
        words += ["--events", args.events]
    return words


CONFIG_LIMIT = 2**20  # bytes; a settings file is well under a kilobyte


def read_train_config(path: str) -> dict[str, Any]:
    """TrainConfig values from a JSON file (``TrainConfig.to_dict()``): defaults for what
    it leaves out; LoraGuiError for a file that cannot be read safely (a pipe, a device,
    an oversized file, deep nesting), an unknown setting or a value its declaration
    refuses."""
    from .engine.config import SettingError
    from .engine.errors import LoraGuiError
    from .engine.safefile import parse_json, read_file

    data, _ = read_file(Path(path), "--config", limit=CONFIG_LIMIT)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise LoraGuiError(f"--config {path}: not a JSON file (not UTF-8 text)") from None
    values = parse_json(text, f"--config {path}")
    try:
        check_values(values)
    except SettingError as exc:
        raise LoraGuiError(f"--config {path}: {exc.name} {exc.reason}") from None
    except ValueError as exc:
        raise LoraGuiError(f"--config {path}: {exc}") from None
    return TrainConfig().to_dict() | values


def other_rank() -> bool:
    """A process of a multi-process run (torchrun) other than rank 0."""
    return os.environ.get("WORLD_SIZE", "1") not in ("", "0", "1") and \
        os.environ.get("RANK", "0") != "0"


def train_config(args: argparse.Namespace) -> TrainConfig:
    """The settings to train with: the --config file's (or the defaults), then the
    options given; LoraGuiError for missing or unusable folders."""
    from .engine.errors import LoraGuiError

    given = given_settings(args)
    values = (read_train_config(args.config) if args.config else TrainConfig().to_dict()) | given
    if not values["images"] or not (values["masks"] or values["corrections"]):
        raise LoraGuiError("give --images DIR and --masks DIR (or --sample); --masks may be "
                           "left out when --corrections DIR holds the masks")
    for flag, value in (("--images", values["images"]), ("--masks", values["masks"]),
                        ("--corrections", values["corrections"])):
        if value and not Path(value).is_dir():
            what = "is a file, not a folder" if Path(value).exists() else "no such folder"
            raise LoraGuiError(f"{flag} {value}: {what}")
    config = TrainConfig.from_dict(values)
    check_settings(config)  # every value within its declared bounds, before any work
    if config.devices and os.environ.get(LAUNCHED_ENV):
        config.devices = None  # this process is one of those the devices asked for
    return config


def cmd_train(args: argparse.Namespace) -> int:
    config = train_config(args)
    if config.devices:  # several devices: torchrun runs this command in each
        launched = train_on_devices(args, config)
        if launched is not None:
            return launched

    stop = threading.Event()

    def on_sigint(signum, frame):  # first Ctrl-C: stop after this step; second: abort
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        if not other_rank():
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
    try:
        from .engine.train import run_training

        if args.events == "jsonl":
            return _write_events(run_training(config, stop), config, stop)
        return _print_events(run_training(config, stop))
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
        if previous_term is not None:
            signal.signal(signal.SIGTERM, previous_term)
        if previous_break is not None:
            signal.signal(signal.SIGBREAK, previous_break)


def _write_events(events, config: TrainConfig, stop: threading.Event) -> int:
    """``--events jsonl``: every event as a JSON line; the exit status."""
    from .engine.events import JsonLinesWriter, RunFailed

    writer = JsonLinesWriter(config.out)
    status = 0
    for ev in events:
        writer.write(ev)
        if writer.reader_gone:  # the window went away: stop, keep the best
            stop.set()
        if isinstance(ev, RunFailed):
            status = EXIT_USAGE if not ev.details else 1
    return status


def _print_events(events) -> int:
    """Text for a person: a line per epoch, a bar over the steps on a terminal; the
    exit status."""
    from .engine.events import EpochEvent, LogEvent, RunFailed, RunFinished, RunStarted, StepEvent

    out = Progress()
    status = 0
    dice = ""  # the last validation Dice, shown beside the bar
    start = "base model alone"  # what epoch 0 validates
    try:
        for ev in events:
            if isinstance(ev, RunStarted):
                if ev.config.get("init_adapter"):
                    start = "the initial adapter (--init-adapter)"
                out.line(f"training {ev.mode} on {ev.device}: {ev.n_train} train / {ev.n_val} val "
                         f"pairs, {ev.total_steps} steps ({ev.epochs} epochs × {ev.steps_per_epoch}), "
                         f"{ev.trainable_params:,} trainable of {ev.total_params:,} parameters"
                         + (f", resuming at step {ev.start_step}" if ev.start_step else ""))
            elif isinstance(ev, StepEvent):
                out.bar(ev.step, ev.total_steps, f"epoch {ev.epoch}",
                        f"loss {ev.loss:.4f}{dice} {ev.images_per_s:.1f} img/s ETA {eta(ev.eta_s)}")
            elif isinstance(ev, EpochEvent):
                if ev.dice is not None:
                    dice = f" Dice {ev.dice:.3f}"
                if ev.epoch == 0:
                    out.line(f"{start}: val Dice {fmt(ev.dice)} IoU {fmt(ev.iou)}")
                else:
                    out.line(f"epoch {ev.epoch}/{ev.epochs} step {ev.step}: train loss "
                             f"{fmt(ev.train_loss)} val loss {fmt(ev.val_loss)} Dice "
                             f"{fmt(ev.dice)} IoU {fmt(ev.iou)} at {eta(ev.elapsed)}, validated in "
                             f"{ev.seconds:.0f} s"
                             + (" *best" if ev.is_best else ""))
            elif isinstance(ev, LogEvent):
                out.line(("warning: " if ev.level == "warning" else "") + ev.message)
            elif isinstance(ev, RunFinished):
                out.close()
                verb = "stopped" if ev.stopped else "finished"
                out.line(f"{verb} after {ev.steps} steps in {ev.seconds:.1f} s; best val Dice "
                         f"{fmt(ev.best_dice)} (epoch {ev.best_epoch}), base model {fmt(ev.base_dice)}")
                if ev.early_stopped:
                    out.line(f"ended early: {ev.reason} (--no-early-stop trains to the maximum)")
                out.line(f"wrote {ev.output}")
                if ev.stopped:
                    out.line(f"to continue: loragui train --resume --out {ev.run_dir}")
            elif isinstance(ev, RunFailed):
                out.close()
                msg = ev.message + (f"\nthe best result so far is kept in {ev.output}" if ev.output else "")
                if ev.details:  # a bug or an environment fault: its details go to a log
                    from .errorlog import write_details

                    path = write_details(ev.details)
                    say(f"loragui: error: {msg}" + (f"\nthe details are in {path}"
                                                   if path is not None else ""), sys.stderr)
                    status = 1
                else:
                    status = fail(msg)
    finally:
        out.close()
    return status


def train_on_devices(args: argparse.Namespace, config: TrainConfig) -> int | None:
    """Several devices: run this ``train`` command in one process per device through
    torchrun and return the exit status; None when one device is listed (then
    ``config.device`` is set and this process trains alone)."""
    from .engine.errors import LoraGuiError
    from .engine.launcher import in_torchrun, launch, parse_devices

    if in_torchrun():
        raise LoraGuiError("--devices starts its own processes; under torchrun leave it out "
                           "(each process uses the GPU of its local rank)")
    if given_settings(args).get("device", "auto") != "auto":
        raise LoraGuiError("give --devices or --device, not both")
    plan = parse_devices(config.devices or "")
    if plan.count == 1:
        config.device, config.devices = plan.names[0], None
        return None
    result = launch(plan, forwarded_options(args))
    if result.interrupted and result.status is None:
        print("loragui: stopped waiting; the training processes stop after their current step",
              file=sys.stderr)
    if result.status is not None:  # rank 0 reported the outcome (and printed it)
        died = {r: how for r, how in result.failures.items() if r != 0}
        for r, how in sorted(died.items()):  # say which process, when one died
            say(f"loragui: training process {r} of {plan.count} {how}", sys.stderr)
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
        from .engine.events import JsonLinesWriter, RunFailed

        JsonLinesWriter(config.out).write(RunFailed(
            message, details=how, run_dir=config.out,
            output=str(adapter) if adapter.exists() else None))
    else:
        say(f"loragui: error: {message}", sys.stderr)
    return 1
