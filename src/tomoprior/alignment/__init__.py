"""Tilt-series alignment: per-tilt shifts, tilt-axis angle and offset.

Real tilt series drift between tilts and their tilt axis is rarely exactly
horizontal or vertical. :func:`align_series` finds the corrections and
returns the series resampled once with them, the found geometry of the raw
series, and a report::

    aligned, geometry, report = align_series(series, geometry, method="pm")
    write_transforms("out/aligned", geometry, report)   # .xf, .tlt, .json
    full = apply_transforms(full_res_series, "out/aligned.json", binning=2)

Methods (:mod:`.xcorr`, :mod:`.com`, :mod:`.axis`, :mod:`.pm`):

``"xcorr"``
    Band-passed cross-correlation of neighbouring tilts with cosine
    stretching, chained outwards from the tilt nearest 0° (IMOD's
    *tiltxcorr*), then the axis search.
``"com"``
    Centre of mass across the axis, common-line profile along it, then the
    axis search (specimen wholly in view, HAADF-like contrast).
``"pm"``
    ``"xcorr"``, the axis search, then projection matching alternated with
    a fine axis search.

The axis search (:mod:`.axis`, on by default, ``axis=False`` skips it)
finds the in-plane angle and offset of the tilt axis; it also realigns the
shifts along the axis from the common-line profile, which is more precise
than the correlation chain.

Everything runs in the canonical frame of :mod:`tomoprior.transforms`
(axis vertical); shifts are returned in the geometry's convention.
"""

from ..frames import aligned_geometry, fix_reference, reference_tilt
from ..registration import register
from ._align import align_series, options_help
from ._options import METHODS, AlignmentError, AlignOptions
from .axis import find_axis
from .com import com_shifts
from .files import apply_transforms, read_transforms, write_transforms, xf_lines
from .pm import project_match
from .xcorr import stretch_across, xcorr_shifts

__all__ = [
    "METHODS",
    "AlignOptions",
    "AlignmentError",
    "align_series",
    "aligned_geometry",
    "apply_transforms",
    "com_shifts",
    "find_axis",
    "fix_reference",
    "options_help",
    "project_match",
    "read_transforms",
    "reference_tilt",
    "register",
    "stretch_across",
    "write_transforms",
    "xcorr_shifts",
    "xf_lines",
]
