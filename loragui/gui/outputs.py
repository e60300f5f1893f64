"""After training: export the adapter (PEFT folder, one file, a PEFT-loadable
copy, ONNX of the merged model, or a bioimage.io model package), export a merged model, predict masks for a
folder of new images, open the run folder.

:class:`AfterTraining` is owned by the window and given what it works on: the
dialogs' parent, the preferences, the results panel, and a few callables. The
window tells it which run ended (:meth:`AfterTraining.set_run`); every job runs
in a worker thread.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QUrl, Signal
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import QFileDialog, QWidget

from . import dialogs
from .exportdialog import ExportDialog, bioimageio_unavailable_reason, onnx_unavailable_reason
from .prefs import Preferences
from .results import ResultsPanel
from .workers import CallWorker, PredictWorker, Worker


def _export(adapter: str, dest: str, single_file: bool, peft_compatible: bool = False,
            base: str | None = None, overwrite: bool = False) -> Path:
    from loragui.engine.exports import export_adapter

    return export_adapter(adapter, dest, single_file, peft_compatible=peft_compatible, base=base,
                          overwrite=overwrite)


def _merge(base: str | None, adapter: str, out: str, overwrite: bool = False,
           on_warning=None) -> Path:
    from loragui.engine.exports import merge_adapter_file

    return merge_adapter_file(base, adapter, out, on_warning=on_warning, overwrite=overwrite)


def _export_onnx(adapter: str, dest: str, base: str | None, overwrite: bool = False,
                 on_warning=None) -> Path:
    from loragui.engine.onnx_export import export_model_onnx

    return export_model_onnx(adapter, dest, base=base, on_warning=on_warning, overwrite=overwrite)


# How the window names the place it writes to, in the engine's messages.
DESTINATION = "destination"


def _export_bioimageio(adapter: str, dest: str, base: str | None, authors: list[str],
                       license: str, run: dict | None, on_warning=None) -> Path:
    """The package, its test image the run's first validation image (the sample's first
    image when the run's folders are gone). The file dialog asked before replacing."""
    from loragui.engine.bioimageio_export import (
        PackageIdentity,
        default_test_image,
        export_bioimageio,
        first_validation_image,
    )

    image = first_validation_image(**run) if run else None
    return export_bioimageio(adapter, dest, test_image=image or default_test_image(),
                             identity=PackageIdentity(authors, license), base=base,
                             overwrite=True, on_warning=on_warning)


def adapter_facts(adapter: str) -> dict:
    """What the results panel and the export dialog say about an adapter (in a worker:
    reading it imports torch, checking for ONNX imports onnx)."""
    from loragui.engine.info import read_model_info

    return {"info": read_model_info(adapter), "onnx_reason": onnx_unavailable_reason()}


class AfterTraining(QObject):
    """What can be done with the adapter of the run that ended last.

    ``parent`` is the dialogs' parent; ``dataset_name()`` names the suggested files;
    ``training()`` says whether a run is under way (nothing starts then); ``log(message,
    level)`` and ``status(message, ms)`` report; ``track(worker)`` hands each job to the
    owner, which waits for it on closing.
    """

    predictedFolder = Signal(str)  # the images folder Predict folder segmented

    def __init__(self, parent: QWidget, prefs: Preferences, results: ResultsPanel, *,
                 dataset_name: Callable[[], str], training: Callable[[], bool],
                 log: Callable[..., None], status: Callable[[str, int], None],
                 track: Callable[[Worker], None]) -> None:
        super().__init__(parent)
        self.window, self.prefs, self.results = parent, prefs, results
        self._dataset_name, self._training = dataset_name, training
        self._log, self._status, self._track = log, status, track
        self.result = None  # the RunFinished / RunFailed of the run that ended last
        self.config = None  # its TrainConfig
        self.adapter_facts: dict | None = None  # read_model_info of the output, ONNX check
        self._predict: PredictWorker | None = None
        results.exportAdapter.connect(self.export_adapter_dialog)
        results.exportMerged.connect(self.export_merged_dialog)
        results.predictFolder.connect(self.predict_folder_dialog)
        results.openRunFolder.connect(self.open_run_folder)
        results.openFolder.connect(self.open_folder)
        results.cancelPredict.connect(lambda: self._predict and self._predict.cancel())

    def set_run(self, result: Any, config: Any) -> None:
        """The run that ended (``result`` None: a new run started, nothing to export yet)."""
        self.result, self.config = result, config
        self.adapter_facts = None

    def output(self) -> str | None:
        """The adapter (or, for a full fine-tune, the model file) the last run kept."""
        return (self.result.output or None) if self.result is not None else None

    def _base(self) -> str | None:
        """The base model the run's adapter was trained on (None: the bundled one)."""
        return self.config.base if self.config is not None else None

    def check_adapter(self) -> CallWorker | None:
        """Find out (off the GUI thread) whether the new adapter is PEFT-loadable."""
        self.adapter_facts = None
        output = self.output()
        if not output or not Path(output).is_dir():  # --full runs write a model file
            return None
        worker = CallWorker(adapter_facts, output)
        worker.succeeded.connect(self._adapter_checked)
        worker.failed.connect(lambda m, d: self._log(f"Could not read the adapter: {m}", "warning"))
        self._track(worker)
        worker.start()
        return worker

    def _adapter_checked(self, facts: dict) -> None:
        self.adapter_facts = facts
        info = facts["info"]
        if info.get("path") == self.output():
            self.results.set_peft_status(info.get("peft_loadable"), info.get("peft", ""))

    def _ask_save(self, title: str, name: str, filters: str) -> tuple[str, str]:
        start = str(Path(self.prefs.export_dir or Path.home()) / name)
        return QFileDialog.getSaveFileName(self.window, title, start, filters)

    def export_adapter_dialog(self) -> None:
        if not self.output() or self._training():
            self._status("Train an adapter first.", 5000)
            return
        facts = self.adapter_facts or {}
        reason = facts.get("onnx_reason")
        if reason is None:  # not checked yet: do not import onnx on the GUI thread
            import importlib.util

            reason = "" if importlib.util.find_spec("onnx") else onnx_unavailable_reason()
        dialog = ExportDialog(self.window, peft_note=(facts.get("info") or {}).get("peft", ""),
                              onnx_reason=reason,
                              bioimageio_reason=bioimageio_unavailable_reason(),
                              authors=self.prefs.package_authors,
                              license=self.prefs.package_license, choice=self.prefs.export_kind)
        if dialog.exec() != ExportDialog.DialogCode.Accepted:
            return
        kind = dialog.choice()
        self.prefs.export_kind = kind
        if kind == "bioimageio":
            self.prefs.package_authors = dialog.package_authors()
            self.prefs.package_license = dialog.package_license()
        name = self._dataset_name() or "adapter"
        name, suffix, title, filters = {
            "peft": (f"{name}-lora", "", "Export adapter folder", "Folder (*)"),
            "single": (f"{name}-lora.safetensors", ".safetensors", "Export adapter file",
                       "Adapter file (*.safetensors)"),
            "peft_compatible": (f"{name}-lora-peft", "", "Export PEFT-loadable adapter folder",
                                "Folder (*)"),
            "onnx": (f"{name}-merged.onnx", ".onnx", "Export ONNX model", "ONNX model (*.onnx)"),
            "bioimageio": (f"{name}-bioimageio.zip", ".zip", "Export bioimage.io model package",
                           "bioimage.io model package (*.zip)"),
        }[kind]
        path, _ = self._ask_save(title, name, filters)
        if path:
            if suffix and not path.endswith(suffix):
                path += suffix
            self.export_adapter_as(kind, Path(path))

    def export_adapter(self, dest: Path, single_file: bool) -> CallWorker:
        return self.export_adapter_as("single" if single_file else "peft", dest)

    def may_write(self, dest: Path, kind: str, replaces: str | None = None,
                  inputs: list | None = None) -> bool | None:
        """The output rule (engine.outputs) for ``dest``: None when it is refused (the
        user was told why); else whether to overwrite loragui's earlier output there,
        which the user confirms first."""
        from loragui.engine.outputs import OutputRefused, check_output, model_inputs

        if inputs is None:
            inputs = model_inputs(self.output(), self._base())
        try:
            check_output(dest, kind, inputs, replaces=replaces, flag=DESTINATION)
        except OutputRefused as exc:
            if exc.replaceable:
                if dialogs.ask_yes_no(self.window, "Replace?", f"{exc.held}. Replace it?"):
                    return True
                return None
            dialogs.show_error(self.window, str(exc), title="Cannot write there")
            return None
        return False

    def export_adapter_as(self, kind: str, dest: Path) -> CallWorker | None:
        """Write the adapter as ``kind`` ("peft", "single", "peft_compatible", "onnx",
        "bioimageio": with the authors and licence in the preferences); None when the
        destination is refused or its replacement declined."""
        from loragui.engine.formats import ADAPTER_FORMAT
        from loragui.engine.outputs import ADAPTER_DIR, FILE

        self.prefs.export_dir = str(Path(dest).parent)
        adapter, base = self.output(), self._base()
        if kind == "bioimageio":
            c = self.config
            run = dict(images=c.images, masks=c.masks, val_fraction=c.val_fraction,
                       seed=c.seed) if c is not None and c.images and c.masks else None
            return self._job(_export_bioimageio, adapter, str(dest), base,
                             list(self.prefs.package_authors), self.prefs.package_license, run,
                             warnings=True, done="bioimage.io model package saved to {}")
        if kind == "onnx":
            overwrite = self.may_write(dest, FILE, replaces="loragui.onnx")
            if overwrite is None:
                return None
            return self._job(_export_onnx, adapter, str(dest), base, overwrite, warnings=True,
                             done="ONNX model (adapter merged in) saved to {}")
        overwrite = self.may_write(dest, FILE if kind == "single" else ADAPTER_DIR,
                                   replaces=ADAPTER_FORMAT)
        if overwrite is None:
            return None
        if kind == "peft_compatible":
            return self._job(_export, adapter, str(dest), False, True, base, overwrite,
                             done="PEFT-loadable adapter saved to {}")
        return self._job(_export, adapter, str(dest), kind == "single", False, None, overwrite,
                         done="Adapter saved to {}")

    def export_merged_dialog(self) -> None:
        if not self.output() or self._training():
            return
        path, _ = self._ask_save("Export merged model", f"{self._dataset_name() or 'model'}"
                                 "-merged.safetensors", "Model file (*.safetensors)")
        if path:
            self.export_merged(Path(path if path.endswith(".safetensors") else path + ".safetensors"))

    def export_merged(self, dest: Path) -> CallWorker | None:
        from loragui.engine.formats import MERGED_FORMAT
        from loragui.engine.outputs import FILE

        self.prefs.export_dir = str(Path(dest).parent)
        overwrite = self.may_write(dest, FILE, replaces=MERGED_FORMAT)
        if overwrite is None:
            return None
        return self._job(_merge, self._base(), self.output(), str(dest), overwrite,
                         warnings=True, done="Merged model saved to {}")

    def _job(self, fn, *args, done: str, warnings: bool = False) -> CallWorker:
        worker = CallWorker(fn, *args, warnings=warnings)
        worker.warned.connect(lambda message: self._log(message, "warning"))
        worker.succeeded.connect(lambda path: self._log(done.format(path)))
        worker.succeeded.connect(lambda path: self._status(done.format(path), 8000))
        worker.failed.connect(lambda m, d: dialogs.show_error(self.window, m, d, "Export failed"))
        self._track(worker)
        worker.start()
        return worker

    def predict_folder_dialog(self) -> None:
        if not self.output() or self._training() or self._predict is not None:
            return
        images = QFileDialog.getExistingDirectory(self.window, "Folder of images to segment",
                                                  self.prefs.browse_dir)
        if not images:
            return
        # A folder to be made (a folder dialog would refuse a name that does not exist).
        suggestion = Path(images).parent / f"{Path(images).name}-masks"
        n = 2
        while suggestion.exists():
            suggestion = Path(images).parent / f"{Path(images).name}-masks-{n}"
            n += 1
        out, _ = QFileDialog.getSaveFileName(self.window, "New folder for the predicted masks",
                                             str(suggestion), "Folder (*)")
        if out:
            self.predict_folder(Path(images), Path(out))

    def predict_folder(self, images: Path, out: Path) -> PredictWorker | None:
        from loragui.engine.outputs import PREDICTIONS, Input, model_inputs

        config = self.config
        base = config.base if config else None
        overwrite = self.may_write(out, PREDICTIONS, inputs=[
            Input("the images folder", images, nest_ok=True), *model_inputs(self.output(), base)])
        if overwrite is None:
            return None
        worker = PredictWorker(images, out, base=base, adapter=self.output(),
                               device=config.device if config else "auto", overwrite=overwrite)
        worker.progress.connect(self.results.set_predicting)
        worker.succeeded.connect(lambda path: self._predicted(worker, path))
        worker.failed.connect(lambda m, d: dialogs.show_error(self.window, m, d,
                                                              "Prediction failed"))
        worker.finished.connect(self._predict_finished)
        self._predict = worker
        self._track(worker)
        self.results.set_predicting(0, 0, "loading the model…")
        self.results.predicted = None
        worker.start()
        return worker

    def _predicted(self, worker: PredictWorker, folder: str) -> None:
        n = worker.written
        self._log(f"{n} mask{'s' if n != 1 else ''} written to {folder}")
        self.results.show_predicted(n, worker.total, folder)
        self.predictedFolder.emit(str(worker.images_dir))

    def _predict_finished(self) -> None:
        self._predict = None
        self.results.predicting_done()

    def open_run_folder(self) -> None:
        run_dir = self.result.run_dir if self.result is not None else None
        if run_dir:
            self.open_folder(run_dir, "the run folder")

    def open_folder(self, folder: str, what: str = "the folder") -> None:
        if not QDesktopServices.openUrl(QUrl.fromLocalFile(folder)):
            # No file manager (a bare desktop, a remote session): the path, to copy.
            dialogs.show_warning(self.window, f"No file manager could open {what}. It is:"
                                 f"\n\n{folder}", title="Open folder")
