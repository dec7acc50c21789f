"""The Reconstruction widget's progress shows which slab a chunked run is in."""

import numpy as np
import pytest

pytest.importorskip("pytestqt")
pytest.importorskip("qtpy")

from tomoprior.step import Step

pytestmark = pytest.mark.gui


def test_progress_names_the_slab_and_counts_whole_slabs(qtbot):
    from tomoprior._qt.progress import RunProgress, slab_progress

    p = RunProgress()
    qtbot.addWidget(p)
    p.begin(1)
    p.job_started(0, "SIRT")
    vol = np.zeros((2, 2, 2), np.float32)
    p.show_step(0, Step(iteration=5, volume=vol, loss=1.0, total=10, chunk=(1, 4)), 1.0)
    assert "slab 2/4" in p.status.text() and "iteration 5 / 10" in p.status.text()
    assert p.bar.value() == 375  # a slab and a half of four
    # the next slab starts its own loss curve
    p.show_step(0, Step(iteration=1, volume=vol, loss=3.0, total=10, chunk=(2, 4)), 2.0)
    assert "slab 3/4" in p.status.text()
    assert slab_progress(Step(iteration=3, volume=vol, total=6)) == 0.5  # not chunked
