"""Time and peak memory of ``loragui predict`` on one large image, per image size.

    python benchmarks/predict_large.py                       # 4096², 10000², 20000² on the CPU
    python benchmarks/predict_large.py --sizes 4096 --threads 2

Each size is a real DSB2018 histology image mirrored out to N×N pixels, written as a
PNG; then ``loragui predict`` (the product's command, in a child process) writes its
mask. Printed per size: the wall time of the command (model loading, reading the PNG,
the tiles and writing the mask), its peak resident memory (``ru_maxrss`` of that
child alone, measured by a small parent process of its own), and the number of tiles.
The goal on two CPU cores: 20000² within 5 minutes and under 3 GB. Timings mean
something only on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from benchmarks.common import REPO, data_root  # noqa: E402

# Runs one command and prints its wall time and its own peak memory (the children of this
# process are that command only).
_MEASURE = """
import json, resource, subprocess, sys, time
t0 = time.perf_counter()
status = subprocess.run(sys.argv[1:]).returncode
seconds = time.perf_counter() - t0
peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB on Linux
print(json.dumps({"status": status, "seconds": seconds, "peak_bytes": peak_kib * 1024}))
"""


def large_image(size: int) -> np.ndarray:
    """The first histology image, mirrored out to size x size (RGB uint8)."""
    from loragui.engine.folders import list_images

    path = list_images(data_root() / "histology" / "images")[0]
    tile = np.asarray(Image.open(path).convert("RGB"))
    h, w = tile.shape[:2]
    block = np.concatenate([tile, tile[:, ::-1]], axis=1)
    block = np.concatenate([block, block[::-1]], axis=0)  # seamless 2h x 2w
    reps = (-(-size // (2 * h)), -(-size // (2 * w)), 1)
    return np.ascontiguousarray(np.tile(block, reps)[:size, :size])


def measure(size: int, base: str | None, device: str, threads: int | None, work: Path) -> dict:
    images, out = work / f"in{size}", work / f"out{size}"
    images.mkdir()
    t0 = time.perf_counter()
    Image.fromarray(large_image(size)).save(images / f"slide{size}.png", compress_level=1)
    made = time.perf_counter() - t0
    command = [sys.executable, "-m", "loragui", "predict", "--images", str(images), "--out",
               str(out), "--device", device] + (["--base", base] if base else [])
    env = dict(os.environ, PYTHONPATH=str(REPO))
    if threads:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    proc = subprocess.run([sys.executable, "-c", _MEASURE, *command], env=env,
                          capture_output=True, text=True)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    if result["status"] != 0:
        raise SystemExit(f"loragui predict failed on {size}²:\n{proc.stderr}")
    mask = Image.open(out / f"slide{size}.png")
    assert mask.size == (size, size), mask.size
    from loragui.engine.basemodel import load_model, resolve_base
    from loragui.engine.tiling import tile_count

    model, _ = load_model(resolve_base(base, device_type="cpu"))
    return {"size": size, "seconds": result["seconds"], "peak_bytes": result["peak_bytes"],
            "tiles": tile_count(size, size, model), "png_written_s": made,
            "png_bytes": (images / f"slide{size}.png").stat().st_size}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[4096, 10000, 20000])
    ap.add_argument("--base", help="base model (default: the bundled one for the device)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, help="OMP_NUM_THREADS for loragui predict")
    ap.add_argument("--json", action="store_true", help="print one JSON object per size")
    args = ap.parse_args()
    print(f"loragui predict, one image per size, device {args.device}, "
          f"threads {args.threads or 'default'}, {os.cpu_count()} CPUs")
    print(f"{'size':>12} {'seconds':>9} {'peak memory':>12} {'tiles':>6} {'PNG':>9}")
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            row = measure(size, args.base, args.device, args.threads, Path(tmp))
            if args.json:
                print(json.dumps(row))
            else:
                print(f"{size:>6}×{size:<5} {row['seconds']:9.1f} "
                      f"{row['peak_bytes'] / 2**30:9.2f} GiB {row['tiles']:>6} "
                      f"{row['png_bytes'] / 2**20:6.0f} MiB", flush=True)
            for leftover in Path(tmp).rglob("*.png"):
                leftover.unlink()  # a 20000² PNG is hundreds of MB
    return 0


if __name__ == "__main__":
    sys.exit(main())
