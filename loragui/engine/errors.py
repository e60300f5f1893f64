"""Exceptions the engine raises for problems a user can fix.

Each carries a message meant for a person: what is wrong and what to do. The
command line prints it and exits with status 2; the window shows it in a dialog.
"""

from __future__ import annotations


class LoraGuiError(Exception):
    """A problem with the user's input or environment (not a bug)."""


class DataError(LoraGuiError):
    """The image/mask folders cannot be used as given."""


class DeviceError(LoraGuiError):
    """The requested device does not exist or cannot be used."""


class ModelFileError(LoraGuiError):
    """A base-model, adapter or merged-model file is missing, damaged or hostile."""


class AdapterMismatchError(ModelFileError):
    """An adapter was made for a different base model."""


class TrainingError(LoraGuiError):
    """Training could not continue (for example the loss became NaN)."""
