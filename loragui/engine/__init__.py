"""The Qt-free training engine: model, LoRA, data, training loop, files.

Nothing in this package imports Qt; the window and the command line both drive
it through the typed events in :mod:`loragui.engine.events`.
"""
