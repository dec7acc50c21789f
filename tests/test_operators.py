"""Contract tests: every projector backend, random shapes and angle sets."""

import numpy as np
import pytest
import torch

from tomoprior.errors import GeometryError
from tomoprior.operators import BACKENDS, PoseModel, make_projector, posed_forward

CASES = [
    # (angles, volume (z, y, x), detector cols)
    (np.linspace(-60, 60, 13), (16, 3, 16), None),
    (np.array([-71.3, -40.0, -3.5, 0.0, 12.25, 55.0, 88.0]), (11, 2, 19), 23),  # non-uniform, odd
    (np.arange(-90, 90, 7.0), (9, 4, 24), 24),  # thickness != width
    (np.random.default_rng(3).uniform(-89, 89, 17), (20, 1, 13), 15),  # random angles
]


def _rand(shape, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", range(len(CASES)))
def test_adjointness_float64(backend, case):
    angles, shape, det = CASES[case]
    A = make_projector(angles, shape, det, backend=backend, dtype=torch.float64, device="cpu")
    x, y = _rand(A.domain_shape, 1), _rand(A.range_shape, 2)
    ax, aty = A(x), A.T(y)
    assert ax.shape == A.range_shape and aty.shape == A.domain_shape
    rel = abs(float((ax * y).sum() - (x * aty).sum())) / float(ax.norm() * y.norm())
    # astra computes in float32 internally
    assert rel < (1e-6 if backend == "astra" else 1e-5 * 1e-3)


@pytest.mark.parametrize("backend", BACKENDS)
def test_linearity_and_batches(backend):
    angles, shape, det = CASES[1]
    A = make_projector(angles, shape, det, backend=backend, dtype=torch.float64, device="cpu")
    x1, x2 = _rand(shape, 3), _rand(shape, 4)
    lhs = A(2.5 * x1 - 0.5 * x2)
    rhs = 2.5 * A(x1) - 0.5 * A(x2)
    torch.testing.assert_close(lhs, rhs, rtol=1e-5, atol=1e-6)
    batch = A(torch.stack([x1, x2]))
    assert batch.shape == (2, *A.range_shape)
    torch.testing.assert_close(batch[1], A(x2))


@pytest.mark.parametrize("backend", ["sparse", "rotate"])
@pytest.mark.parametrize("case", range(len(CASES)))
def test_agreement_with_astra(backend, case):
    angles, shape, det = CASES[case]
    ref = make_projector(angles, shape, det, backend="astra", device="cpu")
    A = make_projector(angles, shape, det, backend=backend, device="cpu")
    # a smooth object well inside the field of view
    z, y, x = shape
    zz, xx = np.meshgrid(np.linspace(-1, 1, z), np.linspace(-1, 1, x), indexing="ij")
    blob = np.exp(-(zz**2 + xx**2) / 0.15)[:, None, :].repeat(y, axis=1).astype(np.float32)
    v = torch.from_numpy(blob)
    p_ref, p = ref(v), A(v)
    rel = float((p - p_ref).norm() / p_ref.norm())
    assert rel < (1e-5 if backend == "sparse" else 0.03)
    b_ref, b = ref.T(p_ref), A.T(p_ref)
    # back-projection of the discrete kernels differs more near the box corners
    assert float((b - b_ref).norm() / b_ref.norm()) < (1e-5 if backend == "sparse" else 0.05)


@pytest.mark.parametrize("backend", ["sparse", "rotate"])
def test_autograd_matches_adjoint(backend):
    angles, shape, det = CASES[0]
    A = make_projector(angles, shape, det, backend=backend, dtype=torch.float64, device="cpu")
    x = _rand(shape, 5).requires_grad_(True)
    y = _rand(A.range_shape, 6)
    loss = 0.5 * ((A(x) - y) ** 2).sum()
    loss.backward()
    expected = A.T(A(x.detach()) - y)
    torch.testing.assert_close(x.grad, expected, rtol=1e-8, atol=1e-10)


def test_rotate_gradient_in_angles_matches_finite_difference():
    angles, shape, det = CASES[0]
    A = make_projector(angles, shape, det, backend="rotate", dtype=torch.float64, device="cpu")
    zz, xx = np.meshgrid(np.linspace(-1, 1, 16), np.linspace(-1, 1, 16), indexing="ij")
    v = torch.from_numpy(np.exp(-((zz - 0.2) ** 2 + xx**2) / 0.1))[:, None, :].repeat(1, 3, 1)
    y = A(v).detach()
    off = torch.zeros(A.n_tilts, dtype=torch.float64)
    off[2] = 1.5
    off.requires_grad_(True)
    loss = ((A.project(v, off) - y) ** 2).sum()
    (g,) = torch.autograd.grad(loss, off)
    eps = 1e-4
    d = torch.zeros_like(off)
    d[2] = eps
    with torch.no_grad():
        lp = ((A.project(v, off + d) - y) ** 2).sum()
        lm = ((A.project(v, off - d) - y) ** 2).sum()
    fd = float((lp - lm) / (2 * eps))
    assert g[2].item() == pytest.approx(fd, rel=2e-2)
    assert g[2].item() > 0  # moving away from the truth increases the loss


def test_norm_and_shapes_checked():
    A = make_projector(np.linspace(-60, 60, 31), (24, 2, 24), device="cpu")
    assert 10 < A.norm() < 60
    with pytest.raises(GeometryError, match="expects a volume"):
        A(torch.zeros(3, 3, 3))
    assert A.T.T is A
    assert A.T.domain_shape == A.range_shape


def test_for_slices_shares_geometry():
    A = make_projector(np.linspace(-60, 60, 9), (12, 5, 12), device="cpu")
    B = A.for_slices(2)
    v = _rand((12, 5, 12), 1).float()
    torch.testing.assert_close(B(v[:, 1:3]), A(v)[:, 1:3])


def test_sparse_chunks_match_single_pass():
    A = make_projector(np.linspace(-60, 60, 9), (10, 7, 10), device="cpu")
    small = make_projector(np.linspace(-60, 60, 9), (10, 7, 10), device="cpu", max_chunk_bytes=1)
    v = _rand((10, 7, 10), 2).float()
    torch.testing.assert_close(small(v), A(v))
    torch.testing.assert_close(small.T(A(v)), A.T(A(v)))


def test_pose_model_recovers_sign_of_shift_gradient():
    angles = np.linspace(-60, 60, 7)
    A = make_projector(angles, (16, 16, 16), device="cpu")
    zz, yy, xx = np.meshgrid(*(np.linspace(-1, 1, 16),) * 3, indexing="ij")
    v = torch.from_numpy(np.exp(-(zz**2 + yy**2 + xx**2) / 0.1).astype(np.float32))
    truth = PoseModel(7, reference=3, shifts=np.tile([[1.0, -2.0]], (7, 1)))
    with torch.no_grad():
        data = posed_forward(A, v, truth)
    pose = PoseModel(7, reference=3)
    opt = torch.optim.Adam(pose.param_groups(0.1, 0.0), lr=0.1)
    for _ in range(60):
        opt.zero_grad()
        loss = ((posed_forward(A, v, pose) - data) ** 2).mean()
        loss.backward()
        opt.step()
    s = pose.shifts().detach().numpy()
    ref = np.delete(np.arange(7), 3)
    np.testing.assert_allclose(s[ref], np.tile([[1.0, -2.0]], (6, 1)), atol=0.15)
    np.testing.assert_allclose(s[3], [0.0, 0.0])  # the reference tilt does not move


def test_learning_angles_needs_rotate_backend():
    A = make_projector(np.linspace(-60, 60, 5), (8, 2, 8), device="cpu")
    pose = PoseModel(5, reference=2, learn_angles=True)
    with pytest.raises(GeometryError, match="rotate"):
        posed_forward(A, torch.zeros(8, 2, 8), pose)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_sparse_matches_cpu():
    angles, shape, det = CASES[1]
    v = _rand(shape, 1).float()
    cpu = make_projector(angles, shape, det, device="cpu")
    gpu = make_projector(angles, shape, det, device="cuda")
    torch.testing.assert_close(gpu(v.cuda()).cpu(), cpu(v), rtol=1e-4, atol=1e-4)


def test_astra_cuda_3d_matches_sparse_when_available():
    import astra

    if not astra.use_cuda():
        pytest.skip("ASTRA without CUDA")
    angles, shape, det = CASES[1]
    v = _rand(shape, 1).float()
    ref = make_projector(angles, shape, det, backend="astra", device="cpu", use_cuda=True)
    A = make_projector(angles, shape, det, device="cpu")
    assert float((ref(v) - A(v)).norm() / A(v).norm()) < 0.05
