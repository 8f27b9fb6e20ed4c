"""`radpulse review` (DRL exceedances: list open ones, record a verdict) and `radpulse dose local-drls`."""

from __future__ import annotations

import argparse
import sys

from schemas.config import load_settings

QUANTITY_COLUMNS = {
    "CTDIVOL": "ctdivol_max_mgy",
    "DLP": "dlp_total_mgy_cm",
    "DAP": "dap_total_gy_cm2",
    "AGD": "agd_max_breast_mgy",
}


def register(sub: argparse._SubParsersAction) -> None:
    review = sub.add_parser("review", help="DRL exceedances: list the open ones, record a physicist's verdict")
    rsub = review.add_subparsers(dest="review_command", required=True)
    ls = rsub.add_parser("list", help="open (unreviewed) exceedances of the latest exam versions")
    ls.add_argument("--limit", type=int, default=50)
    ls.set_defaults(func=run_list)
    rec = rsub.add_parser("record", help="record a verdict; the alert leaves the open list")
    rec.add_argument("alert_id")
    rec.add_argument("--verdict", required=True, choices=["patient_size", "repeat", "protocol_issue", "other"])
    rec.add_argument("--reviewer", required=True, help="your name or staff id")
    rec.add_argument("--comment", default="")
    rec.set_defaults(func=run_record)

    dose = sub.add_parser("dose", help="dose statistics")
    dsub = dose.add_subparsers(dest="dose_command", required=True)
    local = dsub.add_parser("local-drls", help="local DRLs: P75 of per-device median doses, per exam type")
    local.add_argument("--days", type=int, default=365, help="exams of the last N days (default 365)")
    local.add_argument("--min-exams", type=int, default=10, help="per device and exam type (default 10)")
    local.set_defaults(func=run_local_drls)
    cumulative = dsub.add_parser("cumulative", help="patients over a [dose] cumulative_* threshold in the window")
    cumulative.add_argument("--all", action="store_true", help="every patient with dose in the window")
    cumulative.set_defaults(func=run_cumulative)


def _print(columns: list[str], rows: list[list[object]], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for c in columns:
        table.add_column(c)
    for row in rows:
        table.add_row(*["" if v is None else f"{v:.3g}" if isinstance(v, float) else str(v) for v in row])
    Console().print(table)


def run_list(args: argparse.Namespace) -> int:
    from sinks.sql import query

    settings = load_settings(args.config)
    answer = query(settings, f"""
        SELECT alert_id, toString(exam_start_utc) AS exam_start, station_name, exam_type, quantity,
               round(value, 2) AS value, round(drl_value, 2) AS drl, round(ratio, 2) AS ratio, unit, drl_table,
               patient_age_years AS age, patient_weight_kg AS weight_kg, protocol, likely_causes, accession_token
        FROM dose_alerts_open_causes ORDER BY ratio DESC LIMIT {int(args.limit)}""")
    _print(answer.columns, answer.rows, f"open DRL exceedances ({len(answer.rows)} shown)")
    print("Reveal an accession at the hospital with `radpulse reveal TOKEN`; record a verdict with "
          "`radpulse review record ALERT_ID --verdict patient_size|repeat|protocol_issue|other --reviewer NAME`.")
    return 0


def run_record(args: argparse.Namespace) -> int:
    from sinks.reviews import Review, ReviewError, record

    settings = load_settings(args.config)
    try:
        how = record(settings, Review(args.alert_id, settings.site.id, args.reviewer, args.verdict, args.comment))
    except ReviewError as exc:
        print(f"radpulse review: {exc}", file=sys.stderr)
        return 2
    print(f"recorded ({how}): {args.alert_id} → {args.verdict}")
    return 0


def run_local_drls(args: argparse.Namespace) -> int:
    from sinks.sql import query
    from streams.drl import local_drls

    settings = load_settings(args.config)
    rows: list[tuple[str, str, str, float]] = []
    for quantity, column in QUANTITY_COLUMNS.items():
        answer = query(settings, f"""
            SELECT coalesce(station_name, device_id, '?'), exam_type, {column}
            FROM exam_dose_latest
            WHERE NOT not_patient AND exam_type != 'UNMAPPED' AND {column} IS NOT NULL
              AND start_utc >= now() - INTERVAL {int(args.days)} DAY""")
        rows += [(str(r[0]), str(r[1]), quantity, float(r[2])) for r in answer.rows]
    result = local_drls(rows, min_exams=args.min_exams)
    _print(
        ["exam type", "quantity", "local DRL (P75 of device medians)", "P50", "devices", "exams"],
        [[d.exam_type, d.quantity, d.p75_of_device_medians, d.p50, d.n_devices, d.n_exams] for d in result],
        f"local DRLs over the last {args.days} days (devices with ≥ {args.min_exams} exams of a type)",
    )
    return 0


def run_cumulative(args: argparse.Namespace) -> int:
    from sinks.sql import query

    d = load_settings(args.config).dose
    over = (f"ifNull(ct_effective_dose_msv, 0) >= {d.cumulative_effective_dose_msv} OR ifNull(dose_rp_mgy, 0) >= "
            f"{d.cumulative_dose_rp_mgy} OR ifNull(dap_gy_cm2, 0) >= {d.cumulative_dap_gy_cm2}")
    answer = query(load_settings(args.config), f"""
        SELECT patient_pseudonym, exams, arrayStringConcat(modalities, ',') AS modalities, ct_dlp_mgy_cm,
               ct_effective_dose_msv, dap_gy_cm2, dose_rp_mgy, toString(last_exam_utc) AS last_exam
        FROM patient_cumulative_dose(window_days={int(d.cumulative_window_days)})
        WHERE {"1" if args.all else over} ORDER BY ct_effective_dose_msv DESC, dose_rp_mgy DESC LIMIT 200""")
    _print(answer.columns, answer.rows, f"patient cumulative dose, last {d.cumulative_window_days} days "
           f"(thresholds: {d.cumulative_effective_dose_msv} mSv, {d.cumulative_dose_rp_mgy} mGy RP, "
           f"{d.cumulative_dap_gy_cm2} Gy·cm²)")
    return 0
