"""Take ``docs/images/alignment.png``: the Alignment widget after aligning the needle sample.

Opens a real napari window (not offscreen), loads the real needle HAADF
tilt series (File › Open Sample › needle), aligns it binned 2× with
cross-correlation and the axis search, waits for the preview of three slices
across the found axis and saves a screenshot of the whole application. On a
headless machine::

    xvfb-run -a -s "-screen 0 1920x1200x24" .venv/bin/python docs/screenshot_alignment.py

Options: ``--out`` (PNG path), ``--method``, ``--binning``, ``--timeout``
(seconds), ``--max-kb`` (palette-reduce the PNG above this size).
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time
import warnings

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from screenshot import _save_png, _settle  # noqa: E402

WINDOW = (1700, 1120)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=pathlib.Path, default=HERE / "images" / "alignment.png")
    parser.add_argument("--method", default="xcorr", choices=("xcorr", "com", "pm"))
    parser.add_argument("--binning", type=int, default=2, choices=(1, 2, 4))
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument("--max-kb", type=int, default=390)
    args = parser.parse_args(argv)

    warnings.filterwarnings("ignore", message=".*PyQt5 backend.*")
    warnings.filterwarnings("ignore", category=UserWarning)
    import napari
    from qtpy.QtWidgets import QWidget

    from tomoprior._qt.tilt_panel import BINNINGS

    viewer = napari.Viewer(title="napari-tomoprior: tilt-series alignment")
    qt_window = viewer.window._qt_window
    qt_window.resize(*WINDOW)
    viewer.open_sample("napari-tomoprior", "needle_haadf")
    _, w = viewer.window.add_plugin_dock_widget("napari-tomoprior", "Alignment")
    w.tilt.binning.setCurrentIndex(BINNINGS.index(args.binning))
    w.method.setCurrentIndex(w.method.findData(args.method))
    _settle(1.0)

    t0 = time.monotonic()
    w.run()
    while (w.task.busy or w.preview_task.busy or w.previews == 0) and (
        time.monotonic() - t0 < args.timeout
    ):
        _settle(0.2)
        if not w.task.busy and w.task.state.value != "done":
            break
    if w.task.state.value != "done" or w.previews == 0:
        w.shutdown()
        print(f"the alignment did not finish: {w.task.state.value}", file=sys.stderr)
        return 1
    print(f"aligned in {time.monotonic() - t0:.0f} s: {w.summary.text()}")

    angles = viewer.layers["needle_haadf"].metadata["angles"]
    viewer.dims.set_current_step(0, min(range(len(angles)), key=lambda i: abs(angles[i])))
    for toast in qt_window.findChildren(QWidget):  # toasts would cover the canvas
        if type(toast).__name__ == "NapariQtNotification":
            toast.close()
    w._scroll.verticalScrollBar().setValue(w._scroll.verticalScrollBar().maximum())
    _settle(1.5)
    _save_png(qt_window.grab().toImage(), args.out, args.max_kb)
    print(f"saved {args.out} ({args.out.stat().st_size / 1024:.0f} KB)")
    w.shutdown()
    viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
