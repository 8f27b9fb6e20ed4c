"""The default hospital: its devices (identity, opening hours, exam mix) and the exam-type catalogue they scan.

Pure data, no I/O; ``plan.plan_days`` schedules exams on these devices.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from synthetic_hospital.codes import Code

MODALITIES = ("CT", "MR", "DX", "CR", "MG", "RF")
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
    sends_mpps: bool = False  # sends MPPS N-CREATE/N-SET (``workflow``) besides its images

    def __post_init__(self) -> None:
        if len(self.hours) != 7:
            raise ValueError(f"Device {self.key!r}: hours needs 7 entries (Mon..Sun), got {len(self.hours)}")
        if not 1 <= len(self.ae_title) <= 16:
            raise ValueError(f"Device {self.key!r}: AE title {self.ae_title!r} must be 1-16 characters")
        for spec in self.hours:
            if spec is not None:
                _parse_window(spec)
        if self.modality not in MODALITIES:
            raise ValueError(f"Device {self.key!r}: modality {self.modality!r}; expected one of "
                             f"{sorted(MODALITIES)}")
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
