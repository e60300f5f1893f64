"""Object-level benchmark: held-out histology nuclei, F1 at IoU 0.5 and DSB average precision.

The DSB2018 masks are merged binary, so the true objects are their connected
components (written as 16-bit label masks into a temporary folder). One seeded
split holds out a share of the images (25 % by default). Each arm runs the
product's own commands in subprocesses (``loragui train``, then
``loragui predict --objects`` on the held-out images) and scores the object
labels that predict wrote against the true ones (:mod:`loragui.engine.object_metrics`):

* base model alone + components: no training;
* binary + components: trained on the binary masks, objects = connected components;
* objects: trained with ``--masks-hold objects`` on the label masks (an interior and a
  boundary class that separate touching nuclei); skipped, with a note, where
  ``loragui train`` has no ``--masks-hold``.

Prints a markdown table. Usage (a quick check of the path, then a real run):

    python benchmarks/objects.py --steps 4 --device cpu
    python benchmarks/objects.py --device cuda
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import data_root
from loragui.engine.masks import read_mask
from loragui.engine.object_metrics import ObjectScores
from loragui.engine.objects import LABELS_DIR, count, labels_from_foreground, write_labels
from loragui.engine.pairing import pair_folders


def loragui(*args: object) -> str:
    """Run ``loragui ARGS`` (this checkout's), its standard output; stops the benchmark
    with the command's own message when it fails."""
    cmd = [sys.executable, "-m", "loragui", *map(str, args)]
    proc = subprocess.run(cmd, capture_output=True, text=True,
                          env=dict(os.environ, PYTHONUNBUFFERED="1"))
    if proc.returncode != 0:
        raise SystemExit(f"{shlex.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc.stdout


def build_sets(domain: Path, dest: Path, held_out: float, seed: int) -> tuple[Path, Path, int]:
    """dest/train/{images,masks,labels} and dest/held/{images,labels}: a seeded split
    of the pairs; labels are the masks' connected components. (train root, held root,
    true objects held out)."""
    pairs = sorted(pair_folders(domain / "images", domain / "masks").pairs, key=lambda p: p.stem)
    random.Random(seed).shuffle(pairs)
    n_held = max(1, round(len(pairs) * held_out))
    objects = 0
    for part, chosen in (("held", pairs[:n_held]), ("train", pairs[n_held:])):
        for sub in ("images", "masks", "labels"):
            (dest / part / sub).mkdir(parents=True)
        for pair in chosen:
            shutil.copy(pair.image, dest / part / "images" / pair.image.name)
            shutil.copy(pair.mask, dest / part / "masks" / pair.mask.name)
            labels = labels_from_foreground(read_mask(pair.mask)[0])
            write_labels(dest / part / "labels", pair.stem, labels)
            if part == "held":
                objects += count(labels)
    print(f"{domain.name}: {len(pairs) - n_held} training / {n_held} held-out images "
          f"({objects} true objects held out), seed {seed}", flush=True)
    return dest / "train", dest / "held", objects


def score(held: Path, predicted: Path) -> dict:
    """Object scores of the labels predict wrote against the held-out true labels."""
    scores = ObjectScores()
    for truth in sorted((held / "labels").iterdir()):
        found = next(iter((predicted / LABELS_DIR).glob(f"{truth.stem}.*")), None)
        if found is None:
            raise SystemExit(f"predict wrote no objects for {truth.stem}")
        scores.add(np.asarray(Image.open(truth), np.int64), np.asarray(Image.open(found), np.int64))
    return scores.summary()


def arm(name: str, work: Path, train: Path | None, held: Path, masks: str, common: list[str],
        train_args: list[str], model: list[str]) -> dict:
    """Train (unless ``train`` is None), predict --objects on the held-out images, score."""
    t0 = time.perf_counter()
    if train is not None:
        run = work / f"run-{name}"
        loragui("train", "--images", train / "images", "--masks", train / masks, "--out", run,
                *common, *train_args)
        model = [*model, "--adapter", run / "adapter"]
    t1 = time.perf_counter()
    predicted = work / f"pred-{name}"
    loragui("predict", "--images", held / "images", "--out", predicted, "--objects", *common,
            *model)
    result = score(held, predicted)
    result.update(train_seconds=t1 - t0, predict_seconds=time.perf_counter() - t1)
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--domain", default="histology")
    ap.add_argument("--base", help="base model (default: the bundled base model)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--steps", type=int, help="training steps at most (default: loragui's)")
    ap.add_argument("--held-out", type=float, default=0.25, help="share of images held out")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--train-args", default="", help="more `loragui train` options, quoted")
    ap.add_argument("--only", default="base,binary,objects")
    ap.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    args = ap.parse_args()

    only = set(args.only.split(","))
    common = ["--device", args.device]
    model = ["--base", args.base] if args.base else []
    train_args = [*model, "--seed", str(args.seed), *shlex.split(args.train_args)]
    if args.steps:
        train_args += ["--steps", str(args.steps)]
    rows: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        train, held, _ = build_sets(data_root() / args.domain, work / "data", args.held_out,
                                    args.seed)
        if "base" in only:
            rows["base model alone + components"] = arm("base", work, None, held, "masks",
                                                        common, train_args, model)
        if "binary" in only:
            rows["binary + components"] = arm("binary", work, train, held, "masks", common,
                                              train_args, model)
        if "objects" in only:
            if "--masks-hold" not in loragui("train", "--help"):
                print("note: `loragui train` has no --masks-hold yet: the objects arm is skipped",
                      flush=True)
            else:
                rows["objects (--masks-hold objects)"] = arm(
                    "objects", work, train, held, "labels", common,
                    [*train_args, "--masks-hold", "objects"], model)
    print()
    print("| arm | F1 at IoU 0.5 | AP (IoU 0.5–0.95) | precision | recall | objects found / true "
          "| train s | predict s |")
    print("|---|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {r['f1']:.3f} | {r['ap']:.3f} | {r['precision']:.3f} | "
              f"{r['recall']:.3f} | {r['predicted_objects']} / {r['true_objects']} | "
              f"{r['train_seconds']:.0f} | {r['predict_seconds']:.0f} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
