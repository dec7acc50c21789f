"""Stop reaches the inner loops: a λ search, a warm start, a network's batches."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from tomoprior.cancel import StopRequested, checkpoint, stop_when
from tomoprior.phantoms import make_phantom, simulate

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def blobs():
    series, geom = simulate(make_phantom("blobs", 24, seed=0), np.arange(-60, 61, 10.0),
                            seed=0, device="cpu")
    return series, geom


def test_checkpoint_raises_only_inside_a_set_scope():
    checkpoint()  # no scope: never stops
    ev = threading.Event()
    with stop_when(ev):
        checkpoint()
        ev.set()
        with pytest.raises(StopRequested):
            checkpoint()
    checkpoint()  # the scope is gone with the block


def test_scopes_belong_to_their_thread():
    ev = threading.Event()
    ev.set()
    seen = []

    def other():
        try:
            checkpoint()
            seen.append("ran")
        except StopRequested:
            seen.append("stopped")

    with stop_when(ev):
        t = threading.Thread(target=other)
        t.start()
        t.join()
    assert seen == ["ran"]


@pytest.mark.parametrize(("method", "params"), [
    ("cstv", {"lam": "auto"}),  # the first picture after the preview ends a whole λ candidate
    ("diptv", {}),  # the warm start runs SIRT and CS-TV before the first DIP step
    ("inr", {}),
    ("restore", {}),
    ("sirt", {}),
])
def test_stop_after_the_preview_ends_before_the_next_picture(blobs, method, params):
    from tomoprior.run import run

    series, geom = blobs
    ev = threading.Event()
    with stop_when(ev):
        rec = run(method, series, geom, iterations=40, every=20, preview=True, **params)
        first = next(rec)
        assert first.phase == "preview" and first.iteration == 0 and first.loss is None
        ev.set()
        assert list(rec) == []  # no λ candidate, warm start or batch is finished first
    assert rec.stopped and not rec.finished
    assert rec.last is first and first.volume.shape == (24, 24, 24)


def test_preview_is_opt_in_and_absent_for_wbp(blobs):
    from tomoprior.run import run

    series, geom = blobs
    assert next(run("sirt", series, geom, iterations=2)).phase == "iterate"
    assert next(run("wbp", series, geom, preview=True)).phase != "preview"
    steps = list(run("sirt", series, geom, iterations=2, every=1, preview=True))
    assert [s.phase for s in steps] == ["preview", "iterate", "iterate"]
