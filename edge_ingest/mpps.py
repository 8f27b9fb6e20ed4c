"""MPPS (Modality Performed Procedure Step) N-CREATE / N-SET → ``WorkflowEvent``. Pure except for ``PpsLinks``.

N-CREATE opens a step (status IN PROGRESS) and names the study and accession in its Scheduled Step Attributes;
an N-SET carries only what changed — usually the end time and COMPLETED or DISCONTINUED. ``PpsLinks`` remembers,
per step, the pseudonyms the N-CREATE named (pseudonyms only, never identifiers) so every N-SET event is linked to
its exam too, also across an edge restart.
"""

from __future__ import annotations

import dataclasses
import sqlite3
import threading
import uuid
from datetime import datetime
from pathlib import Path

from pydicom.dataset import Dataset

from edge_ingest.deid import DeidContext, _seq_items, _str, identifying_strings, scrub_text
from edge_ingest.dicomtime import combine_utc
from edge_ingest.pseudonyms import encrypt_accession, pseudonym, uid_pseudonym
from schemas.events import WorkflowEvent

MPPS_SOP_CLASS = "1.2.840.10008.3.1.2.3.3"
_KINDS = {"IN PROGRESS": "pps_in_progress", "COMPLETED": "pps_completed", "DISCONTINUED": "pps_discontinued"}


class PpsLinks:
    """pps pseudonym → (study pseudonym, accession pseudonym, accession token), in a small SQLite file."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False)
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS links (pps TEXT PRIMARY KEY, study TEXT, accession TEXT, token TEXT,"
            " patient TEXT)"
        )
        self._lock = threading.Lock()

    def remember(self, event: WorkflowEvent) -> None:
        if not event.pps_pseudonym:
            return
        with self._lock, self._db:
            self._db.execute(
                "INSERT INTO links VALUES (?, ?, ?, ?, ?) ON CONFLICT(pps) DO UPDATE SET "
                "study=coalesce(excluded.study, study), accession=coalesce(excluded.accession, accession), "
                "token=coalesce(excluded.token, token), patient=coalesce(excluded.patient, patient)",
                (event.pps_pseudonym, event.study_pseudonym, event.accession_pseudonym, event.accession_token,
                 event.patient_pseudonym),
            )

    def complete(self, event: WorkflowEvent) -> WorkflowEvent:
        """Fill the study/accession/patient pseudonyms an N-SET lacks from what its N-CREATE said."""
        if not event.pps_pseudonym or event.study_pseudonym:
            return event
        with self._lock:
            row = self._db.execute(
                "SELECT study, accession, token, patient FROM links WHERE pps = ?", (event.pps_pseudonym,)
            ).fetchone()
        if row is None:
            return event
        return dataclasses.replace(
            event, study_pseudonym=row[0], accession_pseudonym=event.accession_pseudonym or row[1],
            accession_token=event.accession_token or row[2], patient_pseudonym=event.patient_pseudonym or row[3],
        )

    def close(self) -> None:
        self._db.close()


def mpps_event(
    ds: Dataset,
    *,
    message: str,
    pps_uid: str,
    ctx: DeidContext,
    calling_ae: str,
    received_at: datetime,
) -> WorkflowEvent:
    """One N-CREATE or N-SET attribute list → a workflow event (allow-list, like instances)."""
    keys = ctx.keys
    offset = _str(ds, "TimezoneOffsetFromUTC")

    def when(date_kw: str, time_kw: str) -> datetime | None:
        time = _str(ds, time_kw)
        date = _str(ds, date_kw)
        return combine_utc(date, time, offset=offset, site_zone=ctx.site_timezone) if date and time else None

    status = (_str(ds, "PerformedProcedureStepStatus") or "").upper()
    kind = _KINDS.get(status, "pps_update")
    study_uid = accession = None
    for item in _seq_items(ds, "ScheduledStepAttributesSequence")[:1]:
        study_uid = _str(item, "StudyInstanceUID")
        accession = _str(item, "AccessionNumber")
    patient_id = _str(ds, "PatientID")
    pps_pseudo = uid_pseudonym(keys, pps_uid)
    start, end = when("PerformedProcedureStepStartDate", "PerformedProcedureStepStartTime"), when(
        "PerformedProcedureStepEndDate", "PerformedProcedureStepEndTime"
    )
    identity = f"{pps_pseudo}|{message}|{kind}|{start}|{end}"
    tokens = identifying_strings(ds)
    return WorkflowEvent(
        event_id=str(uuid.uuid5(uuid.NAMESPACE_OID, identity)),
        site_id=ctx.site_id,
        edge_id=ctx.edge_id,
        source="MPPS",
        kind=kind,
        received_at=received_at,
        occurred_at=end if kind in ("pps_completed", "pps_discontinued") else start or received_at,
        accession_pseudonym=pseudonym(keys, "accession", accession) if accession else None,
        accession_token=encrypt_accession(keys, accession) if accession else None,
        study_pseudonym=uid_pseudonym(keys, study_uid) if study_uid else None,
        patient_pseudonym=pseudonym(keys, "patient", patient_id) if patient_id else None,
        pps_pseudonym=pps_pseudo,
        message_type=message,
        pps_start_utc=start,
        pps_end_utc=end,
        modality=_str(ds, "Modality"),
        station_name=_str(ds, "PerformedStationName", ctx.on_text_issue),
        station_ae=_str(ds, "PerformedStationAETitle", ctx.on_text_issue),
        calling_ae=calling_ae,
        # N-CREATE and N-SET alike: known words only, minus the step's own identifiers (its scheduled step's too)
        procedure_description=scrub_text(
            _str(ds, "PerformedProcedureStepDescription", ctx.on_text_issue), tokens, ctx.description_max_len,
            ctx.vocabulary,
        ),
    )
