"""Per-exam radiation dose from its instances: fold dose reports and image headers, then summarise. Pure.

The state keeps *identified* pieces, never running sums, so folding is idempotent without a seen-set: report
events are keyed by their Irradiation Event pseudonym, reports by their instance, header values by series (CT) or
by irradiation event / instance (projection). A resent object, a replayed message or the same event inside a
second report overwrites a key with what it already held. ``exam_dose`` turns the state into an ``ExamDose``.

Sources, in order: **REPORT** (any dose SR arrived; every dose quantity then comes from reports only, so headers
and reports are never mixed), **HEADER** (image attributes only), **NONE**.

Report totals or event sums: reports that share irradiation events form a group (one per procedure step, a
continuation, a resend, cumulative "study to this point" reports). When one report of a group lists every event of
the group, its own accumulated total wins: the device computed it from unrounded values (Siemens Artis Zee: 2.52 mGy
reference-point dose against 2.49 from its rounded events). Otherwise (overlapping partial reports, or no total) the
union of the group's events, keyed by Irradiation Event UID, is summed, plus the totals of reports none of whose
events carry the quantity. Disjoint groups add up; summing the totals of overlapping reports would double-count.
Fluoroscopy and acquisition DAP and reference-point dose are split the same way (fluoroscopy events vs the rest).

CT from headers: CTDIvol is repeated in every image of an acquisition, so it is never summed: maximum per series,
maximum over series. Localizer and secondary images are skipped. Image headers carry no DLP.
Secondary Captures that carry dose in their header (a Hologic DBT projection with AGD, a Philips CT dose-info
capture) count only when the exam's images carry none; otherwise they would repeat the images' dose.
Projection from headers: DAP (and entrance dose) per image, summed over distinct irradiation events (the event
pseudonym when the image has one, else the instance). "For Processing" images are dropped when "For Presentation"
images of the exam exist: both are made from the same exposure. Mammography AGD is summed per breast.

SSDE: the report's SSDE when present; else AAPM Report 204 fits (domain notes §1.1) from the water-equivalent
diameter, never outside ``DW_RANGE_CM``; else None. The fit for the 16 cm phantom is Report 204's (paediatric body);
adult heads need Report 293, which is not implemented, so a HEAD16 value is an approximation. Header Dw per series
is the midpoint of its smallest and largest value (a running mean would move on replay); the header unit is taken
as mm, which the domain notes leave unconfirmed.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from schemas.events import DoseReport, Exposure, InstanceEvent, IrradiationEvent
from streams.modality import exam_modality

LOCALIZER = "CONSTANT_ANGLE"  # CT Acquisition Type of scouts / topograms
FLUOROSCOPY = "FLUOROSCOPY"
HEAD16, BODY32 = "HEAD16", "BODY32"
MIXED = "MIXED"
_SIDES = ("L", "R", "B")  # breast laterality: left, right, both
SECONDARY_CAPTURE_PREFIX = "1.2.840.10008.5.1.4.1.1.7"
FOR_PROCESSING = frozenset(
    {
        "1.2.840.10008.5.1.4.1.1.1.1.1",  # Digital X-Ray Image – For Processing
        "1.2.840.10008.5.1.4.1.1.1.2.1",  # Digital Mammography X-Ray Image – For Processing
        "1.2.840.10008.5.1.4.1.1.1.3.1",  # Digital Intra-Oral X-Ray Image – For Processing
    }
)
NON_IMAGE_MODALITIES = frozenset({"SR", "KO", "PR", "OT", "DOC"})
# Secondary Captures carrying dose in their header (Hologic DBT projections, Philips CT dose info) from these
# modalities count, under keys with this prefix, when the exam's own images carry no dose
DOSE_CAPTURE_MODALITIES = frozenset({"CT", "MG", "DX", "CR", "RF", "XA"})
SC_KEY = "SC:"

# AAPM Report 204 exponential fits, SSDE = a·exp(−b·Dw)·CTDIvol with Dw in cm (domain notes §1.1)
SSDE_FITS: dict[str, tuple[float, float]] = {BODY32: (3.704369, 0.03671937), HEAD16: (1.874799, 0.03871313)}
# fit domain; unconfirmed: the range one codebase applies to Report 204's tables; adjust when checked
DW_RANGE_CM: tuple[float, float] = (8.0, 45.0)

# event fields copied into the state (non-None only); names as in IrradiationEvent
_EVENT_FIELDS = (
    "acquisition_type",
    "event_type",
    "laterality",
    "ctdivol_mgy",
    "dlp_mgy_cm",
    "ctdi_phantom",
    "ssde_mgy",
    "water_equivalent_diameter_mm",
    "dap_gy_cm2",
    "dose_rp_mgy",
    "entrance_exposure_mgy",
    "irradiation_duration_s",
    "agd_mgy",
    "exposure_index",
    "deviation_index",
)


def ssde_from_dw(
    ctdivol_mgy: float, phantom: str | None, dw_cm: float, dw_range: tuple[float, float] = DW_RANGE_CM
) -> float | None:
    """Size-specific dose estimate from CTDIvol and water-equivalent diameter; None outside the fit domain."""
    fit = SSDE_FITS.get(phantom or "")
    if fit is None or not dw_range[0] <= dw_cm <= dw_range[1]:
        return None
    a, b = fit
    return a * math.exp(-b * dw_cm) * ctdivol_mgy


@dataclass
class ExamDoseState:
    """JSON-serialisable per-exam dose state for a Faust table (see module docstring for the keys)."""

    exam_key: str
    site_id: str
    modality: str | None = None  # of the first image, else derived from the dose reports
    reports: dict[str, dict[str, Any]] = field(default_factory=dict)  # instance → {kind, events, totals}
    events: dict[str, dict[str, Any]] = field(default_factory=dict)  # event pseudonym → {kind, region, <fields>}
    ct_series: dict[str, list[Any]] = field(default_factory=dict)  # series → [ctdivol max, phantom, dw min, dw max]
    proj: dict[str, dict[str, Any]] = field(default_factory=dict)  # "E:"event / "I:"instance → header values
    fluoro_time_header_s: float | None = None  # MPPS total copied into images: a total, so the maximum
    patient_weight_kg: float | None = None
    patient_height_m: float | None = None
    has_image: bool = False  # the modality came from an image and no report may change it

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExamDoseState:
        return cls(**data)


@dataclass(frozen=True, slots=True)
class PhantomCtdi:
    """CTDIvol of one exam for one phantom (None: phantom not stated)."""

    phantom: str | None
    max_mgy: float
    mean_mgy: float
    count: int  # non-localizer irradiation events (report) or series (header)


@dataclass(frozen=True, slots=True)
class ExamDose:
    """The dose of one exam. Units in field names; None means not available from the chosen source."""

    exam_key: str
    site_id: str
    modality: str | None
    source: str  # "REPORT" | "HEADER" | "NONE"
    report_count: int = 0
    report_event_count: int = 0  # unique irradiation events over all reports
    header_exposure_count: int = 0  # CT series with CTDIvol, or distinct projection exposures
    # CT
    dlp_total_mgy_cm: float | None = None
    dlp_phantom: str | None = None  # HEAD16 | BODY32 | MIXED | None (unknown)
    ctdivol_max_mgy: float | None = None
    ctdivol_phantom: str | None = None  # phantom of the maximum
    ctdivol_mean_mgy: float | None = None  # over events (or series) with the maximum's phantom
    ctdivol_by_phantom: tuple[PhantomCtdi, ...] = ()
    ssde_mgy: float | None = None
    ssde_source: str | None = None  # "REPORT" | "DW"
    water_equivalent_diameter_mm: float | None = None
    target_regions: tuple[str, ...] = ()  # of non-localizer report events, for exam-type mapping
    # projection
    dap_total_gy_cm2: float | None = None
    fluoro_time_s: float | None = None
    dose_rp_mgy: float | None = None
    fluoro_dap_gy_cm2: float | None = None
    acquisition_dap_gy_cm2: float | None = None
    fluoro_dose_rp_mgy: float | None = None
    acquisition_dose_rp_mgy: float | None = None
    entrance_dose_mgy: float | None = None
    agd_left_mgy: float | None = None
    agd_right_mgy: float | None = None
    agd_both_mgy: float | None = None  # events or totals for both breasts at once
    agd_unknown_side_mgy: float | None = None
    exposure_index_mean: float | None = None
    deviation_index_mean: float | None = None
    # completeness
    has_weight: bool = False
    has_height: bool = False

    @property
    def has_report(self) -> bool:
        return self.source == "REPORT"

    @property
    def header_only(self) -> bool:
        return self.source == "HEADER"

    @property
    def agd_max_breast_mgy(self) -> float | None:
        """The larger per-breast AGD (what a per-breast DRL is compared with)."""
        sides = [v for v in (self.agd_left_mgy, self.agd_right_mgy, self.agd_both_mgy) if v is not None]
        return max(sides) if sides else None

    def ctdivol(self, phantom: str | None, *, mean: bool = False) -> float | None:
        """Max (or mean) CTDIvol stated against `phantom`; with phantom None, the headline value."""
        if phantom is None:
            return self.ctdivol_mean_mgy if mean else self.ctdivol_max_mgy
        for p in self.ctdivol_by_phantom:
            if p.phantom == phantom:
                return p.mean_mgy if mean else p.max_mgy
        return None


# ------------------------------------------------------------------------------------------------ folding


def _set(d: dict[str, Any], key: str, value: Any) -> bool:
    if d.get(key) == value:
        return False
    d[key] = value
    return True


def _event_record(kind: str, ev: IrradiationEvent) -> dict[str, Any]:
    rec: dict[str, Any] = {"kind": kind}
    for name in _EVENT_FIELDS:
        value = getattr(ev, name)
        if value is not None:
            rec[name] = value
    code = ev.target_region_code or ""
    scheme = code.split("^", 1)[1] if "^" in code else ""
    if ev.target_region and not scheme.startswith("99"):  # private schemes (GE "99GEMS" Unknown) say nothing
        rec["region"] = ev.target_region
    return rec


def _fold_report(state: ExamDoseState, instance: str, report: DoseReport) -> bool:
    changed = False
    ids: list[str] = []
    for ev in report.events:
        rec = _event_record(report.kind, ev)
        held = state.events.get(ev.event_pseudonym)
        if held is None:
            state.events[ev.event_pseudonym] = rec
            changed = True
        else:
            for k, v in rec.items():  # a later report may complete an event (e.g. after a PARTIAL one)
                if k not in held:
                    held[k] = v
                    changed = True
        if ev.event_pseudonym not in ids:
            ids.append(ev.event_pseudonym)
    totals = {k: v for k, v in asdict(report.totals).items() if v is not None}
    entry = {"kind": report.kind, "events": ids, "totals": totals}
    if state.reports.get(instance) != entry:
        state.reports[instance] = entry
        changed = True
    return changed


def _fold_ct_header(state: ExamDoseState, event: InstanceEvent, exp: Exposure, prefix: str = "") -> bool:
    if exp.ctdivol_mgy is None or "LOCALIZER" in {t.upper() for t in event.image_type}:
        return False
    key = prefix + (event.series_pseudonym or event.instance_pseudonym)
    dw = exp.water_equivalent_diameter_mm
    held = state.ct_series.get(key)
    if held is None:
        state.ct_series[key] = [exp.ctdivol_mgy, exp.ctdi_phantom, dw, dw]
        return True
    new = list(held)
    if exp.ctdivol_mgy > (new[0] or 0.0):
        new[0], new[1] = exp.ctdivol_mgy, exp.ctdi_phantom or new[1]
    elif new[1] is None and exp.ctdi_phantom:
        new[1] = exp.ctdi_phantom
    if dw is not None:  # min and max, not a running mean: replays must not move it
        new[2] = dw if new[2] is None else min(new[2], dw)
        new[3] = dw if new[3] is None else max(new[3], dw)
    if new == held:
        return False
    state.ct_series[key] = new
    return True


def _fold_projection_header(state: ExamDoseState, event: InstanceEvent, exp: Exposure, prefix: str = "") -> bool:
    changed = False
    if exp.fluoro_time_s is not None and (state.fluoro_time_header_s or 0.0) < exp.fluoro_time_s:
        state.fluoro_time_header_s = exp.fluoro_time_s
        changed = True
    values: dict[str, Any] = {}
    if exp.dap_gy_cm2 is not None:
        values["dap"] = exp.dap_gy_cm2
    if exp.entrance_dose_mgy is not None:
        values["entrance"] = exp.entrance_dose_mgy
    organ = (exp.organ_exposed or "BREAST").strip().upper()
    if exp.organ_dose_mgy is not None and organ == "BREAST":
        values["agd"] = exp.organ_dose_mgy
        values["side"] = (event.laterality or "").strip().upper() or None
    if exp.exposure_index is not None:
        values["ei"] = exp.exposure_index
    if exp.deviation_index is not None:
        values["di"] = exp.deviation_index
    if not values:
        return changed
    values["processing"] = event.sop_class_uid in FOR_PROCESSING
    key = prefix + (
        f"E:{exp.irradiation_event_pseudonym}" if exp.irradiation_event_pseudonym else f"I:{event.instance_pseudonym}"
    )
    held = state.proj.get(key)
    merged = {**values, **(held or {})}  # first image of an event wins: later copies repeat its values
    if held is not None and values["processing"] is False and held.get("processing"):
        merged = {**held, **values}  # the presentation image is the one kept
    if held != merged:
        state.proj[key] = merged
        changed = True
    return changed


def fold_dose(state: ExamDoseState | None, event: InstanceEvent) -> tuple[ExamDoseState, bool]:
    """Fold one instance into its exam's dose state. Returns (state, changed); replays change nothing."""
    if state is None:
        state = ExamDoseState(exam_key=event.study_pseudonym, site_id=event.site_id)
    changed = False
    modality = (event.modality or "").strip().upper()
    if modality and modality not in NON_IMAGE_MODALITIES and state.modality != modality and not state.has_image:
        state.modality, state.has_image = modality, True
        changed = True
    elif not state.has_image and event.dose_report is not None:
        derived = exam_modality(state.modality, event.dose_report, False)
        if derived != state.modality:
            state.modality, changed = derived, True
    if state.patient_weight_kg is None and event.patient_weight_kg is not None:
        state.patient_weight_kg = event.patient_weight_kg
        changed = True
    if state.patient_height_m is None and event.patient_height_m is not None:
        state.patient_height_m = event.patient_height_m
        changed = True

    if event.dose_report is not None:
        changed = _fold_report(state, event.instance_pseudonym, event.dose_report) or changed
    elif event.exposure is not None:
        exp = event.exposure
        capture = event.sop_class_uid.startswith(SECONDARY_CAPTURE_PREFIX)
        if capture and (modality not in DOSE_CAPTURE_MODALITIES or _has_image_dose(state)):
            return state, changed  # a capture's dose counts only for an exam whose images carry none
        prefix = SC_KEY if capture else ""
        if modality == "CT" or (exp.ctdivol_mgy is not None and modality not in ("DX", "CR", "MG", "RF", "XA")):
            changed = _fold_ct_header(state, event, exp, prefix) or changed
        else:
            changed = _fold_projection_header(state, event, exp, prefix) or changed
    return state, changed


def _has_image_dose(state: ExamDoseState) -> bool:
    return any(not k.startswith(SC_KEY) for k in (*state.ct_series, *state.proj))


# ------------------------------------------------------------------------------------------------ summarising


def _mean(values: Iterable[float]) -> float | None:
    vals = list(values)
    return sum(vals) / len(vals) if vals else None


def _groups(reports: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Reports that share irradiation events, transitively; a report without events is a group of its own."""
    parent = list(range(len(reports)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    owner: dict[str, int] = {}
    for i, r in enumerate(reports):
        for ev in r["events"]:
            if ev in owner:
                parent[find(i)] = find(owner[ev])
            else:
                owner[ev] = i
    groups: dict[int, list[dict[str, Any]]] = {}
    for i, r in enumerate(reports):
        groups.setdefault(find(i), []).append(r)
    return list(groups.values())


def _clustered_total(reports: list[dict[str, Any]], total_key: str) -> float | None:
    """Σ over groups of reports sharing events of the group's largest total (shared events count once)."""
    best = [
        max(float(r["totals"][total_key]) for r in g if r["totals"].get(total_key) is not None)
        for g in _groups(reports)
        if any(r["totals"].get(total_key) is not None for r in g)
    ]
    return math.fsum(best) if best else None


def _report_quantity(
    events: dict[str, dict[str, Any]],
    reports: list[dict[str, Any]],
    event_key: str,
    total_key: str | None,
    selected: set[str] | None = None,
) -> float | None:
    """Per group of reports: the total of a report listing every event of the group, else the events' sum plus
    the grouped totals of reports none of whose events carry the value. `selected` limits the summed events (e.g. to
    fluoroscopy events); totals are the reports' own and need no selection."""
    parts: list[float] = []
    for group in _groups(reports):
        union = {uid for r in group for uid in r["events"]}
        if total_key is not None:
            covering = [
                float(r["totals"][total_key])
                for r in group
                if r["totals"].get(total_key) is not None and union <= set(r["events"])
            ]
            if covering:
                parts.append(max(covering))
                continue
        valued = {
            uid: float(events[uid][event_key])
            for uid in union
            if uid in events and events[uid].get(event_key) is not None and (selected is None or uid in selected)
        }
        parts.extend(valued.values())
        if total_key is not None:
            uncovered = [r for r in group if not any(uid in valued for uid in r["events"])]
            rest = _clustered_total(uncovered, total_key)
            if rest is not None:
                parts.append(rest)
    return math.fsum(parts) if parts else None  # exactly rounded: the same total whatever the arrival order


def _ctdi_groups(items: list[tuple[float, str | None]]) -> tuple[PhantomCtdi, ...]:
    groups: dict[str | None, list[float]] = {}
    for value, phantom in items:
        groups.setdefault(phantom, []).append(value)
    return tuple(
        PhantomCtdi(p, max(v), sum(v) / len(v), len(v))
        for p, v in sorted(groups.items(), key=lambda kv: (-max(kv[1]), kv[0] or ""))
    )


def _one_phantom(phantoms: Iterable[str | None]) -> str | None:
    known = {p for p in phantoms if p}
    return MIXED if len(known) > 1 else next(iter(known), None)


def _ssde(
    items: list[dict[str, Any]], headline: tuple[float, str | None] | None, dws_mm: list[float]
) -> tuple[float | None, str | None, float | None]:
    """(SSDE, source, Dw used in mm) — report SSDE, else per-item Dw, else the exam's mean Dw."""
    reported = [float(i["ssde_mgy"]) for i in items if i.get("ssde_mgy") is not None]
    if reported:
        return max(reported), "REPORT", _mean(dws_mm)
    computed = []
    for i in items:
        dw = i.get("water_equivalent_diameter_mm")
        if dw is not None and i.get("ctdivol_mgy") is not None:
            s = ssde_from_dw(float(i["ctdivol_mgy"]), i.get("ctdi_phantom"), float(dw) / 10)
            if s is not None:
                computed.append(s)
    if computed:
        return max(computed), "DW", _mean(dws_mm)
    dw_mm = _mean(dws_mm)
    if headline is not None and dw_mm is not None:
        s = ssde_from_dw(headline[0], headline[1], dw_mm / 10)
        if s is not None:
            return s, "DW", dw_mm
    return None, None, dw_mm


def exam_dose(state: ExamDoseState) -> ExamDose:
    """Summarise the state (see the module docstring for which source and which rule applies)."""
    base = {
        "exam_key": state.exam_key,
        "site_id": state.site_id,
        "modality": state.modality,
        "has_weight": state.patient_weight_kg is not None,
        "has_height": state.patient_height_m is not None,
    }
    if state.reports:
        return ExamDose(source="REPORT", **base, **_from_reports(state))
    header = _from_headers(state)
    if header:
        return ExamDose(source="HEADER", **base, **header)
    return ExamDose(source="NONE", **base)


def _from_reports(state: ExamDoseState) -> dict[str, Any]:
    reports = list(state.reports.values())
    ct_reports = [r for r in reports if r["kind"] == "CT"]
    pj_reports = [r for r in reports if r["kind"] != "CT"]
    ct_events = {uid: e for uid, e in state.events.items() if e["kind"] == "CT"}
    pj_events = {uid: e for uid, e in state.events.items() if e["kind"] != "CT"}
    out: dict[str, Any] = {"report_count": len(reports), "report_event_count": len(state.events)}

    if ct_reports or ct_events:
        out["dlp_total_mgy_cm"] = _report_quantity(ct_events, ct_reports, "dlp_mgy_cm", "ct_dlp_total_mgy_cm")
        out["dlp_phantom"] = _one_phantom(e.get("ctdi_phantom") for e in ct_events.values() if e.get("dlp_mgy_cm"))
        scans = [e for e in ct_events.values() if e.get("acquisition_type") != LOCALIZER]
        groups = _ctdi_groups([(float(e["ctdivol_mgy"]), e.get("ctdi_phantom")) for e in scans if "ctdivol_mgy" in e])
        out.update(_ctdi_fields(groups))
        headline = (groups[0].max_mgy, groups[0].phantom) if groups else None
        dws = [float(e["water_equivalent_diameter_mm"]) for e in scans if "water_equivalent_diameter_mm" in e]
        ssde, src, dw = _ssde(scans, headline, dws)
        out.update(ssde_mgy=ssde, ssde_source=src, water_equivalent_diameter_mm=dw)
        regions: list[str] = []
        for e in scans:
            if e.get("region") and e["region"] not in regions:
                regions.append(e["region"])
        out["target_regions"] = tuple(regions)

    if pj_reports or pj_events:
        out["dap_total_gy_cm2"] = _report_quantity(pj_events, pj_reports, "dap_gy_cm2", "dap_total_gy_cm2")
        out["dose_rp_mgy"] = _report_quantity(pj_events, pj_reports, "dose_rp_mgy", "dose_rp_total_mgy")
        out["entrance_dose_mgy"] = _report_quantity(pj_events, pj_reports, "entrance_exposure_mgy", None)
        fluoro = {uid for uid, e in pj_events.items() if e.get("event_type") == FLUOROSCOPY}
        acquisition = set(pj_events) - fluoro
        out["fluoro_time_s"] = _report_quantity(
            pj_events, pj_reports, "irradiation_duration_s", "fluoro_time_total_s", fluoro
        )
        for name, key, total_key, chosen in (
            ("fluoro_dap_gy_cm2", "dap_gy_cm2", "fluoro_dap_total_gy_cm2", fluoro),
            ("acquisition_dap_gy_cm2", "dap_gy_cm2", "acquisition_dap_total_gy_cm2", acquisition),
            ("fluoro_dose_rp_mgy", "dose_rp_mgy", "fluoro_dose_rp_total_mgy", fluoro),
            ("acquisition_dose_rp_mgy", "dose_rp_mgy", "acquisition_dose_rp_total_mgy", acquisition),
        ):
            out[name] = _report_quantity(pj_events, pj_reports, key, total_key, chosen)
        for side, total_key, name in (
            ("L", "agd_left_mgy", "agd_left_mgy"),
            ("R", "agd_right_mgy", "agd_right_mgy"),
            ("B", "agd_both_mgy", "agd_both_mgy"),
        ):
            on_side = {uid for uid, e in pj_events.items() if e.get("laterality") == side}
            out[name] = _report_quantity(pj_events, pj_reports, "agd_mgy", total_key, on_side)
        sideless = [
            float(e["agd_mgy"]) for e in pj_events.values() if "agd_mgy" in e and e.get("laterality") not in _SIDES
        ]
        out["agd_unknown_side_mgy"] = sum(sideless) if sideless else None
        pj = list(pj_events.values())
        out["exposure_index_mean"] = _mean(float(e["exposure_index"]) for e in pj if "exposure_index" in e)
        out["deviation_index_mean"] = _mean(float(e["deviation_index"]) for e in pj if "deviation_index" in e)
    return out


def _ctdi_fields(groups: tuple[PhantomCtdi, ...]) -> dict[str, Any]:
    if not groups:
        return {}
    top = groups[0]
    return {
        "ctdivol_max_mgy": top.max_mgy,
        "ctdivol_phantom": top.phantom,
        "ctdivol_mean_mgy": top.mean_mgy,
        "ctdivol_by_phantom": groups,
    }


def _from_headers(state: ExamDoseState) -> dict[str, Any]:
    out: dict[str, Any] = {}
    image_dose = _has_image_dose(state)
    ct_series = {k: v for k, v in state.ct_series.items() if not (image_dose and k.startswith(SC_KEY))}
    proj_items = [v for k, v in state.proj.items() if not (image_dose and k.startswith(SC_KEY))]
    if ct_series:
        series = list(ct_series.values())
        groups = _ctdi_groups([(float(s[0]), s[1]) for s in series])
        out.update(_ctdi_fields(groups))
        items = [
            {
                "ctdivol_mgy": s[0],
                "ctdi_phantom": s[1],
                "water_equivalent_diameter_mm": None if s[2] is None else (s[2] + s[3]) / 2,
            }
            for s in series
        ]
        dws = [float(i["water_equivalent_diameter_mm"]) for i in items if i["water_equivalent_diameter_mm"] is not None]
        headline = (groups[0].max_mgy, groups[0].phantom) if groups else None
        ssde, src, dw = _ssde(items, headline, dws)
        out.update(ssde_mgy=ssde, ssde_source=src, water_equivalent_diameter_mm=dw)
        out["header_exposure_count"] = len(series)
    proj = proj_items
    if any(not p.get("processing") for p in proj):
        proj = [p for p in proj if not p.get("processing")]
    if proj:
        out["header_exposure_count"] = out.get("header_exposure_count", 0) + len(proj)

        def total(key: str, items: list[dict[str, Any]] = proj) -> float | None:
            vals = [float(p[key]) for p in items if p.get(key) is not None]
            return sum(vals) if vals else None

        out["dap_total_gy_cm2"] = total("dap")
        out["entrance_dose_mgy"] = total("entrance")
        out["agd_left_mgy"] = total("agd", [p for p in proj if p.get("side") == "L"])
        out["agd_right_mgy"] = total("agd", [p for p in proj if p.get("side") == "R"])
        out["agd_both_mgy"] = total("agd", [p for p in proj if p.get("side") == "B"])
        out["agd_unknown_side_mgy"] = total("agd", [p for p in proj if p.get("side") not in ("L", "R", "B")])
        out["exposure_index_mean"] = _mean(float(p["ei"]) for p in proj if "ei" in p)
        out["deviation_index_mean"] = _mean(float(p["di"]) for p in proj if "di" in p)
    if state.fluoro_time_header_s is not None:
        out["fluoro_time_s"] = state.fluoro_time_header_s
    return out


# ------------------------------------------------------------------------------------------------ completeness


@dataclass(frozen=True, slots=True)
class DoseCompleteness:
    """How many exams have which dose source and patient size data."""

    exams: int
    with_report: int
    header_only: int
    without_dose: int
    with_weight: int
    with_height: int
    with_dw: int


def completeness(doses: Iterable[ExamDose]) -> DoseCompleteness:
    counts = [0] * 7
    for d in doses:
        flags = (
            True,
            d.source == "REPORT",
            d.source == "HEADER",
            d.source == "NONE",
            d.has_weight,
            d.has_height,
            d.water_equivalent_diameter_mm is not None,
        )
        counts = [c + int(f) for c, f in zip(counts, flags, strict=True)]
    return DoseCompleteness(*counts)
