"""Source filters: a Secondary Capture is ignored unless it carries dose from a dose-producing modality."""

from __future__ import annotations

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from edge_ingest.filters import CompiledFilter, carries_dose
from schemas.config import SourceFilter

SC = "1.2.840.10008.5.1.4.1.1.7"


def header(modality: str, **attrs: object) -> Dataset:
    ds = Dataset()
    ds.Modality = modality
    for k, v in attrs.items():
        setattr(ds, k, v)
    return ds


def test_secondary_capture_is_parsed_for_dose_by_default_and_not_when_switched_off() -> None:
    default = CompiledFilter.from_settings(SourceFilter())
    assert default.sop_class_ignored(SC) == "sop_class" and default.may_carry_dose(SC)
    assert not default.may_carry_dose("1.2.840.10008.5.1.4.1.1.11.1")  # a presentation state never carries dose
    off = CompiledFilter.from_settings(SourceFilter(accept_dose_captures=False))
    assert not off.may_carry_dose(SC)


def test_carries_dose_needs_a_dose_modality_and_a_dose_value() -> None:
    assert carries_dose(header("MG", OrganDose="0.0123"))  # Hologic DBT projection
    assert carries_dose(header("CT", CTDIvol=12.5))
    item = Dataset()
    item.CTDIvol = 9.9
    assert carries_dose(header("CT", ExposureDoseSequence=Sequence([item])))  # Philips CT dose info
    assert carries_dose(header("DX", ImageAndFluoroscopyAreaDoseProduct="0.41"))
    assert not carries_dose(header("CT"))  # a screen capture without dose
    assert not carries_dose(header("OT", CTDIvol=12.5))  # not a dose-producing modality
    assert not carries_dose(header("MG", EntranceDose="0"))  # 0 means "not recorded"
