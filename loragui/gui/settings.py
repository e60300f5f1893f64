"""The training settings form, with the equivalent command line kept in sync."""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QGuiApplication, QPalette, QStandardItemModel, QValidator
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from loragui.engine.config import OPTIONS_BY_NAME, TrainConfig, several_devices

from .logview import level_colour

# Which convolutions get a LoRA update. Module names come from engine/unet.py:
# down.N.convK (encoder), bottleneck.convK, up.N (transposed), dec.N.convK, head.
LAYER_PRESETS: list[tuple[str, list[str] | None, str]] = [
    ("All convolutions", ["*"], "Adapt every convolution (recommended)"),
    ("Encoder only", ["down.*", "bottleneck.*"],
     "Adapt the encoder and bottleneck: for a new kind of image (stain, modality)"),
    ("Decoder only", ["up.*", "dec.*"],
     "Adapt the decoder (the 1x1 head is trained whole anyway): for a new kind of object boundary"),
    ("Custom patterns…", None, "Module-name patterns, comma-separated (fnmatch: down.0.*, head)"),
]


MULTI_GPU = "all"  # the device value of "All GPUs (N)": train --devices all


def limits(name: str, *, smallest: float | None = None,
           largest: float | None = None) -> tuple[Any, Any]:
    """A spin box's range for a TrainConfig field: its declared bounds (an open end, or
    no end, is the control's ``smallest``/``largest``), so that the window offers only
    what training accepts."""
    bounds = OPTIONS_BY_NAME[name].bounds
    low = smallest if bounds.low is None or bounds.low_open else bounds.low
    high = largest if bounds.high is None or bounds.high_open else bounds.high
    return low, high


class SciSpinBox(QDoubleSpinBox):
    """A spin box that shows and accepts numbers like 2e-3 (for learning rates)."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setDecimals(12)
        self.setRange(1e-7, 10.0)

    def textFromValue(self, value: float) -> str:
        return f"{value:.3g}"

    def valueFromText(self, text: str) -> float:
        try:
            return float(text)
        except ValueError:
            return self.value()

    def validate(self, text: str, pos: int):
        try:
            value = float(text)
        except ValueError:
            partial = text == "" or text[-1:] in "eE-+." or text.lower().endswith(("e-", "e+"))
            return (QValidator.State.Intermediate if partial else QValidator.State.Invalid), text, pos
        ok = self.minimum() <= value <= self.maximum()
        return (QValidator.State.Acceptable if ok else QValidator.State.Intermediate), text, pos

    def stepBy(self, steps: int) -> None:
        # One step multiplies or divides by ~2 (1e-3, 2e-3, 5e-3, 1e-2 ...).
        value = self.value()
        exponent = math.floor(math.log10(value))
        mantissas = [1, 2, 5, 10]
        m = value / 10**exponent
        i = min(range(3), key=lambda k: abs(mantissas[k] - m))
        i += steps
        exponent += i // 3
        self.setValue(mantissas[i % 3] * 10**exponent)


COMBO_MIN_CHARS = 10


class SettingsPanel(QWidget):
    """Base model, device and LoRA/optimiser settings. ``changed`` fires on every edit."""

    changed = Signal()
    BROWSE = "browse"

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self._paths = ("", "", "")
        self._bundled_base: Path | None = None
        self._bundled_known = False
        self._devices_known = False
        d = TrainConfig()

        self.base = QComboBox()
        self.base.setToolTip("The pretrained model to adapt (a .safetensors base-model file)")
        self.base.addItem("Bundled nuclei model", None)
        self.base.addItem("Browse for a .safetensors file…", self.BROWSE)
        self.base.activated.connect(self._base_activated)
        self._last_base_index = 0
        # Why the chosen base model cannot be used (see basecheck.py), under its box.
        self.base_note = QLabel()
        self.base_note.setWordWrap(True)
        self.base_note.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.base_note.hide()

        self.device = QComboBox()
        # Both boxes elide their long entries (a base model's file name, a GPU's name):
        # they never make the column wider than the narrowest pane.
        self.device.setToolTip("Where to train. Automatic picks a GPU when there is one.")
        self.device.addItem("Automatic", "auto")
        self.device.addItem("CPU", "cpu")
        self.device.addItem("Looking for GPUs…", None)
        self._set_item_enabled(self.device, 2, False, "")

        self.rank = self._spin(*limits("rank"), d.rank, "LoRA rank r: the size of each low-rank update. "
                               "Higher learns more and makes a bigger adapter (4-16 is usual).")
        self.alpha = QDoubleSpinBox()
        self.alpha.setRange(*limits("alpha", smallest=0.01, largest=4096))
        self.alpha.setDecimals(2)
        self.alpha.setValue(d.alpha)
        self.alpha.setToolTip("LoRA alpha: the update is scaled by alpha / rank (usually 2 × rank)")
        self.epochs = self._spin(*limits("epochs"), d.epochs,
                                 "How many passes over the training images, at most")
        self.early_stop = QCheckBox("Stop when it stops improving")
        self.early_stop.setChecked(d.early_stop)
        self.early_stop.setToolTip(
            "End the run when the validation Dice has not improved for a while; the best "
            "adapter is kept. Unchecked: " + OPTIONS_BY_NAME["early_stop"].help + ".")
        self.batch_size = self._spin(*limits("batch_size"), d.batch_size,
                                     "Crops per step. Lower it if the device runs out of memory.")
        self.lr = SciSpinBox()
        self.lr.setRange(*limits("lr", smallest=1e-7))
        self.lr.setValue(d.lr)
        self.lr.setToolTip("Learning rate of the optimiser (AdamW). Arrow keys step 1, 2, 5, 10…")
        self.crop_size = self._spin(*limits("crop_size"), d.crop_size,
                                    "Side of the square random crops used for training (pixels). "
                                    "Auto: 256 px on a GPU, 128 px on the CPU (four times less "
                                    "work per crop; it reached the same Dice sooner there)")
        self.crop_size.setSingleStep(32)
        self.crop_size.setSpecialValueText("Auto")
        self.crop_size.setSuffix(" px")
        self.val_percent = self._spin(0, 90, round(100 * d.val_fraction),
                                      "Share of the pairs held out to measure Dice (never "
                                      "trained on)")
        self.val_percent.setSingleStep(5)
        self.val_percent.setSuffix(" % of the pairs")

        self.layers = QComboBox()
        for i, (label, _patterns, tip) in enumerate(LAYER_PRESETS):
            self.layers.addItem(label)
            self.layers.setItemData(i, tip, Qt.ItemDataRole.ToolTipRole)
        self.layers.setToolTip("Which convolutions of the base model get a LoRA update")
        self.patterns = QLineEdit()
        self.patterns.setPlaceholderText("e.g. down.*, bottleneck.*")
        self.patterns.setToolTip(LAYER_PRESETS[-1][2])
        self.patterns.hide()

        self.reset_button = QPushButton("Reset")
        self.reset_button.setToolTip("Back to the default settings")
        self.reset_button.clicked.connect(self.reset)

        self.command = QLineEdit()
        self.command.setReadOnly(True)
        self.command.setToolTip("The same training from a terminal (select and copy)")
        self.copy_button = QPushButton("Copy")
        self.copy_button.setToolTip("Copy the command line to the clipboard")
        self.copy_button.clicked.connect(
            lambda: QGuiApplication.clipboard().setText(self.command.text()))

        # The boxes elide long entries (a base model's file name, a GPU's name): they
        # never make the column wider than the narrowest pane.
        for box in (self.base, self.device, self.layers):
            box.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
            box.setMinimumContentsLength(COMBO_MIN_CHARS)
        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        base_field = QWidget()  # the box with its note beneath
        base_field.setToolTip(self.base.toolTip())
        base_column = QVBoxLayout(base_field)
        base_column.setContentsMargins(0, 0, 0, 0)
        base_column.addWidget(self.base)
        base_column.addWidget(self.base_note)
        form.addRow("Base model", base_field)
        form.addRow("Device", self.device)
        form.addRow("Rank", self.rank)
        form.addRow("Alpha", self.alpha)
        form.addRow("Epochs", self.epochs)
        form.addRow(self.early_stop)  # across both columns: its words need the room
        form.addRow("Batch size", self.batch_size)
        form.addRow("Learning rate", self.lr)
        form.addRow("Crop size", self.crop_size)
        form.addRow("Validation", self.val_percent)
        form.addRow("Layers", self.layers)
        form.addRow("", self.patterns)
        for row in range(form.rowCount()):
            label = form.itemAt(row, QFormLayout.ItemRole.LabelRole)
            field = form.itemAt(row, QFormLayout.ItemRole.FieldRole)
            if label and field and label.widget() and field.widget():
                label.widget().setToolTip(field.widget().toolTip())
        command_row = QHBoxLayout()
        command_row.addWidget(self.command, 1)
        command_row.addWidget(self.copy_button)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(self.reset_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addLayout(command_row)

        for w in (self.rank, self.epochs, self.batch_size, self.crop_size, self.val_percent):
            w.valueChanged.connect(self._changed)
        for w in (self.alpha, self.lr):
            w.valueChanged.connect(self._changed)
        self.device.currentIndexChanged.connect(self._changed)
        self.early_stop.toggled.connect(self._changed)
        self.layers.currentIndexChanged.connect(self._layers_changed)
        self.patterns.textChanged.connect(self._changed)
        self._changed()

    # -- helpers ---------------------------------------------------------------------
    @staticmethod
    def _spin(low: int, high: int, value: int, tip: str) -> QSpinBox:
        spin = QSpinBox()
        spin.setRange(low, high)
        spin.setValue(value)
        spin.setToolTip(tip)
        spin.setAccelerated(True)
        return spin

    @staticmethod
    def _set_item_enabled(combo: QComboBox, index: int, enabled: bool, tip: str) -> None:
        model = combo.model()
        if isinstance(model, QStandardItemModel):
            item = model.item(index)
            item.setEnabled(enabled)
            item.setToolTip(tip)

    def _changed(self, *_: Any) -> None:
        self._refresh_command()
        self.changed.emit()

    def _refresh_command(self) -> None:
        images, masks, out = self._paths
        self.command.setText(self.make_config(images or "IMAGES", masks or "MASKS",
                                              out).command_line())
        self.command.setCursorPosition(0)

    def _layers_changed(self, index: int) -> None:
        self.patterns.setVisible(LAYER_PRESETS[index][1] is None)
        self._changed()

    def _base_activated(self, index: int) -> None:
        if self.base.itemData(index) != self.BROWSE:
            self._last_base_index = index
            self._changed()
            return
        path, _ = QFileDialog.getOpenFileName(self, "Choose a base model", "",
                                              "Base model (*.safetensors);;All files (*)")
        if path:
            self.set_base(path)
        else:
            self.base.setCurrentIndex(self._last_base_index)

    # -- public ------------------------------------------------------------------------
    @property
    def needs_base(self) -> bool:
        """True when the bundled model is selected but this installation has none."""
        base = self.base.currentData()
        return base in (None, self.BROWSE) and self._bundled_known and self._bundled_base is None

    def set_base(self, path: str | None) -> None:
        """Select the bundled model (None) or a base-model file, adding it to the list."""
        if not path:
            self.base.setCurrentIndex(0)
        else:
            index = self.base.findData(str(path))
            if index < 0:
                index = self.base.count() - 1  # before "Browse…"
                self.base.insertItem(index, Path(path).name, str(path))
                self.base.setItemData(index, str(path), Qt.ItemDataRole.ToolTipRole)
            self.base.setCurrentIndex(index)
        self._last_base_index = self.base.currentIndex()
        self._changed()

    def show_base_problem(self, problem: str, reason: str) -> None:
        """Say under the Base model box why the chosen file cannot be used ("": nothing)."""
        colour = level_colour("error", self.palette(), QPalette.ColorRole.Window) or ""
        self.base_note.setText(f"<span style='color:{colour}'>{html.escape(problem)}</span>")
        self.base_note.setToolTip(reason)
        self.base_note.setVisible(bool(problem))

    def set_bundled_base(self, path: Path | None) -> None:
        self._bundled_base = path
        self._bundled_known = True
        if path is None:
            self.base.setItemText(0, "No bundled model: browse for one")
            self._set_item_enabled(self.base, 0, False,
                                   "No base model is bundled with this installation")
            if self.base.currentIndex() == 0 and self.base.count() > 2:
                self.base.setCurrentIndex(1)
        else:
            self._set_item_enabled(
                self.base, 0, True, "Pretrained on fluorescence nuclei (DSB2018): the small "
                "model when training on the CPU, the medium one on a GPU, both in "
                f"{path.parent}")

    def set_devices(self, devices: list) -> None:
        """Fill the device list from ``list_devices()``; unavailable ones greyed out."""
        current = self.device.currentData()
        self.device.blockSignals(True)
        self.device.clear()
        self.device.addItem("Automatic (best available)", "auto")
        self.device.setItemData(0, "The fastest available device", Qt.ItemDataRole.ToolTipRole)
        for info in devices:
            self.device.addItem(f"{info.label} [{info.name}]", info.name)
            index = self.device.count() - 1
            self._set_item_enabled(self.device, index, bool(info.available),
                                   info.name if info.available else f"Not available: {info.reason}")
        gpus = [info for info in devices if info.available and info.name.startswith("cuda:")]
        if len(gpus) > 1:  # data-parallel training over all of them (torch.distributed)
            self.device.addItem(f"All GPUs ({len(gpus)})", MULTI_GPU)
            self.device.setItemData(
                self.device.count() - 1,
                f"Train on all {len(gpus)} GPUs at once, one process each: the batch size is "
                "per GPU and the learning rate is scaled by the square root of the GPU count",
                Qt.ItemDataRole.ToolTipRole)
        index = self.device.findData(current)
        if index < 0 or not self.device.model().item(index).isEnabled():
            index = 0
        self.device.setCurrentIndex(index)
        self.device.blockSignals(False)
        self._devices_known = True
        self._changed()

    def set_paths(self, images: str, masks: str, out: str = "") -> None:
        paths = (str(images or ""), str(masks or ""), str(out or ""))
        if paths != self._paths:
            self._paths = paths
            self._refresh_command()

    def targets(self) -> list[str]:
        patterns = LAYER_PRESETS[self.layers.currentIndex()][1]
        if patterns is None:
            patterns = [p.strip() for p in self.patterns.text().split(",") if p.strip()]
        return list(patterns) or ["*"]

    def values(self) -> dict[str, Any]:
        """The settings as TrainConfig fields (also what the preferences file keeps)."""
        base = self.base.currentData()
        return {
            "base": None if base in (None, self.BROWSE) else str(base),
            "device": self.device.currentData() or "auto",
            "rank": self.rank.value(),
            "alpha": self.alpha.value(),
            "epochs": self.epochs.value(),
            "early_stop": self.early_stop.isChecked(),
            "batch_size": self.batch_size.value(),
            "lr": self.lr.value(),
            "crop_size": self.crop_size.value(),
            "val_fraction": self.val_percent.value() / 100.0,
            "targets": self.targets(),
        }

    def set_values(self, values: dict[str, Any]) -> None:
        """Apply remembered settings; unknown or invalid entries are ignored."""
        for name in ("rank", "epochs", "batch_size", "crop_size", "alpha", "lr"):
            value = values.get(name)
            if isinstance(value, int | float) and not isinstance(value, bool):
                getattr(self, name).setValue(value)
        if isinstance(values.get("early_stop"), bool):
            self.early_stop.setChecked(values["early_stop"])
        value = values.get("val_fraction")
        if isinstance(value, int | float) and not isinstance(value, bool):
            self.val_percent.setValue(round(100 * value))
        if "base" in values:
            base = values["base"]
            self.set_base(base if isinstance(base, str) and Path(base).is_file() else None)
        device = values.get("device")
        if isinstance(device, str):
            index = self.device.findData(device)
            if index < 0 and not self._devices_known:
                self.device.insertItem(self.device.count() - 1, device, device)
                index = self.device.findData(device)
            if index >= 0:
                self.device.setCurrentIndex(index)
        targets = values.get("targets")
        if isinstance(targets, list) and all(isinstance(t, str) for t in targets):
            for i, (_label, patterns, _tip) in enumerate(LAYER_PRESETS):
                if patterns == targets or patterns is None:
                    self.layers.setCurrentIndex(i)
                    if patterns is None:
                        self.patterns.setText(", ".join(targets))
                    break
        self._changed()

    def reset(self) -> None:
        d = TrainConfig()
        self.set_values({k: getattr(d, k) for k in
                         ("rank", "alpha", "epochs", "early_stop", "batch_size", "lr",
                          "crop_size", "val_fraction", "targets")} | {"device": "auto", "base": None})

    def make_config(self, images: str, masks: str, out: str = "", **extra: Any) -> TrainConfig:
        values = self.values() | extra
        if several_devices(values.get("device")):  # "All GPUs" or a list: one process each
            values |= {"device": "auto", "devices": values["device"]}
        return TrainConfig(images=str(images), masks=str(masks), out=str(out), **values)
