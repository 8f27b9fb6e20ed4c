"""DICOM object builders for the simulator: a planned exam → pydicom image datasets (dose SRs: ``rdsr``).

Pure: no I/O, no randomness; everything comes from the ``PlannedExam``. Values in the headers and the RDSR tree are
exactly the planned ones (``format(v, '.10g')``), so the truth can be compared with equality.

Where it bites:
- Each image is a fresh ``Dataset`` (≈100 elements) cloned from a per-series template: ≈1 ms per image here
  instead of ≈7 ms with plain keyword assignment. Elements are built without pydicom's per-value validation
  (``tests/unit/test_simulator.py`` validates every value instead). Pixel bytes are shared cached frames.
- A CT dose SR has ~160 content items and costs ≈10–15 ms, mostly pydicom's ``Dataset()`` constructor.
- Times: CT/MR write fractional seconds (``HHMMSS.ffffff``), projection modalities whole seconds; the first and
  last acquisition of an exam are always whole seconds, equal to the truth.
- Text is encoded with the device's ``SpecificCharacterSet`` (``ISO_IR 192`` or ``GB18030``) when written.
"""

from __future__ import annotations

import copy
import zlib
from collections.abc import Iterator
from contextvars import ContextVar
from datetime import datetime
from functools import cache
from typing import TYPE_CHECKING, Any

import numpy as np
from pydicom import config
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.multival import MultiValue
from pydicom.tag import BaseTag, Tag
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    UID,
    ComputedRadiographyImageStorage,
    CTImageStorage,
    DigitalMammographyXRayImageStorageForPresentation,
    DigitalXRayImageStorageForPresentation,
    ExplicitVRLittleEndian,
    MRImageStorage,
    XRayRadiationDoseSRStorage,
    XRayRadiofluoroscopicImageStorage,
)
from pydicom.valuerep import PersonName

from synthetic_hospital.codes import Code, make_uid

if TYPE_CHECKING:
    from synthetic_hospital.exams import DoseEvent, PlannedExam, PlannedSeries

IMAGE_SOP_CLASS: dict[str, str] = {
    "CT": CTImageStorage,
    "MR": MRImageStorage,
    "DX": DigitalXRayImageStorageForPresentation,
    "CR": ComputedRadiographyImageStorage,
    "MG": DigitalMammographyXRayImageStorageForPresentation,
    "RF": XRayRadiofluoroscopicImageStorage,
}
RDSR_SOP_CLASS: str = XRayRadiationDoseSRStorage
IMPLEMENTATION_VERSION = "RADPULSE_SIM_1"
INSTITUTION = "RADPULSE SIMULATED HOSPITAL"
INSTITUTION_ADDRESS = "1 SIMULATION AVENUE, SIM CITY 000000"
PRIVATE_CREATOR = "RADPULSE SIM PHI"  # a vendor-style private block that carries PHI, for the edge to drop

_FRACTIONAL_TIMES = frozenset({"CT", "MR"})
_PIXELS = {"small": {}, "ct512": {"CT": 512}}  # edge length per modality; default 16 (small) or 64 (ct512)


# ------------------------------------------------------------------------------------------------------------
# Small helpers
# ------------------------------------------------------------------------------------------------------------


def ds_str(value: float) -> str:
    """The DS text of a planned value (plans round values so this is exact)."""
    return format(value, ".10g")


def _da(dt: datetime) -> str:
    return dt.strftime("%Y%m%d")


def _tm(dt: datetime, fractional: bool) -> str:
    return dt.strftime("%H%M%S") + (f".{dt.microsecond:06d}" if fractional else "")


def _dt(dt: datetime, fractional: bool, with_offset: bool) -> str:
    return _da(dt) + _tm(dt, fractional) + (dt.strftime("%z") if with_offset else "")


@cache
def _tag_vr(keyword: str) -> tuple[BaseTag, str]:
    tag = Tag(tag_for_keyword(keyword))
    return tag, dictionary_VR(tag)


_PLAIN_TEXT_VRS = frozenset({"AE", "AS", "CS", "LO", "LT", "SH", "ST", "UC", "UT"})
_DATETIME_VRS = frozenset({"DA", "DT", "TM"})


def _element(tag: BaseTag, vr: str, value: Any) -> DataElement:
    """A data element without pydicom's per-value validation; single text values skip conversion as well."""
    if type(value) is str and "\\" not in value:
        # pydicom would return these strings unchanged; building them directly is ~6x cheaper
        if vr in _PLAIN_TEXT_VRS or (vr in _DATETIME_VRS and not config.datetime_conversion):
            return DataElement(tag, vr, value, already_converted=True)
        if vr == "UI":
            return DataElement(tag, vr, UID(value), already_converted=True)
        if vr == "PN":
            return DataElement(tag, vr, PersonName(value), already_converted=True)
    return DataElement(tag, vr, value, validation_mode=config.IGNORE)


def _put(ds: Dataset, keyword: str, value: Any) -> None:
    """Fast element assignment for values this module formats itself (the tests validate every value)."""
    tag, vr = _tag_vr(keyword)
    ds[tag] = _element(tag, vr, value)


class _Fast:
    """Keyword assignment onto a dataset through ``_put`` (write-only: read from ``.ds``)."""

    __slots__ = ("ds",)

    def __init__(self, ds: Dataset) -> None:
        object.__setattr__(self, "ds", ds)

    def __setattr__(self, keyword: str, value: Any) -> None:
        _put(self.ds, keyword, value)


def _ds(**values: Any) -> Dataset:
    """A dataset from keyword=value pairs, built without per-value validation (see the tests for that)."""
    out: dict[BaseTag, DataElement] = {}
    for keyword, value in values.items():
        tag, vr = _tag_vr(keyword)
        out[tag] = _element(tag, vr, value)
    return Dataset(out)


_SHARED_CODES: ContextVar[dict[Code, Dataset] | None] = ContextVar("_SHARED_CODES", default=None)


def _code(code: Code) -> Dataset:
    shared = _SHARED_CODES.get()
    if shared is not None:  # inside one dose report, equal code items are one object (~40 % faster)
        item = shared.get(code)
        if item is None:
            item = shared[code] = _ds(CodeValue=code[0], CodingSchemeDesignator=code[1], CodeMeaning=code[2])
        return item
    return _ds(CodeValue=code[0], CodingSchemeDesignator=code[1], CodeMeaning=code[2])


def _person(name: str, ideographic: str | None) -> str:
    return f"{name}={ideographic}" if ideographic else name


def _age(years: int | None) -> str:
    return "" if years is None else f"{years:03d}Y"


@cache
def _frames(modality: str, size: int) -> tuple[bytes, ...]:
    """Four 16-bit frames of a simple phantom with noise (12-bit values), built once per modality and size."""
    rng = np.random.default_rng(zlib.crc32(f"{modality}{size}".encode()))
    y, x = np.mgrid[0:size, 0:size]
    r = np.hypot(x - size / 2 + 0.5, y - size / 2 + 0.5) / (size / 2)
    if modality == "CT":
        base = np.where(r < 0.85, 1064.0, 24.0) + np.where(r < 0.25, 700.0, 0.0)  # water disc, bone core
    elif modality == "MR":
        base = np.where(r < 0.8, 900.0 - 300.0 * r, 5.0)
    else:
        base = 600.0 + 2400.0 * (1 - np.clip(r, 0, 1)) + 300.0 * (x / size)
    frames = []
    for _ in range(4):
        noisy = np.clip(base + rng.normal(0.0, 12.0, base.shape), 0, 4095).astype("<u2")
        frames.append(noisy.tobytes())
    return tuple(frames)


# ------------------------------------------------------------------------------------------------------------
# Entry points
# ------------------------------------------------------------------------------------------------------------


def exam_images(exam: PlannedExam, pixels: str = "small") -> Iterator[Dataset]:
    """The images of ``exam`` in send order, series by series (``sender.exam_datasets`` adds the dose SR)."""
    modality = exam.device.modality
    meta = _template(_file_meta(exam, IMAGE_SOP_CLASS[modality]))
    common = _template(_common(exam, IMAGE_SOP_CLASS[modality], modality))
    for series in exam.series:
        base = _series_template(exam, series, pixels, common)
        for index in range(series.n_instances):
            yield _instance(exam, series, index, base, meta, pixels)
def build_image(exam: PlannedExam, series: PlannedSeries, index: int, pixels: str = "small") -> Dataset:
    """Image ``index`` (0-based) of ``series`` on its own (``exam_images`` reuses the templates)."""
    meta = _template(_file_meta(exam, IMAGE_SOP_CLASS[exam.device.modality]))
    return _instance(exam, series, index, _series_template(exam, series, pixels), meta, pixels)


def sop_instance_uid(exam: PlannedExam, series: PlannedSeries, index: int) -> str:
    return make_uid(exam.study_uid, series.number, index + 1)


# ------------------------------------------------------------------------------------------------------------
# Modules shared by images and SRs
# ------------------------------------------------------------------------------------------------------------


Template = dict[BaseTag, DataElement]


def _template(ds: Dataset) -> Template:
    return {elem.tag: elem for elem in ds}


def _clone(elem: DataElement) -> DataElement:
    """A copy that can be changed without touching the template (sequence items and multi-values too)."""
    state = elem.__dict__
    if state["VR"] == "SQ":
        items = [Dataset({e.tag: _clone(e) for e in item}) for item in elem.value]
        return DataElement(elem.tag, "SQ", items)
    new = DataElement.__new__(DataElement)
    new.__dict__.update(state)  # what copy.copy does, at a fifth of the cost
    if type(state["_value"]) is MultiValue:
        new.__dict__["_value"] = copy.copy(state["_value"])
    return new


def _file_meta(exam: PlannedExam, sop_class: str, sop_uid: str = "") -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION
    meta.SourceApplicationEntityTitle = exam.device.ae_title
    return meta


def _common(exam: PlannedExam, sop_class: str, modality: str) -> Dataset:
    """Patient, study, equipment and order attributes: the identifying spread the edge has to strip."""
    device, patient, et = exam.device, exam.patient, exam.exam_type
    study_local = exam.local(exam.study_offset_s * 1_000_000)
    out = Dataset()
    ds = _Fast(out)
    ds.SpecificCharacterSet = device.charset
    ds.SOPClassUID = sop_class
    ds.StudyDate = _da(study_local)
    ds.StudyTime = _tm(study_local, False)
    ds.AccessionNumber = exam.accession
    ds.Modality = modality
    ds.Manufacturer = device.manufacturer
    ds.InstitutionName = INSTITUTION
    ds.InstitutionAddress = INSTITUTION_ADDRESS
    ds.ReferringPhysicianName = exam.referring_physician
    ds.ReferringPhysicianTelephoneNumbers = "000-0000-0000"
    ds.StationName = device.station_name
    ds.StudyDescription = exam.study_description
    ds.ProcedureCodeSequence = [_code((et.procedure_code, "99SIMRIS", et.label))]
    ds.InstitutionalDepartmentName = device.department
    ds.PerformingPhysicianName = exam.performing_physician
    ds.NameOfPhysiciansReadingStudy = exam.performing_physician
    ds.OperatorsName = exam.operator
    ds.ManufacturerModelName = device.model
    ds.PatientName = _person(patient.name, patient.name_ideographic if exam.language == "zh" else None)
    ds.PatientID = patient.patient_id
    ds.IssuerOfPatientID = "SIMHOSP"
    ds.PatientBirthDate = "" if patient.birth_date is None else patient.birth_date.strftime("%Y%m%d")
    ds.PatientSex = patient.sex
    ds.OtherPatientIDsSequence = [] if exam.is_qa else [_other_id(patient.patient_id)]
    ds.PatientAge = _age(patient.age_years)
    if patient.height_m is not None:
        ds.PatientSize = ds_str(patient.height_m)
    if patient.weight_kg is not None and device.modality != "CR":  # the CR reader never gets a weight
        ds.PatientWeight = ds_str(patient.weight_kg)
    if not exam.is_qa:
        ds.PatientAddress = f"{patient.patient_id[-3:]} SIM ROAD, SIM CITY"
        ds.PatientTelephoneNumbers = f"000-{patient.patient_id[-4:]}"
        ds.AdditionalPatientHistory = "SIM history: synthetic patient"
    ds.BodyPartExamined = et.body_part
    ds.DeviceSerialNumber = device.serial
    if device.software_versions:
        ds.SoftwareVersions = device.software_versions
    ds.ProtocolName = et.label
    ds.StudyInstanceUID = exam.study_uid
    ds.StudyID = str(int(exam.pps_id[3:]) + 1)
    ds.RequestingPhysician = exam.referring_physician
    ds.RequestedProcedureDescription = et.label
    if device.sends_tz_offset:
        ds.TimezoneOffsetFromUTC = study_local.strftime("%z")
    ds.PerformedProcedureStepStartDate = _da(study_local)
    ds.PerformedProcedureStepStartTime = _tm(study_local, False)
    ds.PerformedProcedureStepID = exam.pps_id
    ds.PerformedProcedureStepDescription = exam.study_description
    ds.RequestAttributesSequence = [
        _request_item(exam, accession, i) for i, accession in enumerate((exam.accession, *exam.extra_accessions))
        if accession
    ]
    ds.AdmissionID = "" if exam.is_qa else f"ADM{exam.pps_id[-6:]}"
    block = out.private_block(0x0019, PRIVATE_CREATOR, create=True)
    block.add_new(0x10, "LO", patient.name)  # vendors do copy names and IDs into private tags
    block.add_new(0x11, "LO", f"WARD 7 BED {int(exam.pps_id[-2:]) % 40 + 1}")
    return out


def _other_id(patient_id: str) -> Dataset:
    return _ds(PatientID=f"MRN-{patient_id}", IssuerOfPatientID="SIMHIS")


def _request_item(exam: PlannedExam, accession: str, index: int) -> Dataset:
    et = exam.exam_type
    return _ds(
        AccessionNumber=accession,
        RequestedProcedureID=f"RP{accession[-7:]}",
        ScheduledProcedureStepID=f"SPS{accession[-7:]}",
        RequestedProcedureDescription=et.label if index == 0 else f"{et.label} (part {index + 1})",
        RequestedProcedureCodeSequence=[_code((et.procedure_code, "99SIMRIS", et.label))],
        ReasonForTheRequestedProcedure="SIM indication",
    )


# ------------------------------------------------------------------------------------------------------------
# Images
# ------------------------------------------------------------------------------------------------------------


def _pixel_size(modality: str, pixels: str) -> int:
    return _PIXELS[pixels].get(modality, 64 if pixels == "ct512" else 16)


def _series_template(exam: PlannedExam, series: PlannedSeries, pixels: str,
                     common: Template | None = None) -> Template:
    """Every element that is the same for all images of ``series``."""
    modality = exam.device.modality
    if common is None:
        out = _common(exam, IMAGE_SOP_CLASS[modality], modality)
    else:
        out = Dataset({tag: _clone(elem) for tag, elem in common.items()})
    ds = _Fast(out)
    series_local = exam.local(series.start_offset_s * 1_000_000)
    ds.SeriesDate = _da(series_local)
    ds.SeriesTime = _tm(series_local, modality in _FRACTIONAL_TIMES)
    ds.SeriesDescription = series.description
    ds.SeriesInstanceUID = series.uid
    ds.SeriesNumber = series.number
    ds.AcquisitionNumber = series.number
    ds.PatientPosition = "HFS" if modality in ("CT", "MR") else ""
    event = exam.dose_events[series.event_index] if series.event_index is not None else None
    if event is not None:
        ds.IrradiationEventUID = event.uid
    _MODALITY_BUILDERS[modality](ds, exam, series, event)
    _pixel_module(ds, _pixel_size(modality, pixels))
    return _template(out)


def _instance(exam: PlannedExam, series: PlannedSeries, index: int, base: Template, meta: Template,
              pixels: str) -> Dataset:
    """Image ``index``: the series template plus the elements that change per image."""
    device = exam.device
    modality = device.modality
    fractional = modality in _FRACTIONAL_TIMES
    sop_uid = sop_instance_uid(exam, series, index)
    offset_us = series.instance_offset_us(index)
    acq = exam.local(offset_us)
    recon_delay_us = (2 + (series.number * 7 + index) % 25) * 1_000_000  # reconstruction before the object exists
    content = exam.local(offset_us + recon_delay_us)
    ds = Dataset({tag: _clone(elem) for tag, elem in base.items()})
    ds.file_meta = FileMetaDataset({tag: _clone(elem) for tag, elem in meta.items()})
    _put(ds.file_meta, "MediaStorageSOPInstanceUID", sop_uid)
    _put(ds, "SOPInstanceUID", sop_uid)
    _put(ds, "InstanceCreationDate", _da(content))
    _put(ds, "InstanceCreationTime", _tm(content, False))
    _put(ds, "AcquisitionDate", _da(acq))
    _put(ds, "AcquisitionTime", _tm(acq, fractional))
    if device.sends_acquisition_datetime:
        _put(ds, "AcquisitionDateTime", _dt(acq, fractional, device.sends_tz_offset))
    _put(ds, "ContentDate", _da(content))
    _put(ds, "ContentTime", _tm(content, fractional))
    _put(ds, "InstanceNumber", index + 1)
    if modality in ("CT", "MR"):
        slice_mm = series.spec.mr.slice_mm if series.spec.mr else series.spec.slice_mm
        z = ds_str(round(-index * slice_mm, 3))
        _put(ds, "ImagePositionPatient", ["-250", "-250", z])
        _put(ds, "SliceLocation", z)
    size = _pixel_size(modality, pixels)
    _put(ds, "PixelData", _frames(modality, size)[(series.number + index) % 4])
    return ds


def _image_type(exam: PlannedExam, *rest: str) -> list[str]:
    return ["DERIVED" if exam.device.derived_image_type else "ORIGINAL", "PRIMARY", *rest]


def _geometry(ds: _Fast, exam: PlannedExam, slice_mm: float) -> None:
    ds.FrameOfReferenceUID = exam.frame_of_reference_uid
    ds.PositionReferenceIndicator = ""
    ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
    ds.SliceThickness = ds_str(slice_mm)


def _ct(ds: _Fast, exam: PlannedExam, series: PlannedSeries, event: DoseEvent | None) -> None:
    spec = series.spec
    localizer = spec.acquisition == "LOCALIZER"
    ds.ImageType = _image_type(exam, "LOCALIZER" if localizer else "AXIAL")
    _geometry(ds, exam, spec.slice_mm)
    ds.ScanOptions = "SURVIEW" if localizer else ("HELICAL MODE" if spec.acquisition == "SPIRAL" else "AXIAL MODE")
    ds.ConvolutionKernel = spec.kernel
    ds.DataCollectionDiameter = "500"
    ds.ReconstructionDiameter = "350" if exam.exam_type.phantom == "BODY32" else "220"
    ds.GantryDetectorTilt = "0"
    ds.TableHeight = "150"
    ds.RotationDirection = "CW"
    ds.ContrastBolusAgent = "IOPAMIDOL 370" if spec.contrast else ""
    if event is not None:
        assert event.ctdivol_mgy is not None and event.kvp is not None
        ds.KVP = ds_str(event.kvp)
        ds.XRayTubeCurrent = int(event.tube_current_ma or 0)
        ds.ExposureTime = int(1000 * 0.5)
        ds.Exposure = int((event.tube_current_ma or 0) * 0.5)
        ds.CTDIvol = event.ctdivol_mgy
        if event.pitch is not None:
            ds.SpiralPitchFactor = event.pitch
        if exam.device.header_phantom and event.phantom:
            ds.CTDIPhantomTypeCodeSequence = [_code(_PHANTOM_CODE[event.phantom])]
    ds.RescaleIntercept = "-1024"
    ds.RescaleSlope = "1"
    ds.RescaleType = "HU"
    ds.WindowCenter = "40" if not localizer else "50"
    ds.WindowWidth = "400" if not localizer else "500"


def _mr(ds: _Fast, exam: PlannedExam, series: PlannedSeries, event: DoseEvent | None) -> None:
    seq = series.spec.mr
    assert seq is not None
    device = exam.device
    ds.ImageType = _image_type(exam, "M", "ND", "NORM")
    _geometry(ds, exam, seq.slice_mm)
    ds.ScanningSequence = seq.scanning_sequence.split("\\")
    ds.SequenceVariant = seq.sequence_variant.split("\\")
    ds.ScanOptions = "PFP" if not seq.is_3d else ""
    ds.MRAcquisitionType = "3D" if seq.is_3d else "2D"
    ds.SequenceName = f"*{series.spec.description[:10]}"
    ds.RepetitionTime = ds_str(seq.tr_ms)
    ds.EchoTime = ds_str(seq.te_ms)
    ds.EchoTrainLength = seq.etl
    ds.FlipAngle = ds_str(seq.flip_deg)
    ds.NumberOfAverages = "1"
    ds.ImagingFrequency = ds_str(round(42.577478 * (device.field_strength_t or 1.5), 6))
    ds.ImagedNucleus = "1H"
    ds.MagneticFieldStrength = ds_str(device.field_strength_t or 1.5)
    ds.SpacingBetweenSlices = ds_str(seq.slice_mm * 1.1)
    ds.PixelBandwidth = "250"
    ds.ReceiveCoilName = exam.mr_receive_coil or ""
    ds.TransmitCoilName = exam.mr_transmit_coil or ""
    ds.InPlanePhaseEncodingDirection = "ROW"
    ds.SAR = "0.8"
    ds.dBdt = "20"
    ds.PatientPosition = "FFS" if exam.exam_type.coil == "KNEE" else "HFS"
    ds.WindowCenter = "500"
    ds.WindowWidth = "1000"


def _projection_common(ds: _Fast, exam: PlannedExam, series: PlannedSeries, event: DoseEvent | None) -> None:
    ds.AnatomicRegionSequence = [_code(exam.exam_type.region)]
    ds.ViewPosition = series.spec.view or ""
    ds.PatientOrientation = ["A", "F"] if exam.device.modality != "MG" else ["P", "L"]
    if event is not None:
        if event.kvp is not None:
            ds.KVP = ds_str(event.kvp)
        if event.mas is not None:
            ds.Exposure = round(event.mas)
            ds.ExposureInuAs = round(event.mas * 1000)
            tube_ma = 200 if exam.device.modality != "MG" else 100
            ds.XRayTubeCurrent = tube_ma
            ds.ExposureTime = max(1, round(event.mas / (tube_ma / 1000)))
        if event.sid_mm is not None:
            ds.DistanceSourceToDetector = ds_str(event.sid_mm)
    ds.PixelIntensityRelationship = "LOG"
    ds.PixelIntensityRelationshipSign = 1
    ds.RescaleIntercept = "0"
    ds.RescaleSlope = "1"
    ds.RescaleType = "US"
    ds.PresentationLUTShape = "IDENTITY"
    ds.WindowCenter = "2048"
    ds.WindowWidth = "4096"
    ds.BurnedInAnnotation = "NO"


def _dx(ds: _Fast, exam: PlannedExam, series: PlannedSeries, event: DoseEvent | None) -> None:
    ds.ImageType = _image_type(exam)
    if exam.device.modality == "DX":
        ds.PresentationIntentType = "FOR PRESENTATION"
        ds.DetectorType = "SCINTILLATOR"
        ds.ImagerPixelSpacing = ["0.139", "0.139"]
    else:
        ds.PlateID = f"PLATE{series.number % 12:02d}"
        ds.Sensitivity = "200"  # vendor speed index, not comparable across vendors
    _projection_common(ds, exam, series, event)
    ds.Laterality = series.spec.laterality or ""
    if event is not None:
        assert event.dap_dgy_cm2 is not None
        ds.ImageAndFluoroscopyAreaDoseProduct = ds_str(event.dap_dgy_cm2)
        ds.EntranceDoseInmGy = ds_str(event.entrance_dose_mgy or 0.0)
        ds.ExposureIndex = event.exposure_index
        ds.TargetExposureIndex = event.target_exposure_index
        ds.DeviationIndex = event.deviation_index
        ds.DistanceSourceToPatient = ds_str((event.sid_mm or 1100.0) - 150.0)
        ds.Grid = ["IN", "FOCUSED"] if series.spec.field_cm2 >= 600 else "NONE"


def _mg(ds: _Fast, exam: PlannedExam, series: PlannedSeries, event: DoseEvent | None) -> None:
    spec = series.spec
    ds.ImageType = _image_type(exam)
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.DetectorType = "DIRECT"
    ds.ImagerPixelSpacing = ["0.07", "0.07"]
    ds.ImageLaterality = spec.laterality or "B"
    ds.Laterality = spec.laterality or ""
    view = _MG_VIEW[spec.view or "CC"]
    ds.ViewCodeSequence = [_code(view)]
    ds.AnodeTargetMaterial = "TUNGSTEN"
    ds.FilterMaterial = "RHODIUM"
    ds.BreastImplantPresent = "NO"
    ds.PartialView = "NO"
    ds.PositionerPrimaryAngle = "0" if spec.view == "CC" else ("45" if spec.laterality == "R" else "-45")
    _projection_common(ds, exam, series, event)
    ds.AnatomicRegionSequence = [_code(("T-04000", "SRT", "Breast"))]
    if event is not None:
        assert event.agd_mgy is not None
        ds.BodyPartThickness = ds_str(event.compression_mm or 0.0)
        ds.CompressionForce = "110"
        ds.OrganDose = ds_str(round(event.agd_mgy / 100.0, 6))  # dGy in the header
        ds.OrganExposed = "BREAST"
        ds.EntranceDoseInmGy = ds_str(event.entrance_dose_mgy or 0.0)
        ds.EntranceDose = int(event.entrance_dose_mgy or 0)


def _rf(ds: _Fast, exam: PlannedExam, series: PlannedSeries, event: DoseEvent | None) -> None:
    ds.ImageType = _image_type(exam, "SINGLE PLANE")
    _projection_common(ds, exam, series, event)
    ds.RadiationSetting = "GR"
    ds.FieldOfViewShape = "RECTANGLE"
    ds.IntensifierSize = "420"
    ds.PositionerPrimaryAngle = "0"
    ds.PositionerSecondaryAngle = "0"
    ds.FrameTime = "0"


_MODALITY_BUILDERS = {"CT": _ct, "MR": _mr, "DX": _dx, "CR": _dx, "MG": _mg, "RF": _rf}
_PHANTOM_CODE: dict[str, Code] = {
    "HEAD16": ("113690", "DCM", "IEC Head Dosimetry Phantom"),
    "BODY32": ("113691", "DCM", "IEC Body Dosimetry Phantom"),
}
_MG_VIEW: dict[str, Code] = {
    "CC": ("R-10242", "SRT", "cranio-caudal"),
    "MLO": ("R-10226", "SRT", "medio-lateral oblique"),
}


def _pixel_module(ds: _Fast, size: int) -> None:
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = size
    ds.Columns = size
    ds.PixelSpacing = [ds_str(round(350.0 / size, 4))] * 2
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
