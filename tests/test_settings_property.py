"""A property over the training settings, as flags or as a --config file: every
combination either trains a tiny run whose adapter loads onto its base, or is
refused before training with exit 2 and one line; never a traceback.

The command runs in this process (``loragui.cli.main``): a traceback would fail the
test as the exception it is, and a run that grew without bound would take the test
process with it. The values mix sensible ones with hostile ones (NaN, infinities,
out-of-range numbers, names that match nothing) on a tiny model and tiny images.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from loragui.cli import main
from loragui.engine.adapter_plan import apply_adapter
from loragui.engine.adapters import load_adapter
from loragui.engine.basemodel import load_model
from loragui.engine.config import OPTIONS_BY_NAME
from tests.messy import make_tiny_dataset
from tests.tiny import make_tiny_base

ROOT = Path(tempfile.mkdtemp(prefix="loragui-settings-"))
IMAGES, MASKS = make_tiny_dataset(ROOT / "data", n=4, size=24)
BASE = make_tiny_base(ROOT / "base.safetensors")


BAD_FLOATS = st.sampled_from([math.nan, math.inf, -math.inf, -1.0, 1e300])
# Each field: (values it takes, values it may be tried with besides).
FIELDS = {
    "rank": (st.integers(1, 24), st.sampled_from([0, -2, 5000, 2**64])),
    "alpha": (st.floats(0.5, 40), st.one_of(BAD_FLOATS, st.just(0.0))),
    "dropout": (st.floats(0, 0.9), st.one_of(BAD_FLOATS, st.sampled_from([1.0, 1.5]))),
    "steps": (st.integers(1, 3), st.sampled_from([0, -1])),
    "batch_size": (st.integers(1, 3), st.sampled_from([0, -1])),
    "crop_size": (st.integers(0, 40), st.sampled_from([-3, 10**6])),
    "seed": (st.integers(0, 2**63 - 1), st.sampled_from([-1, 2**63, 2**64 + 1])),
    "weight_decay": (st.floats(0, 1), BAD_FLOATS),
    "warmup_fraction": (st.floats(0, 1), st.one_of(BAD_FLOATS, st.just(1.5))),
    "val_fraction": (st.floats(0, 0.75), st.one_of(BAD_FLOATS, st.just(1.0))),
    "lr": (st.floats(1e-4, 5e-2), st.one_of(BAD_FLOATS, st.just(0.0))),
    "targets": (st.sampled_from([["*"], ["down.*"], ["down.*", "head"]]),
                st.sampled_from([["nosuch"], ["head"]])),
    "train_modules": (st.sampled_from([["head"], [], ["down"]]), st.just(["nosuch"])),
    "rslora": (st.booleans(), st.nothing()),
}


@st.composite
def training_settings(draw) -> dict:
    """Some fields set to values they take, and at most two to values they may not."""
    values = draw(st.fixed_dictionaries({}, optional={k: ok for k, (ok, _) in FIELDS.items()}))
    for name in draw(st.lists(st.sampled_from(sorted(FIELDS)), max_size=2, unique=True)):
        values[name] = draw(st.one_of(FIELDS[name][1], FIELDS[name][0]))
    return values


def _run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = main(argv)
        except SystemExit as exc:  # argparse's own refusals
            status = exc.code
    return status, out.getvalue(), err.getvalue()


@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
@given(values=training_settings(), as_file=st.booleans())
def test_every_combination_trains_or_is_refused_in_one_line(values, as_file):
    run = Path(tempfile.mkdtemp(dir=ROOT)) / "run"
    argv = ["train", "--images", str(IMAGES), "--masks", str(MASKS), "--base", str(BASE),
            "--device", "cpu", "--out", str(run), "--steps-per-epoch", "1", "--previews", "0"]
    if "steps" not in values:
        argv += ["--steps", "1"]
    if as_file:
        path = run.parent / "settings.json"
        path.write_text(json.dumps(values))  # NaN and Infinity as JSON writes them
        argv += ["--config", str(path)]
    else:
        for name, value in values.items():
            option = OPTIONS_BY_NAME[name]
            if option.kind == "on":
                argv += [option.flag] if value else []
            elif option.kind == "list":
                argv += [option.flag, ",".join(value)]
            else:
                argv += [option.flag, str(value)]
    status, out, err = _run(argv)
    if status == 0:
        model, info = load_model(BASE)
        apply_adapter(model, load_adapter(run / "adapter"), info)
        event("trained")
        return
    event("refused")
    lines = err.strip().splitlines()
    assert status == 2, (values, status, out, err)
    assert len(lines) == 1 and lines[0].startswith("loragui: error: "), (values, err)
    assert "training " not in out and not (run / "adapter").exists(), (values, out)
