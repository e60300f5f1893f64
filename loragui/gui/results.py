"""After training: the base model's Dice beside the adapter's, and what to do next
(export the adapter, export a merged model, predict a folder of new images)."""

from __future__ import annotations

import html

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import (
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QStyle,
    QVBoxLayout,
)

NOT_BETTER_MARGIN = 0.005  # Dice points: a smaller gain counts as "not better"


def verdict(base: float | None, adapted: float | None) -> tuple[str, bool]:
    """(sentence comparing the two Dice scores, True when it is a warning)."""
    if adapted is None:
        return "No validation Dice was measured.", True
    if base is None:
        return f"Validation Dice with the adapter: <b>{adapted:.3f}</b>.", False
    text = (f"Validation Dice: base model <b>{base:.3f}</b> → with the adapter "
            f"<b>{adapted:.3f}</b>")
    if adapted <= base + NOT_BETTER_MARGIN:
        return (text + ". <b>The adapter is not better than the base model.</b> Try more "
                "epochs, a higher learning rate or rank, or check that the masks match the "
                "images."), True
    return text + f" (+{adapted - base:.3f}).", False


class ResultsPanel(QFrame):
    exportAdapter = Signal()
    exportMerged = Signal()
    predictFolder = Signal()
    openRunFolder = Signal()
    cancelPredict = Signal()
    openFolder = Signal(str)

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setAutoFillBackground(True)
        self.setBackgroundRole(QPalette.ColorRole.AlternateBase)
        self.output: str | None = None
        self.is_warning = False

        self.icon = QLabel()
        self.text = QLabel()
        self.text.setWordWrap(True)
        self.text.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        self.text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.peft_label = QLabel()  # whether PEFT can load the adapter (checked in a worker)
        self.peft_label.setWordWrap(True)
        self.peft_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.peft_label.hide()
        self.peft_loadable: bool | None = None
        # A run of several classes: each class's figures beside its colour (show_classes).
        self.classes_label = QLabel()
        self.classes_label.setTextFormat(Qt.TextFormat.RichText)
        self.classes_label.setWordWrap(True)
        self.classes_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.classes_label.hide()

        self.export_button = QPushButton("Export adapter…")
        self.export_button.setToolTip("Save the adapter as a PEFT folder, a single .safetensors "
                                      "file, a PEFT-loadable copy, or ONNX (Ctrl+E)")
        self.merged_button = QPushButton("Export merged model…")
        self.merged_button.setToolTip("Fold the adapter into the base model and save one "
                                      "model file (as fast as the base model)")
        self.predict_button = QPushButton("Predict folder…")
        self.predict_button.setToolTip("Write a mask for every image of a folder with the "
                                       "adapted model")
        self.open_button = QPushButton("Open run folder")
        self.open_button.setToolTip("The run's adapter, metrics.csv and run.json")
        self.export_button.clicked.connect(self.exportAdapter)
        self.merged_button.clicked.connect(self.exportMerged)
        self.predict_button.clicked.connect(self.predictFolder)
        self.open_button.clicked.connect(self.openRunFolder)

        self.predict_bar = QProgressBar()
        self.predict_bar.hide()
        self.predicted: str | None = None  # the folder the last prediction wrote
        self.predicted_label = QLabel()
        self.predicted_label.setWordWrap(True)
        self.predicted_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.predicted_label.hide()
        self.open_predicted = QPushButton("Open folder")
        self.open_predicted.setToolTip("Open the folder of predicted masks")
        self.open_predicted.clicked.connect(lambda: self.predicted and self.openFolder.emit(self.predicted))
        self.open_predicted.hide()
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop predicting (masks already written are kept)")
        self.cancel_button.clicked.connect(self.cancelPredict)
        self.cancel_button.hide()

        top = QHBoxLayout()
        top.addWidget(self.icon)
        texts = QVBoxLayout()
        texts.addWidget(self.text)
        texts.addWidget(self.classes_label)
        texts.addWidget(self.peft_label)
        top.addLayout(texts, 1)
        self.buttons = QGridLayout()
        self._button_columns = 0
        self._flow_buttons()
        predict_row = QHBoxLayout()
        predict_row.addWidget(self.predict_bar, 1)
        predict_row.addWidget(self.cancel_button)
        predict_row.addWidget(self.predicted_label, 1)
        predict_row.addWidget(self.open_predicted)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 6, 8, 6)
        layout.addLayout(top)
        layout.addLayout(self.buttons)
        layout.addLayout(predict_row)

    def _all_buttons(self) -> list[QPushButton]:
        return [self.export_button, self.merged_button, self.predict_button, self.open_button]

    def _flow_buttons(self) -> None:
        """The four buttons in a row, or two rows of two where a row does not fit
        (a small screen, a large scale factor)."""
        buttons = self._all_buttons()
        row_width = sum(b.sizeHint().width() for b in buttons) + 6 * len(buttons) + 16
        columns = 4 if self.isVisible() and self.width() >= row_width else 2
        if columns == self._button_columns:
            return
        self._button_columns = columns
        for b in buttons:
            self.buttons.removeWidget(b)
        for i, b in enumerate(buttons):
            self.buttons.addWidget(b, i // columns, i % columns)
        self.buttons.setColumnStretch(4, 1)

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self._flow_buttons()

    def minimumSizeHint(self):
        """That of two rows of buttons, however they are laid out now: the panel can
        always be narrowed, and then reflows."""
        hint = super().minimumSizeHint()
        pair = max(b.minimumSizeHint().width() for b in self._all_buttons()) * 2 + 40
        return hint.boundedTo(QSize(pair, hint.height())) if self._button_columns == 4 else hint

    def show_running(self, run_dir: str) -> None:
        """While training: where the run is written (the panel keeps its place, so
        the plots are not re-laid out when the result arrives)."""
        self.output = None
        self.is_warning = False
        self.set_peft_status(None, "")
        self.show_classes(None)
        size = self.style().pixelMetric(QStyle.PixelMetric.PM_LargeIconSize)
        icon = self.style().standardIcon(QStyle.StandardPixmap.SP_MessageBoxInformation)
        self.icon.setPixmap(icon.pixmap(size, size))
        self.text.setText(f"Training… The best adapter so far is kept in "
                          f"<code>{html.escape(str(run_dir))}</code>.")
        for b in (self.export_button, self.merged_button, self.predict_button):
            b.setEnabled(False)
        self.show()

    def show_result(self, result) -> None:
        """Show a ``RunFinished`` or a ``RunFailed``."""
        from loragui.engine.events import RunFinished  # (numpy: not imported at start-up)

        self.set_peft_status(None, "")
        self.show_classes(None)  # (the window adds a run of several classes' figures)
        if isinstance(result, RunFinished):
            self.output = result.output or None
            text, warn = verdict(result.base_dice, result.best_dice)
            if result.best_epoch:
                text += f" Best epoch: {result.best_epoch}."
            if result.stopped:
                text = "Training was stopped; the best adapter so far was kept. " + text
            elif result.early_stopped:
                text = (f"Training ended early: {html.escape(result.reason)}. The best adapter "
                        "was kept. " + text)
        else:
            self.output = result.output or None
            text = "<b>Training failed:</b> " + html.escape(result.message)
            if self.output:
                text += " The best adapter before the failure was kept."
            warn = True
        # The technical details of a failure (also in the log), for those who ask.
        self.text.setToolTip(getattr(result, "details", "") or "")
        self.is_warning = warn
        pixmap = QStyle.StandardPixmap.SP_MessageBoxWarning if warn else \
            QStyle.StandardPixmap.SP_DialogApplyButton
        size = self.style().pixelMetric(QStyle.PixelMetric.PM_LargeIconSize)
        self.icon.setPixmap(self.style().standardIcon(pixmap).pixmap(size, size))
        self.text.setText(text)
        has_output = bool(self.output)
        for b in (self.export_button, self.merged_button, self.predict_button):
            b.setEnabled(has_output)
        self.show()

    def show_classes(self, classes: dict[str, dict[str, float]] | None,
                     colours: list[str] | None = None, dice: float | None = None,
                     iou: float | None = None) -> None:
        """Each foreground class's validation Dice and IoU (``classes``: name -> figures,
        the background first, as an EpochEvent carries them) beside a swatch of its
        colour, and their mean (``dice``, ``iou``: the run's figures) in bold. None:
        foreground/background, nothing shown."""
        if not classes or len(classes) < 2:
            self.classes_label.clear()
            self.classes_label.hide()
            return
        colours = list(colours or [])

        def num(v: float | None) -> str:
            return "–" if v is None else f"{v:.3f}"

        # Lines, not a table: a word-wrapped label never widens the panel (its buttons
        # reflow with the panel's width).
        lines = []
        for i, (name, figures) in enumerate(classes.items()):
            if i == 0:
                continue  # the background: high whatever the classes do
            colour = colours[i] if i < len(colours) else None
            swatch = (f"<span style='color:{colour}; background:#333'>&nbsp;■&nbsp;</span> "
                      if colour else "")
            lines.append(f"{swatch}{html.escape(name)}: Dice {num(figures.get('dice'))}, "
                         f"IoU {num(figures.get('iou'))}")
        lines.append(f"<b>mean of the classes: Dice {num(dice)}, IoU {num(iou)}</b>")
        self.classes_label.setText("Per class at the best epoch (background left out):<br>"
                                   + "<br>".join(lines))
        self.classes_label.show()

    def set_peft_status(self, loadable: bool | None, note: str) -> None:
        """Say whether ``peft.PeftModel.from_pretrained`` can load the adapter as written."""
        self.peft_loadable = loadable
        if loadable is None:
            self.peft_label.hide()
            return
        if loadable:
            text = "<b>PEFT:</b> loadable as is with <code>peft.PeftModel.from_pretrained</code>."
        else:
            text = ("<b>PEFT:</b> not loadable as is (LoRA on ConvTranspose2d layers, which PEFT "
                    "lacks). <i>Export adapter… → PEFT-loadable adapter folder</i> writes a copy "
                    "PEFT loads.")
        self.peft_label.setText(text)
        self.peft_label.setToolTip(note)
        self.peft_label.show()

    def set_predicting(self, done: int, total: int, message: str = "") -> None:
        """Progress of a prediction: ``done`` of ``total`` (0: not known yet)."""
        self.predicted_label.hide()
        self.open_predicted.hide()
        self.predict_bar.show()
        self.cancel_button.show()
        self.predict_button.setEnabled(False)
        self.predict_bar.setRange(0, max(total, 1))
        self.predict_bar.setValue(done if total else 0)
        count = f"Predicting {done} of {total}" if total else "Predicting"
        self.predict_bar.setFormat(f"{count}: {message}" if message else count)

    def show_predicted(self, written: int, total: int, folder: str) -> None:
        """The end of a prediction: how many masks, where, and a way to look at them."""
        self.predicted = folder
        missing = f" ({total - written} of {total} images could not be read)" if written < total else ""
        self.predicted_label.setText(f"{written} mask{'s' if written != 1 else ''} written to "
                                     f"<code>{html.escape(folder)}</code>{missing}.")
        self.predicted_label.show()
        self.open_predicted.show()

    def predicting_done(self) -> None:
        self.predict_bar.hide()
        self.cancel_button.hide()
        self.predict_button.setEnabled(bool(self.output))
