import numpy as np
import pytest

from tomoprior.errors import GeometryError
from tomoprior.geometry import (
    TiltGeometry,
    angles_from_range,
    angles_from_start_step,
    parse_tilt_axis,
)


def test_start_step_and_range():
    np.testing.assert_allclose(angles_from_start_step(-60, 2, 61)[[0, -1]], [-60, 60])
    a = angles_from_range(-60, 60, 10)
    assert a.size == 13 and a[0] == -60 and a[-1] == 60


@pytest.mark.parametrize(
    ("value", "deg"),
    [("horizontal", 0.0), ("vertical", 90.0), ("-3.2", -3.2), (270, -90.0), (-180, 180.0)],
)
def test_parse_tilt_axis(value, deg):
    assert parse_tilt_axis(value) == pytest.approx(deg)


def test_parse_tilt_axis_rejects_words():
    with pytest.raises(GeometryError, match="not understood"):
        parse_tilt_axis("diagonal")


@pytest.mark.parametrize(
    ("angles", "message"),
    [
        ([0.0], "at least 2"),
        ([0.0, np.nan, 2.0], "NaN"),
        ([-95.0, 0.0], "±90"),
        ([0.0, 2.0, 2.0], "duplicate"),
    ],
)
def test_validation_messages(angles, message):
    with pytest.raises(GeometryError, match=message):
        TiltGeometry(angles)


def test_count_mismatch_message():
    g = TiltGeometry(angles_from_range(-60, 60, 2))
    with pytest.raises(GeometryError, match="61 tilt angles for 60 images"):
        g.validate(60)


def test_shifts_shape_checked():
    with pytest.raises(GeometryError, match="shape"):
        TiltGeometry([0.0, 1.0], shifts=np.zeros((3, 2)))


def test_select_range_and_increment_from_dense_series():
    g = TiltGeometry(angles_from_range(-76, 76, 2))
    sel = g.select(range=(-60, 60), increment=10)
    np.testing.assert_allclose(sel.angles, np.arange(-60, 61, 10))
    assert sel.count == 13
    assert sel.geometry.n_tilts == 13
    # indices point at the original stack
    np.testing.assert_allclose(g.angles[sel.indices], sel.angles)


def test_select_nearest_with_noisy_angles_and_any_order():
    rng = np.random.default_rng(0)
    a = angles_from_range(-70, 70, 2) + rng.uniform(-0.3, 0.3, 71)
    perm = rng.permutation(a.size)
    g = TiltGeometry(a[perm])
    sel = g.select(range=(-60, 60), increment=20)
    assert sel.count == 7
    assert np.all(np.abs(sel.angles - np.round(sel.angles / 20) * 20) < 0.5)
    assert np.all(np.diff(sel.indices) > 0)  # stack order


def test_select_without_increment_keeps_all_in_range():
    g = TiltGeometry(angles_from_range(-60, 60, 2))
    sel = g.select(range=(-30, 30))
    assert sel.count == 31


def test_select_too_few_raises():
    g = TiltGeometry(angles_from_range(-60, 60, 2))
    with pytest.raises(GeometryError, match="keeps"):
        g.select(range=(10, 11))


def test_binned_and_volume_shape():
    g = TiltGeometry([-10, 0, 10], tilt_axis="horizontal", thickness=40, pixel_size=0.5,
                     shifts=[[2, 4], [0, 0], [-2, 2]])
    assert g.volume_shape((3, 64, 80)) == (40, 64, 80)
    assert TiltGeometry([-10, 0, 10]).volume_shape((3, 64, 80)) == (64, 64, 80)
    assert TiltGeometry([-10, 0, 10], tilt_axis=90).volume_shape((3, 64, 80)) == (80, 64, 80)
    b = g.binned(2)
    assert b.thickness == 20 and b.pixel_size == 1.0
    np.testing.assert_allclose(b.shifts[0], [1, 2])


def test_roundtrip_dict():
    g = TiltGeometry([-10.5, 0, 10], tilt_axis=-3.0, pixel_size=3.36, angle_source="x.rawtlt")
    assert TiltGeometry.from_dict(g.to_dict()) == g
    assert "axis -3°" in g.summary()


def test_select_never_uses_excluded_images():
    g = TiltGeometry(angles=np.arange(-60, 61, 2.0))
    s = g.select((-60, 60), 10, exclude=[30])  # 0° is bad: -2° (index 29) stands in
    assert 30 not in s.indices and 29 in s.indices and s.count == 13
    assert g.select(exclude=[0, 60]).count == 59
    with pytest.raises(GeometryError, match="do not exist"):
        g.select(exclude=[61])
    with pytest.raises(GeometryError, match="60 excluded"):
        g.select(exclude=range(1, 61))
