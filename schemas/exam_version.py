"""What an exam's ``version`` means (Exam, ExamDose, DoseAlert.exam_version): generation, then change count.

The streams keep an exam's state for `[streams] retain_days`; a late instance after that (or after a state was
lost) starts a new state — a new *generation* of the same exam. Its versions must outrank every version of the
older generations, or ClickHouse would keep the old row and the late instance would not count; and the sink must
know it is a continuation, to merge it with what is stored instead of replacing it (``sinks.generations``). So a
version is the state's birth time in whole seconds, shifted left by ``GENERATION_BITS``, plus the number of changes
since: within a generation versions count up by one, and a later generation is always higher. Versions below
``1 << GENERATION_BITS`` (written before this convention) are generation 0.
"""

from __future__ import annotations

GENERATION_BITS = 20  # a million changes per generation; birth seconds << 20 stays far below 2**63


def first_version(born_s: float) -> int:
    """The version of a state born at `born_s` (epoch seconds) before its first change (which adds one)."""
    return int(born_s) << GENERATION_BITS


def generation(version: int) -> int:
    return version >> GENERATION_BITS


def change(version: int) -> int:
    """The change count within the version's generation: 1 for a generation's first publication."""
    return version & ((1 << GENERATION_BITS) - 1)
