"""Unit normalisation: UCUM codes, vendor spellings from the samples, and the errors for anything else."""

from __future__ import annotations

import pytest

from edge_ingest.units import Quantity, UnitError, factor, normalise


@pytest.mark.parametrize(
    ("value", "unit", "quantity", "expected"),
    [
        # dose → mGy: CTDIvol, AGD, Dose (RP), entrance exposure
        (12.5, "mGy", Quantity.DOSE_MGY, 12.5),
        (0.00252, "Gy", Quantity.DOSE_MGY, 2.52),  # Dose (RP) as the standard asks (Gy)
        (0.013, "dGy", Quantity.DOSE_MGY, 1.3),  # early-RDSR AGD
        (0.5, "cGy", Quantity.DOSE_MGY, 5.0),
        (250.0, "uGy", Quantity.DOSE_MGY, 0.25),
        (250.0, "µGy", Quantity.DOSE_MGY, 0.25),
        (250.0, "μGy", Quantity.DOSE_MGY, 0.25),  # Greek mu, not micro sign
        # DLP → mGy·cm
        (724.52, "mGycm", Quantity.DLP_MGY_CM, 724.52),  # Siemens Flash sample
        (77.27, "mGy.cm", Quantity.DLP_MGY_CM, 77.27),  # Siemens Confidence sample
        (0.5, "Gy.cm", Quantity.DLP_MGY_CM, 500.0),
        (10.0, "mGy.mm", Quantity.DLP_MGY_CM, 1.0),
        (1.0, "mGy.m", Quantity.DLP_MGY_CM, 100.0),
        (3.0, "mGy·cm", Quantity.DLP_MGY_CM, 3.0),
        (3.0, "mGy cm", Quantity.DLP_MGY_CM, 3.0),
        (3.0, "mGy*cm", Quantity.DLP_MGY_CM, 3.0),
        # DAP → Gy·cm² (1 Gy·m² = 1e4 Gy·cm² = 1e5 dGy·cm² = 1e6 cGy·cm² = 1e7 mGy·cm²)
        (1.6e-5, "Gym2", Quantity.DAP_GY_CM2, 0.16),  # Siemens Artis sample
        (1.07e-5, "Gy.m2", Quantity.DAP_GY_CM2, 0.107),  # Canon CXDI sample
        (1.0, "Gy.m^2", Quantity.DAP_GY_CM2, 1e4),
        (1.0, "Gy·m²", Quantity.DAP_GY_CM2, 1e4),
        (1.034, "dGy.cm2", Quantity.DAP_GY_CM2, 0.1034),  # Toshiba/Canon RF (OpenREM DAPUnitsTest: 1.034e-5 Gy.m2)
        (1e5, "dGy.cm2", Quantity.DAP_GY_CM2, 1e4),
        (1e6, "cGy.cm2", Quantity.DAP_GY_CM2, 1e4),
        (1e7, "mGy.cm2", Quantity.DAP_GY_CM2, 1e4),
        (7.0, "uGy.m2", Quantity.DAP_GY_CM2, 0.07),  # 1 µGy·m² = 1 cGy·cm²
        (7.0, "cGy.cm2", Quantity.DAP_GY_CM2, 0.07),
        (2.0, "Gy.cm2", Quantity.DAP_GY_CM2, 2.0),
        (100.0, "mGy.dm2", Quantity.DAP_GY_CM2, 10.0),
        # time → s
        (28.0, "s", Quantity.TIME_S, 28.0),
        (854.0, "ms", Quantity.TIME_S, 0.854),
        (1.5, "min", Quantity.TIME_S, 90.0),
        (0.5, "h", Quantity.TIME_S, 1800.0),
        (500.0, "us", Quantity.TIME_S, 0.0005),
        (4.0, "sec", Quantity.TIME_S, 4.0),
        # length → mm
        (821.0, "mm", Quantity.LENGTH_MM, 821.0),
        (25.4, "cm", Quantity.LENGTH_MM, 254.0),
        (1.2, "m", Quantity.LENGTH_MM, 1200.0),
        (1.2, "dm", Quantity.LENGTH_MM, 120.0),
        # tube voltage, current and current-time product
        (120.0, "kV", Quantity.VOLTAGE_KV, 120.0),
        (120.0, "kVp", Quantity.VOLTAGE_KV, 120.0),
        (80000.0, "V", Quantity.VOLTAGE_KV, 80.0),
        (35.0, "mA", Quantity.CURRENT_MA, 35.0),
        (0.2, "A", Quantity.CURRENT_MA, 200.0),
        (800.0, "uA.s", Quantity.CHARGE_MAS, 0.8),  # Canon CXDI sample
        (90200.0, "uAs", Quantity.CHARGE_MAS, 90.2),  # Hologic sample
        (5.0, "mAs", Quantity.CHARGE_MAS, 5.0),
        (5.0, "mA.s", Quantity.CHARGE_MAS, 5.0),
        # dimensionless
        (0.6, "{ratio}", Quantity.DIMENSIONLESS, 0.6),
        (4.0, "{events}", Quantity.DIMENSIONLESS, 4.0),
        (-9.3, "1", Quantity.DIMENSIONLESS, -9.3),
        (51.745, None, Quantity.DIMENSIONLESS, 51.745),
        (51.745, "", Quantity.DIMENSIONLESS, 51.745),
    ],
)
def test_normalise_converts_to_target_unit(value: float, unit: str | None, quantity: Quantity, expected: float) -> None:
    got = normalise(value, unit, quantity, "test")
    assert got == pytest.approx(expected, rel=1e-12), f"{value} {unit!r} → {got}, expected {expected}"


def test_surrounding_blanks_are_ignored() -> None:
    assert normalise(2.0, " mGy ", Quantity.DOSE_MGY) == 2.0


@pytest.mark.parametrize(
    ("unit", "quantity"),
    [
        ("furlong", Quantity.LENGTH_MM),
        ("MGy", Quantity.DOSE_MGY),  # mega-gray in UCUM: case is not guessed at
        ("mgy", Quantity.DOSE_MGY),
        ("mGy", Quantity.DLP_MGY_CM),  # a dose where a DLP is expected
        ("mGy.cm", Quantity.DAP_GY_CM2),  # a DLP where a DAP is expected
        ("Gy.m2", Quantity.DOSE_MGY),
        ("mm", Quantity.TIME_S),
        ("{ratio}", Quantity.LENGTH_MM),
        ("mm", Quantity.DIMENSIONLESS),
        ("%", Quantity.DIMENSIONLESS),
        ("kGy", Quantity.DOSE_MGY),
    ],
)
def test_unknown_unit_raises_unit_error(unit: str, quantity: Quantity) -> None:
    with pytest.raises(UnitError) as info:
        normalise(1.0, unit, quantity, "113830^DCM")
    err = info.value
    assert err.unit == unit
    assert err.quantity is quantity
    assert err.concept == "113830^DCM"
    assert "113830^DCM" in str(err) and repr(unit) in str(err), str(err)


@pytest.mark.parametrize("unit", [None, "", "   "])
def test_missing_unit_raises_for_dimensioned_quantities(unit: str | None) -> None:
    with pytest.raises(UnitError, match="no unit") as info:
        normalise(1.0, unit, Quantity.DOSE_MGY, "113738^DCM")
    assert "113738^DCM" in str(info.value)


def test_unit_error_is_a_value_error_and_names_the_fix() -> None:
    with pytest.raises(ValueError, match=r"expected a UCUM code such as 'Gy\.m2'"):
        factor("Gy/s", Quantity.DAP_GY_CM2, "122130^DCM")


def test_unit_error_truncates_a_runaway_unit_string() -> None:
    with pytest.raises(UnitError) as info:
        factor("x" * 500, Quantity.TIME_S, "113742^DCM")
    assert len(str(info.value)) < 300, str(info.value)
