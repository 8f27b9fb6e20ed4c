"""The edge's counters: what it received, produced, spooled, ignored and rejected, and how deep its spool is.

Logged every ``counters_interval_s`` and published as ``EdgeHeartbeat`` events for the pipeline-health dashboard.
Counts only: no identifiers ever reach them.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field


@dataclass
class EdgeCounters:
    received: int = 0
    produced: int = 0
    spooled: int = 0
    drained: int = 0
    ignored: int = 0
    rejected: int = 0
    out_of_resources: int = 0
    workflow: int = 0
    rejected_reasons: Counter[str] = field(default_factory=Counter)
    # text fields that could not be decoded in their character set (left as a marker) / had control or escape
    # characters removed; logged with the counters (not in the heartbeat schema)
    text_undecodable: int = 0
    text_cleaned: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, name: str, n: int = 1) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + n)

    def reject(self, reason: str) -> None:
        with self._lock:
            self.rejected += 1
            self.rejected_reasons[reason] += 1

    def text_issue(self, reason: str) -> None:
        """``DeidContext.on_text_issue``: "undecodable" or "cleaned"."""
        self.add("text_undecodable" if reason == "undecodable" else "text_cleaned")

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return {
                "received": self.received,
                "produced": self.produced,
                "spooled": self.spooled,
                "drained": self.drained,
                "ignored": self.ignored,
                "rejected": self.rejected,
                "out_of_resources": self.out_of_resources,
            }
