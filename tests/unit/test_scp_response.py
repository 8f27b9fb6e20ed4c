"""The edge's own C-STORE-RSP encoder (``scp.encode_store_response``) writes exactly the command set pynetdicom
would, for every response the edge gives; what it does not cover falls back to pynetdicom (None)."""

from __future__ import annotations

import pytest
from pydicom.dataset import Dataset
from pynetdicom.dimse_messages import C_STORE_RSP
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.service_class import StorageServiceClass

from edge_ingest.scp import encode_store_response

CT = "1.2.840.10008.5.1.4.1.1.2"


def pynetdicom_bytes(rsp: C_STORE) -> bytes:
    message = C_STORE_RSP()
    message.primitive_to_message(rsp)
    (pdata,) = list(message.encode_msg(1, 0))
    ((context_id, pdv),) = pdata.presentation_data_value_list
    assert context_id == 1 and pdv[:1] == b"\x03"
    return bytes(pdv[1:])


def response(status: int | Dataset, *, instance: str | None = "1.2.3.4.5", sop_class: str | None = CT,
             message_id: int = 7) -> C_STORE:
    req = C_STORE()
    req.MessageID = message_id
    req.AffectedSOPClassUID = sop_class
    req.AffectedSOPInstanceUID = instance
    rsp = C_STORE()
    rsp.MessageIDBeingRespondedTo = message_id
    rsp.AffectedSOPInstanceUID = req.AffectedSOPInstanceUID
    rsp.AffectedSOPClassUID = req.AffectedSOPClassUID
    # what pynetdicom does with a handler's return value, as in StorageServiceClass.SCP
    return StorageServiceClass(None).validate_status(status, rsp)  # type: ignore[arg-type]


def with_comment(status: int, comment: str) -> Dataset:
    ds = Dataset()
    ds.Status = status
    ds.ErrorComment = comment
    return ds


@pytest.mark.parametrize("rsp", [
    response(0x0000),
    response(0x0000, instance="1.2.3.4"),  # even-length UID: no padding
    response(0x0000, instance="1.2.840.113619.2.55.3.604688119.969.1268071029.320", message_id=65535),
    response(0xA700, message_id=1),
    response(0xC002, sop_class="1.2.840.10008.5.1.4.1.1.88.67"),
    response(with_comment(0xC000, "malformed dataset (ValueError)")),
    response(with_comment(0xC003, "object exceeds 2048 MB limit")),  # even length
    response(with_comment(0xA700, "spool full")),
    response(0x0000, instance=None),
    response(0x0000, sop_class=None),
], ids=lambda r: f"{r.Status:04X}-{r.ErrorComment}-{r.AffectedSOPInstanceUID}")
def test_same_bytes_as_pynetdicom(rsp: C_STORE) -> None:
    assert encode_store_response(rsp) == pynetdicom_bytes(rsp)


def test_what_it_does_not_cover_goes_to_pynetdicom() -> None:
    offending = Dataset()
    offending.Status = 0xC000
    offending.OffendingElement = [0x00100010]
    assert encode_store_response(response(offending)) is None
    assert encode_store_response(response(with_comment(0xC000, "fehlerhafte Größe"))) is None
    request = C_STORE()
    request.MessageID = 3
    assert encode_store_response(request) is None  # a request, not a response
