"""The measured advice for learned methods: the summary, its text, the widget's button."""

import pytest

from tomoprior.algorithms import get_method
from tomoprior.recommend import LEARNED, recommendation, summary

SAMPLE = {
    "families": 6, "steps": [10, 20], "cstv_mean_ssim": 0.80,
    "rows": [
        {"method": "sirt", "label": "SIRT", "params": {}, "mean_ssim": 0.70,
         "worst_delta": -0.1, "worst_family": "foam"},
        {"method": "restore", "label": "restore", "params": {}, "mean_ssim": 0.74,
         "worst_delta": -0.09, "worst_family": "foam"},
        {"method": "restore_tv", "label": "restore_tv adapt=100 (halves)",
         "params": {"adapt": 100, "adapt_loss": "halves"}, "mean_ssim": 0.83,
         "worst_delta": 0.004, "worst_family": "film"},
    ],
}


def test_the_best_learned_row_is_recommended_against_cstv():
    rec = recommendation(SAMPLE)
    assert rec.method == "restore_tv" and rec.params == {"adapt": 100, "adapt_loss": "halves"}
    assert rec.delta == pytest.approx(0.03)
    text = rec.text()
    assert "0.830" in text and "CS-TV's 0.800" in text and "+0.030" in text and "film" in text
    worse = recommendation({**SAMPLE, "cstv_mean_ssim": 0.9})
    assert "CS-TV is the safer choice" in worse.text()
    assert recommendation({"rows": [], "families": 0, "cstv_mean_ssim": 0}) is None


def test_the_shipped_summary_names_registered_methods_and_valid_parameters():
    data = summary()
    if data is None:
        pytest.skip("this checkout ships no generalisation summary")
    for row in data["rows"]:
        get_method(row["method"]).resolve(row.get("params", {}))
    rec = recommendation()
    assert rec is not None and rec.method in LEARNED


def test_method_panel_shows_the_advice_for_learned_methods_and_applies_it(qtbot, monkeypatch):
    from tomoprior._qt import method_panel
    from tomoprior._qt import recommendation as box

    monkeypatch.setattr(box, "recommendation", lambda: recommendation(SAMPLE))
    panel = method_panel.MethodPanel()
    qtbot.addWidget(panel)
    panel.show()
    panel.set_method("cstv")
    assert not panel.advice.isVisible()
    panel.set_method("restore")
    assert panel.advice.isVisible() and "restore_tv" in panel.advice.label.text()
    panel.advice.button.click()
    assert panel.method().name == "restore_tv"
    params = panel.params()
    assert params["adapt"] == 100 and params["adapt_loss"] == "halves"
