"""``tomoprior info``: what a tilt-series file holds, as text or JSON (without torch)."""

from __future__ import annotations

import argparse
from typing import Any

from ._cli_common import add_series_args, emit_json, image_numbers, read_series

__all__ = ["add_info_parser", "cmd_info"]


def _is_lazy(data: Any) -> bool:
    import numpy as np

    return isinstance(data, np.memmap) or not isinstance(data, np.ndarray)


def _virtual(f) -> dict[str, Any] | None:
    """The virtual (filled-in) frames the reader found, with their count and image numbers."""
    frames = f.metadata.get("virtual_frames")
    if not frames:
        return None
    indices = [int(i) for i in frames.get("indices", ())]
    return {**frames, "indices": indices, "count": len(indices), "of": int(f.data.shape[0]),
            "images": image_numbers(indices)}


def cmd_info(args: argparse.Namespace) -> int:
    """Describe the file: shape, angles, tilt axis, pixel size, virtual frames, warnings."""
    f = read_series(args)
    g = f.geometry
    info: dict[str, Any] = {
        "path": str(f.path),
        "shape": list(f.data.shape),
        "dtype": str(f.data.dtype),
        "n_tilts": int(f.data.shape[0]),
        "lazy": _is_lazy(f.data),
        "pixel_size": f.pixel_size,
        "pixel_unit": f.pixel_unit,
        "pixel_size_source": f.metadata.get("pixel_size_source") or ("file" if f.pixel_size else None),
        "angle_source": f.angle_source or None,
        "angles": None if g is None else [float(a) for a in g.angles],
        "angle_range": None if g is None else list(g.angle_range),
        "angle_step": None if g is None else g.angle_step,
        "tilt_axis": None if g is None else g.tilt_axis,
        "tilt_axis_name": None if g is None else g.tilt_axis_name,
        "tilt_axis_source": f.metadata.get("tilt_axis_source"),
        "virtual_frames": _virtual(f),
        "warnings": list(f.warnings),
    }
    if args.json:
        emit_json(info)
        return 0
    print(f"{f.path}")
    volume = bool(f.metadata.get("volume")) and g is None
    print(f"  shape      {tuple(f.data.shape)} "
          f"{'(z, y, x) volume' if volume else '(tilts, rows, cols)'}, {f.data.dtype}"
          + ("  [opened lazily]" if info["lazy"] else ""))
    if volume:
        method = (f.metadata.get("provenance") or {}).get("method")
        print(f"  made by    tomoprior {method}" if method else "  angles     none (a volume)")
    elif g is None:
        print("  angles     none found")
    else:
        lo, hi = g.angle_range
        step = f", step {g.angle_step:g}°" if g.angle_step else " (non-uniform)"
        print(f"  angles     {g.n_tilts} from {lo:g}° to {hi:g}°{step}  (from {f.angle_source})")
        src = info["tilt_axis_source"]
        note = " (not recorded in the file: assumed)" if src == "default" else (f" (from {src})" if src else "")
        print(f"  tilt axis  {g.tilt_axis_name}{note}")
    if f.pixel_size:
        given, before = f.metadata.get("pixel_size_source"), f.metadata.get("file_pixel_size")
        note = f" (from {given}" + (f"; the file says {before:g} nm)" if before else ")") if given else ""
        print(f"  pixel size {f.pixel_size:g} {f.pixel_unit}{note}")
    v = info["virtual_frames"]
    if v:
        where = f", from {v['sidecar']}" if v.get("sidecar") else ""
        print(f"  virtual    {v['count']} of {v['of']} frames filled in ({v.get('method', 'unknown')}"
              f"{where}): images {v['images'] or 'none'} (numbered from 1, as --exclude takes them)")
    for w in f.warnings:
        print(f"  warning: {w}")
    return 0


def add_info_parser(sub) -> None:
    """``tomoprior info`` on the main sub-parsers."""
    from . import io

    p = sub.add_parser("info", help="describe a tilt series file",
                       description="Shape, angles, tilt axis, pixel size and virtual (filled-in) "
                       "frames of a tilt series or volume file, and what looks wrong in it.")
    p.add_argument("path", help="tilt series or volume: " + " ".join(io.SUPPORTED_EXTENSIONS))
    add_series_args(p)
    p.add_argument("--json", action="store_true",
                   help="print one JSON object (the last line of stdout) instead of text")
    p.set_defaults(func=cmd_info)
