"""The method contract, checked for every registered method.

A new method module is picked up by the registry and runs through every test
here; give it fast settings in ``FAST`` if its defaults take long.
"""

import inspect
import itertools
import math

import numpy as np
import pytest
import torch

from tomoprior.algorithms import METHODS, get_method
from tomoprior.algorithms import _driver as driver
from tomoprior.algorithms._declare import RUN_KEYWORDS
from tomoprior.engine import run
from tomoprior.errors import (
    DataError,
    DivergedError,
    GeometryError,
    ParameterError,
    TomopriorError,
)
from tomoprior.operators import make_projector
from tomoprior.step import SCALAR_TYPES, ResumeState

pytestmark = pytest.mark.usefixtures("one_thread")

# small, fast settings per method (any method not listed runs with its defaults + these)
FAST = {
    "sirt": dict(iterations=4, every=2),
    "cstv": dict(iterations=4, every=2, lam=0.02),
    "diptv": dict(iterations=4, every=2, warm_start="sirt", warm_iterations=3, lam=0.02,
                  channels="8,16"),
    "inr": dict(iterations=6, every=3, batch_rays=256),
    "restore_tv": dict(iterations=4, every=2, lam=0.02, base_iterations=3),
}
DEFAULT_FAST = dict(iterations=2, every=1)
NAMES = list(METHODS)


def _kwargs(name, **more):
    m = METHODS[name]
    kw = dict(FAST.get(name, DEFAULT_FAST if m.capabilities.iterative else {}))
    kw.update(more)
    return {k: v for k, v in kw.items() if k not in RUN_KEYWORDS or m.accepts(k)}


@pytest.fixture(scope="module")
def problem():
    rng = np.random.default_rng(0)
    x = np.zeros((16, 12, 16), np.float32)
    x[4:10, 3:9, 5:12] = 1.0
    x[6:8, :, 2:4] = 2.0
    angles = np.arange(-60, 61, 20.0)
    A = make_projector(angles, x.shape, device="cpu")
    y = A(torch.from_numpy(x)).numpy()
    y = y + 0.01 * rng.standard_normal(y.shape).astype(np.float32)
    return A, y


def _steps(name, A, y, **kw):
    return list(METHODS[name].function(A, y, **_kwargs(name, **kw)))


# -- declarations ----------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_declaration_matches_signature(name):
    m = METHODS[name]
    sig = inspect.signature(m.function)
    own = {k: p for k, p in sig.parameters.items() if k not in ("A", "y") and k not in RUN_KEYWORDS}
    assert sorted(p.name for p in m.params) == sorted(own)
    for p in m.params:
        assert sig.parameters[p.name].kind is inspect.Parameter.KEYWORD_ONLY
        assert p.default == sig.parameters[p.name].default, p.name
        assert p.parse(p.default) == p.default
        assert p.label and p.help, f"{name}.{p.name} needs a label and a help text"
    caps = m.capabilities
    assert caps.iterative == ("iterations" in sig.parameters)
    assert caps.resumable == ("resume" in sig.parameters)
    assert caps.uses_mask == ("mask" in sig.parameters)
    if caps.iterative:
        assert m.default_iterations == sig.parameters["iterations"].default
        assert m.default_every == sig.parameters["every"].default
    assert m.label and m.help and "\n" not in m.help
    assert get_method(m.label) is m and get_method(name) is m


@pytest.mark.parametrize("name", NAMES)
def test_unknown_and_out_of_range_parameters_raise(name, problem):
    A, y = problem
    m = METHODS[name]
    with pytest.raises(ParameterError, match="no parameter 'bogus'"):
        m.function(A, y, bogus=1)
    with pytest.raises(ParameterError, match="no parameter 'bogus'"):
        run(name, np.zeros((3, 8, 8), np.float32), _geometry(), bogus=1)
    for p in m.params:
        if p.max is not None:
            with pytest.raises(ParameterError, match=p.name):
                m.function(A, y, **{p.name: p.max * 2 + 1})
        if p.choices is not None:
            with pytest.raises(ParameterError, match=p.name):
                m.function(A, y, **{p.name: "no-such-choice"})


def _geometry():
    from tomoprior.geometry import TiltGeometry

    return TiltGeometry([-30.0, 0.0, 30.0])


# -- running -----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_steps_are_typed_copies(name, problem):
    A, y = problem
    steps = _steps(name, A, y)
    assert steps, "a method yields at least one step"
    for st in steps:
        assert st.volume.shape == tuple(A.domain_shape) and st.volume.dtype == np.float32
        assert np.isfinite(st.volume).all()
        assert all(isinstance(v, SCALAR_TYPES) for v in st.extras.values()), st.extras
        assert isinstance(st.phase, str) and st.phase
    for a, b in itertools.pairwise(steps):
        assert not np.shares_memory(a.volume, b.volume)
    assert steps[-1].iteration == steps[-1].total
    # a consumer may scribble on a snapshot: the run goes on unaffected
    gen = METHODS[name].function(A, y, **_kwargs(name))
    scribbled = []
    for st in gen:
        scribbled.append(st.volume.copy())
        st.volume[...] = 1e6
    np.testing.assert_array_equal(scribbled[-1], steps[-1].volume)


@pytest.mark.parametrize("name", NAMES)
def test_fixed_seed_is_deterministic(name, problem):
    A, y = problem
    kw = {"seed": 3} if METHODS[name].capabilities.seeded else {}
    a = _steps(name, A, y, **kw)[-1].volume
    b = _steps(name, A, y, **kw)[-1].volume
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", NAMES)
def test_closing_stops_and_releases(name, problem, monkeypatch):
    A, y = problem
    released = []
    monkeypatch.setattr(driver, "release", lambda dev: released.append(dev))
    mod = __import__(METHODS[name].module, fromlist=["_"])
    if hasattr(mod, "release"):
        monkeypatch.setattr(mod, "release", lambda dev: released.append(dev))
    gen = METHODS[name].function(A, y, **_kwargs(name, iterations=10_000, every=1))
    first = next(gen)
    before = len(released)
    gen.close()
    assert released[before:] and set(released[before:]) == {A.device}
    with pytest.raises(StopIteration):
        next(gen)
    assert np.isfinite(first.volume).all()


@pytest.mark.parametrize("name", NAMES)
def test_nan_input_is_a_user_error(name, problem):
    A, y = problem
    bad = y.copy()
    bad[1, 2, 3] = np.nan
    with pytest.raises(DataError, match="NaN"):
        _steps(name, A, bad)
    with pytest.raises(GeometryError, match="shape"):
        _steps(name, A, y[:-1])


def _fit_mask(A, name):
    """Detector pixels to fit (10 % held out, seeded) where the method takes a mask."""
    if not METHODS[name].accepts("mask"):
        return None
    return np.random.default_rng(5).random(A.range_shape) >= 0.1


@pytest.mark.parametrize("name", NAMES)
def test_every_step_carries_the_residual_of_its_volume(name, problem):
    A, y = problem
    mask = _fit_mask(A, name)
    kw = {} if mask is None else {"mask": mask}
    steps = _steps(name, A, y, **kw)
    for st in steps:  # set-up phases included
        assert st.residual is not None and 0.0 <= st.residual < 3.0, (st.phase, st.residual)
        if st.loss is not None:
            assert st.objective_name, f"{name}: a {st.phase} step's loss has no name"
    assert steps[-1].objective_name
    # the last step's residual is ||W(Ax - y)|| / ||W y|| over the pixels the method fits
    w = torch.ones(A.range_shape) if mask is None else torch.from_numpy(mask).float()
    yt = torch.from_numpy(y)
    r = (A(torch.from_numpy(steps[-1].volume)) - yt) * w
    expected = float(torch.linalg.vector_norm(r) / torch.linalg.vector_norm(yt * w))
    assert steps[-1].residual == pytest.approx(expected, rel=1e-4)


@pytest.mark.parametrize("name", NAMES)
def test_a_blank_series_gives_a_blank_volume_and_no_residual(name, problem):
    A, _ = problem
    steps = _steps(name, A, np.zeros(A.range_shape, np.float32))
    assert steps and all(st.residual is None for st in steps)
    assert all(np.isfinite(st.volume).all() for st in steps)
    assert all(st.loss is None or math.isfinite(st.loss) for st in steps)


@pytest.mark.parametrize("name", [n for n in NAMES if METHODS[n].capabilities.resumable])
def test_resume_continues_exactly(name, problem):
    A, y = problem
    kw = _kwargs(name)
    n = kw.pop("iterations")
    kw.pop("every", None)
    one = list(METHODS[name].function(A, y, iterations=2 * n, every=n, **kw))[-1]
    first = list(METHODS[name].function(A, y, iterations=n, every=n, **kw))[-1]
    assert isinstance(first.resume, ResumeState) and first.resume.iteration == n
    second = list(METHODS[name].function(A, y, iterations=n, every=n, start=n,
                                         resume=first.resume, **kw))
    assert all(s.phase == "iterate" for s in second), "a resumed run skips its set-up"
    assert second[-1].iteration == one.iteration == 2 * n
    np.testing.assert_allclose(second[-1].volume, one.volume, rtol=1e-5,
                               atol=1e-6 * float(np.abs(one.volume).max()))
    # the state survives its use (numbering continues from it without start=)
    again = list(METHODS[name].function(A, y, iterations=n, every=n, resume=first.resume, **kw))
    assert again[-1].iteration == 2 * n
    np.testing.assert_array_equal(again[-1].volume, second[-1].volume)


@pytest.mark.parametrize("name", [n for n in NAMES if METHODS[n].capabilities.resumable])
def test_resume_state_of_another_method_is_refused(name, problem):
    A, y = problem
    alien = ResumeState("other", 3, tuple(A.domain_shape), {})
    with pytest.raises(ParameterError, match="other"):
        _steps(name, A, y, resume=alien)
    wrong = ResumeState(name, 3, (1, 2, 3), {})
    with pytest.raises(ParameterError, match="volume"):
        _steps(name, A, y, resume=wrong)


@pytest.mark.parametrize("name", [n for n in NAMES if METHODS[n].capabilities.warm_start])
def test_warm_start_is_checked_and_not_modified(name, problem):
    A, y = problem
    x0 = np.full(A.domain_shape, 0.5, np.float32)
    keep = x0.copy()
    _steps(name, A, y, x0=x0)
    np.testing.assert_array_equal(x0, keep)
    with pytest.raises(GeometryError, match="warm-start"):
        _steps(name, A, y, x0=x0[:-1])


def test_non_resumable_methods_refuse_resume_in_run():
    from tomoprior.phantoms import make_phantom, simulate

    names = [n for n in NAMES if not METHODS[n].capabilities.resumable]
    ph = make_phantom("blobs", size=16, seed=0)
    series, g = simulate(ph, np.arange(-60, 61, 30.0))
    for name in names:
        with pytest.raises(ParameterError, match="resume"):
            run(name, series, g, resume=ResumeState(name, 1, (1,), {}))


# -- the driver ---------------------------------------------------------------------------------
class _Blowup(driver.Solver):
    label = "Blow-up"
    hint = "lower the step"

    def __init__(self, when: str) -> None:
        self.when = when

    def setup(self, p, x0, start):
        self.x = p.start_volume(x0)
        return iter(())

    def update(self, k):
        if self.when == "volume":
            self.x.fill_(float("inf"))
            return 1.0
        return float("nan") if k == 3 else 1.0

    def report(self, iteration, last):
        return driver.Report(self.x, 0.0)


@pytest.mark.parametrize("when", ["loss", "volume"])
def test_driver_reports_divergence_as_a_user_error(problem, when):
    A, y = problem
    p = driver.Problem.build(A, y)
    with pytest.raises(DivergedError, match=r"Blow-up diverged .*lower the step") as info:
        list(driver.iterate(_Blowup(when), p, name="blowup", iterations=5, every=1))
    assert isinstance(info.value, TomopriorError) and isinstance(info.value, FloatingPointError)


def test_driver_rejects_non_scalar_extras(problem):
    A, y = problem

    class Leaky(_Blowup):
        def report(self, iteration, last):
            return driver.Report(self.x, 0.0, extras={"table": [1, 2]})

    with pytest.raises(TypeError, match="not a scalar"):
        list(driver.iterate(Leaky("never"), driver.Problem.build(A, y), name="leaky",
                            iterations=1))
