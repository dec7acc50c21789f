"""``tomoprior assess A B``: the resolution of two volumes, from their Fourier shell correlation.

Two reconstructions from independent data (``reconstruct --halves`` writes
them as ``OUT_half1`` and ``OUT_half2``), or a reconstruction and a ground
truth: the FSC over spheres, in the x-y plane, along the beam and over the
tilt plane, and where each falls below 0.143 and the ½-bit curve. Needs
numpy and scipy only (no torch).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ._cli_common import CliError, emit_json, number

__all__ = ["add_assess_parser", "cmd_assess"]

_NAMES = {"spherical": "spherical", "xy": "x-y plane", "z": "z (beam)"}


def _volume(path: str, what: str):
    """``(data, pixel_size, pixel_unit, provenance)`` of a volume file."""
    import numpy as np

    from . import io

    f = io.read(Path(path))
    data = f.data
    if getattr(data, "ndim", 0) != 3:
        raise CliError(f"{what} {path} is not a 3D volume (shape {getattr(data, 'shape', None)})")
    try:
        prov = io.read_provenance(path)
    except Exception:  # a format without provenance (dm, emd ...): none
        prov = None
    return np.asarray(data, np.float32), f.pixel_size, f.pixel_unit, prov


def _tilt_axis(args: argparse.Namespace, prov: dict | None) -> tuple[float, str]:
    """The tilt axis: ``--tilt-axis``, else the provenance's geometry, else horizontal."""
    from .geometry import parse_tilt_axis

    if args.tilt_axis is not None:
        return parse_tilt_axis(args.tilt_axis), "--tilt-axis"
    geometry = (prov or {}).get("geometry") or {}
    if isinstance(geometry.get("tilt_axis"), (int, float)):
        return float(geometry["tilt_axis"]), "the first volume's provenance"
    return 0.0, "default (horizontal): give --tilt-axis if the series was tilted about another"


def cmd_assess(args: argparse.Namespace) -> int:
    """Print the resolution table (or ``--json``: the summary with the curves)."""
    from .resolution import THRESHOLDS, directional_fsc

    a, ps_a, unit_a, prov = _volume(args.volume_a, "the first volume")
    b, ps_b, unit_b, _ = _volume(args.volume_b, "the second volume")
    if a.shape != b.shape:
        raise CliError(f"the volumes differ in shape: {a.shape} and {b.shape}")
    pixel, unit = (args.pixel_size, "nm") if args.pixel_size else (ps_a or ps_b, unit_a)
    if args.pixel_size is None and ps_a and ps_b and abs(ps_a - ps_b) > 1e-6 * ps_a:
        raise CliError(f"the volumes have different pixel sizes ({ps_a:g} and {ps_b:g} "
                       f"{unit_a}): give --pixel-size to compare them anyway")
    axis, axis_source = _tilt_axis(args, prov)
    res = directional_fsc(a, b, pixel_size=pixel, pixel_unit=unit, tilt_axis=axis, cone=args.cone)
    summary: dict[str, Any] = {"volume_a": str(args.volume_a), "volume_b": str(args.volume_b),
                               "shape": list(a.shape), "pixel_size": pixel,
                               "tilt_axis_source": axis_source, **res.summary(curves=True)}
    if args.json:
        emit_json(summary)
        return 0
    u = res.unit
    print(f"FSC of {args.volume_a} and {args.volume_b}: {a.shape[0]}x{a.shape[1]}x{a.shape[2]}, "
          f"pixel {pixel:g} {u}" if pixel else f"FSC of {args.volume_a} and {args.volume_b} "
          "(no pixel size: resolutions in pixels)")
    print(f"tilt axis {axis:g}° ({axis_source}); cones of ±{args.cone:g}°")
    print(f"  {'direction':<12}" + "".join(f"{name:>12}" for name in THRESHOLDS))
    for which, label in _NAMES.items():
        cells = []
        for thr in THRESHOLDS.values():
            v = res.resolution(which, thr)
            bound = res.at_nyquist(which, thr)
            cells.append(f"{'≤' if bound else ''}{v:.3g} {u}")
        print(f"  {label:<12}" + "".join(f"{c:>12}" for c in cells))
    polar = res.polar_resolution()
    print("  tilt plane (degrees from z, 0.143): " + ", ".join(
        f"{t:g}°: {v:.3g}" for t, v in zip(res.polar_angles, polar)))
    if any(res.at_nyquist(w, t) for w in _NAMES for t in THRESHOLDS.values()):
        print("≤: the correlation stays above the threshold up to Nyquist (a bound, not a "
              "measurement)")
    return 0


def add_assess_parser(sub) -> None:
    """``tomoprior assess`` on the main sub-parsers."""
    p = sub.add_parser(
        "assess", help="resolution of two volumes (half sets) from their Fourier shell "
        "correlation",
        description="The Fourier shell correlation of two volumes reconstructed from independent "
        "data (reconstruct --halves writes them as OUT_half1 and OUT_half2), or of a "
        "reconstruction and its ground truth: over spheres, in the x-y plane, along the beam (z) "
        "and over the tilt plane, and the resolution where it falls below 0.143 and the ½-bit "
        "curve. Along the beam a tilt series has a missing wedge: both halves lack it, so their "
        "agreement there says how reproducible the filling is, not that it is right.")
    p.add_argument("volume_a", help="first volume (.mrc .rec .tif .npy .zarr)")
    p.add_argument("volume_b", help="second volume, same shape")
    p.add_argument("--pixel-size", type=number(float, 0.0, low_open=True), metavar="NM",
                   help="voxel size in nm (default: the files')")
    p.add_argument("--tilt-axis", metavar="{horizontal,vertical,DEG}",
                   help="tilt-axis orientation, for the tilt plane (default: from the first "
                   "volume's provenance, else horizontal)")
    p.add_argument("--cone", type=number(float, 0.0, 45.0, low_open=True), default=20.0,
                   metavar="DEG", help="half-angle of the directional cones")
    p.add_argument("--json", action="store_true",
                   help="print the resolutions and curves as JSON on the last line of stdout")
    p.set_defaults(func=cmd_assess)
