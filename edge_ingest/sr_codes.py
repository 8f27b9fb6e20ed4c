"""The code table for radiation dose SRs: every concept `dose_sr.py` reads, keyed on (CodeValue, Scheme).

Concepts are matched by code, never by CodeMeaning (vendors write "X-ray" and "X-Ray"). Codes were checked
against DICOM PS3.16 (TID 10001-10005, 10011-10013; CIDs 4052, 7445, 10000, 10002, 10003, 10013) as shipped in
pydicom 3.0.2's concept and SNOMED-mapping tables, and against the samples in ``shared/dicom-samples``.

Legacy SNOMED-RT (``SRT``) codes, which every sample still uses, are folded onto their SNOMED CT (``SCT``)
equivalents by `canonical`, so the rest of the code only ever names the ``SCT`` form.
"""

from __future__ import annotations

from typing import Final

Code = tuple[str, str]  # (CodeValue, CodingSchemeDesignator)

DCM: Final = "DCM"
SCT: Final = "SCT"
SRT: Final = "SRT"
LN: Final = "LN"

# --- Document titles and templates -------------------------------------------------------------------------
X_RAY_RADIATION_DOSE_REPORT: Final[Code] = ("113701", DCM)
DIAGNOSTIC_IMAGING_REPORT: Final[Code] = ("18748-4", LN)  # AGFA's non-dose Enhanced SR title
TEMPLATE_CT_RADIATION_DOSE: Final = "10011"
TEMPLATE_PROJECTION_RADIATION_DOSE: Final = "10001"

# --- Containers --------------------------------------------------------------------------------------------
CT_ACCUMULATED_DOSE_DATA: Final[Code] = ("113811", DCM)  # TID 10012
CT_ACQUISITION: Final[Code] = ("113819", DCM)  # TID 10013, one per irradiation event
CT_ACQUISITION_PARAMETERS: Final[Code] = ("113822", DCM)
CT_XRAY_SOURCE_PARAMETERS: Final[Code] = ("113831", DCM)
CT_DOSE: Final[Code] = ("113829", DCM)
ACCUMULATED_XRAY_DOSE_DATA: Final[Code] = ("113702", DCM)  # TID 10002, one per plane
IRRADIATION_EVENT_XRAY_DATA: Final[Code] = ("113706", DCM)  # TID 10003, one per irradiation event
DOSE_CHECK_ALERT_DETAILS: Final[Code] = ("113900", DCM)  # TID 10015: may name the person who overrode
DOSE_CHECK_NOTIFICATION_DETAILS: Final[Code] = ("113908", DCM)

EVENT_CONTAINERS: Final[frozenset[Code]] = frozenset({CT_ACQUISITION, IRRADIATION_EVENT_XRAY_DATA})
ACCUMULATED_CONTAINERS: Final[frozenset[Code]] = frozenset({CT_ACCUMULATED_DOSE_DATA, ACCUMULATED_XRAY_DOSE_DATA})
CT_CONTAINERS: Final[frozenset[Code]] = frozenset({CT_ACCUMULATED_DOSE_DATA, CT_ACQUISITION})
PROJECTION_CONTAINERS: Final[frozenset[Code]] = frozenset({ACCUMULATED_XRAY_DOSE_DATA, IRRADIATION_EVENT_XRAY_DATA})
# Subtrees never read: they hold nothing we report and may hold person names.
SKIPPED_CONTAINERS: Final[frozenset[Code]] = frozenset({DOSE_CHECK_ALERT_DETAILS, DOSE_CHECK_NOTIFICATION_DETAILS})

# --- NUM concepts: accumulated (TID 10002/10004/10005/10007/10012) --------------------------------------------
TOTAL_NUMBER_OF_IRRADIATION_EVENTS: Final[Code] = ("113812", DCM)
CT_DLP_TOTAL: Final[Code] = ("113813", DCM)
DAP_TOTAL: Final[Code] = ("113722", DCM)
FLUORO_DAP_TOTAL: Final[Code] = ("113726", DCM)
ACQUISITION_DAP_TOTAL: Final[Code] = ("113727", DCM)
DOSE_RP_TOTAL: Final[Code] = ("113725", DCM)
FLUORO_DOSE_RP_TOTAL: Final[Code] = ("113728", DCM)
ACQUISITION_DOSE_RP_TOTAL: Final[Code] = ("113729", DCM)
TOTAL_FLUORO_TIME: Final[Code] = ("113730", DCM)
TOTAL_ACQUISITION_TIME: Final[Code] = ("113855", DCM)
ACCUMULATED_AGD: Final[Code] = ("111637", DCM)  # one per breast, with a Laterality modifier

# --- NUM concepts: per irradiation event (TID 10013, 10003/10003a/10003b) -------------------------------------
MEAN_CTDIVOL: Final[Code] = ("113830", DCM)
DLP: Final[Code] = ("113838", DCM)
SCANNING_LENGTH: Final[Code] = ("113825", DCM)
NOMINAL_SINGLE_COLLIMATION_WIDTH: Final[Code] = ("113826", DCM)  # not pitch: that is 113828
PITCH_FACTOR: Final[Code] = ("113828", DCM)
EXPOSURE_TIME: Final[Code] = ("113824", DCM)
EXPOSURE_TIME_RETIRED: Final[Code] = ("113735", DCM)  # retired code, still sent by the Siemens Artis sample
KVP: Final[Code] = ("113733", DCM)
XRAY_TUBE_CURRENT: Final[Code] = ("113734", DCM)
EXPOSURE_MAS: Final[Code] = ("113736", DCM)
DOSE_AREA_PRODUCT: Final[Code] = ("122130", DCM)
DOSE_RP: Final[Code] = ("113738", DCM)
ENTRANCE_EXPOSURE_AT_RP: Final[Code] = ("111636", DCM)
IRRADIATION_DURATION: Final[Code] = ("113742", DCM)
AVERAGE_GLANDULAR_DOSE: Final[Code] = ("111631", DCM)
EXPOSURE_INDEX: Final[Code] = ("113845", DCM)
TARGET_EXPOSURE_INDEX: Final[Code] = ("113846", DCM)
DEVIATION_INDEX: Final[Code] = ("113847", DCM)
SIZE_SPECIFIC_DOSE_ESTIMATE: Final[Code] = ("113930", DCM)
WATER_EQUIVALENT_DIAMETER: Final[Code] = ("113980", DCM)

# --- CODE, UIDREF, TEXT and DATETIME concepts --------------------------------------------------------------
PROCEDURE_REPORTED: Final[Code] = ("121058", DCM)
SCOPE_OF_ACCUMULATION: Final[Code] = ("113705", DCM)
DEVICE_ROLE_IN_PROCEDURE: Final[Code] = ("113876", DCM)
ACQUISITION_DEVICE_TYPE: Final[Code] = ("122142", DCM)  # TID 10001 root: says DX, RF or CR for a projection report
TARGET_REGION: Final[Code] = ("123014", DCM)
CT_ACQUISITION_TYPE: Final[Code] = ("113820", DCM)
CTDIW_PHANTOM_TYPE: Final[Code] = ("113835", DCM)
IRRADIATION_EVENT_TYPE: Final[Code] = ("113721", DCM)
ACQUISITION_PLANE: Final[Code] = ("113764", DCM)
LATERALITY: Final[Code] = ("272741003", SCT)  # legacy ("G-C171", "SRT")
ANATOMICAL_STRUCTURE: Final[Code] = ("91723000", SCT)  # legacy ("T-D0005", "SRT"); Hologic hangs Laterality here
IRRADIATION_EVENT_UID: Final[Code] = ("113769", DCM)
ACQUISITION_PROTOCOL: Final[Code] = ("125203", DCM)
DATETIME_STARTED: Final[Code] = ("111526", DCM)
START_OF_XRAY_IRRADIATION: Final[Code] = ("113809", DCM)
END_OF_XRAY_IRRADIATION: Final[Code] = ("113810", DCM)

# --- Concepts that must never be copied (listed so tests and reviewers can find them) --------------------------
PERSON_CONCEPTS: Final[frozenset[Code]] = frozenset(
    {
        ("113850", DCM),  # Irradiation Authorizing
        ("113851", DCM),  # Irradiation Administering
        ("113870", DCM),  # Person Name
        ("113871", DCM),  # Person ID
        ("121008", DCM),  # Person Observer Name
        ("121017", DCM),  # Device Observer Physical Location During Observation
        ("121106", DCM),  # Comment
    }
)

# --- Value sets --------------------------------------------------------------------------------------------
PROCEDURE_CT: Final[Code] = ("77477000", SCT)  # legacy ("P5-08000", "SRT")
PROCEDURE_PROJECTION: Final[Code] = ("113704", DCM)
PROCEDURE_MAMMOGRAPHY: Final[Code] = ("71651007", SCT)  # legacy ("P5-40010", "SRT")

PHANTOMS: Final[dict[Code, str]] = {  # CID 4052
    ("113690", DCM): "HEAD16",  # IEC Head Dosimetry Phantom (16 cm)
    ("113691", DCM): "BODY32",  # IEC Body Dosimetry Phantom (32 cm)
}

CT_ACQUISITION_TYPES: Final[dict[Code, str]] = {  # CID 10013
    ("116152004", SCT): "SPIRAL",
    ("113804", DCM): "SEQUENCED",
    ("113805", DCM): "CONSTANT_ANGLE",
    ("113806", DCM): "STATIONARY",
    ("113807", DCM): "FREE",
    ("702569007", SCT): "CONE_BEAM",
}

IRRADIATION_EVENT_TYPES: Final[dict[Code, str]] = {  # CID 10002
    ("113611", DCM): "STATIONARY",
    ("113612", DCM): "STEPPING",
    ("113613", DCM): "ROTATIONAL",
    ("44491008", SCT): "FLUOROSCOPY",
}

ACQUISITION_PLANES: Final[dict[Code, str]] = {  # CID 10003
    ("113622", DCM): "SINGLE_PLANE",
    ("113620", DCM): "PLANE_A",
    ("113621", DCM): "PLANE_B",
    ("113890", DCM): "ALL_PLANES",
}
ALL_PLANES: Final = "ALL_PLANES"

SCOPES: Final[dict[Code, str]] = {  # CID 10000
    ("113014", DCM): "STUDY",
    ("113015", DCM): "SERIES",
    ("113016", DCM): "PPS",
    ("113970", DCM): "PROCEDURE_STEP_TO_THIS_POINT",
    ("113852", DCM): "IRRADIATION_EVENT",
}

DEVICE_ROLES: Final[dict[Code, str]] = {  # CID 7445
    ("113859", DCM): "IRRADIATING_DEVICE",
    ("113942", DCM): "XRAY_READING_DEVICE",
    ("121097", DCM): "RECORDING",
}

ACQUISITION_DEVICE_TYPES: Final[dict[Code, str]] = {  # CID 10032
    ("113956", DCM): "CT",  # CT Scanner
    ("113957", DCM): "FLUORO_GUIDED",  # Fluoroscopy-Guided Projection Radiography System
    ("113958", DCM): "INTEGRATED",  # Integrated Projection Radiography System
    ("113959", DCM): "CASSETTE",  # Cassette-based Projection Radiography System
}

LATERALITIES: Final[dict[Code, str]] = {  # CID 244 and, for accumulated AGD, CID 6023 (breast sides)
    ("7771000", SCT): "L",
    ("24028007", SCT): "R",
    ("51440002", SCT): "B",
    ("80248007", SCT): "L",  # Left breast
    ("73056007", SCT): "R",  # Right breast
    ("63762007", SCT): "B",  # Both breasts
}

# SNOMED-RT → SNOMED CT for every code above that has a legacy form (pairs from pydicom's SNOMED mapping).
SRT_TO_SCT: Final[dict[str, str]] = {
    "P5-08000": "77477000",  # Computed tomography
    "P5-40010": "71651007",  # Mammography
    "P5-08001": "116152004",  # Spiral Acquisition
    "R-FB8F1": "702569007",  # Cone Beam Acquisition
    "P5-06000": "44491008",  # Fluoroscopy
    "G-C171": "272741003",  # Laterality
    "T-D0005": "91723000",  # Anatomical structure
    "G-A101": "7771000",  # Left
    "G-A100": "24028007",  # Right
    "G-A102": "51440002",  # Right and left
    "T-04030": "80248007",  # Left breast
    "T-04020": "73056007",  # Right breast
    "T-04080": "63762007",  # Both breasts
}


def canonical(value: str, scheme: str) -> Code:
    """(CodeValue, Scheme) with surrounding blanks removed and a known SRT code replaced by its SCT twin."""
    value = value.strip()
    scheme = scheme.strip().upper()
    if scheme == SRT:
        sct = SRT_TO_SCT.get(value)
        if sct is not None:
            return (sct, SCT)
    return (value, scheme)


def is_private_scheme(scheme: str) -> bool:
    """True for a private coding scheme (PS3.16 8.2: designators starting "99", e.g. "99PHI-IXR-XPER")."""
    return scheme.startswith("99")
