"""The sinks' exceptions: each message names what failed and how to fix it."""

from __future__ import annotations


class SinkError(Exception):
    """Base of every error the sinks raise on purpose."""


class ClickHouseUrlError(SinkError, ValueError):
    """``[clickhouse] url`` cannot be parsed."""


class EngineLockedError(SinkError):
    """The chDB folder is open in another process (chDB allows one engine per folder and per process)."""


class EngineConflictError(SinkError):
    """This process already runs chDB on another folder (one engine per process)."""


class ClickHouseError(SinkError):
    """A statement failed in ClickHouse or chDB; the message is the engine's, without row data."""


class MigrationError(SinkError):
    """A migration file is malformed, failed, or was edited after it was applied."""


class RefusedQuery(SinkError, ValueError):
    """``radpulse sql`` refused a statement that is not a single read-only query."""


class RowError(SinkError, ValueError):
    """An event decoded but cannot become a row (e.g. a negative version); it is counted and skipped."""


class EndpointAuthError(SinkError):
    """The SQL endpoint refused the request's token or origin, or the token file is missing or unsafe."""
