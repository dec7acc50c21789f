"""etspy's CPU SIRT on a tilt series, timed; run inside the benchmark's own venv.

This helper is started by ``benchmarks/projector.py`` with the python of
``.bench-venv`` (where etspy 1.3.0 is installed) and must not import
tomoprior. It loads the TIFF tilt series with tifffile, bins it ``b x b`` by
block means exactly as ``tomoprior.transforms.bin_images`` does (float32,
remainder cropped), builds an ``etspy.TomoStack`` with the tilt angles
(etspy's tilt axis is the image x axis, which is the needle's axis; no
alignment is applied), and runs::

    stack.reconstruct("SIRT", iterations=N, constrain=True, thresh=0,
                      cuda=False, ncores=NCORES, show_progressbar=False)

i.e. ``etspy.recon.run``: ASTRA's 2D CPU ``SIRT`` algorithm with the
``strip`` projector, one dask task per slice along the tilt axis, with
non-negativity (``MinConstraint=0``) like tomoprior's SIRT default.

Only the ``reconstruct`` call is timed. The volume (etspy's axes, ``(x, z,
y)``) is saved to ``--out`` (``.npy``) and a JSON summary to ``--json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="tilt series TIFF (n_tilts, rows, cols)")
    p.add_argument("--angles", required=True, help="text file, one tilt angle (degrees) a line")
    p.add_argument("--bin", type=int, default=2)
    p.add_argument("--iterations", type=int, default=100)
    p.add_argument("--ncores", type=int, default=2)
    p.add_argument("--out", required=True, help="where to save the volume (.npy)")
    p.add_argument("--json", required=True, help="where to write the timing summary")
    args = p.parse_args(argv)

    t_import = time.perf_counter()
    import astra
    import etspy
    import numpy as np
    import tifffile
    from etspy.base import TomoStack

    t_import = time.perf_counter() - t_import

    data = np.asarray(tifffile.imread(args.data), dtype=np.float32)
    angles = np.loadtxt(args.angles, dtype=np.float64).reshape(-1)
    if data.ndim != 3 or data.shape[0] != angles.size:
        raise SystemExit(f"data {data.shape} and {angles.size} angles do not match")
    b = max(1, int(args.bin))
    n, h, w = data.shape
    h2, w2 = h // b, w // b
    data = data[:, : h2 * b, : w2 * b].reshape(n, h2, b, w2, b).mean(axis=(2, 4), dtype=np.float32)
    data = np.ascontiguousarray(data, dtype=np.float32)

    stack = TomoStack(data, tilts=angles)
    t0 = time.perf_counter()
    rec = stack.reconstruct(
        "SIRT",
        iterations=int(args.iterations),
        constrain=True,
        thresh=0,
        cuda=False,
        ncores=int(args.ncores),
        show_progressbar=False,
    )
    seconds = time.perf_counter() - t0
    vol = np.asarray(rec.data, dtype=np.float32)
    np.save(args.out, vol)

    import hyperspy

    summary = {
        "seconds": seconds,
        "import_seconds": t_import,
        "iterations": int(args.iterations),
        "ncores": int(args.ncores),
        "binned_shape": list(data.shape),
        "volume_shape": list(vol.shape),
        "volume_axes": "etspy (x, z, y): one reconstructed slice (z, y) per x along the tilt axis",
        "call": (
            f'TomoStack(data, tilts=angles).reconstruct("SIRT", iterations={int(args.iterations)}, '
            f"constrain=True, thresh=0, cuda=False, ncores={int(args.ncores)}, "
            "show_progressbar=False)"
        ),
        "versions": {
            "python": sys.version.split()[0],
            "etspy": getattr(etspy, "__version__", "?"),
            "astra-toolbox": getattr(astra, "__version__", "?"),
            "hyperspy": getattr(hyperspy, "__version__", "?"),
            "numpy": np.__version__,
        },
        "astra_use_cuda": bool(astra.use_cuda()),
        "env": {k: os.environ[k] for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS") if k in os.environ},
    }
    with open(args.json, "w") as f:
        json.dump(summary, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
