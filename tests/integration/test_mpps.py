"""MPPS over a real association (pynetdicom SCU): N-CREATE then N-SET become linked workflow events."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import generate_uid
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage, ModalityPerformedProcedureStep

from schemas import codec
from schemas.events import InstanceEvent, WorkflowEvent
from tests.helpers import CT_IMAGE, make_image, read_messages

pytestmark = pytest.mark.kafka


def _create_attrs(study_uid: str) -> Dataset:
    ds = Dataset()
    step = Dataset()
    step.StudyInstanceUID = study_uid
    step.AccessionNumber = "MPPSACC42"
    step.RequestedProcedureID = "RPID-SECRET"
    ds.ScheduledStepAttributesSequence = Sequence([step])
    ds.PatientName = "MPPS^CANARYNAME"
    ds.PatientID = "MPPSPID123"
    ds.PatientBirthDate = "19700101"
    ds.PerformedStationAETitle = "CT1"
    ds.PerformedStationName = "CT01"
    ds.PerformedProcedureStepStartDate = "20240301"
    ds.PerformedProcedureStepStartTime = "090000"
    ds.PerformedProcedureStepStatus = "IN PROGRESS"
    ds.PerformedProcedureStepDescription = "CT CHEST for CANARYNAME"
    ds.Modality = "CT"
    ds.PerformedProcedureStepID = "PPS-SECRET"
    return ds


def test_n_create_and_n_set_are_linked_to_the_exam(start_edge, kafka_bootstrap: str, tmp_path: Path) -> None:
    node = start_edge()
    study_uid, pps_uid = generate_uid(), generate_uid()
    ae = AE(ae_title="CT1")
    ae.add_requested_context(ModalityPerformedProcedureStep)
    ae.add_requested_context(CTImageStorage)
    assoc = ae.associate("127.0.0.1", node.port, ae_title="RADPULSE")
    assert assoc.is_established
    status, _ = assoc.send_n_create(_create_attrs(study_uid), ModalityPerformedProcedureStep, pps_uid)
    assert status.Status == 0x0000
    assert assoc.send_c_store(make_image(CT_IMAGE, study_uid=study_uid, AcquisitionDate="20240301",
                                         AcquisitionTime="090500")).Status == 0x0000
    done = Dataset()
    done.PerformedProcedureStepStatus = "COMPLETED"
    done.PerformedProcedureStepEndDate = "20240301"
    done.PerformedProcedureStepEndTime = "091500"
    status, _ = assoc.send_n_set(done, ModalityPerformedProcedureStep, pps_uid)
    assert status.Status == 0x0000
    assoc.release()

    workflow = read_messages(kafka_bootstrap, node.settings.topic("workflow"), expect=2)
    events = [codec.decode(WorkflowEvent, m.value()) for m in workflow]
    instances = read_messages(kafka_bootstrap, node.settings.topic("instances"), expect=1)
    image = codec.decode(InstanceEvent, instances[0].value())
    kinds = {e.kind: e for e in events}
    assert set(kinds) == {"pps_in_progress", "pps_completed"}
    assert {e.study_pseudonym for e in events} == {image.study_pseudonym}  # the N-SET is linked via the N-CREATE
    assert kinds["pps_in_progress"].pps_start_utc.isoformat() == "2024-03-01T01:00:00+00:00"  # Asia/Shanghai
    assert kinds["pps_completed"].pps_end_utc.isoformat() == "2024-03-01T01:15:00+00:00"
    assert kinds["pps_in_progress"].station_name == "CT01" and kinds["pps_in_progress"].modality == "CT"
    blob = b"".join(m.value() + (m.key() or b"") for m in workflow)
    for secret in (b"CANARYNAME", b"MPPSPID123", b"MPPSACC42", b"RPID-SECRET", b"PPS-SECRET", b"19700101",
                   study_uid.encode(), pps_uid.encode()):
        assert secret not in blob, secret
