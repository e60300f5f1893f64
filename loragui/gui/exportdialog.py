"""The "Export adapter" dialog: which form to write, each with a line on what it is for.

    adapter folder, as trained   adapter_config.json + adapter_model.safetensors
    single .safetensors file     one file, the configuration in its header
    PEFT-loadable folder         ConvTranspose2d updates folded into full weights, so
                                 ``peft.PeftModel.from_pretrained`` loads it
    ONNX, merged model           the adapter folded into its base model, for ONNX
                                 runtimes (needs the ``onnx`` package: greyed otherwise)
    bioimage.io model package    the merged model for Fiji (deepImageJ), ilastik, QuPath
                                 and napari, with its authors and licence (entered once,
                                 remembered); needs the ``bioimageio`` and ``onnx`` extras
"""

from __future__ import annotations

import html

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QButtonGroup,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QRadioButton,
    QVBoxLayout,
)

# kind -> (label, explanation)
FORMS = {
    # Each named by what it is: only the one PEFT always loads says PEFT.
    "peft": ("Adapter folder, as trained",
             "adapter_config.json and adapter_model.safetensors (PEFT's file layout): loragui "
             "loads it; PEFT loads it only when the adapter is PEFT-loadable."),
    "single": ("Adapter file (.safetensors)",
               "One file with the configuration in its header: easy to share; loragui loads it."),
    "peft_compatible": ("PEFT-loadable adapter folder",
                        "A copy that peft.PeftModel.from_pretrained loads: LoRA updates of "
                        "ConvTranspose2d layers are folded into full weights (modules_to_save). "
                        "Needs the run's base model."),
    "onnx": ("ONNX model, adapter merged in (.onnx)",
             "The adapter folded into its base model and written as ONNX (dynamic batch and "
             "image size) for ONNX Runtime and other tools."),
    "bioimageio": ("bioimage.io model package (.zip)",
                   "The adapter merged into its base model, packaged for Fiji (deepImageJ), "
                   "ilastik, QuPath and napari: PyTorch, TorchScript and ONNX weights, a test "
                   "image from the validation set, a cover and the training provenance, "
                   "validated with bioimageio.spec."),
}


def onnx_unavailable_reason() -> str:
    """Why ONNX export cannot be offered ("" when it can)."""
    try:
        import onnx  # noqa: F401
    except ImportError as exc:
        return (f"The onnx package is not installed ({exc}). Install it with: "
                "pip install 'loragui[onnx]'")
    except Exception as exc:  # noqa: BLE001 - a broken install: say so, do not crash
        return f"The onnx package cannot be imported: {type(exc).__name__}: {exc}"
    return ""


def bioimageio_unavailable_reason() -> str:
    """Why a bioimage.io package cannot be offered ("" when it can), from a look for the
    library only: importing it takes seconds, and the export reports a broken install."""
    import importlib.util

    try:
        found = importlib.util.find_spec("bioimageio.spec") is not None
    except (ImportError, ValueError):
        found = False
    from loragui.engine.bioimageio_read import INSTALL

    return "" if found else ("The bioimageio.spec package is not installed. Install it "
                             f"with: {INSTALL}")


class ExportDialog(QDialog):
    def __init__(self, parent=None, *, peft_note: str = "", onnx_reason: str = "",
                 bioimageio_reason: str = "", authors: list[str] | None = None,
                 license: str = "MIT", choice: str = "peft") -> None:
        super().__init__(parent)
        self.setWindowTitle("Export adapter")
        self.group = QButtonGroup(self)
        self.buttons: dict[str, QRadioButton] = {}
        layout = QVBoxLayout(self)
        if peft_note:
            note = QLabel(f"<i>This adapter: {html.escape(peft_note, quote=False)}</i>")
            note.setTextFormat(Qt.TextFormat.RichText)
            note.setWordWrap(True)
            layout.addWidget(note)
        # the package carries ONNX weights: it needs what ONNX export needs, and its own library
        reasons = {"onnx": onnx_reason, "bioimageio": onnx_reason or bioimageio_reason}
        for kind, (label, explanation) in FORMS.items():
            button = QRadioButton(label)
            text = QLabel(html.escape(explanation, quote=False))
            text.setTextFormat(Qt.TextFormat.RichText)
            text.setWordWrap(True)
            text.setContentsMargins(24, 0, 0, 6)
            reason = reasons.get(kind, "")
            text.setEnabled(not reason)
            if reason:
                button.setEnabled(False)
                button.setToolTip(reason)
                text.setText(html.escape(explanation, quote=False) + "<br><b>Not available:</b> "
                             + html.escape(reason, quote=False))
                text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            self.group.addButton(button)
            self.buttons[kind] = button
            layout.addWidget(button)
            layout.addWidget(text)
        # who made the package and on what terms (bioimage.io asks for both)
        self.authors = QLineEdit(", ".join(authors or []))
        self.authors.setPlaceholderText("Ada Lovelace, Grace Hopper")
        self.license = QLineEdit(license)
        self.license.setToolTip("an SPDX licence id, e.g. MIT, CC-BY-4.0, BSD-3-Clause")
        self.identity = QFormLayout()
        self.identity.setContentsMargins(24, 0, 0, 6)
        self.identity.addRow("Authors:", self.authors)
        self.identity.addRow("Licence:", self.license)
        self.problem = QLabel()
        self.problem.setWordWrap(True)
        self.problem.hide()
        layout.addLayout(self.identity)
        layout.addWidget(self.problem)
        self.group.buttonToggled.connect(self._show_identity)
        self.select(choice)
        self._show_identity()
        box = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok
                               | QDialogButtonBox.StandardButton.Cancel)
        box.button(QDialogButtonBox.StandardButton.Ok).setText("Export…")
        box.accepted.connect(self.accept)
        box.rejected.connect(self.reject)
        layout.addWidget(box)
        self.setMinimumWidth(460)

    def _show_identity(self, *_) -> None:
        on = self.buttons["bioimageio"].isChecked()
        self.authors.setEnabled(on)
        self.license.setEnabled(on)

    def package_authors(self) -> list[str]:
        return [a.strip() for a in self.authors.text().split(",") if a.strip()]

    def package_license(self) -> str:
        return self.license.text().strip() or "MIT"

    def accept(self) -> None:
        if self.choice() == "bioimageio" and not self.package_authors():
            self.problem.setText("<b>A bioimage.io package names its authors:</b> enter at "
                                 "least one name (it is remembered).")
            self.problem.show()
            self.authors.setFocus()
            return
        super().accept()

    def available(self) -> list[str]:
        return [kind for kind, b in self.buttons.items() if b.isEnabled()]

    def select(self, kind: str) -> None:
        button = self.buttons.get(kind)
        if button is None or not button.isEnabled():
            button = self.buttons["peft"]
        button.setChecked(True)

    def choice(self) -> str:
        return next(kind for kind, b in self.buttons.items() if b.isChecked())

    @classmethod
    def ask(cls, parent, **kwargs) -> str | None:
        """The chosen kind, or None when cancelled."""
        dialog = cls(parent, **kwargs)
        if dialog.exec() != QDialog.DialogCode.Accepted:
            return None
        return dialog.choice()
