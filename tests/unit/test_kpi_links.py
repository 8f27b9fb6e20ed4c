"""The KPI agent's workflow links leave its table once nothing has arrived for them within the retention."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from schemas.events import WorkflowEvent
from streams.kpi_agent import _b64, stale_links

T = datetime(2024, 3, 4, 9, 0, tzinfo=UTC)


def test_workflow_links_older_than_retention_are_stale() -> None:
    def ev(n: int, received: datetime) -> tuple[str, str]:
        e = WorkflowEvent(event_id=f"w{n}", site_id="s", edge_id="e", source="HL7", kind="ordered",
                          received_at=received)
        return e.event_id, _b64(e)

    old, new = T - timedelta(days=20), T
    links = [("acc:old", dict([ev(1, old)])), ("acc:mixed", dict([ev(2, old), ev(3, new)])), ("study:empty", {}),
             ("acc:new", dict([ev(4, new)]))]
    assert stale_links(links, T - timedelta(days=8)) == ["acc:old", "study:empty"]
