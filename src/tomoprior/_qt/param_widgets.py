"""One magicgui widget per :class:`~tomoprior.algorithms.Param`, chosen by its type."""

from __future__ import annotations

from typing import Any

from magicgui import widgets as mw

from ..algorithms import Param
from ..errors import ParameterError

__all__ = ["ParamField"]

BIG = 1e9


def _tooltip(p: Param) -> str:
    parts = [p.help or p.label or p.name]
    if p.min is not None or p.max is not None:
        lo = "" if p.min is None else f"{p.min:g}"
        hi = "" if p.max is None else f"{p.max:g}"
        parts.append(f"range {lo} … {hi}")
    if p.allow_auto:
        parts.append("type 'auto' to choose it automatically")
    parts.append(f"default {p.default}")
    return "\n".join(parts)


def _decimals(p: Param) -> int:
    vals = [abs(v) for v in (p.default, p.min, p.max) if isinstance(v, (int, float)) and v]
    smallest = min(vals) if vals else 1.0
    digits = 2
    while smallest < 10 ** -(digits - 1) and digits < 8:
        digits += 1
    return max(digits, 6 if p.log else 2)


class ParamField:
    """A magicgui widget for one parameter; ``value()`` is parsed and range-checked."""

    def __init__(self, param: Param) -> None:
        self.param = p = param
        self.widget = self._make(p)
        self.widget.tooltip = _tooltip(p)
        self.widget.native.setObjectName(f"param_{p.name}")

    @staticmethod
    def _make(p: Param) -> mw.Widget:
        if p.choices is not None:
            return mw.ComboBox(choices=[str(c) for c in p.choices], value=str(p.default))
        if p.allow_auto or p.kind is str:
            w = mw.LineEdit(value=str(p.default))
            if p.allow_auto:
                w.native.setPlaceholderText("auto or a number")
            return w
        if p.kind is bool:
            return mw.CheckBox(value=bool(p.default))
        if p.kind is int:
            lo = -BIG if p.min is None else p.min
            hi = BIG if p.max is None else p.max
            return mw.SpinBox(value=int(p.default), min=int(lo), max=int(hi))
        if p.kind is float:
            lo = -BIG if p.min is None else float(p.min)
            hi = BIG if p.max is None else float(p.max)
            w = mw.FloatSpinBox(value=float(p.default), min=lo, max=hi)
            q = w.native
            q.setDecimals(_decimals(p))
            q.setRange(lo, hi)
            q.setValue(float(p.default))
            if p.log:
                q.setStepType(q.AdaptiveDecimalStepType)  # steps of ~10 % on any scale
            else:
                span = (hi - lo) if p.min is not None and p.max is not None else abs(p.default) or 1
                q.setSingleStep(float(f"{span / 100:.1g}"))
            return w
        return mw.LineEdit(value=str(p.default))

    @property
    def label(self) -> str:
        return self.param.label or self.param.name

    def raw(self) -> Any:
        return self.widget.value

    def value(self) -> Any:
        """The parsed value; raises ValueError naming the field."""
        try:
            return self.param.parse(self.widget.value)
        except (TypeError, ValueError) as exc:
            raise ParameterError(f"{self.label}: {exc}") from None

    def set(self, value: Any) -> None:
        w = self.widget
        if isinstance(w, (mw.ComboBox, mw.LineEdit)):
            w.value = str(value)
        else:
            w.value = value

    def reset(self) -> None:
        self.set(self.param.default)
