"""The command line's words: a mistyped command is named and answered in one line (the
window opens only with no arguments or its own options), help for every option, numbers
rounded, the validation time called so."""

from __future__ import annotations

import pytest

from loragui import cli
from loragui.cli_train import _print_events
from loragui.engine.events import EpochEvent


@pytest.fixture
def window_opened(monkeypatch):
    """Records the arguments the window would have been opened with (it is not opened)."""
    calls: list[list[str]] = []
    monkeypatch.setattr(cli, "_open_window", lambda argv: calls.append(argv) or 0)
    return calls


@pytest.mark.parametrize("argv, guess", [
    (["trian", "--images", "x"], "Did you mean 'train'?"),
    (["evalute"], "Did you mean 'evaluate'?"),
    (["--sample", "predcit"], "Did you mean 'predict'?"),
    (["xyzzy"], ""),
])
def test_a_mistyped_command_names_the_closest_and_exits_2(argv, guess, window_opened, capsys):
    status = cli.main(argv)
    out, err = capsys.readouterr()
    assert status == 2 and not window_opened
    assert len(err.strip().splitlines()) == 1 and out == ""
    assert err.startswith(f"loragui: error: '{[a for a in argv if not a.startswith('-')][0]}' "
                          "is not a loragui command.")
    assert guess in err
    assert "Commands: train, evaluate, predict, merge, info, export" in err


@pytest.mark.parametrize("argv", [
    [], ["--sample"], ["--self-test"], ["--images", "train", "--masks", "m"],
    ["-platform", "offscreen"], ["--sample", "-style", "fusion"],
])
def test_only_no_arguments_or_the_windows_options_open_the_window(argv, window_opened):
    assert cli.main(argv) == 0
    assert window_opened == [argv]


def test_first_word_skips_option_values():
    assert cli.first_word(["--images", "predict", "--masks", "m"]) is None
    assert cli.first_word(["--sample", "info", "x"]) == "info"
    assert cli.first_word([]) is None


def test_every_evaluate_option_has_help(capsys):
    with pytest.raises(SystemExit):
        cli.main(["evaluate", "--help"])
    text = capsys.readouterr().out
    options: list[list[str]] = []  # each option's lines in the help: its words, then its help
    current = None
    for line in text.splitlines():
        if line.startswith("  -"):
            current = [line.strip()]
            options.append(current)
        elif current is not None and line.startswith(" " * 6):
            current.append(line.strip())  # its help, on the next lines
        else:
            current = None
    assert len(options) > 5
    for first, *rest in options:
        words, _, help_text = first.partition("  ")
        assert help_text.strip() or rest, f"{words} has no help"


def _epoch(**kw) -> EpochEvent:
    values = dict(epoch=1, epochs=4, step=5, train_loss=0.51234567, val_loss=0.4412345,
                  dice=0.6900094811116199, iou=0.5123456789, dice_pooled=0.7, iou_pooled=0.6,
                  best_epoch=1, best_dice=0.6900094811116199, is_best=True, seconds=1.4)
    values.update(kw)
    return EpochEvent(**values)


def test_the_epoch_line_rounds_and_names_the_validation_time(capsys):
    assert _print_events([_epoch()]) == 0
    out = capsys.readouterr().out
    assert "Dice 0.6900 IoU 0.5123 at 0:00:00, validated in 1 s *best" in out
    assert "0.6900094811116199" not in out
