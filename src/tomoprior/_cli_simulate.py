"""``tomoprior simulate``: a phantom's tilt series, as a microscope would record it.

The series file carries the nominal geometry only (the angles, the tilt axis
the microscope reports, the pixel size), so that ``tomoprior align`` has the
drift and the axis error to find; the truth (drift, true axis, the noise
applied) goes to ``OUT_geometry.json`` and the phantom to ``OUT_truth``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ._atomic import write_text
from ._cli_common import ANGLE, WHOLE, CliError, check_output, emit_json, number

__all__ = ["add_simulate_parser", "cmd_simulate"]


def _noise(args: argparse.Namespace) -> str | None:
    """The noise model asked for: ``--noise``, else Poisson when a ``--dose`` is given."""
    noise = args.noise or ("poisson" if args.dose is not None else "none")
    if args.dose is not None and noise != "poisson":
        raise CliError(f"--dose is the electron dose of --noise poisson, not of --noise {noise}")
    if args.sigma is not None and noise != "gaussian":
        raise CliError(f"--sigma is the noise level of --noise gaussian, not of --noise {noise}")
    return None if noise == "none" else noise


def cmd_simulate(args: argparse.Namespace) -> int:
    """Simulate; write the series (nominal geometry), the truth volume and the true geometry."""
    import numpy as np

    from . import io, phantoms
    from .geometry import TiltGeometry, angles_from_range

    out = Path(args.output)
    truth_ext = out.suffix if out.suffix.lower() in io.VOLUME_EXTENSIONS else ".mrc"
    truth_path = out.with_name(out.stem + "_truth" + truth_ext)
    geom_path = out.with_name(out.stem + "_geometry.json")
    companions = [out.with_suffix(".rawtlt"), truth_path, geom_path]
    if out.suffix.lower() == ".npy":
        companions.append(out.with_suffix(".json"))
    if truth_path.suffix.lower() not in (".tif", ".tiff"):
        companions.append(truth_path.with_suffix(".json"))
    lo, hi = args.tilt_range
    if lo >= hi:
        raise CliError(f"--tilt-range MIN MAX needs MIN < MAX, got {lo:g} {hi:g}")
    if args.size * args.supersample > 1024:
        raise CliError(f"--size x --supersample is {args.size * args.supersample}; at most 1024 "
                       "(the fine grid's volume grows with its cube)")
    noise = _noise(args)
    check_output(args, io.TILT_SERIES_EXTENSIONS, "tilt series", companions)
    angles = angles_from_range(lo, hi, args.tilt_step)
    ss = max(1, int(args.supersample))
    ph = phantoms.make_phantom(args.name, size=args.size, seed=args.seed, supersample=ss)
    series, true = phantoms.simulate(
        ph, angles, tilt_axis=args.tilt_axis, noise=noise, dose=args.dose, sigma=args.sigma,
        shifts=args.misalign if args.misalign else None, axis_error=args.axis_error,
        supersample=ss, seed=args.seed, pixel_size=args.pixel_size, device=args.device,
    )
    applied = true.extra["simulation"]
    nominal = TiltGeometry(true.angles, tilt_axis=applied["nominal_tilt_axis"],
                           pixel_size=true.pixel_size, pixel_unit=true.pixel_unit,
                           angle_source="simulated")
    truth = ph.binned(ss) if ss > 1 else ph
    io.write_tilt_series(out, series, nominal, overwrite=args.overwrite)
    io.write_volume(truth_path, truth.volume, pixel_size=args.pixel_size, overwrite=args.overwrite,
                    provenance={"phantom": args.name, "size": args.size, "seed": args.seed})
    record = {
        "phantom": args.name,
        "seed": args.seed,
        "size": args.size,
        "supersample": ss,
        "noise": applied["noise"],
        "dose": applied["dose"],
        "sigma": applied["sigma"],
        "misalign_px": args.misalign,
        "axis_error_deg": args.axis_error,
        "nominal_tilt_axis": nominal.tilt_axis,
        "true_tilt_axis": true.tilt_axis,
        "series_geometry": "nominal: the angles, the nominal tilt axis and the pixel size, "
                           "no shift corrections",
        "geometry": true.to_dict(),
        "drift": (-np.asarray(true.shifts)).tolist(),
    }
    write_text(geom_path, json.dumps(record, indent=1))
    print(f"wrote {out} {series.shape}, {truth_path.name}, {geom_path.name}", file=sys.stderr)
    if args.json:
        emit_json({"series": str(out), "truth": str(truth_path), "geometry": str(geom_path),
                   "shape": list(series.shape), "n_tilts": int(series.shape[0]),
                   "noise": applied["noise"], "dose": applied["dose"], "sigma": applied["sigma"]})
    return 0


def add_simulate_parser(sub) -> None:
    """``tomoprior simulate`` on the main sub-parsers."""
    from . import io
    from ._cli_common import DEVICES
    from ._cli_methods import NOISE_DEFAULTS, PHANTOMS, phantom_name

    p = sub.add_parser(
        "simulate", help="simulate a tilt series of a phantom",
        description="Project a phantom into a tilt series with drift, a tilt-axis error and "
        "noise. The series carries the nominal geometry, as a microscope records it; the "
        "truth goes to OUT_geometry.json (drift, true axis, noise applied) and OUT_truth.")
    p.add_argument("name", type=phantom_name, choices=PHANTOMS, metavar="PHANTOM",
                   help="the specimen: " + ", ".join(PHANTOMS))
    p.add_argument("-o", "--output", required=True,
                   help="tilt series: " + " ".join(io.TILT_SERIES_EXTENSIONS))
    p.add_argument("--tilt-range", nargs=2, type=ANGLE, default=(-60.0, 60.0),
                   metavar=("MIN", "MAX"), help="first and last tilt angle, degrees")
    p.add_argument("--tilt-step", type=number(float, 0.1, 90.0), default=2.0, metavar="DEG",
                   help="angle between successive tilts")
    p.add_argument("--tilt-axis", default="horizontal", metavar="{horizontal,vertical,DEG}",
                   help="nominal tilt-axis orientation, the one the file records")
    p.add_argument("--size", type=number(int, 8, 1024), default=64, metavar="PX",
                   help="image width and height; the phantom is size³ voxels")
    p.add_argument("--seed", type=WHOLE, default=0,
                   help="seed of the specimen, the drift and the noise")
    p.add_argument("--noise", choices=["none", "poisson", "gaussian"],
                   help="noise model (default: poisson when --dose is given, else none)")
    p.add_argument("--dose", type=number(float, 0.0, 1e12, low_open=True), metavar="E",
                   help="poisson: electrons per pixel at the brightest pixel "
                   f"(default {NOISE_DEFAULTS['dose']:g})")
    p.add_argument("--sigma", type=number(float, 0.0, 10.0), metavar="F",
                   help="gaussian: standard deviation relative to the brightest pixel "
                   f"(default {NOISE_DEFAULTS['sigma']:g})")
    p.add_argument("--misalign", type=number(float, 0.0, 1000.0), default=0.0, metavar="PX",
                   help="largest displacement of a smooth random drift, pixels")
    p.add_argument("--axis-error", type=number(float, -45.0, 45.0), default=0.0, metavar="DEG",
                   help="how far the true tilt axis is from the nominal one")
    p.add_argument("--supersample", type=number(int, 1, 8), default=2, metavar="N",
                   help="render the phantom N times finer than the images (no inverse crime)")
    p.add_argument("--pixel-size", type=number(float, 0.0, low_open=True), metavar="NM",
                   help="pixel size in nm (default: the phantom's own)")
    p.add_argument("--device", default="auto", choices=DEVICES,
                   help="where to project: auto takes CUDA when there is one")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.add_argument("--json", action="store_true",
                   help="print a JSON summary as the last line of stdout")
    p.set_defaults(func=cmd_simulate)
