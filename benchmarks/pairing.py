"""Scanning and pairing a large folder: 10,000 image/mask pairs by default.

Generates ``--pairs`` distinct PNG images (``--size``² RGB) and masks (named
``NAME_mask.png``) in a temporary folder, then times ``pair_folders`` on them, the
scan the window and ``loragui train`` run before training: listing both folders,
matching names, and checking every file (header, size, mode). Prints the wall and
CPU time and the peak memory the scan added.

    python benchmarks/pairing.py --pairs 10000
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from loragui.engine.pairing import pair_folders  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=10_000)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3, help="scans timed (the best is reported)")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        images, masks = Path(tmp) / "images", Path(tmp) / "masks"
        images.mkdir()
        masks.mkdir()
        t0 = time.perf_counter()
        for i in range(args.pairs):
            pic = rng.integers(0, 256, (args.size, args.size, 3), dtype=np.uint8)
            msk = (rng.random((args.size, args.size)) > 0.7).astype(np.uint8) * 255
            Image.fromarray(pic).save(images / f"cell_{i:05d}.png", compress_level=1)
            Image.fromarray(msk).save(masks / f"cell_{i:05d}_mask.png", compress_level=1)
        print(f"generated {args.pairs:,} distinct pairs of {args.size}² PNGs in "
              f"{time.perf_counter() - t0:.1f} s", flush=True)
        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        times = []
        for _ in range(args.repeats):
            t0, c0 = time.perf_counter(), time.process_time()
            report = pair_folders(images, masks)
            times.append((time.perf_counter() - t0, time.process_time() - c0))
            assert len(report.pairs) == args.pairs, report.summary()
        grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024
    wall, cpu = min(times)
    print(f"pair_folders on {args.pairs:,} pairs: {wall:.2f} s wall, {cpu:.2f} s CPU (best of "
          f"{args.repeats}; all: {', '.join(f'{w:.2f}' for w, _ in times)} s); peak memory "
          f"grew {grown:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
