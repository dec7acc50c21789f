"""Trained networks shipped with the package, each with its model card.

``restore_default.pt`` is the missing-wedge restoration network of the
``restore`` method (and DIP-TV's ``init="pretrained"``); its card, training
command and validation table are in ``docs/models/restore_default.md``.
``restore_broad.pt`` is the same network fine-tuned with domain-randomised
matter added to the training draw (``model=restore_broad``;
``docs/models/restore_broad.md``): better on that family, slightly worse on
the Pt specimens, so it is not the default.
``interpolate_default.pt`` is the tilt-frame interpolation network of
``tomoprior interpolate --method learned`` (``docs/models/interpolate_default.md``).
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["DEFAULT_INTERPOLATE_MODEL", "DEFAULT_RESTORE_MODEL", "MODEL_DIR"]

MODEL_DIR = Path(__file__).resolve().parent
DEFAULT_RESTORE_MODEL = MODEL_DIR / "restore_default.pt"
DEFAULT_INTERPOLATE_MODEL = MODEL_DIR / "interpolate_default.pt"
