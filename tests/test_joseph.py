"""The linear (Joseph) system matrix built without ASTRA, and every method without ASTRA."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from tomoprior.operators.joseph import linear_matrix

GEOMETRIES = [
    (np.arange(-60.0, 61.0, 10.0), 32, 32, 32),
    (np.linspace(-76.0, 76.0, 77), 24, 40, 37),  # rectangular slice, odd detector
    (np.array([45.0, -45.0, 135.0, 90.0, -90.0, 0.0, 180.0, 30.0, -89.9, 44.99999, 0.3]), 33, 40, 37),
]


def test_zero_degrees_sums_each_column_of_pixels():
    """At 0° a ray runs down one column of pixels and picks up each of them once."""
    m = linear_matrix([0.0], 6, 8, 8).toarray().reshape(8, 6, 8)
    np.testing.assert_allclose(m, np.broadcast_to(np.eye(8)[:, None, :], m.shape), atol=1e-7)


def test_ninety_degrees_sums_each_row_of_pixels():
    m = linear_matrix([90.0], 6, 8, 6).toarray().reshape(6, 6, 8)
    np.testing.assert_allclose(m.sum(axis=(1, 2)), 8.0, atol=1e-5)
    for u in range(6):  # each detector element sees one whole row of pixels
        rows = np.flatnonzero(m[u].sum(axis=1))
        assert rows.size == 1 and np.allclose(m[u, rows[0]], 1.0, atol=1e-6)


@pytest.mark.parametrize("angle", [0.0, 17.0, 45.0, 63.0, 90.0, 121.0, -30.0])
def test_a_gaussian_projects_to_its_line_integrals(angle):
    """exp(-r^2 / 2 s^2) integrates to sqrt(2 pi) s exp(-u^2 / 2 s^2) along every line."""
    n, sigma = 64, 5.0
    zz, xx = np.mgrid[:n, :n] + 0.5 - n / 2
    blob = np.exp(-(zz**2 + xx**2) / (2 * sigma**2))
    p = linear_matrix([angle], n, n, n, dtype=np.float64) @ blob.ravel()
    u = np.arange(n) + 0.5 - n / 2
    exact = np.sqrt(2 * np.pi) * sigma * np.exp(-(u**2) / (2 * sigma**2))
    np.testing.assert_allclose(p, exact, rtol=0, atol=5e-3 * exact.max())  # linear interpolation blurs a little
    assert abs(p.sum() - blob.sum()) < 1e-3 * blob.sum()  # every pixel's mass reaches the detector


def test_layout_dtype_and_sorted_indices():
    angles, nz, nx, nd = GEOMETRIES[1]
    m = linear_matrix(angles, nz, nx, nd)
    assert m.shape == (angles.size * nd, nz * nx)
    assert m.dtype == np.float32 and m.indices.dtype == np.int32 and m.indptr.dtype == np.int32
    assert m.has_sorted_indices and (m.data > 0).all()
    assert linear_matrix(angles, nz, nx, nd, dtype=np.float64).dtype == np.float64


def test_tilts_are_independent():
    angles, nz, nx, nd = GEOMETRIES[0]
    whole = linear_matrix(angles, nz, nx, nd)
    parts = [linear_matrix([a], nz, nx, nd) for a in angles]
    import scipy.sparse

    np.testing.assert_array_equal(whole.toarray(), scipy.sparse.vstack(parts).toarray())


@pytest.mark.parametrize("case", range(len(GEOMETRIES)))
def test_same_matrix_as_astra(case):
    """ASTRA forms the crossings by a float32 running sum: agreement to its rounding."""
    ref = pytest.importorskip("tomoprior.operators.astra_ref")
    if not ref.astra_available():
        pytest.skip("ASTRA is not installed")
    angles, nz, nx, nd = GEOMETRIES[case]
    a = ref.astra_system_matrix(angles, nz, nx, nd)
    m = linear_matrix(angles, nz, nx, nd, dtype=np.float64)
    np.testing.assert_allclose(m.toarray(), a.toarray(), rtol=0, atol=2e-4)


def test_same_sirt_as_astra_on_a_realistic_size(monkeypatch):
    """SIRT on a specimen's projections with the native matrix and with ASTRA's: 1e-4 relative."""
    ref = pytest.importorskip("tomoprior.operators.astra_ref")
    if not ref.astra_available():
        pytest.skip("ASTRA is not installed")
    from tomoprior.algorithms.sirt import sirt
    from tomoprior.operators import make_projector, sparse
    from tomoprior.phantoms import make_phantom

    vol = np.ascontiguousarray(make_phantom("pt_haadf", 96, seed=3).volume[:, 40:44, :], np.float32)
    angles = np.linspace(-70.0, 70.0, 29)

    def volumes():
        sparse._CACHE.clear()
        A = make_projector(angles, vol.shape, device="cpu")
        y = A(torch.from_numpy(vol))
        return list(sirt(A, y, iterations=30, every=30))[-1].volume

    native = volumes()
    monkeypatch.setattr(sparse, "linear_matrix", lambda a, nz, nx, nu, dtype: ref.astra_system_matrix(
        a, nz, nx, nu).astype(dtype))
    astra = volumes()
    sparse._CACHE.clear()
    rel = np.linalg.norm(native - astra) / np.linalg.norm(astra)
    assert rel < 1e-4, rel


_WITHOUT_ASTRA = textwrap.dedent("""
    import sys
    sys.modules["astra"] = None  # `import astra` now raises ImportError
    import numpy as np
    from tomoprior import io
    from tomoprior.algorithms import METHODS
    from tomoprior.cli import main
    from tomoprior.geometry import TiltGeometry
    from tomoprior.engine import run_to_end

    rng = np.random.default_rng(0)
    angles = np.arange(-60.0, 61.0, 15.0)
    series = rng.random((angles.size, 8, 16), dtype=np.float32)
    g = TiltGeometry(angles)
    fast = {"wbp": {}, "sirt": {"iterations": 3}, "cstv": {"iterations": 3, "lam": 0.05},
            "restore": {"iterations": 3}, "diptv": {"iterations": 2},
            "inr": {"iterations": 2}}
    for name in METHODS:
        vol, prov = run_to_end(name, series, g, device="cpu", **fast.get(name, {"iterations": 2}))
        assert np.isfinite(vol).all(), name
        print("ran", name, vol.shape)
    out = sys.argv[1]
    io.write_tilt_series(out + "/in.tif", series, g)
    assert main(["reconstruct", out + "/in.tif", "-o", out + "/v.mrc", "--method", "sirt",
                 "--iterations", "2"]) == 0
    from tomoprior.errors import MethodUnavailable
    from tomoprior.operators import make_projector
    try:
        make_projector(angles, (16, 8, 16), backend="astra")
    except MethodUnavailable as e:
        print(e, file=sys.stderr)
    else:
        raise AssertionError("the astra backend ran without astra")
    assert "astra" not in {m.split(".")[0] for m in sys.modules if sys.modules[m] is not None}
    print("ok")
""")


def test_every_method_and_the_cli_run_without_astra(tmp_path):
    """With astra unimportable: every method runs, and asking for it is one clear line."""
    res = subprocess.run([sys.executable, "-c", _WITHOUT_ASTRA, str(tmp_path)],
                         capture_output=True, text=True, timeout=600, check=False)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    assert res.stdout.strip().splitlines()[-1] == "ok"
    assert "ASTRA Toolbox" in res.stderr and "Traceback" not in res.stderr
