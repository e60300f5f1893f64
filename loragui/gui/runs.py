"""The Runs view: every run under the runs folder (and any run folder the user adds),
newest first, sortable and filterable, compared side by side, and acted on.

The rows come from :func:`loragui.engine.runs.list_runs` in a worker thread (run.json
only: no torch, no model). Acting on a run goes through what the window already has,
handed in as objects and callables: the results panel and the export dialog
(:class:`~loragui.gui.outputs.AfterTraining`), the resume path
(:class:`~loragui.gui.resume.ResumeOffer`) and the settings panel, in
:mod:`~loragui.gui.runactions`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import (
    QAbstractTableModel,
    QModelIndex,
    QSortFilterProxyModel,
    Qt,
    QUrl,
    Signal,
)
from PySide6.QtGui import QColor, QDesktopServices, QGuiApplication
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLineEdit,
    QPushButton,
    QSplitter,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from loragui.engine.errors import LoraGuiError
from loragui.engine.runs import (
    RunRow,
    command_line,
    dataset_name,
    delete_run,
    duration,
    is_run_folder,
    list_runs,
    read_run,
    rename_run,
    runs_folder,
)

from . import dialogs
from .workers import CallWorker, Worker

# (header, the row's text, the value it sorts by)
COLUMNS: tuple[tuple[str, Callable[[RunRow], str], Callable[[RunRow], Any]], ...] = (
    ("Name", lambda r: r.name, lambda r: r.name.lower()),
    ("Date", lambda r: r.date[:16].replace("T", " "), lambda r: r.date),
    ("Status", lambda r: r.status, lambda r: r.status),
    ("Data", lambda r: dataset_name(r.images) if r.images else "", lambda r: r.images),
    ("Pairs", lambda r: "" if r.pairs is None else str(r.pairs), lambda r: r.pairs or 0),
    ("Base model", lambda r: r.base, lambda r: r.base),
    ("Settings changed", lambda r: r.changed_text(), lambda r: r.changed_text()),
    ("Device", lambda r: r.device, lambda r: r.device),
    ("Duration", lambda r: duration(r.seconds), lambda r: r.seconds or 0.0),
    ("Base Dice", lambda r: _dice(r.base_dice), lambda r: -1.0 if r.base_dice is None else r.base_dice),
    ("Best Dice", lambda r: _dice(r.best_dice), lambda r: -1.0 if r.best_dice is None else r.best_dice),
)
NAME, DATE, STATUS = 0, 1, 2
SORT_ROLE = Qt.ItemDataRole.UserRole
PROBLEM_COLOUR = "#D55E00"


def _dice(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}"


def load_runs(extra: list[str]) -> list[RunRow]:
    """The runs folder's runs and the run folders added by hand (in a worker thread)."""
    rows = list_runs(runs_folder())
    known = {r.path for r in rows}
    rows += [read_run(p) for p in extra if p not in known and Path(p).is_dir()]
    return sorted(rows, key=lambda r: (r.date, r.path), reverse=True)


class RunsModel(QAbstractTableModel):
    """The rows of the runs list; the name is editable (written to the run's name.txt)."""

    renameFailed = Signal(str)

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.rows: list[RunRow] = []

    def set_rows(self, rows: list[RunRow]) -> None:
        self.beginResetModel()
        self.rows = list(rows)
        self.endResetModel()

    def rowCount(self, parent=QModelIndex()) -> int:  # noqa: B008 - Qt's signature
        return 0 if parent.isValid() else len(self.rows)

    def columnCount(self, parent=QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(self, section, orientation, role=Qt.ItemDataRole.DisplayRole):
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return COLUMNS[section][0]
        return None

    def data(self, index, role=Qt.ItemDataRole.DisplayRole):
        row = self.rows[index.row()]
        _, text, key = COLUMNS[index.column()]
        if role in (Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.EditRole):
            return text(row)
        if role == SORT_ROLE:
            return key(row)
        if role == Qt.ItemDataRole.ToolTipRole:
            return f"{row.path}\n{row.problem}".strip()
        if role == Qt.ItemDataRole.ForegroundRole and row.problem and index.column() == STATUS:
            return QColor(PROBLEM_COLOUR)
        return None

    def flags(self, index):
        flags = super().flags(index)
        if index.column() == NAME:
            flags |= Qt.ItemFlag.ItemIsEditable
        return flags

    def setData(self, index, value, role=Qt.ItemDataRole.EditRole) -> bool:
        if role != Qt.ItemDataRole.EditRole or index.column() != NAME:
            return False
        row = self.rows[index.row()]
        try:
            rename_run(row.path, str(value))
        except (OSError, LoraGuiError) as exc:
            self.renameFailed.emit(f"The run {row.path} cannot be renamed: {exc}")
            return False
        self.rows[index.row()] = read_run(row.path)
        self.dataChanged.emit(index, index)
        return True


class RunsView(QWidget):
    """The table, its filter, the action buttons and, once asked for, the comparison.

    Signals ask the window for what it owns: ``reviewRequested(row)`` (show the run's
    result and previews), ``exportRequested(row, merged)``, ``resumeRequested(row)``,
    ``trainAgainRequested(row)``.
    """

    reviewRequested = Signal(object)
    exportRequested = Signal(object, bool)
    resumeRequested = Signal(object)
    trainAgainRequested = Signal(object)

    def __init__(self, *, track: Callable[[Worker], None], log: Callable[..., None],
                 parent=None) -> None:
        super().__init__(parent)
        self._track, self._log = track, log
        self.extra: list[str] = []  # run folders added by hand
        self.comparison = None  # RunComparison, made at the first Compare
        self.loaded = False  # the list was read once
        self.model = RunsModel(self)
        self.model.renameFailed.connect(lambda m: dialogs.show_error(self, m))
        self.proxy = QSortFilterProxyModel(self)
        self.proxy.setSourceModel(self.model)
        self.proxy.setSortRole(SORT_ROLE)
        self.proxy.setFilterKeyColumn(-1)  # every column
        self.proxy.setFilterCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)

        self.filter = QLineEdit()
        self.filter.setPlaceholderText("Filter runs (name, data, status, settings…)")
        self.filter.setClearButtonEnabled(True)
        self.filter.textChanged.connect(self.proxy.setFilterFixedString)
        self.table = QTableView()
        self.table.setModel(self.proxy)
        self.table.setSortingEnabled(True)
        self.table.sortByColumn(DATE, Qt.SortOrder.DescendingOrder)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.DoubleClicked
                                   | QAbstractItemView.EditTrigger.EditKeyPressed)
        self.table.verticalHeader().hide()
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        header.setStretchLastSection(True)
        header.setResizeContentsPrecision(50)  # sizing columns to 500 rows takes a second
        self.table.selectionModel().selectionChanged.connect(self._update_buttons)

        self.buttons: dict[str, QPushButton] = {}
        bar = QHBoxLayout()
        for key, text, tip, slot in (
            ("refresh", "Refresh", "Read the runs folder again", self.refresh),
            ("add", "Add run folder…", "List a run folder kept elsewhere", self.add_folder),
            ("compare", "Compare", "Overlay the curves and tabulate the settings of the "
                                   "selected runs (two or more)", self.compare_selected),
            ("review", "Open", "Show this run's result and previews", self._emit(
                self.reviewRequested)),
            ("export", "Export adapter…", "Export this run's adapter", lambda: self._export(False)),
            ("merged", "Export merged…", "Export this run's adapter merged into its base model",
             lambda: self._export(True)),
            ("resume", "Resume", "Continue this interrupted run from its checkpoint",
             self._emit(self.resumeRequested)),
            ("again", "Train again", "Fill the settings (and the data folders, where they still "
                                     "exist) with this run's", self._emit(self.trainAgainRequested)),
            ("copy", "Copy command", "Copy the loragui train command that repeats this run",
             self.copy_command),
            ("folder", "Show folder", "Open this run's folder", self.show_folder),
            ("delete", "Delete…", "Delete this run's folder (asks first)", self.delete_selected),
        ):
            button = QPushButton(text)
            button.setToolTip(tip)
            button.clicked.connect(slot)
            bar.addWidget(button)
            self.buttons[key] = button
        bar.addStretch(1)

        top = QWidget()
        top_layout = QVBoxLayout(top)
        top_layout.setContentsMargins(0, 0, 0, 0)
        top_layout.addWidget(self.filter)
        top_layout.addWidget(self.table, 1)
        top_layout.addLayout(bar)
        self.splitter = QSplitter(Qt.Orientation.Vertical)
        self.splitter.addWidget(top)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.splitter)
        self._update_buttons()

    # ------------------------------------------------------------------ the list
    def refresh(self) -> CallWorker:
        """Read the runs again, off the GUI thread; the selection is kept by folder."""
        worker = CallWorker(load_runs, list(self.extra))
        worker.succeeded.connect(self._loaded)
        worker.failed.connect(lambda m, d: self._log(f"Could not list the runs: {m}", "warning"))
        self._track(worker)
        worker.start()
        return worker

    def _loaded(self, rows: list[RunRow]) -> None:
        selected = [r.path for r in self.selected()]
        self.model.set_rows(rows)
        self.loaded = True
        self.select_paths(selected)
        self.table.resizeColumnsToContents()
        self._update_buttons()

    def add_folder(self, folder: str | None = None) -> CallWorker | None:
        """List a run folder from elsewhere (asked for when not given)."""
        if folder is None:
            folder = QFileDialog.getExistingDirectory(self, "Run folder to list", str(Path.home()))
        if not folder:
            return None
        if not is_run_folder(Path(folder)):
            dialogs.show_error(self, f"{folder} is not a run folder: it holds no run.json, "
                               "checkpoint or metrics.csv.", title="Not a run folder")
            return None
        if folder not in self.extra:
            self.extra.append(str(folder))
        return self.refresh()

    def selected(self) -> list[RunRow]:
        rows = {self.proxy.mapToSource(i).row() for i in self.table.selectionModel().selectedRows()}
        return [self.model.rows[r] for r in sorted(rows)]

    def select_paths(self, paths: list[str]) -> None:
        """Select the rows of these run folders (and no other)."""
        selection = self.table.selectionModel()
        selection.clearSelection()
        for i in range(self.proxy.rowCount()):
            row = self.model.rows[self.proxy.mapToSource(self.proxy.index(i, 0)).row()]
            if row.path in paths:
                selection.select(self.proxy.index(i, 0), selection.SelectionFlag.Select
                                 | selection.SelectionFlag.Rows)

    def _update_buttons(self, *_: Any) -> None:
        rows = self.selected()
        one = rows[0] if len(rows) == 1 else None
        has_output = one is not None and bool(one.output) and bool(one.config)
        self.buttons["compare"].setEnabled(len(rows) >= 2)
        self.buttons["review"].setEnabled(one is not None and bool(one.config))
        self.buttons["export"].setEnabled(has_output and not (one.config or {}).get("full"))
        self.buttons["merged"].setEnabled(has_output and not (one.config or {}).get("full"))
        self.buttons["resume"].setEnabled(one is not None and one.resumable)
        self.buttons["again"].setEnabled(one is not None and bool(one.config))
        self.buttons["copy"].setEnabled(one is not None and bool(one.config))
        self.buttons["folder"].setEnabled(one is not None)
        self.buttons["delete"].setEnabled(one is not None and one.deletable)
        if one is not None and not one.deletable:
            self.buttons["delete"].setToolTip("A running run cannot be deleted: stop it first")
        else:
            self.buttons["delete"].setToolTip("Delete this run's folder (asks first)")

    def _one(self) -> RunRow | None:
        rows = self.selected()
        return rows[0] if len(rows) == 1 else None

    def _emit(self, signal) -> Callable[[], None]:
        return lambda: (row := self._one()) is not None and signal.emit(row)

    def _export(self, merged: bool) -> None:
        row = self._one()
        if row is not None:
            self.exportRequested.emit(row, merged)

    # ------------------------------------------------------------------ acting
    def compare_selected(self) -> None:
        rows = self.selected()
        if len(rows) < 2:
            return
        if self.comparison is None:
            from loragui.engine.runcompare import read_curves

            from .runcompare import RunComparison  # pyqtgraph: only when comparing

            self.comparison = RunComparison()
            self.splitter.addWidget(self.comparison)
            self.splitter.setSizes([1, 2])
        self.comparison.show_runs(rows, [read_curves(r.path) for r in rows])
        self.comparison.show()

    def copy_command(self) -> None:
        row = self._one()
        if row is not None and row.config:
            QGuiApplication.clipboard().setText(command_line(row))
            self._log(f"Copied: {command_line(row)}")

    def show_folder(self) -> None:
        row = self._one()
        if row is not None:
            QDesktopServices.openUrl(QUrl.fromLocalFile(row.path))

    def delete_selected(self) -> None:
        row = self._one()
        if row is None or not row.deletable:
            return
        if not dialogs.ask_yes_no(self, "Delete run", f"Delete the run “{row.name}” and its "
                                  f"folder {row.path}?\n\nIts adapter, checkpoint, metrics and "
                                  "record are removed; this cannot be undone."):
            return
        try:
            kept = delete_run(row.path)
        except (OSError, LoraGuiError) as exc:
            dialogs.show_error(self, f"The run {row.path} was not deleted: {exc}",
                               title="Cannot delete")
            return
        if kept:
            self._log(f"Deleted the run {row.name}; the folder {row.path} is kept for the files "
                      f"loragui did not write: {', '.join(kept)}", "warning")
        else:
            self._log(f"Deleted the run {row.name} ({row.path})")
        self.refresh()
