"""Stop reaches the inner loops: a λ search, a warm start, a network's batches."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

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
    from tomoprior.engine import run

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
    from tomoprior.engine import run

    series, geom = blobs
    assert next(run("sirt", series, geom, iterations=2)).phase == "iterate"
    assert next(run("wbp", series, geom, preview=True)).phase != "preview"
    steps = list(run("sirt", series, geom, iterations=2, every=1, preview=True))
    assert [s.phase for s in steps] == ["preview", "iterate", "iterate"]


def test_lambda_search_streams_pictures_within_each_candidate(blobs):
    from tomoprior.engine import run

    series, geom = blobs
    steps = [s for s in run("cstv", series, geom, iterations=40, every=40, lam="auto")
             if s.phase == "lambda search"]
    n = steps[0].extras["candidates"]
    assert len(steps) > n  # not only one picture per candidate
    fractions = [s.extras["phase_fraction"] for s in steps]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    seen = {s.extras["candidate"] for s in steps}
    assert seen == set(range(1, max(seen) + 1)) and max(seen) >= 2
    if max(seen) < n:  # the path stopped: the held-out error of the last candidate rose
        table = steps[-1].search
        assert table[-1]["val_median_abs"] > min(r["val_median_abs"] for r in table[:-1])


def test_phase_texts_name_the_phase_and_its_progress():
    pytest.importorskip("qtpy")
    from tomoprior._qt.progress import phase_text
    from tomoprior.step import Step

    vol = np.zeros((2, 2, 2), np.float32)
    assert phase_text(Step(iteration=0, volume=vol, phase="preview")).startswith("preview")
    search = Step(iteration=0, volume=vol, phase="lambda search",
                  extras={"candidate": 3, "candidates": 7})
    assert phase_text(search) == "λ search 3/7"
    warm = Step(iteration=0, volume=vol, phase="warm start",
                extras={"warm_part": "λ search", "candidate": 2, "candidates": 7})
    assert phase_text(warm) == "warm start: λ search 2/7"
    adapt = Step(iteration=0, volume=vol, phase="adapt", extras={"adapt_step": 40,
                                                                 "adapt_steps": 200})
    assert phase_text(adapt) == "adapting the network to this series 40/200"
    half = Step(iteration=0, volume=vol, phase="adapt base", extras={"half": "odd"})
    assert phase_text(half) == "adaptation: SIRT of the odd tilts"


def _no_jitter(monkeypatch):
    """INR sampling without the random jitter, counting the ray integrals."""
    from tomoprior.algorithms import inr

    calls = []
    original = inr._integrate

    def integrate(fld, rays, t, v, u, pose, n_samples, jitter):
        calls.append(len(t))
        return original(fld, rays, t, v, u, pose, n_samples, None)

    monkeypatch.setattr(inr, "_integrate", integrate)
    return calls


def test_an_inr_step_in_parts_is_the_same_step(blobs, monkeypatch):
    from tomoprior.algorithms import inr
    from tomoprior.engine import run

    series, geom = blobs
    _no_jitter(monkeypatch)
    kw = dict(iterations=2, every=1, batch_rays=512, learn_pose=False, seed=3)
    whole = list(run("inr", series, geom, **kw))
    monkeypatch.setattr(inr, "POINT_BUDGET", 2000)  # ~60 rays of ~34 samples per part
    parts = list(run("inr", series, geom, **kw))
    assert [s.iteration for s in parts] == [1, 2]
    for a, b in zip(whole, parts):
        assert b.loss == pytest.approx(a.loss, rel=1e-5)
        np.testing.assert_allclose(b.volume, a.volume, rtol=1e-4, atol=1e-5 * np.abs(a.volume).max())


def test_stop_inside_an_inr_step_waits_for_one_part_only(blobs, monkeypatch):
    from tomoprior.algorithms import inr
    from tomoprior.engine import run

    series, geom = blobs
    calls = _no_jitter(monkeypatch)
    monkeypatch.setattr(inr, "POINT_BUDGET", 2000)
    ev = threading.Event()
    with stop_when(ev):
        rec = run("inr", series, geom, iterations=5, every=1, batch_rays=512, learn_pose=False)
        first = next(rec)
        before = len(calls)
        original = inr._integrate

        def stop_on_the_second_part(*a):
            if len(calls) == before + 2:
                ev.set()  # Stop pressed while the optimiser step is half done
            return original(*a)

        monkeypatch.setattr(inr, "_integrate", stop_on_the_second_part)
        assert list(rec) == []
    assert rec.stopped and rec.last is first
    # the part in flight ends, no further one starts (a whole step here is 5 parts or more:
    # at least half of the ~34 samples per ray from the start)
    assert len(calls) - before == 3 < len(inr._ray_parts(512, 17))


# -- a stop keeps the iterate reached ------------------------------------------------------------
def _stop_after(monkeypatch, solver_cls, iteration, ev):
    """Set ``ev`` once the solver's update ``iteration`` is done (Stop pressed then)."""
    update = solver_cls.update

    def counted(self, k):
        value = update(self, k)
        if k == iteration:
            ev.set()
        return value

    monkeypatch.setattr(solver_cls, "update", counted)


@pytest.mark.parametrize("name", ["sirt", "cstv"])
def test_a_stop_yields_the_iterate_reached_and_it_resumes_exactly(name, monkeypatch):
    from tomoprior.algorithms import METHODS
    from tomoprior.algorithms.cstv import _CSTV
    from tomoprior.algorithms.sirt import _SIRT
    from tomoprior.operators import make_projector

    ph = make_phantom("blobs", 16, seed=0).volume
    A = make_projector(np.arange(-60, 61, 15.0), ph.shape, device="cpu")
    y = A(torch.from_numpy(ph))
    fn = METHODS[name].function
    kw = {"lam": 0.02} if name == "cstv" else {}
    straight = list(fn(A, y, iterations=30, every=30, **kw))[-1]
    ev = threading.Event()
    _stop_after(monkeypatch, _CSTV if name == "cstv" else _SIRT, 27, ev)
    steps = []
    with stop_when(ev), pytest.raises(StopRequested):
        for st in fn(A, y, iterations=100, every=20, **kw):
            steps.append(st)
    assert [s.iteration for s in steps] == [20, 27]  # iteration 27, not the picture of 20
    last = steps[-1]
    assert last.resume is not None and last.resume.iteration == 27
    assert last.residual is not None and last.residual < steps[0].residual
    monkeypatch.undo()
    rest = list(fn(A, y, iterations=3, every=3, resume=last.resume, **kw))
    assert rest[-1].iteration == 30
    np.testing.assert_allclose(rest[-1].volume, straight.volume, rtol=1e-5,
                               atol=1e-6 * float(np.abs(straight.volume).max()))


def test_the_engine_keeps_the_iterate_a_stop_reached(blobs, monkeypatch):
    from tomoprior.algorithms.sirt import _SIRT
    from tomoprior.engine import run

    series, geom = blobs
    ev = threading.Event()
    _stop_after(monkeypatch, _SIRT, 7, ev)
    with stop_when(ev):
        rec = run("sirt", series, geom, iterations=40, every=5)
        steps = list(rec)
    assert [s.iteration for s in steps] == [5, 7]
    assert rec.stopped and not rec.finished and rec.last is steps[-1]


def test_a_stop_inside_an_update_yields_the_iterate_before_it(blobs):
    from tomoprior.algorithms import _driver as driver
    from tomoprior.operators import make_projector

    class Counting(driver.Solver):
        label = "counting"

        def setup(self, p, x0, start):
            self.x = p.start_volume(x0)
            return iter(())

        def update(self, k):
            if k == 28:
                raise StopRequested  # a checkpoint inside the update: nothing changed
            self.x += 1.0
            return None

        def report(self, iteration, last):
            return driver.Report(self.x, float(iteration))

    A = make_projector(np.arange(-60, 61, 30.0), (4, 4, 4), device="cpu")
    p = driver.Problem.build(A, torch.ones(A.range_shape))
    steps = []
    with pytest.raises(StopRequested):
        for st in driver.iterate(Counting(), p, name="counting", iterations=100, every=20):
            steps.append(st)
    assert [s.iteration for s in steps] == [20, 27] and steps[-1].loss == 27.0
    np.testing.assert_array_equal(steps[-1].volume, 27.0)
