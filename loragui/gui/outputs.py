"""After training: export the adapter (PEFT folder, one file, a PEFT-loadable
copy, or ONNX of the merged model), export a merged model, predict masks for a
folder of new images, open the run folder.

A mixin of :class:`~loragui.gui.window.MainWindow` (kept apart to keep the
window module short); every job runs in a worker thread.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QUrl
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import QFileDialog

from . import dialogs
from .exportdialog import ExportDialog, onnx_unavailable_reason
from .workers import CallWorker, PredictWorker


def _export(adapter: str, dest: str, single_file: bool, peft_compatible: bool = False,
            base: str | None = None) -> Path:
    from loragui.engine.exports import export_adapter

    return export_adapter(adapter, dest, single_file, peft_compatible=peft_compatible, base=base)


def _merge(base: str | None, adapter: str, out: str, on_warning=None) -> Path:
    from loragui.engine.exports import merge_adapter_file

    return merge_adapter_file(base, adapter, out, on_warning=on_warning)


def _export_onnx(adapter: str, dest: str, base: str | None, on_warning=None) -> Path:
    from loragui.engine.onnx_export import export_model_onnx

    return export_model_onnx(adapter, dest, base=base, on_warning=on_warning)


def adapter_facts(adapter: str) -> dict:
    """What the results panel and the export dialog say about an adapter (in a worker:
    reading it imports torch, checking for ONNX imports onnx)."""
    from loragui.engine.info import read_model_info

    return {"info": read_model_info(adapter), "onnx_reason": onnx_unavailable_reason()}


class AfterTrainingMixin:
    """Needs from the window: ``result``, ``run``, ``prefs``, ``data``, ``results``,
    ``training()``, ``log()``, ``_track()`` and ``_predict``."""

    def _output(self) -> str | None:
        return getattr(self.result, "output", None) or None

    def _base(self) -> str | None:
        """The base model the run's adapter was trained on (None: the bundled one)."""
        return self.run.config.base if self.run else None

    def check_adapter(self) -> CallWorker | None:
        """Find out (off the GUI thread) whether the new adapter is PEFT-loadable."""
        self.adapter_facts = None
        output = self._output()
        if not output or not Path(output).is_dir():  # --full runs write a model file
            return None
        worker = CallWorker(adapter_facts, output)
        worker.succeeded.connect(self._adapter_checked)
        worker.failed.connect(lambda m, d: self.log(f"Could not read the adapter: {m}", "warning"))
        self._track(worker)
        worker.start()
        return worker

    def _adapter_checked(self, facts: dict) -> None:
        self.adapter_facts = facts
        info = facts["info"]
        if info.get("path") == self._output():
            self.results.set_peft_status(info.get("peft_loadable"), info.get("peft", ""))

    def _ask_save(self, title: str, name: str, filters: str) -> tuple[str, str]:
        start = str(Path(self.prefs.export_dir or Path.home()) / name)
        return QFileDialog.getSaveFileName(self, title, start, filters)

    def export_adapter_dialog(self) -> None:
        if not self._output() or self.training():
            self.statusBar().showMessage("Train an adapter first.", 5000)
            return
        facts = self.adapter_facts or {}
        reason = facts.get("onnx_reason")
        if reason is None:  # not checked yet: do not import onnx on the GUI thread
            import importlib.util

            reason = "" if importlib.util.find_spec("onnx") else onnx_unavailable_reason()
        kind = ExportDialog.ask(self, peft_note=(facts.get("info") or {}).get("peft", ""),
                                onnx_reason=reason, choice=self.prefs.export_kind)
        if kind is None:
            return
        self.prefs.export_kind = kind
        name = self.data.dataset_name() or "adapter"
        name, suffix, title, filters = {
            "peft": (f"{name}-lora", "", "Export adapter folder", "Folder (*)"),
            "single": (f"{name}-lora.safetensors", ".safetensors", "Export adapter file",
                       "Adapter file (*.safetensors)"),
            "peft_compatible": (f"{name}-lora-peft", "", "Export PEFT-loadable adapter folder",
                                "Folder (*)"),
            "onnx": (f"{name}-merged.onnx", ".onnx", "Export ONNX model", "ONNX model (*.onnx)"),
        }[kind]
        path, _ = self._ask_save(title, name, filters)
        if path:
            if suffix and not path.endswith(suffix):
                path += suffix
            self.export_adapter_as(kind, Path(path))

    def export_adapter(self, dest: Path, single_file: bool) -> CallWorker:
        return self.export_adapter_as("single" if single_file else "peft", dest)

    def export_adapter_as(self, kind: str, dest: Path) -> CallWorker:
        """Write the adapter as ``kind`` ("peft", "single", "peft_compatible", "onnx")."""
        self.prefs.export_dir = str(Path(dest).parent)
        adapter, base = self._output(), self._base()
        if kind == "onnx":
            return self._job(_export_onnx, adapter, str(dest), base, warnings=True,
                             done="ONNX model (adapter merged in) saved to {}")
        if kind == "peft_compatible":
            return self._job(_export, adapter, str(dest), False, True, base,
                             done="PEFT-loadable adapter saved to {}")
        return self._job(_export, adapter, str(dest), kind == "single",
                         done="Adapter saved to {}")

    def export_merged_dialog(self) -> None:
        if not self._output() or self.training():
            return
        path, _ = self._ask_save("Export merged model", f"{self.data.dataset_name() or 'model'}"
                                 "-merged.safetensors", "Model file (*.safetensors)")
        if path:
            self.export_merged(Path(path if path.endswith(".safetensors") else path + ".safetensors"))

    def export_merged(self, dest: Path) -> CallWorker:
        self.prefs.export_dir = str(Path(dest).parent)
        return self._job(_merge, self._base(), self._output(), str(dest), warnings=True,
                         done="Merged model saved to {}")

    def _job(self, fn, *args, done: str, warnings: bool = False) -> CallWorker:
        worker = CallWorker(fn, *args, warnings=warnings)
        worker.warned.connect(lambda message: self.log(message, "warning"))
        worker.succeeded.connect(lambda path: self.log(done.format(path)))
        worker.succeeded.connect(lambda path: self.statusBar().showMessage(done.format(path), 8000))
        worker.failed.connect(lambda m, d: dialogs.show_error(self, m, d, "Export failed"))
        self._track(worker)
        worker.start()
        return worker

    def predict_folder_dialog(self) -> None:
        if not self._output() or self.training() or self._predict is not None:
            return
        images = QFileDialog.getExistingDirectory(self, "Folder of images to segment",
                                                  self.prefs.browse_dir)
        if not images:
            return
        suggestion = str(Path(images).parent / f"{Path(images).name}-masks")
        out = QFileDialog.getExistingDirectory(self, "Folder for the predicted masks", suggestion)
        if out:
            self.predict_folder(Path(images), Path(out))

    def predict_folder(self, images: Path, out: Path) -> PredictWorker:
        config = self.run.config if self.run else None
        worker = PredictWorker(images, out, base=config.base if config else None,
                               adapter=self._output(), device=config.device if config else "auto")
        worker.progress.connect(self.results.set_predicting)
        worker.succeeded.connect(lambda path: self.log(f"Masks written to {path}"))
        worker.failed.connect(lambda m, d: dialogs.show_error(self, m, d, "Prediction failed"))
        worker.finished.connect(self._predict_finished)
        self._predict = worker
        self._track(worker)
        self.results.set_predicting(0, 0, "loading the model…")
        worker.start()
        return worker

    def _predict_finished(self) -> None:
        self._predict = None
        self.results.predicting_done()

    def open_run_folder(self) -> None:
        run_dir = getattr(self.result, "run_dir", None)
        if run_dir:
            QDesktopServices.openUrl(QUrl.fromLocalFile(run_dir))
