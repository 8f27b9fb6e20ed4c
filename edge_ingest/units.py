"""Convert a measured value and its unit code to the one unit radpulse stores for that quantity.

Targets: dose (CTDIvol, AGD, Dose (RP), entrance exposure, SSDE) mGy; DLP mGy·cm; DAP Gy·cm²; time s; length
mm; tube voltage kV; tube current mA; tube current-time product mAs; dimensionless values unchanged.

Units are parsed, not looked up, so every prefix combination works ("uGy.m2", "dGy.cm2", "mGy.cm"). The
stated unit is always honoured: a Dose (RP) sent in mGy stays mGy, an early-RDSR AGD in dGy becomes ×100.
Vendor spellings seen in the samples are accepted by dropping separators ("mGycm", "Gym2", "uA.s", "uAs").
Case is kept as sent: in UCUM "m" is milli and "M" mega, so "MGy" is not guessed at.
An unknown or missing unit raises `UnitError` (a dimensionless value may omit it); the caller decides what to do.
"""

from __future__ import annotations

import enum
import re
from typing import Final


class Quantity(enum.Enum):
    """A physical quantity and the unit radpulse stores it in."""

    DOSE_MGY = "dose (mGy)"
    DLP_MGY_CM = "dose length product (mGy.cm)"
    DAP_GY_CM2 = "dose area product (Gy.cm2)"
    TIME_S = "time (s)"
    LENGTH_MM = "length (mm)"
    VOLTAGE_KV = "tube voltage (kV)"
    CURRENT_MA = "tube current (mA)"
    CHARGE_MAS = "current-time product (mAs)"
    DIMENSIONLESS = "dimensionless ({ratio}, 1)"


_EXAMPLES: Final[dict[Quantity, str]] = {
    Quantity.DOSE_MGY: "'mGy', 'Gy', 'dGy'",
    Quantity.DLP_MGY_CM: "'mGy.cm', 'Gy.cm'",
    Quantity.DAP_GY_CM2: "'Gy.m2', 'dGy.cm2', 'uGy.m2'",
    Quantity.TIME_S: "'s', 'ms', 'min'",
    Quantity.LENGTH_MM: "'mm', 'cm'",
    Quantity.VOLTAGE_KV: "'kV'",
    Quantity.CURRENT_MA: "'mA'",
    Quantity.CHARGE_MAS: "'mA.s', 'uA.s'",
    Quantity.DIMENSIONLESS: "'1', '{ratio}'",
}


class UnitError(ValueError):
    """A unit that cannot be converted to the target unit of a concept."""

    def __init__(self, unit: str | None, quantity: Quantity, concept: str) -> None:
        self.unit = unit
        self.quantity = quantity
        self.concept = concept
        shown = f"unit {unit[:40]!r}" if unit and unit.strip() else "no unit"
        super().__init__(
            f"{concept}: {shown} is not a known {quantity.value} unit; expected a UCUM code such as "
            f"{_EXAMPLES[quantity]} (add the spelling to edge_ingest/units.py if it is a real vendor variant)"
        )


# Multipliers from a gray prefix to mGy and to Gy.
_GY_PREFIX_TO_MGY: Final[dict[str, float]] = {"u": 1e-3, "m": 1.0, "c": 10.0, "d": 100.0, "": 1000.0}
_GY_PREFIX_TO_GY: Final[dict[str, float]] = {"u": 1e-6, "m": 1e-3, "c": 1e-2, "d": 1e-1, "": 1.0}
# Multipliers from a metre prefix to cm (DLP), to cm² (DAP, squared) and to mm (length).
_M_TO_CM: Final[dict[str, float]] = {"um": 1e-4, "mm": 0.1, "cm": 1.0, "dm": 10.0, "m": 100.0}
_M2_TO_CM2: Final[dict[str, float]] = {"um": 1e-8, "mm": 1e-2, "cm": 1.0, "dm": 100.0, "m": 1e4}
_M_TO_MM: Final[dict[str, float]] = {"um": 1e-3, "mm": 1.0, "cm": 10.0, "dm": 100.0, "m": 1000.0}

_DOSE = re.compile(r"([umcd]?)Gy")
_DLP = re.compile(r"([umcd]?)Gy(um|mm|cm|dm|m)")
_DAP = re.compile(r"([umcd]?)Gy(um|mm|cm|dm|m)2")
_LENGTH = re.compile(r"(um|mm|cm|dm|m)")

_TIME_TO_S: Final[dict[str, float]] = {
    "s": 1.0,
    "sec": 1.0,  # non-UCUM
    "ms": 1e-3,
    "us": 1e-6,
    "min": 60.0,
    "h": 3600.0,
}
_VOLTAGE_TO_KV: Final[dict[str, float]] = {"kV": 1.0, "kVp": 1.0, "V": 1e-3}  # kVp: non-UCUM
_CURRENT_TO_MA: Final[dict[str, float]] = {"mA": 1.0, "A": 1000.0, "uA": 1e-3}
_CHARGE_TO_MAS: Final[dict[str, float]] = {"mAs": 1.0, "As": 1000.0, "uAs": 1e-3, "mC": 1.0, "C": 1000.0}

# Separators vendors put between unit factors, and look-alike characters, removed or folded before parsing.
_FOLD = str.maketrans({"µ": "u", "μ": "u", "²": "2", ".": None, "·": None, "⋅": None, "*": None, " ": None})


def _fold(unit: str) -> str:
    """Strip separators and fold look-alikes: "mGy.cm" → "mGycm", "µGy·m²" → "uGym2", "Gy.m^2" → "Gym2"."""
    return unit.strip().replace("^", "").translate(_FOLD)


def factor(unit: str | None, quantity: Quantity, concept: str = "value") -> float:
    """Multiplier taking a value in `unit` to the target unit of `quantity`; `UnitError` if unknown."""
    if unit is None or not unit.strip():
        if quantity is Quantity.DIMENSIONLESS:
            return 1.0  # a pure number needs no unit; vendors often leave it out
        raise UnitError(unit, quantity, concept)
    folded = _fold(unit)
    found: float | None = None
    if quantity is Quantity.DOSE_MGY:
        if m := _DOSE.fullmatch(folded):
            found = _GY_PREFIX_TO_MGY[m.group(1)]
    elif quantity is Quantity.DLP_MGY_CM:
        if m := _DLP.fullmatch(folded):
            found = _GY_PREFIX_TO_MGY[m.group(1)] * _M_TO_CM[m.group(2)]
    elif quantity is Quantity.DAP_GY_CM2:
        if m := _DAP.fullmatch(folded):
            found = _GY_PREFIX_TO_GY[m.group(1)] * _M2_TO_CM2[m.group(2)]
    elif quantity is Quantity.LENGTH_MM:
        if m := _LENGTH.fullmatch(folded):
            found = _M_TO_MM[m.group(1)]
    elif quantity is Quantity.TIME_S:
        found = _TIME_TO_S.get(folded)
    elif quantity is Quantity.VOLTAGE_KV:
        found = _VOLTAGE_TO_KV.get(folded)
    elif quantity is Quantity.CURRENT_MA:
        found = _CURRENT_TO_MA.get(folded)
    elif quantity is Quantity.CHARGE_MAS:
        found = _CHARGE_TO_MAS.get(folded)
    elif quantity is Quantity.DIMENSIONLESS and (folded == "1" or (folded[:1] == "{" and folded[-1:] == "}")):
        found = 1.0  # UCUM "1" or an annotation such as {ratio}, {events}
    if found is None:
        raise UnitError(unit, quantity, concept)
    return found


def normalise(value: float, unit: str | None, quantity: Quantity, concept: str = "value") -> float:
    """`value` in `unit` expressed in the target unit of `quantity`; `UnitError` if the unit is unknown."""
    return value * factor(unit, quantity, concept)
