"""Take ``docs/images/comparison.png``: the Compare methods widget on the simulated Pt ADF sample.

Opens a real napari window (not offscreen), loads the Pt-on-carbon ADF tilt
series and its ground truth, compares SIRT, CS-TV, the learned restoration
(``restore``), CS-TV pulled towards it (``restore_tv``) and DIP-TV with fast
settings on the tilts at ±60° every 10° (CS-TV with ``lam="auto"``, DIP-TV
with a short warm start and few iterations: far from converged), waits for
the run and saves a screenshot of the whole application. On a headless machine::

    xvfb-run -a -s "-screen 0 1920x1200x24" .venv/bin/python docs/screenshot.py

Options: ``--out`` (PNG path), ``--dip-iterations``, ``--timeout`` (seconds).
The PNG is reduced to an adaptive 256-colour palette when that keeps it
under ``--max-kb``.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time
import warnings

HERE = pathlib.Path(__file__).resolve().parent
WINDOW = (1800, 1150)


def _settle(seconds: float = 0.5) -> None:
    from qtpy.QtWidgets import QApplication

    end = time.monotonic() + seconds
    while time.monotonic() < end:
        QApplication.processEvents()
        time.sleep(0.02)


def _save_png(image, path: pathlib.Path, max_kb: int) -> None:
    """Save a QImage; palette-reduce with Pillow when the PNG is too large."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(str(path), "PNG")
    if path.stat().st_size <= max_kb * 1024:
        return
    try:
        from PIL import Image
    except ImportError:
        return
    with Image.open(path) as im:
        reduced = im.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    reduced.save(path, optimize=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=pathlib.Path, default=HERE / "images" / "comparison.png")
    parser.add_argument("--sirt-iterations", type=int, default=100)
    parser.add_argument("--cstv-iterations", type=int, default=150)
    parser.add_argument("--cstv-lam", default="auto", help="CS-TV weight: a number or auto")
    parser.add_argument("--restore-tv-iterations", type=int, default=150)
    parser.add_argument("--dip-iterations", type=int, default=150)
    parser.add_argument("--dip-warm", type=int, default=60, help="DIP-TV warm-start steps")
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument("--max-kb", type=int, default=450)
    args = parser.parse_args(argv)

    warnings.filterwarnings("ignore", message=".*PyQt5 backend.*")
    warnings.filterwarnings("ignore", category=UserWarning)
    import napari
    from qtpy.QtWidgets import QWidget

    viewer = napari.Viewer(title="napari-tomoprior: compare methods")
    qt_window = viewer.window._qt_window
    qt_window.resize(*WINDOW)
    viewer.open_sample("napari-tomoprior", "pt_adf_series")
    viewer.open_sample("napari-tomoprior", "pt_adf_truth")
    _, w = viewer.window.add_plugin_dock_widget("napari-tomoprior", "Compare methods")
    w.tilt.range_min.setValue(-60)
    w.tilt.range_max.setValue(60)
    w.tilt.increment.setValue(10)
    iterations = {
        "sirt": args.sirt_iterations,
        "cstv": args.cstv_iterations,
        "restore": None,  # its own default: the base SIRT the network restores
        "restore_tv": args.restore_tv_iterations,
        "diptv": args.dip_iterations,
    }
    for name, choice in w.choices.items():
        choice.check.setChecked(name in iterations)
        if iterations.get(name) is not None:
            choice.iterations.setValue(iterations[name])
    # parameters are set in the widget's folded Parameters section, as a user would
    if "diptv" in w.choices:
        w.choices["diptv"].page.fields["warm_iterations"].set(args.dip_warm)
    if "cstv" in w.choices:
        w.choices["cstv"].page.fields["lam"].set(args.cstv_lam)
    _settle(1.0)

    t0 = time.monotonic()
    w.run()
    while w.controller.busy and time.monotonic() - t0 < args.timeout:
        _settle(0.2)
    if w.controller.busy:
        w.controller.shutdown()
        print("the comparison did not finish in time", file=sys.stderr)
        return 1
    print(f"comparison finished in {time.monotonic() - t0:.0f} s: {w.controller.state.value}")
    for r in w.table.results:
        print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()})

    w.table.selectRow(0)
    # close notification toasts so that they do not cover the canvas
    for toast in qt_window.findChildren(QWidget):
        if type(toast).__name__ == "NapariQtNotification":
            toast.close()
    _settle(1.5)
    image = qt_window.grab()
    _save_png(image.toImage(), args.out, args.max_kb)
    print(f"saved {args.out} ({args.out.stat().st_size / 1024:.0f} KB)")
    viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
