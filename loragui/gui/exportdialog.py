"""The "Export adapter" dialog: which form to write, each with a line on what it is for.

    adapter folder, as trained   adapter_config.json + adapter_model.safetensors
    single .safetensors file     one file, the configuration in its header
    PEFT-loadable folder         ConvTranspose2d updates folded into full weights, so
                                 ``peft.PeftModel.from_pretrained`` loads it
    ONNX, merged model           the adapter folded into its base model, for ONNX
                                 runtimes (needs the ``onnx`` package: greyed otherwise)
"""

from __future__ import annotations

import html

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QButtonGroup,
    QDialog,
    QDialogButtonBox,
    QLabel,
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


class ExportDialog(QDialog):
    def __init__(self, parent=None, *, peft_note: str = "", onnx_reason: str = "",
                 choice: str = "peft") -> None:
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
        for kind, (label, explanation) in FORMS.items():
            button = QRadioButton(label)
            text = QLabel(html.escape(explanation, quote=False))
            text.setTextFormat(Qt.TextFormat.RichText)
            text.setWordWrap(True)
            text.setContentsMargins(24, 0, 0, 6)
            text.setEnabled(kind != "onnx" or not onnx_reason)
            if kind == "onnx" and onnx_reason:
                button.setEnabled(False)
                button.setToolTip(onnx_reason)
                text.setText(html.escape(explanation, quote=False) + "<br><b>Not available:</b> "
                             + html.escape(onnx_reason, quote=False))
                text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            self.group.addButton(button)
            self.buttons[kind] = button
            layout.addWidget(button)
            layout.addWidget(text)
        self.select(choice)
        box = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok
                               | QDialogButtonBox.StandardButton.Cancel)
        box.button(QDialogButtonBox.StandardButton.Ok).setText("Export…")
        box.accepted.connect(self.accept)
        box.rejected.connect(self.reject)
        layout.addWidget(box)
        self.setMinimumWidth(460)

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
