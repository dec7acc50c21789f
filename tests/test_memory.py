"""Memory guards: one float32/int32 system matrix, SIRT without volume-sized temporaries.

The peak figures themselves come from ``benchmarks/memory.py``
(``docs/benchmarks/memory.md``); these tests guard the structure behind them.
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tomoprior.algorithms import _driver as driver
from tomoprior.algorithms import sirt as sirt_module
from tomoprior.algorithms.sirt import sirt
from tomoprior.operators import SparseProjector, make_projector, sparse


def test_cpu_matrix_is_compact_and_its_transpose_a_view():
    A = make_projector(np.linspace(-60, 60, 9), (12, 3, 10), device="cpu")
    m = A._m
    assert m.w.crow_indices().dtype == torch.int32 and m.w.col_indices().dtype == torch.int32
    assert m.w.values().dtype == torch.float32
    # W^T shares W's buffers: no transposed copy of the matrix
    assert np.shares_memory(m.wt.data, m.w.values().numpy())
    assert np.shares_memory(m.wt.indices, m.w.col_indices().numpy())


def test_matrix_built_tilt_by_tilt_is_the_whole_matrix(monkeypatch):
    monkeypatch.setattr(sparse, "_BLOCK_NNZ", 1)  # one tilt per block
    angles = np.array([-70.0, -33.0, 0.0, 12.5, 60.0])
    w = sparse._build(angles, 9, 11, 13, np.dtype(np.float32))
    ref = sparse.system_matrix(angles, 9, 11, 13)
    assert w.indices.dtype == np.int32 and w.indptr.dtype == np.int32 and w.dtype == np.float32
    np.testing.assert_array_equal(w.indptr, ref.indptr)
    np.testing.assert_array_equal(w.indices, ref.indices)
    np.testing.assert_array_equal(w.data, ref.data.astype(np.float32))


def test_threaded_adjoint_equals_one_pass(monkeypatch):
    A = make_projector(np.linspace(-60, 60, 7), (10, 9, 10), device="cpu")
    y = torch.from_numpy(np.random.default_rng(0).random(A.range_shape, dtype=np.float32))
    one = A.T(y)
    monkeypatch.setattr(sparse, "_THREADED_WORK", 0)
    monkeypatch.setattr(sparse, "_CPU_COLUMNS", 1)  # one y-slice a group
    monkeypatch.setattr(torch, "get_num_threads", lambda: 3)
    torch.testing.assert_close(A.T(y), one, rtol=1e-6, atol=0)


def test_sirt_projects_one_slab_at_a_time(monkeypatch, small_volume):
    """Weights from one y-slice and slab-wise updates: no call sees the whole volume."""
    angles = np.arange(-60, 61, 4.0)
    vc = np.ascontiguousarray(small_volume.transpose(0, 2, 1))
    A = make_projector(angles, vc.shape, device="cpu")
    y = A(torch.from_numpy(vc))
    whole = list(sirt(A, y, iterations=4, every=4))[-1].volume

    seen = []
    for name in ("_forward", "_adjoint"):
        original = getattr(SparseProjector, name)

        def spy(self, t, original=original):
            seen.append(self.volume_shape[1])
            return original(self, t)

        monkeypatch.setattr(SparseProjector, name, spy)
    monkeypatch.setattr(sirt_module, "_SLAB_BYTES", 1)  # one y-slice a slab
    slabs = list(sirt(A, y, iterations=4, every=4))[-1].volume
    assert seen and set(seen) == {1}
    np.testing.assert_allclose(slabs, whole, rtol=1e-5, atol=1e-6 * float(np.abs(whole).max()))


class _Counter(driver.Solver):
    label = "counter"

    def setup(self, problem, x0, start):
        self.x = problem.start_volume(x0)
        return iter(())

    def update(self, k):
        self.x += 1
        return 0.0

    def report(self, iteration, last):
        return driver.Report(self.x)

    def state(self):
        return {"x": self.x}


@pytest.mark.parametrize("hands_over", [False, True])
def test_last_resume_state_is_handed_over_not_copied(hands_over):
    A = make_projector(np.linspace(-60, 60, 5), (6, 2, 6), device="cpu")
    solver = _Counter()
    solver.hands_over_state = hands_over
    problem = driver.Problem.build(A, torch.zeros(A.range_shape))
    last = list(driver.iterate(solver, problem, name="counter", iterations=3))[-1]
    x = last.resume.data["x"]
    assert (x.data_ptr() == solver.x.data_ptr()) is hands_over
    assert not np.shares_memory(last.volume, x.numpy())  # the snapshot is a copy either way


_PEAK = """
import json
from pathlib import Path

import numpy as np
import torch

from tomoprior.algorithms.sirt import sirt
from tomoprior.operators import make_projector

def status(field):
    lines = Path("/proc/self/status").read_text().splitlines()
    return int(next(x for x in lines if x.startswith(field)).split()[1]) * 1024

torch.set_num_threads(2)
angles = np.arange(-76, 77, 2.0)
y = torch.from_numpy(np.random.default_rng(0).random((angles.size, 128, 128), dtype=np.float32))
base = status("VmRSS")
Path("/proc/self/clear_refs").write_text("5")
A = make_projector(angles, (128, 128, 128), device="cpu")
last = list(sirt(A, y, iterations=3, every=3))[-1]
print(json.dumps({"increase": status("VmHWM") - base, "matrix": 8 * A._m.nnz,
                  "volume": last.volume.nbytes}))
"""


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc")
def test_sirt_peak_is_matrix_and_a_few_volumes():
    """A fresh process: SIRT on 128^3 (77 tilts) from the baseline to its peak RSS.

    It holds the system matrix, the iterate and the snapshot (the tilt series
    is in the baseline), plus fixed costs (library code, thread stacks):
    about 60 MB. Before the memory work it took 165 MB (a float64 matrix
    during the build, its transposed copy, volume-sized temporaries).
    """
    res = subprocess.run([sys.executable, "-c", _PEAK], capture_output=True, text=True,
                         timeout=300, check=False)
    assert res.returncode == 0, res.stderr[-2000:]
    r = json.loads(res.stdout.strip().splitlines()[-1])
    bound = r["matrix"] + 4 * r["volume"] + 40e6
    assert r["increase"] < bound, f"peak {r['increase'] / 1e6:.0f} MB over the baseline"
