"""Run → first picture, Stop → idle and event-loop stalls, through the real widgets.

Opens the bundled needle sample in a napari window (run it under Xvfb:
``xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python benchmarks/gui_latency.py``),
sets the Reconstruction widget to the preview a microscopist starts with
(±60° every 10°, binning 2, a 16-slice slab) and, for each method, clicks Run,
waits for the first result layer, lets the run go on for ``--stop-after``
seconds, clicks Stop and waits until the widget is idle. The Alignment widget
is measured the same way (Run → first progress message, Stop → idle). A 5 ms
timer on the event loop records the longest gap between its ticks: the worst
stall the user could feel, with and without the moment the first layer is
created.

Prints a markdown table; ``--out FILE`` also writes it with the machine and
the command.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

METHODS = ("wbp", "sirt", "cstv", "restore", "restore_tv", "diptv", "inr")


class StallMeter:
    """The longest gaps between the ticks of a 5 ms timer, with their times."""

    def __init__(self) -> None:
        from qtpy.QtCore import QTimer

        self.gaps: list[tuple[float, float]] = []  # (time at the end of the gap, gap)
        self._last = time.perf_counter()
        self._timer = QTimer()
        self._timer.setInterval(5)
        self._timer.timeout.connect(self._tick)
        self._timer.start()

    def _tick(self) -> None:
        now = time.perf_counter()
        gap = now - self._last
        if gap > 0.02:
            self.gaps.append((now, gap))
        self._last = now

    def worst(self, t0: float, t1: float, skip: tuple[float, float] | None = None) -> float:
        """Longest gap ending in [t0, t1]; ``skip``: leave out gaps that overlap that window."""
        out = 0.0
        for end, gap in self.gaps:
            if not t0 <= end <= t1:
                continue
            if skip is not None and end - gap <= skip[1] and end >= skip[0]:
                continue
            out = max(out, gap)
        return out


class DrawLog:
    """Times at which the canvas finished drawing a frame."""

    def __init__(self, viewer) -> None:
        self.times: list[float] = []
        canvas = viewer.window._qt_viewer.canvas._scene_canvas
        canvas.events.draw.connect(lambda _e: self.times.append(time.perf_counter()), position="last")

    def first_after(self, t: float) -> float | None:
        return next((x for x in self.times if x > t), None)


def _pump(seconds: float) -> None:
    from qtpy.QtWidgets import QApplication

    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        QApplication.processEvents()
        time.sleep(0.002)


def _wait(cond, timeout: float) -> float | None:
    """Seconds until ``cond()`` holds (events processed meanwhile), None on timeout."""
    from qtpy.QtWidgets import QApplication

    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        QApplication.processEvents()
        if cond():
            return time.perf_counter() - t0
        time.sleep(0.002)
    return None


def _volumes(viewer) -> list:
    return [lay for lay in viewer.layers if lay.metadata.get("tomoprior_kind") == "volume"]


def measure_method(w, meter: StallMeter, draws: DrawLog, name: str, stop_after: float,
                   timeout: float) -> dict:
    viewer = w.viewer
    for lay in _volumes(viewer):
        viewer.layers.remove(lay)
    method, _, spec = name.partition(":")  # "restore:adapt=200": a method with parameters
    params = dict(kv.split("=", 1) for kv in spec.split("+") if kv)
    w.method_panel.set_method(method)
    if params:
        w.method_panel.apply_settings(method, params)
    _pump(0.3)
    t0 = time.perf_counter()
    w.run_button.click()
    first = _wait(lambda: bool(_volumes(viewer)), timeout)
    t_first = None if first is None else t0 + first
    phase = ""
    if first is not None:
        step = w._run.get("step")
        phase = getattr(step, "phase", "") if step is not None else ""
    stop = None
    finished_alone = False
    if w.controller.busy:
        _wait(lambda: not w.controller.busy, stop_after)
    if w.controller.busy:
        ts = time.perf_counter()
        w.stop_button.click()
        stop = _wait(lambda: not w.controller.busy, timeout)
    else:
        finished_alone = True
        _wait(lambda: not w.controller.busy, timeout)
    t1 = time.perf_counter()
    layer = _volumes(viewer)
    # layer creation: from Run's first layer until the canvas has drawn it once (napari
    # builds the layer's controls and its vispy visual, and links its shader on that draw)
    creation = None
    if t_first is not None:
        drawn = draws.first_after(t_first)
        creation = (t_first - 0.05, drawn if drawn is not None else t_first)
    return {
        "method": name,
        "first": first,
        "first_phase": phase,
        "stop": stop,
        "finished": finished_alone,
        "stall": meter.worst(t0, t1, skip=creation),
        "stall_all": meter.worst(t0, t1),
        "layer": layer[0].name if layer else "",
        "stopped_at": (ts - t0) if stop is not None else None,
    }


def measure_alignment(viewer, meter: StallMeter, stop_after: float, timeout: float) -> dict:
    _, a = viewer.window.add_plugin_dock_widget("napari-tomoprior", "Alignment")
    messages: list[float] = []
    a.task.message.connect(lambda _m: messages.append(time.perf_counter()))
    _pump(0.3)
    t0 = time.perf_counter()
    a.align_button.click()
    first = _wait(lambda: bool(messages), timeout)
    stop = None
    if a.task.busy:
        _wait(lambda: not a.task.busy, stop_after)
    if a.task.busy:
        a.stop_button.click()
        stop = _wait(lambda: not a.task.busy, timeout)
    t1 = time.perf_counter()
    return {"method": "alignment", "first": first, "first_phase": "message", "stop": stop,
            "finished": stop is None, "stall": meter.worst(t0, t1), "stall_all": meter.worst(t0, t1),
            "layer": "", "stopped_at": None}


def measure_napari_floor(viewer, meter: StallMeter, draws: DrawLog, shape, scale) -> dict:
    """napari alone, no plugin code: add a volume of the run's shape, then replace its data.

    The same window, layers and event loop as the runs: the stall of ``add_image`` until
    its first draw, and the worst stall of five ``layer.data = ...`` updates (each is
    what a live result costs napari per shown step).
    """
    import numpy as np

    rng = np.random.default_rng(0)
    vols = [rng.random(shape, dtype=np.float32) for _ in range(2)]
    _pump(0.5)
    t0 = time.perf_counter()
    layer = viewer.add_image(vols[0], scale=scale, units=("nm",) * 3, rgb=False, name="floor")
    t_add = time.perf_counter()
    _wait(lambda: draws.first_after(t_add) is not None, 10.0)
    _pump(0.5)
    t1 = time.perf_counter()
    for k in range(5):
        layer.data = vols[(k + 1) % 2]
        _pump(0.3)
    t2 = time.perf_counter()
    viewer.layers.remove(layer)
    _pump(0.3)
    return {"method": "napari alone", "first": t_add - t0, "first_phase": "add_image",
            "stop": None, "finished": True, "stall": meter.worst(t1, t2),
            "stall_all": meter.worst(t0, t1), "layer": "", "stopped_at": None}


def _fmt(v: float | None, unit: str = " s") -> str:
    return "timeout" if v is None else f"{v:.2f}{unit}"


def table(rows: list[dict]) -> str:
    lines = [
        "| method | Run → first layer | first layer shows | Stop → idle | worst stall (without / with layer creation) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        stop = "finished before Stop" if r["finished"] else _fmt(r["stop"])
        if r["method"] == "napari alone":
            stop = "-"
        lines.append(
            f"| {r['method']} | {_fmt(r['first'])} | {r['first_phase'] or '-'} | {stop} | "
            f"{1000 * r['stall']:.0f} ms / {1000 * r['stall_all']:.0f} ms |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", default=",".join(METHODS),
                    help="comma-separated; METHOD:NAME=VALUE+NAME=VALUE sets parameters")
    ap.add_argument("--stop-after", type=float, default=1.5,
                    help="seconds the run goes on after the first picture before Stop")
    ap.add_argument("--timeout", type=float, default=120.0)
    ap.add_argument("--bin", type=int, default=2)
    ap.add_argument("--slab", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    ap.add_argument("--no-alignment", action="store_true")
    ap.add_argument("--out", help="write the table (markdown) here")
    args = ap.parse_args(argv)

    import napari
    import torch

    from tomoprior._qt.tilt_panel import BINNINGS

    torch.set_num_threads(args.threads)
    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1600, 1000)
    viewer.open_sample("napari-tomoprior", "needle_haadf")
    _, w = viewer.window.add_plugin_dock_widget("napari-tomoprior", "Reconstruction")
    t = w.tilt
    t.range_min.setValue(-60)
    t.range_max.setValue(60)
    t.increment.setValue(10)
    t.binning.setCurrentIndex(BINNINGS.index(args.bin))
    t.slab_check.setChecked(True)
    mid = t.slab_from.maximum() // 2
    t.slab_from.setValue(mid - args.slab // 2)
    t.slab_to.setValue(mid + args.slab // 2)
    meter = StallMeter()
    draws = DrawLog(viewer)
    import threading

    # a user sets the panel up before the first Run: let the widget's background import end
    _wait(lambda: not any(t.name == "tomoprior-warm-up" for t in threading.enumerate()), 30.0)
    _pump(1.0)
    rows = [measure_method(w, meter, draws, m, args.stop_after, args.timeout)
            for m in args.methods.split(",") if m]
    shown = [lay for lay in _volumes(viewer)]
    if shown:  # the floor, for a volume of the size the runs showed
        rows.append(measure_napari_floor(viewer, meter, draws, shown[0].data.shape,
                                         tuple(shown[0].scale)))
    if not args.no_alignment:
        rows.append(measure_alignment(viewer, meter, args.stop_after, args.timeout))
    text = table(rows)
    print(text)
    if args.out:
        cmd = "xvfb-run -a -s \"-screen 0 1600x1000x24\" .venv/bin/python benchmarks/gui_latency.py " \
              + " ".join(argv if argv is not None else sys.argv[1:])
        head = (f"# Interactivity through the widgets\n\nMachine: {platform.processor() or platform.machine()}, "
                f"{os.cpu_count()} CPUs visible, torch threads {args.threads}, no GPU. "
                f"Needle sample, ±60° every 10°, binning {args.bin}, {args.slab}-slice slab; "
                f"Stop clicked {args.stop_after:g} s after the first picture.\n\n`{cmd.strip()}`\n\n")
        with open(args.out, "w", encoding="utf-8") as fh:
            fh.write(head + text + "\n")
    viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
