"""Fill in missing tilts: virtual frames between the measured ones.

Three ways to make a frame at an angle that was not measured, between two
measured neighbours (:func:`interpolate`, ``tomoprior interpolate``):

``learned``
    A small network trained on simulated HAADF series of metal nanoclusters
    predicts the frame from its two neighbours, the gap and the position
    (:mod:`.learned`; the model and its card: ``docs/models/interpolate_default.md``).
``linear``
    The linear blend of the two neighbours, weighted by the angle (:mod:`.linear`).
``reproject``
    A reconstruction (CS-TV by default) projected at the new angles, in the
    frame of the input images (:mod:`.reproject`).

Measured frames pass through unchanged (the same values, in float32); the
result says which frames are virtual (:attr:`Interpolated.measured`), and
:func:`write_sidecar` records it beside a written series
(``OUT.frames.json``). Filled-in series are meant for viewing and for
studying whether they help; no reconstruction uses them by default.
"""

from __future__ import annotations

from ._api import Interpolated, interpolate, sidecar_path, write_sidecar
from ._plan import AnglePlan, plan_angles

__all__ = ["AnglePlan", "Interpolated", "interpolate", "plan_angles", "sidecar_path",
           "write_sidecar"]
