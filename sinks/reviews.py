"""A physicist's verdict on a DRL exceedance, written to ``dose_reviews`` — the one write the SQL endpoint takes.

While ``radpulse up`` owns chDB, reviews go through the sink's loopback endpoint (``POST /review``, a JSON body
validated here, never SQL); otherwise the database is opened directly. The latest verdict per alert counts.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from schemas.config import Settings
from sinks.clickhouse import Database

VERDICTS = ("patient_size", "repeat", "protocol_issue", "other")
COLUMNS = ("alert_id", "site_id", "reviewed_at", "reviewer", "verdict", "comment")


class ReviewError(ValueError):
    """A review that cannot be recorded; the message says which field and the fix."""


@dataclass(frozen=True)
class Review:
    alert_id: str
    site_id: str
    reviewer: str
    verdict: str
    comment: str = ""

    def validate(self) -> Review:
        if self.verdict not in VERDICTS:
            raise ReviewError(f"verdict {self.verdict!r}: expected one of {', '.join(VERDICTS)}")
        if not self.alert_id or len(self.alert_id) > 64:
            raise ReviewError("alert_id: give the id shown by `radpulse review list`")
        if not self.reviewer or len(self.reviewer) > 64:
            raise ReviewError("reviewer: give your name or staff id (1–64 characters)")
        if len(self.comment) > 2000:
            raise ReviewError("comment: at most 2000 characters")
        return self


def write_review(db: Database, review: Review) -> None:
    r = review.validate()
    exists = db.query(f"SELECT count() FROM dose_alerts WHERE alert_id = '{_q(r.alert_id)}'").rows[0][0]
    if not exists:
        raise ReviewError(f"alert_id {r.alert_id!r} is not a known DRL exceedance; see `radpulse review list`")
    db.insert("dose_reviews", [(r.alert_id, r.site_id, datetime.now(UTC), r.reviewer, r.verdict, r.comment)],
              COLUMNS)


def _q(text: str) -> str:
    return text.replace("\\", "\\\\").replace("'", "\\'")


def record(settings: Settings, review: Review) -> str:
    """Record through the running sink's endpoint, else directly. Returns how ("endpoint" | "direct")."""
    review.validate()
    from sinks.sql import read_token, token_path

    port = settings.clickhouse.query_port
    body = json.dumps(asdict(review)).encode()
    from sinks.errors import EndpointAuthError

    path = token_path(settings)
    try:
        token = read_token(path)  # the sink's endpoint takes writes only with its token and as JSON
    except EndpointAuthError as exc:
        raise ReviewError(str(exc)) from None
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
    request = urllib.request.Request(f"http://127.0.0.1:{port}/review", data=body, method="POST", headers=headers)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never through a proxy
    try:
        with opener.open(request, timeout=30) as resp:
            json.loads(resp.read())
            return "endpoint"
    except urllib.error.HTTPError as exc:
        message = json.loads(exc.read() or b"{}").get("error", str(exc))
        if exc.code == 401:
            message = (f"the sink's endpoint on 127.0.0.1:{port} refused the token in {path} ({message}); run as the "
                       "user that runs radpulse sink, or set [clickhouse] query_token_file")
        raise ReviewError(message) from None
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        pass
    from sinks.clickhouse import connect

    db = connect(settings.clickhouse.url)
    try:
        write_review(db, review)
    finally:
        db.close()
    return "direct"
