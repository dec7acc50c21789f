import numpy as np
import pytest
import torch

from tomoprior.geometry import TiltGeometry
from tomoprior.transforms import (
    bin_images,
    canonical_turns,
    series_from_canonical,
    to_canonical,
    volume_from_canonical,
    volume_to_canonical,
    warp_images,
)


def _blob_images(n=3, h=40, w=48):
    yy, xx = np.mgrid[:h, :w]
    img = np.exp(-((yy - 18) ** 2 + (xx - 26) ** 2) / 30.0) + 0.5 * np.exp(
        -((yy - 26) ** 2 + (xx - 14) ** 2) / 12.0
    )
    return np.repeat(img[None], n, 0).astype(np.float32)


def test_warp_shift_moves_content():
    imgs = _blob_images()
    out = warp_images(torch.from_numpy(imgs), torch.tensor([[2.0, -3.0]] * 3)).numpy()
    np.testing.assert_allclose(out[0, 10:30, 10:40], imgs[0, 8:28, 13:43], atol=1e-5)


def test_warp_rotation_direction_is_x_towards_y():
    img = np.zeros((1, 41, 41), np.float32)
    img[0, 20, 30] = 1.0  # on +x of the centre
    out = warp_images(torch.from_numpy(img), None, 90.0).numpy()[0]
    assert np.unravel_index(np.argmax(out), out.shape) == (30, 20)  # now on +y


def test_warp_inverse_undoes_warp():
    imgs = torch.from_numpy(_blob_images())
    s = torch.tensor([[1.5, -2.0], [0.0, 0.5], [-1.0, 1.0]])
    r = torch.tensor([3.0, -2.0, 0.0])
    back = warp_images(warp_images(imgs, s, r), s, r, inverse=True)
    # two bilinear resamplings blur slightly: bound the worst and the mean error
    np.testing.assert_allclose(back[:, 8:-8, 8:-8], imgs[:, 8:-8, 8:-8], atol=0.05)
    assert float(np.abs(back - imgs)[:, 8:-8, 8:-8].mean()) < 0.005


@pytest.mark.parametrize("axis", [0.0, 90.0, -90.0, 180.0, 3.0, 87.0, -2.5])
def test_canonical_roundtrip(axis):
    g = TiltGeometry([-10.0, 0.0, 10.0], tilt_axis=axis, shifts=[[1, -1], [0, 0], [0.5, 2]])
    imgs = _blob_images()
    c = to_canonical(imgs, g)
    k, res = canonical_turns(axis)
    assert abs(res) <= 45
    back = series_from_canonical(c, g)
    assert back.shape == imgs.shape
    np.testing.assert_allclose(back[:, 10:-10, 10:-10], imgs[:, 10:-10, 10:-10], atol=0.05)
    assert float(np.abs(back - imgs)[:, 10:-10, 10:-10].mean()) < 0.005


def test_canonical_makes_axis_vertical():
    # a line along the tilt axis (horizontal) must become vertical (constant column)
    img = np.zeros((2, 32, 32), np.float32)
    img[:, 16, 4:28] = 1.0
    c = to_canonical(img, TiltGeometry([0.0, 5.0], tilt_axis="horizontal"))
    cols = np.nonzero(c[0].sum(0))[0]
    assert cols.size == 1


def test_volume_frame_roundtrip():
    g = TiltGeometry([-1.0, 1.0], tilt_axis=0)
    v = np.random.default_rng(0).random((5, 6, 7)).astype(np.float32)
    c = volume_to_canonical(v, g)
    assert c.shape == (5, 7, 6)
    np.testing.assert_array_equal(volume_from_canonical(c, g), v)


def test_bin_images():
    a = np.arange(2 * 5 * 6, dtype=np.float32).reshape(2, 5, 6)
    b = bin_images(a, 2)
    assert b.shape == (2, 2, 3)
    assert b[0, 0, 0] == pytest.approx(np.mean(a[0, :2, :2]))
