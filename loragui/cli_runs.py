"""``loragui runs``: the history of runs, and runs side by side.

    loragui runs [--json] [--dir DIR]            one line per run, newest first
    loragui runs compare RUN RUN... [--json]     their settings side by side (* differs)

A RUN is a run folder, or the name of one under the runs folder (``--dir``).
Rows come from :mod:`loragui.engine.runs`, which reads ``run.json`` only.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .engine.errors import LoraGuiError
from .terminal import fmt

COLUMNS = ("name", "date", "status", "data", "pairs", "base", "device", "duration", "base Dice",
           "best Dice", "changed settings")


def add_runs_parser(sub: argparse._SubParsersAction) -> None:
    r = sub.add_parser("runs", help="list the runs, or compare some of them",
                       description="List the run folders under the runs folder, newest first "
                                   "(reading their run.json only), or, with 'compare RUN RUN...', "
                                   "print their settings side by side with the differing ones "
                                   "marked *.")
    _add_common(r)
    actions = r.add_subparsers(dest="runs_action", metavar="ACTION")
    c = actions.add_parser("compare", help="settings of two runs or more side by side",
                           description="The settings of the runs side by side; * marks those "
                                       "that differ.")
    c.add_argument("run", nargs="+", metavar="RUN",
                   help="run folders, or names of folders under the runs folder")
    _add_common(c)


def _add_common(p: argparse.ArgumentParser) -> None:
    # SUPPRESS: given before or after "compare", the option counts once
    p.add_argument("--dir", metavar="DIR", default=argparse.SUPPRESS,
                   help="runs folder (default: the one the window and loragui train use)")
    p.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print JSON")


def cmd_runs(args: argparse.Namespace) -> int:
    from .engine.runs import list_runs, read_run, runs_folder

    given = getattr(args, "dir", None)
    as_json = getattr(args, "json", False)
    root = Path(given) if given else runs_folder()
    if given and not root.is_dir():
        raise LoraGuiError(f"{root} is not a folder: give the folder that holds the run "
                           "folders with --dir.")
    if args.runs_action is None:
        rows = list_runs(root)
        if as_json:
            print(json.dumps([r.to_json() for r in rows], indent=2))
        elif not rows:
            print(f"no runs in {root}")
        else:
            _print_table([_cells(r) for r in rows], COLUMNS)
            for r in rows:
                if r.problem:
                    print(f"{r.name}: {r.problem}")
        return 0
    if len(args.run) < 2:
        raise LoraGuiError("compare needs two runs or more: loragui runs compare RUN RUN...")
    rows = [read_run(_find(run, root)) for run in args.run]
    return _print_comparison(rows, as_json)


def _find(run: str, root: Path) -> Path:
    from .engine.runs import is_run_folder

    for candidate in (Path(run), root / run):
        if candidate.is_dir() and is_run_folder(candidate):
            return candidate
    raise LoraGuiError(f"{run} is not a run folder, nor the name of one in {root}: "
                       "'loragui runs' lists them.")


def _print_comparison(rows, as_json: bool) -> int:
    from .engine.runcompare import compare_settings

    table = compare_settings(rows)
    if as_json:
        print(json.dumps({"runs": [r.to_json() for r in rows],
                          "settings": [{"name": s.name, "values": s.values, "differs": s.differs}
                                       for s in table]}, indent=2))
        return 0
    header = ("setting", *[r.name for r in rows])
    lines = [("status", *[r.status for r in rows]),
             ("base Dice", *[fmt(r.base_dice) for r in rows]),
             ("best Dice", *[fmt(r.best_dice) for r in rows])]
    lines += [(("* " if s.differs else "  ") + s.name, *[_value(v) for v in s.values])
              for s in table]
    _print_table(lines, header)
    for r in rows:
        if r.problem:
            print(f"{r.name}: {r.problem}")
    return 0


def _cells(r) -> tuple[str, ...]:
    from .engine.runs import dataset_name, duration

    data = dataset_name(r.images) if r.images else ""
    return (r.name, r.date[:16].replace("T", " "), r.status, data,
            "" if r.pairs is None else str(r.pairs), r.base, r.device, duration(r.seconds),
            fmt(r.base_dice), fmt(r.best_dice), r.changed_text())


def _value(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, list):
        return ",".join(map(str, v)) or "none"
    return str(v)


def _print_table(lines, header) -> None:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *lines, strict=True)]
    for line in (header, *lines):
        print("  ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())
