"""After training: export the adapter (PEFT folder or one file), export a merged
model, predict masks for a folder of new images, open the run folder.

A mixin of :class:`~loragui.gui.window.MainWindow` (kept apart to keep the
window module short); every job runs in a worker thread.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QUrl
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import QFileDialog

from . import dialogs
from .workers import CallWorker, PredictWorker


def _export(adapter: str, dest: str, single_file: bool) -> Path:
    from loragui.engine.files import export_adapter

    return export_adapter(adapter, dest, single_file)


def _merge(base: str | None, adapter: str, out: str) -> Path:
    from loragui.engine.files import merge_adapter_file

    return merge_adapter_file(base, adapter, out)


class AfterTrainingMixin:
    """Needs from the window: ``result``, ``run``, ``prefs``, ``data``, ``results``,
    ``training()``, ``log()``, ``_track()`` and ``_predict``."""

    def _output(self) -> str | None:
        return getattr(self.result, "output", None) or None

    def _ask_save(self, title: str, name: str, filters: str) -> tuple[str, str]:
        start = str(Path(self.prefs.export_dir or Path.home()) / name)
        return QFileDialog.getSaveFileName(self, title, start, filters)

    def export_adapter_dialog(self) -> None:
        if not self._output() or self.training():
            self.statusBar().showMessage("Train an adapter first.", 5000)
            return
        name = f"{self.data.dataset_name() or 'adapter'}-lora"
        path, chosen = self._ask_save("Export adapter", name,
                                      "Single adapter file (*.safetensors);;PEFT adapter folder (*)")
        if path:
            single = chosen.startswith("Single")
            if single and not path.endswith(".safetensors"):
                path += ".safetensors"
            self.export_adapter(Path(path), single)

    def export_adapter(self, dest: Path, single_file: bool) -> CallWorker:
        self.prefs.export_dir = str(Path(dest).parent)
        return self._job(_export, self._output(), str(dest), single_file, done="Adapter saved to {}")

    def export_merged_dialog(self) -> None:
        if not self._output() or self.training():
            return
        path, _ = self._ask_save("Export merged model", f"{self.data.dataset_name() or 'model'}"
                                 "-merged.safetensors", "Model file (*.safetensors)")
        if path:
            self.export_merged(Path(path if path.endswith(".safetensors") else path + ".safetensors"))

    def export_merged(self, dest: Path) -> CallWorker:
        self.prefs.export_dir = str(Path(dest).parent)
        base = self.run.config.base if self.run else None
        return self._job(_merge, base, self._output(), str(dest), done="Merged model saved to {}")

    def _job(self, fn, *args, done: str) -> CallWorker:
        worker = CallWorker(fn, *args)
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
