"""The names that identify loragui's files, and the provenance stamps written into them.

* Base model / merged model: one ``.safetensors`` file; its header metadata
  holds ``format`` (``loragui.base`` or ``loragui.merged``), the architecture and
  the preprocessing as JSON, plus provenance.
* Adapter: a folder in Hugging Face PEFT's layout, ``adapter_config.json`` +
  ``adapter_model.safetensors``, or a single ``.safetensors`` file with that
  config in its header metadata (``adapter_config``). Tensor names, verified
  against peft 0.21 in both directions (``tests/test_peft.py``):

  - ``base_model.model.<module>.lora_A.weight`` / ``...lora_B.weight``;
  - the bias of an adapted layer (config ``bias: "lora_only"``):
    ``base_model.model.<module>.base_layer.bias`` (what PEFT writes and loads;
    the older ``<module>.bias`` is accepted on load);
  - a module trained whole (``modules_to_save``): ``base_model.model.<module>.weight``
    / ``.bias``; PEFT loads these into its ``modules_to_save`` copy.

  The config carries a ``loragui`` section: base model SHA-256 and name,
  architecture, preprocessing, training settings, dataset size and fingerprint,
  validation metrics, loragui version, date, and whether PEFT can load the
  adapter (it cannot when LoRA covers ``ConvTranspose2d`` layers; see
  :func:`loragui.engine.exports.export_adapter` with ``peft_compatible=True``).

Torch-free: the window and the resource lookup use it without loading torch.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import os

BASE_FORMAT = "loragui.base"
MERGED_FORMAT = "loragui.merged"
ADAPTER_FORMAT = "loragui.adapter"
ADAPTER_FORMAT_VERSION = 1
PEFT_PREFIX = "base_model.model."
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
