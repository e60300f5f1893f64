"""How long a bioimage.io package takes to write, validate and test, and how large it is.

Runs the product's own path (``export_bioimageio``, ``validate_package``, ``model_tests``)
on a bundled base model (``--base small`` or ``medium``, or a model/adapter file) with the
sample's first image as the test image, and prints one line per step:

    python benchmarks/bioimageio_package.py --base small
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from loragui.engine.bioimageio_export import (
    PackageIdentity,
    default_test_image,
    export_bioimageio,
)
from loragui.engine.bioimageio_read import model_tests, validate_package
from loragui.engine.resources import resources_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="small",
                        help="small, medium (the bundled bases) or a model or adapter path")
    parser.add_argument("--test-image", help="default: the sample's first image")
    args = parser.parse_args()
    source = Path(args.base) if args.base not in ("small", "medium") else \
        resources_dir() / "base" / f"loragui-base-{args.base}.safetensors"
    image = args.test_image or default_test_image()
    with tempfile.TemporaryDirectory() as tmp:
        dest = Path(tmp) / "model.zip"
        t0 = time.perf_counter()
        export_bioimageio(source, dest, test_image=image, identity=PackageIdentity(["benchmark"]))
        t1 = time.perf_counter()
        status = validate_package(dest)
        t2 = time.perf_counter()
        print(f"{source.name}: package {dest.stat().st_size / 1e6:.1f} MB")
        print(f"export (build, package, validate): {t1 - t0:.1f} s")
        print(f"validation again ({status}): {t2 - t1:.1f} s")
        for fmt, result in model_tests(dest).items():
            print(f"bioimageio.core test {fmt}: {result}")
        print(f"all model tests: {time.perf_counter() - t2:.1f} s")


if __name__ == "__main__":
    main()
