import importlib.util
import os

import numpy as np
import pytest
import torch

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

# the binding `[all]` installs; qtpy would take PyQt5 first where both are installed
if importlib.util.find_spec("PyQt6") is not None:
    os.environ.setdefault("QT_API", "pyqt6")


@pytest.fixture(scope="module")
def one_thread():
    """Small tensors: one thread avoids OpenMP contention on a busy 2-core machine.

    Use per module with ``pytestmark = pytest.mark.usefixtures("one_thread")``.
    """
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


class Notifications(list):
    """``(severity, message)`` pairs napari showed; severities in lower case."""

    def errors(self) -> list[str]:
        return [m for s, m in self if s == "error"]


@pytest.fixture
def notes():
    """Notifications napari shows while the test runs."""
    from napari.utils.notifications import notification_manager

    got = Notifications()

    def keep(n):
        got.append((str(n.severity).lower(), str(n.message)))

    notification_manager.notification_ready.connect(keep)
    yield got
    notification_manager.notification_ready.disconnect(keep)


def ellipsoid_volume(n: int = 32, seed: int = 0) -> np.ndarray:
    """A few soft ellipsoids: a quick analytic test object (z, y, x)."""
    rng = np.random.default_rng(seed)
    zz, yy, xx = np.meshgrid(*(np.linspace(-1, 1, n),) * 3, indexing="ij")
    v = np.zeros((n, n, n), np.float32)
    for _ in range(4):
        c = rng.uniform(-0.4, 0.4, 3)
        r = rng.uniform(0.12, 0.3, 3)
        d = ((zz - c[0]) / r[0]) ** 2 + ((yy - c[1]) / r[1]) ** 2 + ((xx - c[2]) / r[2]) ** 2
        v += rng.uniform(0.5, 1.0) / (1 + np.exp((d - 1) * 8))
    return v


@pytest.fixture
def small_volume():
    return ellipsoid_volume(32, seed=1)


@pytest.fixture
def small_series(small_volume):
    """(series, geometry, volume) for a horizontal tilt axis, ±60° step 3°."""
    from tomoprior.geometry import TiltGeometry, angles_from_range
    from tomoprior.operators import make_projector
    from tomoprior.transforms import series_from_canonical, volume_to_canonical

    g = TiltGeometry(angles_from_range(-60, 60, 3), tilt_axis="horizontal", pixel_size=0.8)
    vc = volume_to_canonical(small_volume, g)
    A = make_projector(g.angles, vc.shape, device="cpu", backend="rotate")
    series = series_from_canonical(A(torch.from_numpy(vc)).numpy(), g)
    return series, g, small_volume
