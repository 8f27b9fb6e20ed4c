"""A seeded synthetic hospital: plans realistic days of imaging, sends them over real DICOM associations, and
keeps the exact ground truth.

Layers: ``plan_days`` is pure (seed → ``Plan``, no I/O); ``synthetic_hospital.dicom`` turns a planned exam into pydicom
datasets; ``iter_datasets``/``write_dicom_dir``/``send`` are the I/O edges.

Where it bites:
- Truth start/end are the first/last *acquisition* timestamps of the exam's images, to the second. A one-image exam
  (DX chest PA, a CR single view) therefore has ``duration_s == 0`` although the room was busy for minutes.
- ``scale`` shrinks instance counts only (floor 1 per series); the schedule, UIDs, doses and times are identical at
  every scale, so a test at 0.05 checks the same day a benchmark sends at 1.0.
- Cost on these 2-core boxes: planning a default day ≈0.15 s; building ≈1 ms per instance at scale 1.0 (≈28.6k
  instances, ≈26 s) and ≈3 ms at 0.05 (the per-exam templates and dose SR dominate). ``send`` manages ≈35–65
  objects/s through pynetdicom, so a full day is a benchmark (≈10 min), not a unit test; DCMTK with
  ``TCP_NODELAY=1`` on ``write_dicom_dir`` output does ≈220/s.
- Each open pynetdicom association keeps polling threads busy: ``send`` opens one at a time unless asked to
  interleave.
- CR devices (and one DX) stamp ``DERIVED\\PRIMARY`` on their original acquisitions, as the real samples do; they
  still count for timing in the truth.
- Opening hours are local wall-clock of ``tz``; an exam never starts before opening or ends after closing, except on
  a device open around the clock, whose exams may cross midnight.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import random
import socket
import sys
import time as _time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from pydicom.dataset import Dataset

from synthetic_hospital import dicom as sim_dicom
from synthetic_hospital.dicom import Code, make_uid

PIXEL_MODES = ("small", "ct512")
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


# ------------------------------------------------------------------------------------------------------------
# Devices
# ------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Device:
    """One imaging device: identity, DICOM sender settings, opening hours and what it scans."""

    key: str
    modality: str  # CT | MR | DX | CR | MG | RF
    manufacturer: str
    model: str
    station_name: str
    serial: str
    ae_title: str
    hours: tuple[str | None, ...]  # Mon..Sun, local "HH:MM-HH:MM" (end may be "24:00"), None = closed
    exam_mix: tuple[tuple[str, float], ...]  # (exam type key, weight)
    software_versions: str = ""
    sends_tz_offset: bool = False  # writes TimezoneOffsetFromUTC (and a zone suffix on DT values)
    sends_acquisition_datetime: bool = False  # writes AcquisitionDateTime besides AcquisitionDate/Time
    sends_rdsr: bool = True
    legacy_codes: bool = True  # SRT-era codes (P5-08000, P5-08001) instead of SNOMED CT in the RDSR
    nonucum_units: bool = False  # Siemens-style "mGycm"/"Gym2" unit codes in the RDSR
    header_phantom: bool = False  # writes CTDIPhantomTypeCodeSequence in CT image headers
    derived_image_type: bool = False  # stamps DERIVED\PRIMARY on original acquisitions (CR/DX quirk)
    field_strength_t: float | None = None
    charset: str = "ISO_IR 192"
    zh_share: float = 0.3  # share of exams whose descriptions are Chinese
    busy_idle_min: float = 5.0  # mean idle minutes between exams in peak hours
    qa_daily_p: float = 0.0  # chance per day of a morning QA/phantom exam
    target_ei: float = 400.0  # DX/CR target exposure index (IEC 62494-1)
    department: str = "Radiology"
    sends_mpps: bool = False  # sends MPPS N-CREATE/N-SET (``synthetic_hospital.workflow``) besides its images

    def __post_init__(self) -> None:
        if len(self.hours) != 7:
            raise ValueError(f"Device {self.key!r}: hours needs 7 entries (Mon..Sun), got {len(self.hours)}")
        if not 1 <= len(self.ae_title) <= 16:
            raise ValueError(f"Device {self.key!r}: AE title {self.ae_title!r} must be 1-16 characters")
        for spec in self.hours:
            if spec is not None:
                _parse_window(spec)
        if self.modality not in sim_dicom.IMAGE_SOP_CLASS:
            raise ValueError(f"Device {self.key!r}: modality {self.modality!r}; expected one of "
                             f"{sorted(sim_dicom.IMAGE_SOP_CLASS)}")
        for exam_type, _weight in self.exam_mix:
            if exam_type not in EXAM_TYPES:
                raise ValueError(f"Device {self.key!r}: unknown exam type {exam_type!r}; see EXAM_TYPES")

    def window(self, day: date) -> tuple[int, int] | None:
        """Opening window of ``day`` as (open, close) seconds after local midnight, or None if closed."""
        spec = self.hours[day.weekday()]
        return None if spec is None else _parse_window(spec)

    @property
    def always_open(self) -> bool:
        return all(spec == "00:00-24:00" for spec in self.hours)


def _parse_window(spec: str) -> tuple[int, int]:
    try:
        a, b = spec.split("-")
        start = int(a[:2]) * 3600 + int(a[3:5]) * 60
        end = int(b[:2]) * 3600 + int(b[3:5]) * 60
    except (ValueError, IndexError) as exc:
        raise ValueError(f"opening window {spec!r}: expected 'HH:MM-HH:MM', e.g. '07:00-19:00'") from exc
    if not 0 <= start < end <= 86400:
        raise ValueError(f"opening window {spec!r}: needs 00:00 <= open < close <= 24:00")
    return start, end


def _week(weekday: str | None, saturday: str | None = None, sunday: str | None = None) -> tuple[str | None, ...]:
    return (weekday,) * 5 + (saturday, sunday)


def default_hospital() -> list[Device]:
    """Eleven devices of a mid-sized hospital in the default zone (3 CT, 2 MR, 4 DX/CR, 1 MG, 1 RF)."""
    return [
        Device(
            key="CT1", modality="CT", manufacturer="SIEMENS", model="SOMATOM Definition Flash",
            station_name="CTAWP73491", serial="73491", ae_title="CT1_FLASH", hours=_week("00:00-24:00",
            "00:00-24:00", "00:00-24:00"), software_versions="syngo CT VA48A", sends_tz_offset=True,
            nonucum_units=True, sends_mpps=True, busy_idle_min=4.0, qa_daily_p=0.9, zh_share=0.4,
            exam_mix=(("CT_HEAD", 34), ("CT_CHEST", 20), ("CT_ABD_PELVIS", 14), ("CT_CAP", 8), ("CT_NECK", 5),
                      ("CT_LSPINE", 8), ("CT_SINUS", 3), ("CT_CHEST_LD", 6), ("CT_CTA_CORONARY", 2)),
        ),
        Device(
            key="CT2", modality="CT", manufacturer="GE MEDICAL SYSTEMS", model="Revolution CT",
            station_name="REVCT2", serial="RCT00219", ae_title="CT2_REVO",
            hours=_week("07:30-21:00", "07:30-21:00", "08:00-12:00"), software_versions="revo_ct_22.10",
            legacy_codes=False, header_phantom=True, busy_idle_min=5.0, qa_daily_p=0.9, zh_share=0.5,
            exam_mix=(("CT_CHEST", 24), ("CT_CHEST_LD", 22), ("CT_CTA_CORONARY", 14), ("CT_ABD_PELVIS", 12),
                      ("CT_CAP", 10), ("CT_HEAD", 10), ("CT_NECK", 4), ("CT_SINUS", 4)),
        ),
        Device(
            key="CT3", modality="CT", manufacturer="CANON_MEC", model="Aquilion ONE", station_name="AQONE3",
            serial="3CA1932114", ae_title="CT3_AQONE", hours=_week("08:00-17:30"), software_versions="V10.4",
            legacy_codes=False, charset="GB18030", busy_idle_min=6.0, qa_daily_p=0.8, zh_share=0.8,
            exam_mix=(("CT_CHEST", 20), ("CT_HEAD", 16), ("CT_LSPINE", 14), ("CT_ABD_PELVIS", 14),
                      ("CT_SINUS", 10), ("CT_NECK", 10), ("CT_CAP", 8), ("CT_CHEST_LD", 8)),
        ),
        Device(
            key="MR1", modality="MR", manufacturer="SIEMENS", model="MAGNETOM Aera", station_name="MRC41234",
            serial="41234", ae_title="MR1_AERA", hours=_week("07:00-23:00", "07:00-23:00", "07:00-23:00"),
            software_versions="syngo MR E11", field_strength_t=1.5, busy_idle_min=6.0, qa_daily_p=0.5,
            sends_acquisition_datetime=True, zh_share=0.3, sends_mpps=True,
            exam_mix=(("MR_BRAIN", 35), ("MR_LSPINE", 30), ("MR_KNEE", 25), ("MR_PROSTATE", 10)),
        ),
        Device(
            key="MR2", modality="MR", manufacturer="Philips Medical Systems", model="Ingenia",
            station_name="PHILIPS-MR3T", serial="45021", ae_title="MR2_INGENIA",
            hours=_week("08:00-20:00", "08:00-12:00", None), software_versions="5.7.1\\5.7.1.2",
            field_strength_t=3.0, sends_tz_offset=True, sends_acquisition_datetime=True, busy_idle_min=8.0,
            qa_daily_p=0.5, zh_share=0.5,
            exam_mix=(("MR_BRAIN", 30), ("MR_PROSTATE", 25), ("MR_KNEE", 20), ("MR_LSPINE", 25)),
        ),
        Device(
            key="DX1", modality="DX", manufacturer="Carestream Health", model="DRX-Evolution",
            station_name="DRXEVO1", serial="KH8816", ae_title="DX1_DRXEVO",
            hours=_week("07:00-19:00", "07:00-19:00", "07:00-19:00"), software_versions="5.7.412.7005",
            sends_rdsr=False, derived_image_type=True, busy_idle_min=3.0, target_ei=1500.0, zh_share=0.6,
            sends_mpps=True,
            exam_mix=(("DX_CHEST_PA", 40), ("DX_CHEST_PA_LAT", 20), ("DX_ABDOMEN", 10), ("DX_LSPINE", 10),
                      ("DX_EXTREMITY_KNEE", 8), ("DX_EXTREMITY_HAND", 6), ("DX_EXTREMITY_ANKLE", 6)),
        ),
        Device(
            key="DX2", modality="DX", manufacturer="Siemens", model="Ysio Max", station_name="YSIOMAX2",
            serial="10423", ae_title="DX2_YSIO", hours=_week("07:00-19:00"), software_versions="VF10F",
            sends_tz_offset=True, nonucum_units=True, busy_idle_min=4.0, qa_daily_p=0.1, target_ei=250.0,
            zh_share=0.3,
            exam_mix=(("DX_CHEST_PA", 30), ("DX_CHEST_PA_LAT", 25), ("DX_LSPINE", 15), ("DX_ABDOMEN", 10),
                      ("DX_EXTREMITY_KNEE", 8), ("DX_EXTREMITY_HAND", 6), ("DX_EXTREMITY_ANKLE", 6)),
        ),
        Device(
            key="DX3", modality="DX", manufacturer="Canon Inc.", model="CXDI Control Software NE",
            station_name="CXDI-710C", serial="CXD71055", ae_title="DX3_CXDI", hours=_week("08:00-17:00"),
            software_versions="2.13.0.3", legacy_codes=False, busy_idle_min=5.0, target_ei=300.0, zh_share=0.5,
            exam_mix=(("DX_CHEST_PA", 35), ("DX_EXTREMITY_KNEE", 20), ("DX_EXTREMITY_HAND", 15),
                      ("DX_EXTREMITY_ANKLE", 15), ("DX_LSPINE", 15)),
        ),
        Device(
            key="CR1", modality="CR", manufacturer="FUJIFILM Corporation", model="FCR PROFECT CS",
            station_name="FCRWARD", serial="52260318", ae_title="CR1_FCR", hours=_week("08:00-16:30"),
            software_versions="A09", sends_rdsr=False, derived_image_type=True, busy_idle_min=8.0,
            target_ei=200.0, zh_share=0.7,
            exam_mix=(("DX_CHEST_PA", 50), ("DX_ABDOMEN", 20), ("DX_EXTREMITY_KNEE", 15),
                      ("DX_EXTREMITY_HAND", 15)),
        ),
        Device(
            key="MG1", modality="MG", manufacturer="HOLOGIC, Inc.", model="Selenia Dimensions",
            station_name="SDM-MAMMO1", serial="80513041", ae_title="MG1_SELENIA", hours=_week("08:00-16:00"),
            software_versions="1.10.3.4", sends_tz_offset=True, busy_idle_min=6.0, qa_daily_p=0.6, zh_share=0.3,
            exam_mix=(("MG_SCREENING", 100),),
        ),
        Device(
            key="RF1", modality="RF", manufacturer="Siemens", model="AXIOM-Artis", station_name="AXIS01366",
            serial="123456", ae_title="RF1_ARTIS", hours=_week("08:30-17:00"), software_versions="VD11C",
            nonucum_units=True, busy_idle_min=20.0, zh_share=0.5,
            exam_mix=(("RF_BARIUM_SWALLOW", 35), ("RF_UPPER_GI", 35), ("RF_HSG", 20), ("RF_IVU", 10)),
        ),
    ]


# ------------------------------------------------------------------------------------------------------------
# Exam-type catalogue
# ------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MrSequence:
    """Acquisition parameters of one MR series."""

    scanning_sequence: str  # SE | GR | IR | EP (backslash-joined when several)
    sequence_variant: str
    tr_ms: float
    te_ms: float
    flip_deg: float = 90.0
    etl: int = 1
    is_3d: bool = False
    slice_mm: float = 4.0


@dataclass(frozen=True)
class SeriesSpec:
    """A series an exam type may contain; ranges are drawn per exam."""

    description: str
    images: tuple[int, int]  # at scale 1.0
    probability: float = 1.0
    share: float = 1.0  # relative acquisition length inside the exam (gaps fill the rest)
    philips_description: str | None = None
    # CT
    acquisition: str | None = None  # LOCALIZER | SPIRAL | SEQUENCED | STATIONARY
    ctdivol_mgy: tuple[float, float] | None = None
    length_mm: tuple[float, float] | None = None
    contrast: bool = False
    slice_mm: float = 5.0
    kernel: str = "B30f"
    # MR
    mr: MrSequence | None = None
    # projection (DX/CR/MG/RF)
    view: str | None = None  # PA | AP | LL | LAT | OBL | CC | MLO
    laterality: str | None = None  # L | R
    dap_dgy_cm2: tuple[float, float] | None = None  # per image, DX/CR
    kvp: tuple[float, float] | None = None
    mas: tuple[float, float] | None = None
    field_cm2: float = 1000.0
    sid_mm: float = 1100.0


@dataclass(frozen=True)
class ExamType:
    """One orderable procedure and how it is performed."""

    key: str
    modality: str  # CT | MR | DX | MG | RF (DX types also run on CR devices)
    label: str
    descriptions_en: tuple[str, ...]
    descriptions_zh: tuple[str, ...]
    body_part: str  # BodyPartExamined
    region: Code  # RDSR target region / AnatomicRegionSequence (CID 4031, SRT)
    procedure_code: str  # local RIS code, scheme 99SIMRIS
    duration_s: tuple[int, int]  # first to last acquisition
    series: tuple[SeriesSpec, ...]
    family: str = ""  # truth exam_type; defaults to key (variants such as DX_EXTREMITY_KNEE share one)
    phantom: str | None = None  # CT dose phantom: HEAD16 | BODY32
    coil: str | None = None  # MR coil group: HEAD | KNEE | SPINE | BODY
    sex: str | None = None  # forced patient sex
    age: tuple[int, int] = (18, 88)
    child_share: float = 0.0
    is_qa: bool = False
    fluoro_events: tuple[int, int] = (0, 0)  # RF
    fluoro_s: tuple[float, float] = (0.0, 0.0)  # RF beam-on time per fluoro event
    max_series: int = 8

    @property
    def exam_family(self) -> str:
        return self.family or self.key


R_HEAD: Code = ("T-D1100", "SRT", "Head")
R_NECK: Code = ("T-D1600", "SRT", "Neck")
R_CHEST: Code = ("T-D3000", "SRT", "Chest")
R_ABDOMEN: Code = ("T-D4000", "SRT", "Abdomen")
R_ABD_PELVIS: Code = ("R-FAB57", "SRT", "Abdomen and Pelvis")
R_CAP: Code = ("R-FAB56", "SRT", "Chest, Abdomen and Pelvis")
R_HEART: Code = ("T-32000", "SRT", "Heart")
R_LSPINE: Code = ("T-11503", "SRT", "Lumbar spine")
R_SINUS: Code = ("T-22000", "SRT", "Paranasal sinus")
R_KNEE: Code = ("T-D9200", "SRT", "Knee")
R_HAND: Code = ("T-D8700", "SRT", "Hand")
R_ANKLE: Code = ("T-15750", "SRT", "Ankle joint")
R_PROSTATE: Code = ("T-9200B", "SRT", "Prostate")
R_BRAIN: Code = ("T-A0100", "SRT", "Brain")
R_BREAST: Code = ("T-04000", "SRT", "Breast")
R_ESOPHAGUS: Code = ("T-56000", "SRT", "Esophagus")
R_UGI: Code = ("T-DD163", "SRT", "Esophagus, stomach and duodenum")
R_UTERUS: Code = ("T-88920", "SRT", "Uterus and fallopian tubes")
R_URINARY: Code = ("T-70010", "SRT", "Upper urinary tract")
R_PHANTOM: Code = ("113681", "DCM", "Phantom")

_CT_LOC = SeriesSpec("Topogram 0.6 T20s", (1, 2), share=0.02, acquisition="LOCALIZER", ctdivol_mgy=(0.05, 0.25),
                     length_mm=(256.0, 768.0))


def _ct(desc: str, images: tuple[int, int], ctdi: tuple[float, float], length: tuple[float, float], *,
        acq: str = "SPIRAL", p: float = 1.0, contrast: bool = False, slice_mm: float = 5.0,
        kernel: str = "B30f") -> SeriesSpec:
    return SeriesSpec(desc, images, probability=p, share=0.08, acquisition=acq, ctdivol_mgy=ctdi,
                      length_mm=length, contrast=contrast, slice_mm=slice_mm, kernel=kernel)


def _mr(desc: str, philips: str, images: tuple[int, int], seq: MrSequence, p: float = 1.0,
        share: float = 1.0) -> SeriesSpec:
    return SeriesSpec(desc, images, probability=p, share=share, philips_description=philips, mr=seq)


def _dx(view: str, dap: tuple[float, float], kvp: tuple[float, float], mas: tuple[float, float], *,
        field_cm2: float = 1000.0, sid_mm: float = 1100.0, desc: str = "", laterality: str | None = None,
        p: float = 1.0) -> SeriesSpec:
    return SeriesSpec(desc or view, (1, 1), probability=p, share=0.0, view=view, laterality=laterality,
                      dap_dgy_cm2=dap, kvp=kvp, mas=mas, field_cm2=field_cm2, sid_mm=sid_mm)


_T2_TSE = MrSequence("SE", "SK\\SP\\OSP", 4000, 96, 150, 15)
_T1_TSE = MrSequence("SE", "SK\\SP\\OSP", 550, 10, 150, 3)
_FLAIR = MrSequence("SE\\IR", "SK\\SP\\MP\\OSP", 9000, 81, 150, 16)
_DWI = MrSequence("EP", "SK\\SP", 5200, 69, 90, 1)
_MPRAGE = MrSequence("GR\\IR", "SK\\SP\\MP\\OSP", 2000, 2.5, 8, 1, is_3d=True, slice_mm=1.0)
_PD_FS = MrSequence("SE", "SK\\SP\\OSP", 3200, 33, 150, 7, slice_mm=3.0)
_LOC = MrSequence("GR", "SP", 8.6, 4.0, 20, 1, slice_mm=7.0)
_VIBE = MrSequence("GR", "SK\\SP\\SS\\OSP", 4.1, 1.4, 9, 1, is_3d=True, slice_mm=3.0)

EXAM_TYPES: dict[str, ExamType] = {
    et.key: et
    for et in (
        # ---------------------------------------------------------------- CT
        ExamType("CT_HEAD", "CT", "CT head without contrast",
                 ("CT HEAD W/O", "Head^Routine", "CT BRAIN NON-CONTRAST", "HEAD ROUTINE"),
                 ("头颅平扫", "颅脑CT平扫", "头颅CT平扫"), "HEAD", R_HEAD, "CT0101", (300, 540),
                 (_CT_LOC, _ct("Head 5.0 H31s", (60, 180), (42.0, 62.0), (140.0, 180.0), acq="SEQUENCED",
                               kernel="H31s"),
                  _ct("Head 5.0 repeat", (60, 120), (42.0, 62.0), (60.0, 120.0), acq="SEQUENCED", p=0.08,
                      kernel="H31s")),
                 phantom="HEAD16", child_share=0.06),
        ExamType("CT_CHEST", "CT", "CT chest",
                 ("CT CHEST", "Thorax^Routine", "CHEST W/O", "CT THORAX"),
                 ("胸部CT平扫", "胸部平扫", "胸部CT"), "CHEST", R_CHEST, "CT0201", (300, 600),
                 (_CT_LOC, _ct("Thorax 1.0 B70f", (200, 300), (5.5, 11.0), (280.0, 360.0), slice_mm=1.0,
                               kernel="B70f"),
                  _ct("Thorax C+ 1.0", (150, 300), (6.0, 11.5), (280.0, 360.0), p=0.25, contrast=True,
                      slice_mm=1.0)),
                 phantom="BODY32"),
        ExamType("CT_CHEST_LD", "CT", "CT low-dose chest",
                 ("LOW DOSE CT CHEST", "LDCT LUNG SCREENING", "Thorax^LowDose"),
                 ("胸部低剂量CT", "低剂量胸部CT平扫", "肺癌筛查低剂量CT"), "CHEST", R_CHEST, "CT0202", (300, 480),
                 (_CT_LOC, _ct("LD Thorax 1.0", (200, 300), (0.9, 2.8), (280.0, 340.0), slice_mm=1.0,
                               kernel="B60f")),
                 phantom="BODY32", age=(40, 75)),
        ExamType("CT_ABD_PELVIS", "CT", "CT abdomen and pelvis",
                 ("CT ABDOMEN PELVIS", "CT ABD/PEL W", "Abdomen^Routine", "ABD PELVIS C+"),
                 ("全腹CT增强", "腹部盆腔CT", "腹盆腔CT平扫+增强"), "ABDOMEN", R_ABD_PELVIS, "CT0301", (420, 780),
                 (_CT_LOC, _ct("Abdomen native 5.0", (80, 150), (8.0, 13.0), (380.0, 480.0), p=0.5),
                  _ct("Abdomen PV 5.0", (80, 160), (9.0, 15.0), (400.0, 500.0), contrast=True),
                  _ct("Abdomen delayed 5.0", (80, 150), (9.0, 15.0), (200.0, 300.0), p=0.15, contrast=True)),
                 phantom="BODY32"),
        ExamType("CT_CAP", "CT", "CT chest, abdomen and pelvis",
                 ("CT CHEST ABDOMEN PELVIS", "CT CAP W", "TAP^Routine", "CT THORAX ABDOMEN PELVIS C+"),
                 ("胸腹盆CT增强", "胸部+全腹CT", "胸腹盆腔增强CT"), "CHEST", R_CAP, "CT0401", (540, 900),
                 (_CT_LOC, _ct("Thorax arterial 1.0", (150, 300), (8.0, 13.0), (280.0, 340.0), p=0.4,
                               contrast=True, slice_mm=1.0),
                  _ct("TAP venous 3.0", (200, 300), (8.0, 14.0), (600.0, 750.0), contrast=True, slice_mm=3.0),
                  _ct("Abdomen delayed 5.0", (60, 120), (8.0, 13.0), (200.0, 300.0), p=0.2, contrast=True)),
                 phantom="BODY32", age=(30, 85)),
        ExamType("CT_CTA_CORONARY", "CT", "CT angiography coronary arteries",
                 ("CTA CORONARY", "CORONARY CTA", "Cardio^CaScore+CTA", "CT CORONARY ANGIOGRAM"),
                 ("冠状动脉CTA", "冠脉CTA", "冠状动脉CT血管成像"), "HEART", R_HEART, "CT0501", (600, 900),
                 (_CT_LOC, _ct("CaScore 3.0", (50, 70), (1.5, 4.0), (120.0, 150.0), acq="SEQUENCED",
                               slice_mm=3.0, kernel="Qr36"),
                  _ct("Bolus tracking", (8, 20), (2.0, 8.0), (10.0, 10.0), acq="STATIONARY", contrast=True),
                  _ct("Cardiac 0.75 Bv36 BestDiast", (200, 300), (12.0, 40.0), (120.0, 160.0),
                      acq="SEQUENCED", contrast=True, slice_mm=0.75, kernel="Bv36")),
                 phantom="BODY32", age=(40, 80)),
        ExamType("CT_LSPINE", "CT", "CT lumbar spine",
                 ("CT L-SPINE", "CT LUMBAR SPINE", "Spine^L-Spine", "LSPINE W/O"),
                 ("腰椎CT平扫", "腰椎间盘CT", "腰椎CT"), "LSPINE", R_LSPINE, "CT0601", (300, 600),
                 (_CT_LOC, _ct("L-Spine 2.0 B60s", (120, 250), (14.0, 30.0), (180.0, 250.0), slice_mm=2.0,
                               kernel="B60s"),
                  _ct("L-Spine 3.0 B31s", (60, 120), (14.0, 28.0), (150.0, 200.0), p=0.1, slice_mm=3.0)),
                 phantom="BODY32"),
        ExamType("CT_SINUS", "CT", "CT paranasal sinuses",
                 ("CT SINUS", "CT PARANASAL SINUSES", "Sinus^Routine"),
                 ("鼻窦CT平扫", "副鼻窦CT", "鼻窦CT"), "SINUS", R_SINUS, "CT0701", (300, 480),
                 (_CT_LOC, _ct("Sinus 1.0 H60s", (100, 200), (8.0, 22.0), (100.0, 140.0), slice_mm=1.0,
                               kernel="H60s")),
                 phantom="HEAD16", child_share=0.05),
        ExamType("CT_NECK", "CT", "CT neck",
                 ("CT NECK", "CT SOFT TISSUE NECK", "Neck^Routine", "NECK C+"),
                 ("颈部CT增强", "颈部CT平扫", "颈部软组织CT"), "NECK", R_NECK, "CT0801", (360, 720),
                 (_CT_LOC, _ct("Neck native 3.0", (80, 150), (9.0, 18.0), (200.0, 260.0), p=0.5, slice_mm=3.0),
                  _ct("Neck C+ 3.0", (80, 160), (10.0, 20.0), (200.0, 260.0), contrast=True, slice_mm=3.0)),
                 phantom="BODY32"),
        ExamType("CT_QA", "CT", "CT daily QA phantom",
                 ("QA DAILY", "DAILY QA WATER PHANTOM", "Service^QA"), ("QA每日质控",), "PHANTOM", R_PHANTOM,
                 "QA0001", (240, 420),
                 (_CT_LOC, _ct("QA water 10mm", (8, 24), (30.0, 45.0), (20.0, 40.0), acq="SEQUENCED",
                               slice_mm=10.0, kernel="H30s")),
                 phantom="HEAD16", is_qa=True),
        # ---------------------------------------------------------------- MR
        ExamType("MR_BRAIN", "MR", "MR brain",
                 ("MR BRAIN W/O", "MRI HEAD", "Head^Brain Routine", "BRAIN MRI"),
                 ("头颅MR平扫", "颅脑磁共振平扫", "头颅MRI"), "BRAIN", R_BRAIN, "MR0101", (1200, 1800),
                 (_mr("localizer", "Survey", (3, 9), _LOC, share=0.03),
                  _mr("t2_tse_tra", "T2W_TSE", (20, 30), _T2_TSE),
                  _mr("t1_tse_tra", "T1W_SE", (20, 30), _T1_TSE),
                  _mr("t2_tirm_tra_dark-fluid", "T2W_FLAIR", (20, 30), _FLAIR),
                  _mr("ep2d_diff_tra", "DWI", (40, 60), _DWI, p=0.8),
                  _mr("t2_tse_sag", "T2W_TSE_SAG", (20, 25), _T2_TSE, p=0.6),
                  _mr("t1_mprage_sag_p2_iso", "3D_T1W_TFE", (50, 60), _MPRAGE, p=0.3, share=1.5)),
                 coil="HEAD", child_share=0.04),
        ExamType("MR_KNEE", "MR", "MR knee",
                 ("MR KNEE", "MRI KNEE W/O", "Knee^Routine"), ("膝关节MR平扫", "膝关节磁共振"), "KNEE", R_KNEE,
                 "MR0201", (1200, 1800),
                 (_mr("localizer", "Survey", (3, 9), _LOC, share=0.03),
                  _mr("pd_tse_fs_sag", "PDW_SPAIR_SAG", (20, 30), _PD_FS),
                  _mr("pd_tse_fs_cor", "PDW_SPAIR_COR", (20, 30), _PD_FS),
                  _mr("t1_tse_cor", "T1W_TSE_COR", (20, 30), _T1_TSE),
                  _mr("pd_tse_fs_tra", "PDW_SPAIR_TRA", (24, 36), _PD_FS),
                  _mr("t2_tse_sag", "T2W_TSE_SAG", (20, 30), _T2_TSE, p=0.5)),
                 coil="KNEE", age=(14, 80)),
        ExamType("MR_LSPINE", "MR", "MR lumbar spine",
                 ("MR L-SPINE", "MRI LUMBAR SPINE W/O", "Spine^L-Spine"), ("腰椎MR平扫", "腰椎磁共振平扫"),
                 "LSPINE", R_LSPINE, "MR0301", (1200, 2100),
                 (_mr("localizer", "Survey", (3, 9), _LOC, share=0.03),
                  _mr("t2_tse_sag", "T2W_TSE_SAG", (15, 22), _T2_TSE),
                  _mr("t1_tse_sag", "T1W_TSE_SAG", (15, 22), _T1_TSE),
                  _mr("t2_tse_tra", "T2W_TSE_TRA", (20, 40), _T2_TSE),
                  _mr("t2_tse_stir_sag", "STIR_SAG", (15, 22), _FLAIR, p=0.6),
                  _mr("t2_tse_cor", "T2W_TSE_COR", (15, 22), _T2_TSE, p=0.3)),
                 coil="SPINE"),
        ExamType("MR_PROSTATE", "MR", "MR prostate (multiparametric)",
                 ("MR PROSTATE", "MPMRI PROSTATE", "Prostate^mpMRI"), ("前列腺MR增强", "前列腺多参数磁共振"),
                 "PROSTATE", R_PROSTATE, "MR0401", (1800, 2700),
                 (_mr("localizer", "Survey", (3, 9), _LOC, share=0.03),
                  _mr("t2_tse_tra", "T2W_TSE_TRA", (20, 30), _T2_TSE),
                  _mr("t2_tse_sag", "T2W_TSE_SAG", (20, 30), _T2_TSE),
                  _mr("t2_tse_cor", "T2W_TSE_COR", (20, 30), _T2_TSE),
                  _mr("ep2d_diff_b50_800_1400", "DWI_b1400", (40, 60), _DWI),
                  _mr("ep2d_diff_ADC", "DWI_ADC", (20, 30), _DWI),
                  _mr("t1_vibe_dyn", "DCE_THRIVE", (50, 60), _VIBE, share=2.0),
                  _mr("t1_tse_tra_large_fov", "T1W_TSE_TRA", (20, 30), _T1_TSE, p=0.5)),
                 coil="BODY", sex="M", age=(50, 85)),
        ExamType("MR_QA", "MR", "MR QA phantom",
                 ("QA PHANTOM", "DAILY QA", "Service^QA"), ("磁共振质控",), "PHANTOM", R_PHANTOM, "QA0002",
                 (600, 900),
                 (_mr("localizer", "Survey", (3, 3), _LOC, share=0.05),
                  _mr("qa_se_tra", "QA_SE", (20, 20), _T1_TSE), _mr("qa_se_sag", "QA_SE_SAG", (20, 20), _T1_TSE),
                  _mr("qa_epi_stability", "QA_EPI", (20, 40), _DWI)),
                 coil="HEAD", is_qa=True),
        # ---------------------------------------------------------------- DX / CR
        ExamType("DX_CHEST_PA", "DX", "XR chest PA",
                 ("CHEST PA", "XR CHEST 1 VIEW", "Thorax pa", "CHEST PA ERECT"),
                 ("胸部正位", "胸部DR正位", "胸片"), "CHEST", R_CHEST, "DX0101", (0, 0),
                 (_dx("PA", (0.5, 2.2), (110, 125), (1.0, 3.2), field_cm2=1500, sid_mm=1800, desc="Thorax pa"),),
                 child_share=0.05),
        ExamType("DX_CHEST_PA_LAT", "DX", "XR chest PA and lateral",
                 ("CHEST PA LAT", "XR CHEST 2 VIEWS", "Thorax pa+lat"), ("胸部正侧位", "胸部DR正侧位"), "CHEST",
                 R_CHEST, "DX0102", (120, 420),
                 (_dx("PA", (0.5, 2.2), (110, 125), (1.0, 3.2), field_cm2=1500, sid_mm=1800, desc="Thorax pa"),
                  _dx("LL", (1.5, 5.0), (115, 125), (3.0, 8.0), field_cm2=1200, sid_mm=1800,
                      desc="Thorax lat")),
                 child_share=0.03),
        ExamType("DX_ABDOMEN", "DX", "XR abdomen",
                 ("ABDOMEN AP", "KUB", "XR ABDOMEN 2 VIEWS", "Abdomen ap supine+erect"),
                 ("腹部立卧位", "腹部平片", "立位腹平片"), "ABDOMEN", R_ABDOMEN, "DX0201", (120, 480),
                 (_dx("AP", (8.0, 30.0), (75, 85), (10.0, 32.0), field_cm2=1200, desc="Abdomen ap supine"),
                  _dx("AP", (8.0, 30.0), (75, 85), (10.0, 32.0), field_cm2=1200, desc="Abdomen ap erect",
                      p=0.7)),
                 ),
        ExamType("DX_LSPINE", "DX", "XR lumbar spine",
                 ("L-SPINE AP LAT", "XR LUMBAR SPINE 2 VIEWS", "LWS ap+lat"), ("腰椎正侧位", "腰椎DR"),
                 "LSPINE", R_LSPINE, "DX0301", (180, 480),
                 (_dx("AP", (8.0, 20.0), (78, 85), (20.0, 40.0), field_cm2=600, desc="L-spine ap"),
                  _dx("LAT", (15.0, 40.0), (85, 95), (40.0, 80.0), field_cm2=450, desc="L-spine lat"),
                  _dx("OBL", (12.0, 30.0), (80, 90), (30.0, 60.0), field_cm2=450, desc="L-spine obl", p=0.15)),
                 ),
        ExamType("DX_EXTREMITY_KNEE", "DX", "XR knee", ("KNEE AP LAT", "XR KNEE 2 VIEWS", "Knee ap+lat"),
                 ("膝关节正侧位", "膝关节DR"), "KNEE", R_KNEE, "DX0401", (150, 420),
                 (_dx("AP", (0.2, 0.8), (60, 68), (3.0, 6.0), field_cm2=400, desc="Knee ap"),
                  _dx("LAT", (0.2, 0.8), (60, 68), (3.0, 6.0), field_cm2=400, desc="Knee lat"),
                  _dx("PA", (0.2, 0.8), (60, 68), (3.0, 6.0), field_cm2=400, desc="Knee skyline", p=0.2)),
                 family="DX_EXTREMITY", age=(6, 88), child_share=0.12),
        ExamType("DX_EXTREMITY_HAND", "DX", "XR hand", ("HAND PA OBL", "XR HAND 2 VIEWS", "Hand pa+obl"),
                 ("手正斜位", "手部DR"), "HAND", R_HAND, "DX0402", (150, 360),
                 (_dx("PA", (0.05, 0.3), (50, 58), (1.6, 3.2), field_cm2=300, desc="Hand pa"),
                  _dx("OBL", (0.05, 0.3), (50, 58), (1.6, 3.2), field_cm2=300, desc="Hand obl"),
                  _dx("LAT", (0.05, 0.3), (52, 60), (2.0, 4.0), field_cm2=300, desc="Hand lat", p=0.3)),
                 family="DX_EXTREMITY", age=(4, 88), child_share=0.15),
        ExamType("DX_EXTREMITY_ANKLE", "DX", "XR ankle",
                 ("ANKLE AP LAT", "XR ANKLE 3 VIEWS", "Ankle ap+lat+mortise"), ("踝关节正侧位", "踝关节DR"),
                 "ANKLE", R_ANKLE, "DX0403", (150, 420),
                 (_dx("AP", (0.1, 0.5), (55, 63), (2.5, 5.0), field_cm2=350, desc="Ankle ap"),
                  _dx("LAT", (0.1, 0.5), (55, 63), (2.5, 5.0), field_cm2=350, desc="Ankle lat"),
                  _dx("AP", (0.1, 0.5), (55, 63), (2.5, 5.0), field_cm2=350, desc="Ankle mortise", p=0.5)),
                 family="DX_EXTREMITY", age=(6, 88), child_share=0.12),
        ExamType("DX_QA", "DX", "DX detector QA", ("QA FLAT FIELD", "DETECTOR CALIBRATION CHECK"),
                 ("平板质控",), "PHANTOM", R_PHANTOM, "QA0003", (60, 180),
                 (_dx("AP", (0.5, 1.5), (70, 70), (5.0, 5.0), field_cm2=1800, desc="QA flat field"),
                  _dx("AP", (0.5, 1.5), (70, 70), (5.0, 5.0), field_cm2=1800, desc="QA flat field")),
                 is_qa=True),
        # ---------------------------------------------------------------- MG
        ExamType("MG_SCREENING", "MG", "Screening mammography, 4 views",
                 ("MAMMO SCREENING BILAT", "SCREENING MAMMOGRAM", "Mammo^Screening 4 views"),
                 ("乳腺钼靶筛查", "双乳X线摄影", "乳腺X线筛查"), "BREAST", R_BREAST, "MG0101", (600, 900),
                 (SeriesSpec("R CC", (1, 1), share=0.0, view="CC", laterality="R"),
                  SeriesSpec("L CC", (1, 1), share=0.0, view="CC", laterality="L"),
                  SeriesSpec("R MLO", (1, 1), share=0.0, view="MLO", laterality="R"),
                  SeriesSpec("L MLO", (1, 1), share=0.0, view="MLO", laterality="L")),
                 sex="F", age=(40, 74)),
        ExamType("MG_QA", "MG", "MG QA phantom", ("QA ACR PHANTOM", "MAMMO QC"), ("乳腺机质控",), "PHANTOM",
                 R_PHANTOM, "QA0004", (120, 300),
                 (SeriesSpec("QA phantom CC", (1, 1), share=0.0, view="CC", laterality="L"),
                  SeriesSpec("QA flat field", (1, 1), share=0.0, view="CC", laterality="L")),
                 is_qa=True),
        # ---------------------------------------------------------------- RF
        ExamType("RF_BARIUM_SWALLOW", "RF", "Fluoroscopy barium swallow",
                 ("BARIUM SWALLOW", "ESOPHAGRAM", "Oesophagus^Ba swallow"), ("食管钡餐造影", "食管吞钡"),
                 "ESOPHAGUS", R_ESOPHAGUS, "RF0101", (1200, 2400),
                 (SeriesSpec("Esophagus spot", (3, 10), share=0.3, view="AP", kvp=(75, 85), mas=(4.0, 12.0)),
                  SeriesSpec("Esophagus oblique", (2, 8), share=0.3, view="OBL", kvp=(75, 85), mas=(4.0, 12.0)),
                  SeriesSpec("Esophagus lateral", (2, 8), share=0.3, view="LAT", probability=0.5, kvp=(80, 90),
                             mas=(6.0, 16.0))),
                 fluoro_events=(4, 10), fluoro_s=(5.0, 30.0)),
        ExamType("RF_UPPER_GI", "RF", "Fluoroscopy upper GI series",
                 ("UPPER GI SERIES", "UGI BARIUM", "Stomach^Double contrast"), ("上消化道造影", "上消化道钡餐"),
                 "STOMACH", R_UGI, "RF0201", (1500, 3600),
                 (SeriesSpec("Stomach spot", (4, 10), share=0.3, view="AP", kvp=(80, 95), mas=(6.0, 20.0)),
                  SeriesSpec("Duodenum spot", (2, 8), share=0.3, view="AP", kvp=(80, 95), mas=(6.0, 20.0)),
                  SeriesSpec("Stomach prone", (2, 8), share=0.3, view="PA", probability=0.6, kvp=(80, 95),
                             mas=(6.0, 20.0))),
                 fluoro_events=(6, 14), fluoro_s=(5.0, 40.0)),
        ExamType("RF_HSG", "RF", "Hysterosalpingography",
                 ("HYSTEROSALPINGOGRAM", "HSG", "Pelvis^HSG"), ("子宫输卵管造影",), "PELVIS", R_UTERUS, "RF0301",
                 (1200, 1800),
                 (SeriesSpec("HSG filling", (2, 6), share=0.3, view="AP", kvp=(70, 80), mas=(5.0, 15.0)),
                  SeriesSpec("HSG spill", (2, 6), share=0.3, view="AP", kvp=(70, 80), mas=(5.0, 15.0))),
                 fluoro_events=(2, 6), fluoro_s=(3.0, 20.0), sex="F", age=(22, 42)),
        ExamType("RF_IVU", "RF", "Intravenous urography",
                 ("IVU", "INTRAVENOUS UROGRAM", "Urography^IVP"), ("静脉肾盂造影",), "ABDOMEN", R_URINARY,
                 "RF0401", (1800, 3600),
                 (SeriesSpec("IVU control", (1, 2), share=0.2, view="AP", kvp=(70, 80), mas=(15.0, 30.0)),
                  SeriesSpec("IVU 5 min", (1, 3), share=0.2, view="AP", kvp=(70, 80), mas=(15.0, 30.0)),
                  SeriesSpec("IVU 15 min", (2, 4), share=0.2, view="AP", kvp=(70, 80), mas=(15.0, 30.0)),
                  SeriesSpec("IVU post void", (1, 2), share=0.2, view="AP", kvp=(70, 80), mas=(15.0, 30.0))),
                 fluoro_events=(1, 3), fluoro_s=(2.0, 10.0)),
    )
}

_QA_TYPE = {"CT": "CT_QA", "MR": "MR_QA", "DX": "DX_QA", "CR": "DX_QA", "MG": "MG_QA"}
_CHANGEOVER_S = {"CT": (180, 600), "MR": (300, 900), "DX": (60, 240), "CR": (90, 300), "MG": (180, 480),
                 "RF": (600, 1200)}
_SINGLE_VIEW_SLOT_S = (90, 300)  # room time of a one-image exam (its truth duration is 0)
_MR_COILS = {
    "SIEMENS": {"HEAD": "HeadNeck_20", "KNEE": "Knee_18", "SPINE": "Spine_32", "BODY": "Body_18"},
    "Philips Medical Systems": {"HEAD": "dS Head 32ch", "KNEE": "dS Knee 16ch", "SPINE": "dS Posterior",
                                "BODY": "dS Torso"},
}


# ------------------------------------------------------------------------------------------------------------
# The plan
# ------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Patient:
    """A synthetic patient (or the QA phantom); every value is obviously fake."""

    patient_id: str
    name: str
    name_ideographic: str | None
    birth_date: date | None
    sex: str  # M | F | O
    age_years: int | None
    weight_kg: float | None
    height_m: float | None


@dataclass(frozen=True)
class DoseEvent:
    """One irradiation event, with values exactly as written to the DICOM objects."""

    uid: str
    kind: str  # CT | PROJECTION
    protocol: str
    start_offset_s: float  # from exam start
    target_region: Code
    series_number: int | None = None  # image series carrying this event's UID
    # CT (TID 10013)
    acquisition_type: str | None = None  # CONSTANT_ANGLE | SPIRAL | SEQUENCED | STATIONARY
    ctdivol_mgy: float | None = None
    dlp_mgy_cm: float | None = None
    phantom: str | None = None  # HEAD16 | BODY32
    scanning_length_mm: float | None = None
    exposure_time_s: float | None = None
    pitch: float | None = None
    tube_current_ma: float | None = None
    contrast: bool = False
    # projection (TID 10003)
    event_type: str | None = None  # STATIONARY | FLUOROSCOPY
    kvp: float | None = None
    mas: float | None = None
    dap_dgy_cm2: float | None = None  # image-header unit
    dap_gy_m2: float | None = None  # RDSR unit
    dose_rp_gy: float | None = None
    entrance_dose_mgy: float | None = None
    duration_s: float | None = None  # fluoro beam-on time
    pulse_rate: float | None = None
    exposure_index: float | None = None
    target_exposure_index: float | None = None
    deviation_index: float | None = None
    view: str | None = None
    laterality: str | None = None
    agd_mgy: float | None = None
    compression_mm: float | None = None
    sid_mm: float | None = None


@dataclass(frozen=True)
class PlannedSeries:
    """One image series: its UID, size and acquisition window inside the exam."""

    number: int
    uid: str
    description: str
    n_instances: int  # after scale
    n_instances_full: int  # at scale 1.0
    start_offset_s: int
    end_offset_s: int
    anchor_end: bool  # a single image sits at the window end (last series) instead of its start
    spec: SeriesSpec
    event_index: int | None = None

    def instance_offset_us(self, index: int) -> int:
        """Acquisition time of image ``index`` (0-based) in microseconds after the exam start."""
        a, b = self.start_offset_s * 1_000_000, self.end_offset_s * 1_000_000
        if self.n_instances == 1:
            return b if self.anchor_end else a
        return a + (b - a) * index // (self.n_instances - 1)


@dataclass(frozen=True)
class PlannedExam:
    """One exam exactly as it will be sent; ``truth()`` is its ground-truth record."""

    exam_id: str
    device: Device
    exam_type: ExamType
    tz: str
    study_description: str
    language: str  # en | zh
    is_qa: bool
    patient: Patient
    accession: str
    extra_accessions: tuple[str, ...]
    study_uid: str
    frame_of_reference_uid: str
    start_utc: datetime
    end_utc: datetime
    study_offset_s: int  # StudyTime relative to start (<= 0: registration before the first acquisition)
    series: tuple[PlannedSeries, ...]
    dose_events: tuple[DoseEvent, ...]
    rdsr_series_uid: str | None
    rdsr_sop_uid: str | None
    referring_physician: str
    operator: str
    performing_physician: str
    pps_id: str
    mr_receive_coil: str | None = None
    mr_transmit_coil: str | None = None
    # workflow (HL7 order/arrival, MPPS), planned from its own random stream: patient exams only, else None
    order_utc: datetime | None = None  # ORC-9: order issued
    scheduled_start_utc: datetime | None = None  # TQ1-7 / ORC-7.4: booked start
    arrival_utc: datetime | None = None  # ADT^A10 EVN-6: patient arrived
    mpps_status: str | None = None  # final MPPS status (COMPLETED | DISCONTINUED); None = device sends no MPPS
    mpps_uid: str | None = None  # the MPPS SOP Instance UID

    @property
    def has_mpps(self) -> bool:
        return self.mpps_status is not None

    @property
    def discontinued(self) -> bool:
        return self.mpps_status == "DISCONTINUED"

    @property
    def mpps_start_utc(self) -> datetime:
        """MPPS start = first acquisition, so images and MPPS tell one truth."""
        return self.start_utc

    @property
    def mpps_end_utc(self) -> datetime:
        """MPPS end = last acquisition (also for a discontinued step: its images were all sent)."""
        return self.end_utc

    @property
    def n_images(self) -> int:
        return sum(s.n_instances for s in self.series)

    @property
    def n_instances(self) -> int:
        return self.n_images + (1 if self.rdsr_sop_uid else 0)

    @property
    def duration_s(self) -> int:
        return int((self.end_utc - self.start_utc).total_seconds())

    def local(self, offset_us: int = 0) -> datetime:
        """Local wall-clock (aware, in ``tz``) at ``offset_us`` microseconds after the exam start."""
        return (self.start_utc + timedelta(microseconds=offset_us)).astimezone(_zone(self.tz))

    def truth(self) -> dict[str, Any]:
        return _exam_truth(self)


@dataclass(frozen=True)
class Plan:
    """A planned period for a set of devices: pure data, deterministic from the seed."""

    seed: int
    tz: str
    start_date: date
    days: int
    scale: float
    pixels: str
    devices: tuple[Device, ...]
    exams: tuple[PlannedExam, ...]  # ordered by start, then device key

    @property
    def n_instances(self) -> int:
        return sum(e.n_instances for e in self.exams)

    def truth(self) -> dict[str, Any]:
        return _plan_truth(self)

    def subset(self, device_keys: Iterable[str] | None = None, per_device: int | None = None) -> Plan:
        """The same plan restricted to some devices and/or their first ``per_device`` exams (tiny test plans)."""
        keys = {d.key for d in self.devices} if device_keys is None else set(device_keys)
        taken: dict[str, int] = {}
        exams = []
        for exam in self.exams:
            key = exam.device.key
            if key in keys and (per_device is None or taken.get(key, 0) < per_device):
                taken[key] = taken.get(key, 0) + 1
                exams.append(exam)
        return dataclasses.replace(self, devices=tuple(d for d in self.devices if d.key in keys),
                                   exams=tuple(exams))


def plan_days(
    devices: Sequence[Device],
    start_date: date,
    days: int,
    seed: int,
    tz: str = "Asia/Shanghai",
    scale: float = 1.0,
    *,
    pixels: str = "small",
) -> Plan:
    """Plan ``days`` local days from ``start_date`` for ``devices``; pure and deterministic from ``seed``."""
    if days < 1:
        raise ValueError(f"days={days}: plan at least one day")
    if not 0 < scale <= 10:
        raise ValueError(f"scale={scale}: expected 0 < scale <= 10, e.g. 0.05 for tests or 1.0 for a real day")
    if pixels not in PIXEL_MODES:
        raise ValueError(f"pixels={pixels!r}: expected one of {PIXEL_MODES}")
    keys = [d.key for d in devices]
    if len(set(keys)) != len(keys):
        raise ValueError(f"device keys must be unique, got {keys}")
    _zone(tz)  # fail early on an unknown zone
    drafts: list[_Draft] = []
    for device in devices:
        drafts.extend(_plan_device(device, start_date, days, seed, tz))
    drafts.sort(key=lambda d: (d.start_utc, d.device.key))
    exams = _plan_workflow(_finalise(drafts, seed, tz, scale), seed, tz)
    return Plan(seed=seed, tz=tz, start_date=start_date, days=days, scale=scale, pixels=pixels,
                devices=tuple(devices), exams=tuple(exams))


# ------------------------------------------------------------------------------------------------------------
# Planning internals
# ------------------------------------------------------------------------------------------------------------


@cache
def _zone(tz: str) -> ZoneInfo:
    return ZoneInfo(tz)


def _r(value: float, digits: int) -> float:
    """Rounded so that ``format(v, '.10g')`` writes exactly this value (truth == what the DS says)."""
    return round(value, digits)


@dataclass(frozen=True)
class _Draft:
    """An exam before the plan-wide numbering (patients, accessions) is assigned."""

    device: Device
    index: int
    exam_type: ExamType
    start_utc: datetime
    duration_s: int
    rng_state: tuple[Any, ...]


def _open_intervals(device: Device, start_date: date, days: int, tz: str) -> list[tuple[int, int]]:
    """Opening intervals as UTC epoch seconds, adjacent days merged (a 24/7 device is one interval)."""
    zone = _zone(tz)
    out: list[tuple[int, int]] = []
    for i in range(days):
        day = start_date + timedelta(days=i)
        window = device.window(day)
        if window is None:
            continue
        midnight = datetime(day.year, day.month, day.day)
        a = int((midnight + timedelta(seconds=window[0])).replace(tzinfo=zone).timestamp())
        b = int((midnight + timedelta(seconds=window[1])).replace(tzinfo=zone).timestamp())
        if out and out[-1][1] == a:
            out[-1] = (out[-1][0], b)
        else:
            out.append((a, b))
    return out


def _idle_factor(local_hour: float) -> float:
    """How much longer a device waits between patients at this hour than at peak (nights are quiet)."""
    if local_hour < 6:
        return 10.0
    if local_hour < 8:
        return 3.0
    if local_hour < 11.5:
        return 1.0
    if local_hour < 13.5:
        return 2.5  # lunch break
    if local_hour < 17.5:
        return 1.0
    if local_hour < 20:
        return 2.0
    return 5.0


def _plan_device(device: Device, start_date: date, days: int, seed: int, tz: str) -> list[_Draft]:
    zone = _zone(tz)
    rng = random.Random(f"radpulse-sim/{seed}/{device.key}")
    keys = [k for k, _ in device.exam_mix]
    weights = [w for _, w in device.exam_mix]
    qa_key = _QA_TYPE.get(device.modality)
    qa_days: dict[date, bool] = {}
    drafts: list[_Draft] = []
    index = 0
    for open_a, open_b in _open_intervals(device, start_date, days, tz):
        t = open_a + rng.randint(0, 600)  # warm-up after opening
        while True:
            local = datetime.fromtimestamp(t, zone)
            mean_idle = device.busy_idle_min * 60 * _idle_factor(local.hour + local.minute / 60)
            t += int(rng.expovariate(1.0 / mean_idle)) if mean_idle > 0 else 0
            local = datetime.fromtimestamp(t, zone)
            if qa_key and local.date() not in qa_days:
                qa_days[local.date()] = rng.random() < device.qa_daily_p
            key = rng.choices(keys, weights)[0]
            if qa_key and qa_days.get(local.date()) and local.hour >= 7:
                key, qa_days[local.date()] = qa_key, False  # the morning QA, once per day
            exam_type = EXAM_TYPES[key]
            exam_rng = random.Random(f"radpulse-sim/{seed}/{device.key}/{index}")
            duration = exam_rng.randint(*exam_type.duration_s)
            slot = duration if duration > 0 else exam_rng.randint(*_SINGLE_VIEW_SLOT_S)
            state = exam_rng.getstate()
            if t + slot > open_b:
                break
            drafts.append(_Draft(device, index, exam_type, datetime.fromtimestamp(t, UTC), duration, state))
            index += 1
            t += slot + rng.randint(*_CHANGEOVER_S[device.modality])
    return drafts


def _finalise(drafts: list[_Draft], seed: int, tz: str, scale: float) -> list[PlannedExam]:
    zone = _zone(tz)
    exams: list[PlannedExam] = []
    accession_seq: dict[date, int] = {}
    patient_seq = 0
    for draft in drafts:
        rng = random.Random()
        rng.setstate(draft.rng_state)  # continue the exam's own stream where scheduling left it
        local_day = draft.start_utc.astimezone(zone).date()
        if draft.exam_type.is_qa:
            accession, extra = "", ()
            patient = _qa_patient(draft.device)
        else:
            patient_seq += 1
            seq = accession_seq.get(local_day, 0) + 1
            accession_seq[local_day] = seq
            accession = f"SA{local_day:%y%m%d}{seq:05d}"
            extra = ()
            if draft.exam_type.key == "CT_CAP" and rng.random() < 0.3:
                seq += 1
                accession_seq[local_day] = seq
                extra = (f"SA{local_day:%y%m%d}{seq:05d}",)  # split order: chest and abdomen ordered apart
            patient = _patient(rng, draft.exam_type, patient_seq, local_day)
        exams.append(_build_exam(draft, rng, seed, tz, scale, patient, accession, extra))
    return exams


ORDER_LEAD_S = (3600, 48 * 3600)  # order issued 1–48 h before the exam starts
ARRIVAL_LEAD_S = (5 * 60, 60 * 60)  # patient arrives 5–60 min before the exam starts
SCHEDULE_SLIP_S = (-8 * 60, 12 * 60)  # actual start − booked start, before the booking is floored to a minute


def _plan_workflow(exams: list[PlannedExam], seed: int, tz: str) -> list[PlannedExam]:
    """Order, booking, arrival and MPPS for every patient exam, from streams of their own: the images, UIDs and
    times planned before are untouched. One MPPS exam per local day (if any) ends DISCONTINUED."""
    zone = _zone(tz)
    out: list[PlannedExam] = []
    for exam in exams:
        if exam.is_qa:
            out.append(exam)
            continue
        rng = random.Random(f"radpulse-sim/{seed}/{exam.exam_id}/workflow")
        start = exam.start_utc
        order = start - timedelta(seconds=rng.randint(*ORDER_LEAD_S))
        booked = (start - timedelta(seconds=rng.randint(*SCHEDULE_SLIP_S))).replace(second=0, microsecond=0)
        arrival = start - timedelta(seconds=rng.randint(*ARRIVAL_LEAD_S))
        mpps = exam.device.sends_mpps
        out.append(dataclasses.replace(
            exam, order_utc=order, scheduled_start_utc=booked, arrival_utc=arrival,
            mpps_status="COMPLETED" if mpps else None, mpps_uid=make_uid(seed, "mpps", exam.exam_id) if mpps else None,
        ))
    by_day: dict[date, list[int]] = {}
    for i, exam in enumerate(out):
        if exam.has_mpps:
            by_day.setdefault(exam.start_utc.astimezone(zone).date(), []).append(i)
    for day, indexes in sorted(by_day.items()):
        pick = random.Random(f"radpulse-sim/{seed}/discontinued/{day.isoformat()}").choice(indexes)
        out[pick] = dataclasses.replace(out[pick], mpps_status="DISCONTINUED")
    return out


def _qa_patient(device: Device) -> Patient:
    return Patient(patient_id=f"QA-PHANTOM-{device.key}", name="QA^PHANTOM", name_ideographic=None,
                   birth_date=None, sex="O", age_years=None, weight_kg=None, height_m=None)


def _patient(rng: random.Random, et: ExamType, n: int, exam_day: date) -> Patient:
    sex = et.sex or rng.choice("MF")
    if rng.random() < et.child_share:
        age = rng.randint(2, 15)
    else:
        age = max(et.age[0], min(et.age[1], int(rng.triangular(et.age[0], et.age[1], 55))))
    birth = date(exam_day.year - age - 1, 1, 1) + timedelta(days=rng.randint(0, 364))
    if (exam_day.month, exam_day.day) < (birth.month, birth.day):
        real_age = exam_day.year - birth.year - 1
    else:
        real_age = exam_day.year - birth.year
    if real_age >= 16:
        height = rng.gauss(1.70 if sex == "M" else 1.59, 0.065)
        bmi = min(40.0, max(16.0, rng.gauss(23.8, 3.4)))
    else:
        height = 0.80 + 0.058 * real_age + rng.gauss(0, 0.04)
        bmi = min(24.0, max(13.0, rng.gauss(16.5, 1.6)))
    weight = bmi * height * height
    return Patient(patient_id=f"SIM{n:07d}", name=f"SIM^PATIENT{n:04d}", name_ideographic=f"模拟^患者{n:04d}",
                   birth_date=birth, sex=sex, age_years=real_age, weight_kg=_r(weight, 1),
                   height_m=_r(height, 2))


def _windows(rng: random.Random, specs: Sequence[SeriesSpec], duration: int) -> list[tuple[int, int]]:
    """Acquisition windows (seconds from exam start) of each series: first starts at 0, last ends at duration."""
    k = len(specs)
    if duration <= 0:
        return [(0, 0)] * k
    if k == 1:
        return [(0, duration)]
    lengths = [s.share * rng.uniform(0.6, 1.4) for s in specs]
    gaps = [rng.uniform(0.5, 1.5) for _ in range(k - 1)]
    busy = sum(lengths)
    # shares say how much of the exam is beam/readout: CT ~0.2, MR up to 0.85, DX/MG 0 (instants); gaps fill the rest
    busy_share = min(0.85, busy)
    total_gap = sum(gaps)
    lengths = [duration * busy_share * x / busy if busy else 0.0 for x in lengths]
    gaps = [duration * (1 - busy_share) * g / total_gap for g in gaps]
    out: list[tuple[int, int]] = []
    cursor = 0.0
    for i in range(k):
        a = cursor
        b = a + lengths[i]
        out.append((round(a), round(b)))
        cursor = b + (gaps[i] if i < k - 1 else 0.0)
    a_last, _ = out[-1]
    out[-1] = (min(a_last, duration), duration)
    return out


def _choose_series(rng: random.Random, et: ExamType) -> list[SeriesSpec]:
    chosen = [s for s in et.series if s.probability >= 1.0 or rng.random() < s.probability]
    return chosen[: et.max_series]


def _build_exam(draft: _Draft, rng: random.Random, seed: int, tz: str, scale: float, patient: Patient,
                accession: str, extra: tuple[str, ...]) -> PlannedExam:
    device, et = draft.device, draft.exam_type
    exam_id = f"{device.key}-{draft.index:05d}"
    specs = _choose_series(rng, et)
    duration = draft.duration_s if len(specs) > 1 else 0  # one image: first == last acquisition
    windows = _windows(rng, specs, duration)
    language = "zh" if rng.random() < device.zh_share else "en"
    study_description = rng.choice(et.descriptions_zh if language == "zh" else et.descriptions_en)
    start = draft.start_utc
    events: list[DoseEvent] = []
    series: list[PlannedSeries] = []
    for i, (spec, (a, b)) in enumerate(zip(specs, windows, strict=True)):
        number = i + 1
        n_full = rng.randint(*spec.images)
        n = max(1, round(n_full * scale))
        event = _event_for(rng, device, et, spec, patient, a, seed, exam_id, number)
        if event is not None:
            events.append(event)
        description = spec.philips_description if (spec.philips_description and
                                                   device.manufacturer.startswith("Philips")) else spec.description
        if device.charset == "GB18030" and et.modality == "CT" and language == "zh":
            description = f"{_ZH_SERIES.get(spec.acquisition or '', '')}{description}".strip()
        series.append(PlannedSeries(
            number=number, uid=make_uid(seed, "series", exam_id, number), description=description,
            n_instances=n, n_instances_full=n_full, start_offset_s=a, end_offset_s=b,
            anchor_end=(i == len(specs) - 1 and i > 0), spec=spec,
            event_index=len(events) - 1 if event is not None else None,
        ))
    if et.modality == "RF":
        events.extend(_fluoro_events(rng, device, et, duration, seed, exam_id))
    sends_rdsr = device.sends_rdsr and bool(events)
    coil = transmit = None
    if device.modality == "MR" and et.coil:
        coil = _MR_COILS.get(device.manufacturer, _MR_COILS["SIEMENS"])[et.coil]
        if device.manufacturer.startswith("Philips") and rng.random() < 0.3:
            coil = "MULTI COIL"  # Philips often reports a combined coil set this way
        transmit = "Body"
    return PlannedExam(
        exam_id=exam_id, device=device, exam_type=et, tz=tz, study_description=study_description,
        language=language, is_qa=et.is_qa, patient=patient, accession=accession, extra_accessions=extra,
        study_uid=make_uid(seed, "study", exam_id), frame_of_reference_uid=make_uid(seed, "for", exam_id),
        start_utc=start, end_utc=start + timedelta(seconds=duration),
        study_offset_s=-rng.randint(0, 600), series=tuple(series), dose_events=tuple(events),
        rdsr_series_uid=make_uid(seed, "rdsr-series", exam_id) if sends_rdsr else None,
        rdsr_sop_uid=make_uid(seed, "rdsr", exam_id) if sends_rdsr else None,
        referring_physician=f"SIM^REFERRER{rng.randint(1, 40):02d}",
        operator=f"SIM^TECH{rng.randint(1, 12):02d}",
        performing_physician=f"SIM^RADIOLOGIST{rng.randint(1, 15):02d}",
        pps_id=f"PPS{draft.index:06d}", mr_receive_coil=coil, mr_transmit_coil=transmit,
    )


_ZH_SERIES = {"LOCALIZER": "定位像 ", "SPIRAL": "螺旋 ", "SEQUENCED": "轴扫 ", "STATIONARY": "监测 "}


def _event_for(rng: random.Random, device: Device, et: ExamType, spec: SeriesSpec, patient: Patient, a: int,
               seed: int, exam_id: str, series_number: int) -> DoseEvent | None:
    uid = make_uid(seed, "event", exam_id, series_number)
    if device.modality == "CT":
        return _ct_event(rng, et, spec, patient, a, uid, series_number)
    if device.modality in ("DX", "CR"):
        return _dx_event(rng, device, et, spec, patient, a, uid, series_number)
    if device.modality == "MG":
        return _mg_event(rng, et, spec, a, uid, series_number)
    if device.modality == "RF":
        return _rf_acquisition_event(rng, et, spec, a, uid, series_number)
    return None


def _size_factor(patient: Patient, phantom: str | None) -> float:
    """Tube-current modulation: heavier patients get more output (head scans barely change)."""
    if phantom == "HEAD16" or patient.weight_kg is None:
        return 1.0
    return min(1.6, max(0.45, (patient.weight_kg / 70.0) ** 0.7))


def _ct_event(rng: random.Random, et: ExamType, spec: SeriesSpec, patient: Patient, a: int, uid: str,
              series_number: int) -> DoseEvent:
    assert spec.ctdivol_mgy is not None and spec.length_mm is not None and spec.acquisition is not None
    acq = spec.acquisition
    length = _r(rng.uniform(*spec.length_mm), 1)
    if acq == "LOCALIZER":
        ctdi = _r(rng.uniform(*spec.ctdivol_mgy), 2)
        dlp = _r(ctdi * length / 10.0, 2)
        return DoseEvent(uid=uid, kind="CT", protocol=f"{et.body_part.title()} Topogram", start_offset_s=a,
                         target_region=et.region, series_number=series_number, acquisition_type="CONSTANT_ANGLE",
                         ctdivol_mgy=ctdi, dlp_mgy_cm=dlp, phantom=et.phantom, scanning_length_mm=length,
                         exposure_time_s=_r(length / 100.0, 2), tube_current_ma=float(rng.choice((20, 35, 50))),
                         kvp=120.0)
    child = patient.age_years is not None and patient.age_years < 16
    factor = _size_factor(patient, et.phantom) * (0.55 if child else 1.0)
    ctdi = _r(max(0.3, rng.uniform(*spec.ctdivol_mgy) * factor), 2)
    if acq == "SPIRAL":
        pitch = rng.choice((0.6, 0.8, 0.984, 1.0, 1.2, 1.375))
        dlp = _r(ctdi * length / 10.0 * rng.uniform(1.03, 1.12), 2)  # over-ranging
        exposure = _r(length / (38.4 * pitch) * 0.5, 2)
    elif acq == "STATIONARY":
        pitch = None
        length = 10.0
        dlp = _r(ctdi * 1.0, 2)
        exposure = _r(rng.uniform(3.0, 12.0), 2)
    else:  # SEQUENCED
        pitch = None
        dlp = _r(ctdi * length / 10.0, 2)
        exposure = _r(length / 20.0, 2)
    kvp = 100.0 if (child or rng.random() < 0.25) else 120.0
    per_mas = 0.16 if et.phantom == "HEAD16" else 0.07
    ma = _r(ctdi / per_mas * (pitch or 1.0) / 0.5, 0)
    return DoseEvent(uid=uid, kind="CT", protocol=_protocol_name(et, spec), start_offset_s=a,
                     target_region=et.region, series_number=series_number, acquisition_type=acq, ctdivol_mgy=ctdi,
                     dlp_mgy_cm=dlp, phantom=et.phantom, scanning_length_mm=length, exposure_time_s=exposure,
                     pitch=pitch, tube_current_ma=ma, contrast=spec.contrast, kvp=kvp)


def _protocol_name(et: ExamType, spec: SeriesSpec) -> str:
    return f"{et.body_part.title()}_{spec.description.split()[0]}"


def _dx_event(rng: random.Random, device: Device, et: ExamType, spec: SeriesSpec, patient: Patient, a: int,
              uid: str, series_number: int) -> DoseEvent:
    assert spec.dap_dgy_cm2 is not None and spec.kvp is not None and spec.mas is not None
    child = patient.age_years is not None and patient.age_years < 16
    factor = (0.4 if child else 1.0) * (_size_factor(patient, None) if et.body_part in ("CHEST", "ABDOMEN",
                                                                                         "LSPINE") else 1.0)
    dap = _r(rng.uniform(*spec.dap_dgy_cm2) * factor, 4)
    dap = max(dap, 0.0001)
    tei = device.target_ei
    di_draw = max(-6.0, min(6.0, rng.gauss(0.0, 1.6)))
    ei = _r(tei * 10 ** (di_draw / 10.0), 1)
    di = _r(10.0 * math.log10(ei / tei), 2)
    entrance = _r(dap / 10.0 / spec.field_cm2 * 1000.0 * 1.35, 4)  # Gy·cm² / cm² → mGy, with backscatter
    kvp = float(round(rng.uniform(*spec.kvp)))
    return DoseEvent(uid=uid, kind="PROJECTION", protocol=f"{spec.description} {kvp:.0f}kV",
                     start_offset_s=a, target_region=et.region, series_number=series_number,
                     event_type="STATIONARY", kvp=kvp,
                     mas=_r(rng.uniform(*spec.mas), 2), dap_dgy_cm2=dap, dap_gy_m2=_r(dap / 1e5, 10),
                     entrance_dose_mgy=entrance, exposure_index=ei, target_exposure_index=tei,
                     deviation_index=di, view=spec.view, laterality=spec.laterality, sid_mm=spec.sid_mm)


def _mg_event(rng: random.Random, et: ExamType, spec: SeriesSpec, a: int, uid: str,
              series_number: int) -> DoseEvent:
    thickness = 45.0 if et.is_qa else _r(rng.uniform(32.0, 75.0), 0)
    agd = _r(max(0.5, 0.75 + 0.022 * (thickness - 35.0) + rng.gauss(0.0, 0.12)), 3)
    entrance = _r(agd * rng.uniform(2.6, 3.8), 3)
    kvp = float(round(26 + (thickness - 30) / 45 * 8))
    return DoseEvent(uid=uid, kind="PROJECTION", protocol=f"{spec.laterality} {spec.view}", start_offset_s=a,
                     target_region=R_BREAST, series_number=series_number, event_type="STATIONARY", kvp=kvp,
                     mas=_r(rng.uniform(60.0, 200.0), 1), agd_mgy=agd, entrance_dose_mgy=entrance,
                     view=spec.view, laterality=spec.laterality, compression_mm=thickness, sid_mm=700.0)


def _rf_acquisition_event(rng: random.Random, et: ExamType, spec: SeriesSpec, a: int, uid: str,
                          series_number: int) -> DoseEvent:
    assert spec.kvp is not None and spec.mas is not None
    dap_gycm2 = rng.uniform(0.2, 1.5)  # one spot run; exams total a few to ~20 Gy·cm² (unconfirmed)
    area = rng.uniform(150.0, 400.0)
    dap = _r(dap_gycm2 / 1e4, 9)
    return DoseEvent(uid=uid, kind="PROJECTION", protocol=spec.description, start_offset_s=a,
                     target_region=et.region, series_number=series_number, event_type="STATIONARY",
                     kvp=float(round(rng.uniform(*spec.kvp))), mas=_r(rng.uniform(*spec.mas), 1), dap_gy_m2=dap,
                     dose_rp_gy=_r(dap * 1e4 / area, 6), view=spec.view, sid_mm=1150.0)


def _fluoro_events(rng: random.Random, device: Device, et: ExamType, duration: int, seed: int,
                   exam_id: str) -> list[DoseEvent]:
    n = rng.randint(*et.fluoro_events)
    out: list[DoseEvent] = []
    for i in range(n):
        beam_on = _r(rng.uniform(*et.fluoro_s), 1)
        start = _r(rng.uniform(0.0, max(0.0, duration - beam_on)), 1)
        rate = rng.choice((7.5, 15.0))
        dap = _r(beam_on * rng.uniform(0.01, 0.04) / 1e4, 9)  # Gy·cm² per second of beam → Gy·m²
        area = rng.uniform(150.0, 400.0)
        out.append(DoseEvent(
            uid=make_uid(seed, "fluoro", exam_id, i), kind="PROJECTION", protocol="FL - Abdomen",
            start_offset_s=start, target_region=et.region, event_type="FLUOROSCOPY",
            kvp=float(round(rng.uniform(70, 95))), dap_gy_m2=dap, dose_rp_gy=_r(dap * 1e4 / area, 6),
            duration_s=beam_on, pulse_rate=rate, sid_mm=1150.0,
        ))
    out.sort(key=lambda e: e.start_offset_s)
    return out


# ------------------------------------------------------------------------------------------------------------
# Truth
# ------------------------------------------------------------------------------------------------------------


def _iso(dt: datetime) -> str:
    if dt.utcoffset() == timedelta(0):
        return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return dt.isoformat(timespec="seconds")


def _dose_truth(exam: PlannedExam) -> dict[str, Any] | None:
    events = exam.dose_events
    if not events:
        return None
    modality = exam.device.modality
    base: dict[str, Any] = {"has_rdsr": exam.rdsr_sop_uid is not None, "n_events": len(events)}
    if modality == "CT":
        base.update(kind="CT", ct_dlp_total_mgy_cm=_r(sum(e.dlp_mgy_cm or 0.0 for e in events), 2),
                    ctdivol_max_mgy=max(e.ctdivol_mgy or 0.0 for e in events), events=[
                        {"irradiation_event_uid": e.uid, "series_number": e.series_number,
                         "acquisition_type": e.acquisition_type, "protocol": e.protocol,
                         "target_region": e.target_region[2], "ctdivol_mgy": e.ctdivol_mgy,
                         "dlp_mgy_cm": e.dlp_mgy_cm, "phantom": e.phantom,
                         "scanning_length_mm": e.scanning_length_mm, "kvp": e.kvp} for e in events])
    elif modality in ("DX", "CR"):
        base.update(kind="DX", dap_total_gy_cm2=_r(sum((e.dap_dgy_cm2 or 0.0) / 10.0 for e in events), 6),
                    events=[{"irradiation_event_uid": e.uid, "series_number": e.series_number, "view": e.view,
                             "dap_gy_cm2": _r((e.dap_dgy_cm2 or 0.0) / 10.0, 6),
                             "dap_header_dgy_cm2": e.dap_dgy_cm2, "exposure_index": e.exposure_index,
                             "target_exposure_index": e.target_exposure_index,
                             "deviation_index": e.deviation_index, "entrance_dose_mgy": e.entrance_dose_mgy,
                             "kvp": e.kvp, "mas": e.mas} for e in events])
    elif modality == "MG":
        left = _r(sum(e.agd_mgy or 0.0 for e in events if e.laterality == "L"), 3)
        right = _r(sum(e.agd_mgy or 0.0 for e in events if e.laterality == "R"), 3)
        base.update(kind="MG", agd_left_mgy=left, agd_right_mgy=right, events=[
            {"irradiation_event_uid": e.uid, "series_number": e.series_number, "laterality": e.laterality,
             "view": e.view, "agd_mgy": e.agd_mgy, "organ_dose_header_dgy": _r((e.agd_mgy or 0.0) / 100.0, 6),
             "entrance_exposure_mgy": e.entrance_dose_mgy, "compression_mm": e.compression_mm, "kvp": e.kvp}
            for e in events])
    elif modality == "RF":
        fluoro = [e for e in events if e.event_type == "FLUOROSCOPY"]
        acq = [e for e in events if e.event_type != "FLUOROSCOPY"]

        def gy_m2(es: list[DoseEvent]) -> float:
            return _r(sum(e.dap_gy_m2 or 0.0 for e in es), 9)

        def rp_gy(es: list[DoseEvent]) -> float:
            return _r(sum(e.dose_rp_gy or 0.0 for e in es), 6)

        base.update(kind="RF", dap_total_gy_m2=gy_m2(events), dap_total_gy_cm2=_r(gy_m2(events) * 1e4, 5),
                    fluoro_dap_total_gy_m2=gy_m2(fluoro), acquisition_dap_total_gy_m2=gy_m2(acq),
                    dose_rp_total_gy=rp_gy(events), dose_rp_total_mgy=_r(rp_gy(events) * 1000.0, 3),
                    fluoro_time_total_s=_r(sum(e.duration_s or 0.0 for e in fluoro), 1),
                    n_fluoro_events=len(fluoro), events=[
                        {"irradiation_event_uid": e.uid, "series_number": e.series_number,
                         "event_type": e.event_type, "dap_gy_m2": e.dap_gy_m2, "dose_rp_gy": e.dose_rp_gy,
                         "duration_s": e.duration_s if e.event_type == "FLUOROSCOPY" else None}
                        for e in events])
    return base


def _exam_truth(exam: PlannedExam) -> dict[str, Any]:
    p = exam.patient
    device = exam.device
    return {
        "exam_id": exam.exam_id,
        "study_instance_uid": exam.study_uid,
        "accession": exam.accession or None,
        "extra_accessions": list(exam.extra_accessions),
        "device_key": device.key,
        "ae_title": device.ae_title,
        "station_name": device.station_name,
        "manufacturer": device.manufacturer,
        "model": device.model,
        "modality": device.modality,
        "exam_type": exam.exam_type.exam_family,
        "exam_variant": exam.exam_type.key,
        "exam_label": exam.exam_type.label,
        "body_part": exam.exam_type.body_part,
        "study_description": exam.study_description,
        "language": exam.language,
        "is_qa": exam.is_qa,
        "patient_id": p.patient_id,
        "patient_sex": p.sex,
        "patient_age_years": p.age_years,
        "patient_weight_kg": p.weight_kg,
        "patient_height_m": p.height_m,
        "start_utc": _iso(exam.start_utc),
        "end_utc": _iso(exam.end_utc),
        "start_local": _iso(exam.local(0)),
        "end_local": _iso(exam.local(exam.duration_s * 1_000_000)),
        "local_date": exam.local(0).date().isoformat(),
        "duration_s": exam.duration_s,
        "n_series": len(exam.series) + (1 if exam.rdsr_sop_uid else 0),
        "n_image_series": len(exam.series),
        "n_images": exam.n_images,
        "n_dose_reports": 1 if exam.rdsr_sop_uid else 0,
        "n_instances": exam.n_instances,
        "series": [{"series_number": s.number, "series_instance_uid": s.uid, "description": s.description,
                    "n_instances": s.n_instances,
                    "first_acquisition_utc": _iso(exam.start_utc + timedelta(microseconds=s.instance_offset_us(0))),
                    "last_acquisition_utc": _iso(exam.start_utc + timedelta(
                        microseconds=s.instance_offset_us(s.n_instances - 1)))} for s in exam.series],
        "rdsr_sop_instance_uid": exam.rdsr_sop_uid,
        "mr": None if device.modality != "MR" else {
            "field_strength_t": device.field_strength_t, "receive_coil": exam.mr_receive_coil,
            "transmit_coil": exam.mr_transmit_coil},
        "dose": _dose_truth(exam),
        **_workflow_truth(exam),
    }


def _workflow_truth(exam: PlannedExam) -> dict[str, Any]:
    """Order/booking/arrival/MPPS truth and the waits the pipeline must compute, from the exam start (the first
    acquisition, which is also the MPPS start when the device sends MPPS)."""
    start = exam.mpps_start_utc if exam.has_mpps else exam.start_utc

    def since(t: datetime | None) -> float | None:
        return None if t is None else (start - t).total_seconds()

    return {
        "order_time_utc": _iso(exam.order_utc) if exam.order_utc else None,
        "scheduled_start_utc": _iso(exam.scheduled_start_utc) if exam.scheduled_start_utc else None,
        "arrival_utc": _iso(exam.arrival_utc) if exam.arrival_utc else None,
        "has_mpps": exam.has_mpps,
        "mpps_status": exam.mpps_status,
        "mpps_sop_instance_uid": exam.mpps_uid,
        "discontinued": exam.discontinued,
        "arrival_to_start_s": since(exam.arrival_utc),
        "order_to_start_s": since(exam.order_utc),
        "scheduled_delay_s": since(exam.scheduled_start_utc),
    }


def _device_truth(plan: Plan, device: Device) -> dict[str, Any]:
    zone = _zone(plan.tz)
    exams = [e for e in plan.exams if e.device.key == device.key]
    days = []
    for i in range(plan.days):
        day = plan.start_date + timedelta(days=i)
        window = device.window(day)
        mine = [e for e in exams if e.start_utc.astimezone(zone).date() == day]
        patients = [e for e in mine if not e.is_qa]
        days.append({
            "local_date": day.isoformat(),
            "open_seconds": 0 if window is None else window[1] - window[0],
            "hours": device.hours[day.weekday()],
            "n_exams": len(mine),
            "n_patient_exams": len(patients),
            "n_qa_exams": len(mine) - len(patients),
            "busy_seconds": sum(e.duration_s for e in patients),
            "n_discontinued_exams": sum(1 for e in patients if e.discontinued),
            "n_instances": sum(e.n_instances for e in mine),
        })
    dlp = [_r(sum(ev.dlp_mgy_cm or 0.0 for ev in e.dose_events), 2) for e in exams if device.modality == "CT"]
    return {
        "device_key": device.key, "ae_title": device.ae_title, "station_name": device.station_name,
        "modality": device.modality, "manufacturer": device.manufacturer, "model": device.model,
        "serial": device.serial, "software_versions": device.software_versions,
        "field_strength_t": device.field_strength_t, "sends_tz_offset": device.sends_tz_offset,
        "sends_rdsr": device.sends_rdsr, "charset": device.charset, "sends_mpps": device.sends_mpps,
        "hours": dict(zip(WEEKDAYS, device.hours, strict=True)),
        "n_exams": len(exams), "n_patient_exams": sum(1 for e in exams if not e.is_qa),
        "n_qa_exams": sum(1 for e in exams if e.is_qa), "n_instances": sum(e.n_instances for e in exams),
        "ct_dlp_total_mgy_cm": _r(sum(dlp), 2) if dlp else None,
        "days": days,
    }


def _plan_truth(plan: Plan) -> dict[str, Any]:
    return {
        "generator": "synthetic_hospital.plan",
        "truth_version": 1,
        "seed": plan.seed,
        "tz": plan.tz,
        "start_date": plan.start_date.isoformat(),
        "days": plan.days,
        "scale": plan.scale,
        "pixels": plan.pixels,
        "n_exams": len(plan.exams),
        "n_patient_exams": sum(1 for e in plan.exams if not e.is_qa),
        "n_instances": plan.n_instances,
        "devices": [_device_truth(plan, d) for d in plan.devices],
        "exams": [e.truth() for e in plan.exams],
    }


def write_truth(plan: Plan, path: str | Path) -> Path:
    """Write ``plan.truth()`` as UTF-8 JSON; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(plan.truth(), ensure_ascii=False, indent=1), encoding="utf-8")
    return path


# ------------------------------------------------------------------------------------------------------------
# Datasets, files and sending
# ------------------------------------------------------------------------------------------------------------


def iter_datasets(plan: Plan, *, pixels: str | None = None,
                  exams: Iterable[PlannedExam] | None = None) -> Iterator[tuple[PlannedExam, Dataset]]:
    """Yield (exam, dataset with file meta) in send order, building each dataset only when asked for."""
    mode = pixels or plan.pixels
    if mode not in PIXEL_MODES:
        raise ValueError(f"pixels={mode!r}: expected one of {PIXEL_MODES}")
    for exam in plan.exams if exams is None else exams:
        for ds in sim_dicom.exam_datasets(exam, mode):
            yield exam, ds


def write_dicom_dir(plan: Plan, folder: str | Path, *, pixels: str | None = None) -> dict[str, Path]:
    """Write every instance as ``folder/<device>/<exam_id>/<series>_<instance>.dcm``; returns device → folder.

    Send one device with DCMTK, e.g. ``TCP_NODELAY=1 /usr/bin/storescu -aet CT1_FLASH -aec RADPULSE +sd +r HOST PORT
    folder/CT1`` (without ``TCP_NODELAY=1`` DCMTK 3.6.7 manages ~20 objects/s here instead of ~200).
    """
    from pydicom import dcmwrite

    root = Path(folder)
    out: dict[str, Path] = {}
    for exam, ds in iter_datasets(plan, pixels=pixels):
        device_dir = out.setdefault(exam.device.key, root / exam.device.key)
        exam_dir = device_dir / exam.exam_id
        exam_dir.mkdir(parents=True, exist_ok=True)
        name = f"{int(ds.SeriesNumber):04d}_{int(ds.InstanceNumber):05d}.dcm"
        dcmwrite(exam_dir / name, ds, enforce_file_format=True)
    return out


@dataclass(frozen=True)
class SendStats:
    """Outcome of ``send``: C-STORE responses counted by kind and by status."""

    attempted: int
    succeeded: int  # status 0x0000
    warnings: int  # 0xB000, 0xB006, 0xB007
    failed: int  # any other status
    no_response: int  # association dropped or DIMSE timeout
    not_sent: int  # the association could not be established
    associations: int
    rejected_associations: int
    seconds: float
    by_status: dict[str, int] = field(default_factory=dict)  # "0x0000" → count
    per_device: dict[str, dict[str, int]] = field(default_factory=dict)
    workflow: Any = None  # synthetic_hospital.workflow.WorkflowStats when sent with workflow=True

    @property
    def ok(self) -> bool:
        return (self.attempted == self.succeeded and not (self.not_sent or self.no_response or self.failed)
                and (self.workflow is None or self.workflow.ok))

    @property
    def rate_per_s(self) -> float:
        return self.attempted / self.seconds if self.seconds > 0 else 0.0


def _storage_classes(device: Device) -> list[str]:
    classes = [sim_dicom.IMAGE_SOP_CLASS[device.modality]]
    if device.sends_rdsr and device.modality != "MR":
        classes.append(sim_dicom.RDSR_SOP_CLASS)
    return classes


def send(
    plan: Plan,
    host: str,
    port: int,
    called_ae: str = "RADPULSE",
    *,
    progress: bool = True,
    per_device_associations: bool = True,
    interleave: bool = False,
    pixels: str | None = None,
    timeout_s: float = 30.0,
    workflow: bool = False,
    hl7_port: int | None = None,
) -> SendStats:
    """C-STORE the whole plan to ``host:port`` with pynetdicom, calling AE = each device's AE title.

    Association patterns:
    - ``per_device_associations=True`` (default): one association per device; devices are sent one after another,
      each device's exams in time order.
    - ``per_device_associations=True, interleave=True``: every device's association stays open and exams go out in
      global time order, like a live department. Each open pynetdicom association keeps polling threads busy, so
      this is ~2x slower here.
    - ``per_device_associations=False``: one association per exam, exams in global time order (what many
      modalities do; also time-ordered and fast).
    A refused association marks that exam's instances ``not_sent``; an association the peer drops is reopened and
    the object retried once.

    ``workflow=True`` first sends the plan's HL7 orders and arrivals to ``host:hl7_port`` (MLLP) and its MPPS to
    ``host:port`` with ``synthetic_hospital.workflow.send_workflow``; its outcome is in ``SendStats.workflow``.
    """
    workflow_stats = None
    if workflow:
        if hl7_port is None:
            raise ValueError("workflow=True needs hl7_port: the MLLP port of the edge (e.g. 2575)")
        from synthetic_hospital.workflow import send_workflow

        workflow_stats = send_workflow(plan, host, port, hl7_port, called_ae=called_ae, timeout_s=timeout_s)
    from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
    from pynetdicom import AE, evt
    from pynetdicom.association import Association

    counts = {"attempted": 0, "succeeded": 0, "warnings": 0, "failed": 0, "no_response": 0, "not_sent": 0,
              "associations": 0, "rejected_associations": 0}
    by_status: dict[str, int] = {}
    per_device: dict[str, dict[str, int]] = {
        d.key: {"attempted": 0, "succeeded": 0, "failed": 0, "not_sent": 0} for d in plan.devices}
    aes: dict[str, AE] = {}
    assocs: dict[str, Association] = {}

    def ae_for(device: Device) -> AE:
        if device.key not in aes:
            ae = AE(ae_title=device.ae_title)
            ae.acse_timeout = ae.dimse_timeout = timeout_s
            ae.network_timeout = None  # interleaved devices sit idle; only the peer may close an idle association
            for sop_class in _storage_classes(device):
                ae.add_requested_context(sop_class, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
            aes[device.key] = ae
        return aes[device.key]

    def open_assoc(device: Device) -> Association | None:
        assoc = ae_for(device).associate(host, port, ae_title=called_ae,
                                         evt_handlers=[(evt.EVT_CONN_OPEN, _no_delay)])
        if not assoc.is_established:
            counts["rejected_associations"] += 1
            return None
        counts["associations"] += 1
        assocs[device.key] = assoc
        return assoc

    def release(device_key: str) -> None:
        assoc = assocs.pop(device_key, None)
        if assoc is not None and assoc.is_established:
            assoc.release()

    if per_device_associations and not interleave:
        order = [e for d in plan.devices for e in plan.exams if e.device.key == d.key]
    else:
        order = list(plan.exams)
    bar, task = _progress_bar(progress, plan.n_instances)
    started = _time.perf_counter()
    current: PlannedExam | None = None
    assoc: Association | None = None
    try:
        for exam, ds in iter_datasets(plan, pixels=pixels, exams=order):
            device = exam.device
            stats = per_device[device.key]
            if exam is not current:
                if current is not None and (not per_device_associations or (
                        not interleave and current.device.key != device.key)):
                    release(current.device.key)
                current = exam
                assoc = assocs.get(device.key)
                if assoc is None or not assoc.is_established:
                    assoc = open_assoc(device)  # once per exam: a refusing peer is not hammered per object
                if bar is not None:
                    bar.update(task, description=f"{device.key} {exam.exam_id}")
            if assoc is None:
                counts["not_sent"] += 1
                stats["not_sent"] += 1
            else:
                counts["attempted"] += 1
                stats["attempted"] += 1
                status = assoc.send_c_store(ds)
                if not status and not assoc.is_established:
                    assoc = open_assoc(device)  # the peer dropped us: reopen and retry this object once
                    status = assoc.send_c_store(ds) if assoc is not None else None
                _count_status(status, counts, by_status, stats)
            if bar is not None:
                bar.advance(task)
    finally:
        for key in list(assocs):
            release(key)
        if bar is not None:
            bar.stop()
    return SendStats(seconds=_time.perf_counter() - started, by_status=by_status, per_device=per_device,
                     workflow=workflow_stats, **counts)


def _no_delay(event: Any) -> None:
    """Disable Nagle: pynetdicom writes a C-STORE in several small sends, and Nagle plus the peer's delayed ACK
    cost ~40 ms per object (measured here: 16/s → 56/s per association; DCMTK wants ``TCP_NODELAY=1`` too)."""
    sock = getattr(event.assoc.dul.socket, "socket", None)
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _count_status(status: Dataset | None, counts: dict[str, int], by_status: dict[str, int],
                  stats: dict[str, int]) -> None:
    if not status or "Status" not in status:
        counts["no_response"] += 1
        stats["failed"] += 1
        return
    code = int(status.Status)
    by_status[f"0x{code:04X}"] = by_status.get(f"0x{code:04X}", 0) + 1
    if code == 0x0000:
        counts["succeeded"] += 1
        stats["succeeded"] += 1
    elif code in (0xB000, 0xB006, 0xB007):
        counts["warnings"] += 1
        stats["succeeded"] += 1
    else:
        counts["failed"] += 1
        stats["failed"] += 1


def _progress_bar(enabled: bool, total: int) -> tuple[Any, Any]:
    if not enabled:
        return None, None
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    bar = Progress(TextColumn("[bold]{task.description:<18}"), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn(), TimeRemainingColumn(), console=Console(stderr=True))
    task = bar.add_task("sending", total=total)
    bar.start()
    return bar, task


# ------------------------------------------------------------------------------------------------------------
# CLI
# ------------------------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m synthetic_hospital.plan {plan,send,write}``: plan a seeded period, write truth, send or write."""
    parser = argparse.ArgumentParser(prog="python -m synthetic_hospital.plan", description=main.__doc__)
    parser.add_argument("action", choices=("plan", "send", "write"))
    parser.add_argument("--start", default=None, help="first local day, YYYY-MM-DD (default: today)")
    parser.add_argument("--days", type=int, default=1)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--tz", default="Asia/Shanghai")
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--pixels", choices=PIXEL_MODES, default="small")
    parser.add_argument("--devices", default="", help="comma-separated device keys (default: all)")
    parser.add_argument("--truth", default=None, help="write the ground truth JSON here")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=11112)
    parser.add_argument("--called-ae", default="RADPULSE")
    parser.add_argument("--hl7-port", type=int, default=None,
                        help="also send HL7 orders/arrivals (MLLP, this port) and MPPS (DICOM port)")
    parser.add_argument("--per-exam-associations", action="store_true")
    parser.add_argument("--interleave", action="store_true", help="keep every device's association open")
    parser.add_argument("--out", default="radpulse-data/sim-dicom", help="folder for 'write'")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)

    devices = default_hospital()
    if args.devices:
        wanted = {k.strip() for k in args.devices.split(",") if k.strip()}
        unknown = wanted - {d.key for d in devices}
        if unknown:
            parser.error(f"unknown device keys {sorted(unknown)}; known: {[d.key for d in devices]}")
        devices = [d for d in devices if d.key in wanted]
    start = date.fromisoformat(args.start) if args.start else date.today()
    t0 = _time.perf_counter()
    plan = plan_days(devices, start, args.days, args.seed, args.tz, args.scale, pixels=args.pixels)
    print(f"planned {len(plan.exams)} exams, {plan.n_instances} instances in {_time.perf_counter() - t0:.2f}s",
          file=sys.stderr)
    if args.truth:
        print(f"truth → {write_truth(plan, args.truth)}", file=sys.stderr)
    if args.action == "send":
        stats = send(plan, args.host, args.port, args.called_ae, progress=not args.quiet,
                     per_device_associations=not args.per_exam_associations, interleave=args.interleave,
                     workflow=args.hl7_port is not None, hl7_port=args.hl7_port)
        print(json.dumps(dataclasses.asdict(stats) | {"rate_per_s": round(stats.rate_per_s, 1)}, indent=1))
        return 0 if stats.ok else 1
    if args.action == "write":
        for key, path in write_dicom_dir(plan, args.out).items():
            print(f"{key}\t{path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
