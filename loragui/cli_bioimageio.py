"""``loragui export PATH --bioimageio OUT.zip``: a bioimage.io model package, from the
command line. The authors and the licence the user gives are remembered (in the
window's preferences), so they are entered once."""

from __future__ import annotations

import argparse
import sys

from .terminal import warn


def add_bioimageio_args(x: argparse.ArgumentParser) -> None:
    x.add_argument("--bioimageio", metavar="OUT.zip",
                   help="write a bioimage.io model package (for Fiji/deepImageJ, ilastik, "
                        "QuPath, napari); needs the bioimageio extra")
    x.add_argument("--author", action="append", metavar="NAME",
                   help="an author of the package (repeat for several); remembered")
    x.add_argument("--license", metavar="SPDX",
                   help="the package's licence, an SPDX id (default: MIT, the licence of the "
                        "bundled base models); remembered")
    x.add_argument("--test-image", metavar="FILE",
                   help="the image the package's test input, output and cover are made from "
                        "(one of your validation images; default: the sample's first image)")


def cmd_export_bioimageio(args: argparse.Namespace) -> int:
    from .engine.bioimageio_export import (
        PackageIdentity,
        default_test_image,
        export_bioimageio,
        refuse_existing,
    )
    from .engine.bioimageio_read import model_tests, require_bioimageio
    from .gui.prefs import Preferences  # Qt-free

    refuse_existing(args.bioimageio, args.overwrite)  # before any slow work
    require_bioimageio()
    prefs = Preferences.load()
    identity = PackageIdentity(authors=list(args.author or prefs.package_authors),
                               license=args.license or prefs.package_license)
    image = args.test_image or default_test_image()
    path = export_bioimageio(args.path, args.bioimageio, test_image=image, identity=identity,
                             base=args.base, force=args.force, overwrite=args.overwrite,
                             on_warning=warn)
    if args.author or args.license:
        prefs.package_authors, prefs.package_license = identity.authors, identity.license
        prefs.save()
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB; bioimage.io model spec 0.5, "
          "validated by bioimageio.spec)")
    print("testing each weight format with bioimageio.core…", file=sys.stderr)
    results = model_tests(path)
    if results:
        print("bioimageio.core model test: " + ", ".join(f"{k} {v}" for k, v in results.items()))
        if any(v != "passed" for v in results.values()):
            warn("a weight format did not reproduce the package's test output")
            return 1
    return 0
