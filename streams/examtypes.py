"""Exam-type mapping: free-text descriptions (any language) + modality → a standard exam type. Pure.

The rules live in a user-editable TOML file (``examtypes_default.toml`` is the shipped one), versioned by its
``version`` key and by a digest of its bytes. ``load_rules`` validates it and names the rule, line and fix of any
problem; ``classify`` is a pure function of a ``RuleSet`` and an exam's text.

Pipeline (domain notes §5):

1. **Basic normalisation** of each text: NFKC, upper case, a few punctuation forms rewritten (``C+`` → ``W``,
   ``W/O`` → ``WO``, ``W/WO`` → ``WWO``), split on non-alphanumerics and at every Latin/CJK boundary, so
   "胸部CT平扫" → ``胸部 CT 平扫``. CJK runs are kept whole. ``normalised_hash`` is a short hash of these
   tokens (never of the raw text) and does not depend on the rule file, so the unmapped queue keeps its groups
   across rule edits.
2. **Concepts**: synonyms from the rule file turn tokens into concepts (``ABD`` → ``ABDOMEN``, ``CAP`` →
   ``CHEST ABDOMEN PELVIS``, ``头颅`` → ``HEAD``); multi-word phrases first, longest first; CJK runs are segmented
   by greedy longest match against the Chinese synonyms. Concepts are *regions* (anatomy) or *modifiers*
   (contrast, views, indications, modality words). A text that names a localizer (scout, topogram, 定位像)
   contributes no concepts at all: a "Topogram Chest" series says nothing about the exam's body region.
3. **Sources in tiers**, best first: order (requested procedure + study description), protocol name, series
   descriptions + BodyPartExamined, then RDSR target regions. Free text outranks target regions although the
   domain notes rank coded values first: vendors' target regions are coarse (the Siemens Flash TAP scan reports
   "Abdomen" for a chest-abdomen-pelvis scan). Regions come from one tier at a time, the first tier whose
   regions match a rule; modifiers (low dose, contrast, views) are pooled from every tier, so a "LD Thorax"
   series makes a "CT CHEST" order low-dose.
4. **Ordered rules**: the first rule (in file order) whose modality, ``all``, ``any`` and ``none`` conditions
   hold wins. Precedence is therefore "more specific first": CTA before CT chest, chest-abdomen-pelvis before
   chest or abdomen, low-dose chest before chest. Confidence = rule confidence × tier weight (× 0.8 when the
   modality had to be read from the text).
5. No rule → ``UNMAPPED`` with the hash, for a review queue.
"""

from __future__ import annotations

import difflib
import hashlib
import re
import tomllib
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_RULES_PATH = Path(__file__).with_name("examtypes_default.toml")
UNMAPPED = "UNMAPPED"

# modality code of the exam → the family the rules are written for (CR and DX images are both radiography)
MODALITY_FAMILY: dict[str, str] = {
    "CT": "CT",
    "MR": "MR",
    "CR": "DX",
    "DX": "DX",
    "XR": "DX",
    "MG": "MG",
    "RF": "RF",
    "XA": "XA",
}
FAMILIES = frozenset(MODALITY_FAMILY.values())
_FLUORO_FAMILIES = frozenset({"RF", "XA"})  # one room type often sends the other's modality code
CONTRAST_CONCEPTS = frozenset({"W", "WO", "WWO"})
LOCALIZER_CONCEPT = "LOCALIZER"

# (name, weight) of each source tier, best first
TIERS: tuple[tuple[str, float], ...] = (("order", 1.0), ("protocol", 0.9), ("series", 0.8), ("dose_report", 0.7))
INFERRED_MODALITY_FACTOR = 0.8

_KEY_RE = re.compile(r"^[A-Z][A-Z0-9_]*$")
_RPID_RE = re.compile(r"^RPID[0-9]+$")
_WORD = re.compile(r"[^\W_]+")
# punctuation-level contrast spellings, rewritten before splitting (ASCII boundaries: \b would glue CJK to Latin)
_PRE_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"(?<![A-Z0-9])W\s*/\s*O(?![A-Z0-9])"), " WO "),
    (re.compile(r"(?<![A-Z0-9])(?:W\s*[/&+]\s*WO|WO\s*[/&+]\s*W)(?![A-Z0-9])"), " WWO "),
    (re.compile(r"(?<![A-Z0-9])C\s*\+"), " W "),
)


class RulesError(ValueError):
    """The rule file is unusable; the message names the file, line, rule and the fix."""


def _is_cjk(ch: str) -> bool:
    o = ord(ch)
    return 0x3400 <= o <= 0x9FFF or 0xF900 <= o <= 0xFAFF or 0x20000 <= o <= 0x2FFFF


def basic_tokens(text: str | None) -> list[str]:
    """NFKC, upper case, contrast punctuation rewritten, split on non-alphanumerics and at Latin/CJK boundaries."""
    if not text:
        return []
    text = unicodedata.normalize("NFKC", text).upper()
    for pattern, replacement in _PRE_RULES:
        text = pattern.sub(replacement, text)
    out: list[str] = []
    for run in _WORD.findall(text):
        start = 0
        for i in range(1, len(run)):
            if _is_cjk(run[i]) != _is_cjk(run[i - 1]):
                out.append(run[start:i])
                start = i
        out.append(run[start:])
    return out


@dataclass(frozen=True, slots=True)
class ExamType:
    """One standard exam type."""

    key: str
    name_en: str
    name_zh: str
    modality: str  # family: CT | MR | DX | MG | RF | XA
    drl_key: str | None  # row key in the DRL table (defaults to `key`); None: never compared
    rpid: str | None = None  # RadLex Playbook ID when one fits whatever the contrast
    rpid_wo: str | None = None
    rpid_w: str | None = None
    rpid_wwo: str | None = None

    def rpid_for(self, contrast: str | None) -> str | None:
        """The Playbook ID for this contrast use, else the contrast-independent one, else None."""
        specific = {"WO": self.rpid_wo, "W": self.rpid_w, "WWO": self.rpid_wwo}.get(contrast or "")
        return specific or self.rpid


@dataclass(frozen=True, slots=True)
class Rule:
    """One ordered mapping rule."""

    id: str
    exam_type: str
    modality: frozenset[str]
    all: frozenset[str]
    any: frozenset[str]
    none: frozenset[str]
    confidence: float
    fallback: bool
    line: int | None


@dataclass(frozen=True)
class RuleSet:
    """A validated rule file."""

    version: str
    digest: str  # sha256 of the file's bytes, 12 hex: tells two unversioned edits apart
    path: str
    types: dict[str, ExamType]
    rules: tuple[Rule, ...]
    regions: frozenset[str]
    modifiers: frozenset[str]
    phrases: dict[tuple[str, ...], tuple[str, ...]]  # Latin token sequence → concepts
    cjk: dict[str, tuple[str, ...]]  # CJK term → concepts
    max_phrase: int = 1
    max_cjk: int = 1

    @property
    def concepts(self) -> frozenset[str]:
        return self.regions | self.modifiers

    def exam_type(self, key: str) -> ExamType | None:
        return self.types.get(key)

    def drl_key(self, exam_type: str) -> str | None:
        """The DRL table key for an exam type; None for UNMAPPED, unknown types or types never compared."""
        t = self.types.get(exam_type)
        return t.drl_key if t else None

    def concepts_of(self, text: str | None) -> list[str]:
        """Concepts (and unknown tokens, unchanged) of one text, in order."""
        return _concepts(basic_tokens(text), self)


@dataclass(frozen=True, slots=True)
class Classification:
    """The exam type of one exam and why."""

    exam_type: str  # an ExamType key, or "UNMAPPED"
    rule_id: str  # "" when unmapped
    confidence: float  # 0..1; 0 when unmapped
    normalised_hash: str  # 16 hex of the normalised text (never the text itself): groups the unmapped queue
    ruleset_version: str = ""
    matched_on: str = ""  # tier that supplied the regions: order | protocol | series | dose_report | modifiers
    contrast: str | None = None  # W | WO | WWO | None (not stated)
    rpid: str | None = None
    drl_key: str | None = None

    @property
    def mapped(self) -> bool:
        return self.exam_type != UNMAPPED


# ------------------------------------------------------------------------------------------------ normalising


def _concepts(tokens: Sequence[str], rs: RuleSet) -> list[str]:
    out: list[str] = []
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if _is_cjk(tok[0]):
            out.extend(_segment(tok, rs))
            i += 1
            continue
        for n in range(min(rs.max_phrase, len(tokens) - i), 0, -1):
            mapped = rs.phrases.get(tuple(tokens[i : i + n]))
            if mapped is not None:
                out.extend(mapped)
                i += n
                break
        else:
            out.append(tok)
            i += 1
    return out


def _segment(run: str, rs: RuleSet) -> list[str]:
    """Greedy longest match of known Chinese terms; unknown characters stay together as one residue token."""
    out: list[str] = []
    residue = ""
    i = 0
    while i < len(run):
        for n in range(min(rs.max_cjk, len(run) - i), 0, -1):
            mapped = rs.cjk.get(run[i : i + n])
            if mapped is not None:
                if residue:
                    out.append(residue)
                    residue = ""
                out.extend(mapped)
                i += n
                break
        else:
            residue += run[i]
            i += 1
    if residue:
        out.append(residue)
    return out


def normalised_hash(modality: str | None, tiers: Sequence[Sequence[str | None]]) -> str:
    """Short hash of the basic-normalised tokens per tier (order-free within a tier), independent of the rules."""
    parts = [(modality or "").upper()]
    for name, texts in zip((t[0] for t in TIERS), tiers, strict=True):
        tokens = sorted({tok for text in texts for tok in basic_tokens(text)})
        parts.append(name + ":" + " ".join(tokens))
    return hashlib.blake2b("|".join(parts).encode(), digest_size=8).hexdigest()


# ------------------------------------------------------------------------------------------------ classifying


@dataclass
class _Tier:
    name: str
    weight: float
    regions: set[str] = field(default_factory=set)
    modifiers: set[str] = field(default_factory=set)


def _tier(name: str, weight: float, texts: Iterable[str | None], rs: RuleSet) -> _Tier:
    tier = _Tier(name, weight)
    for text in texts:
        found = {c for c in rs.concepts_of(text) if c in rs.concepts}
        if LOCALIZER_CONCEPT in found:
            continue  # a localizer's text says nothing about the exam's region or technique
        tier.regions |= found & rs.regions
        tier.modifiers |= found & rs.modifiers
    return tier


def _contrast(modifiers: set[str], family: str | None = None) -> str | None:
    if "WWO" in modifiers or {"W", "WO"} <= modifiers:
        return "WWO"
    if "W" in modifiers:
        return "W"
    if "WO" in modifiers:
        return "WO"
    if family == "CT" and "ANGIO" in modifiers:
        return "W"  # a CT angiogram is contrast-enhanced by definition (an MR angiogram need not be)
    return None


def _matches(rule: Rule, family: str, concepts: set[str]) -> bool:
    if family not in rule.modality:
        return False
    if not rule.all <= concepts:
        return False
    if rule.any and not rule.any & concepts:
        return False
    return not rule.none & concepts


def classify(
    ruleset: RuleSet,
    *,
    modality: str | None,
    study_description: str | None = None,
    requested_procedure_description: str | None = None,
    protocol_name: str | None = None,
    series_descriptions: Iterable[str | None] = (),
    body_part: str | None = None,
    target_regions: Iterable[str | None] = (),
) -> Classification:
    """Map one exam to an exam type. `target_regions`: RDSR target regions of non-localizer events."""
    series = list(series_descriptions)
    regions_texts = list(target_regions)
    texts: list[list[str | None]] = [
        [requested_procedure_description, study_description],
        [protocol_name],
        [*series, body_part],
        regions_texts,
    ]
    digest = normalised_hash(modality, texts)
    tiers = [_tier(name, weight, t, ruleset) for (name, weight), t in zip(TIERS, texts, strict=True)]
    modifiers: set[str] = set().union(*(t.modifiers for t in tiers))

    family = MODALITY_FAMILY.get((modality or "").strip().upper())
    factor = 1.0
    if family is None:
        family = next((f for t in tiers for f in sorted(t.modifiers & FAMILIES)), None)
        factor = INFERRED_MODALITY_FACTOR
    unmapped = Classification(UNMAPPED, "", 0.0, digest, ruleset.version, contrast=_contrast(modifiers, family))
    if family is None:
        return unmapped

    # regions from one tier at a time (best first), then modifiers alone for rules that need no region
    candidates = [(t.name, t.weight, t.regions | modifiers) for t in tiers if t.regions]
    modifier_weight = max((t.weight for t in tiers if t.modifiers), default=TIERS[-1][1])
    candidates.append(("modifiers", modifier_weight, set(modifiers)))
    for name, weight, concepts in candidates:
        for rule in ruleset.rules:
            if _matches(rule, family, concepts):
                exam_type = ruleset.types[rule.exam_type]
                contrast = _contrast(modifiers, family)
                return Classification(
                    exam_type=exam_type.key,
                    rule_id=rule.id,
                    confidence=round(rule.confidence * weight * factor, 3),
                    normalised_hash=digest,
                    ruleset_version=ruleset.version,
                    matched_on=name,
                    contrast=contrast,
                    rpid=exam_type.rpid_for(contrast),
                    drl_key=exam_type.drl_key,
                )
    return unmapped


# ------------------------------------------------------------------------------------------------ loading


def _header_lines(text: str, table: str) -> list[int]:
    """1-based line of each ``[[table]]`` header, in order (tomllib reports no positions for valid files)."""
    pattern = re.compile(r"^\s*\[\[\s*" + re.escape(table) + r"\s*\]\]")
    return [n for n, line in enumerate(text.splitlines(), 1) if pattern.match(line)]


def _suggest(word: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, sorted(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


class _Checker:
    def __init__(self, path: str, text: str) -> None:
        self.path = path
        self.text = text

    def fail(self, where: str, line: int | None, problem: str, fix: str) -> RulesError:
        at = f"{self.path}:{line}" if line else self.path
        return RulesError(f"{at}: {where}: {problem}; {fix}")


def _str_list(value: Any, chk: _Checker, where: str, line: int | None, name: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise chk.fail(where, line, f"{name} must be a list of non-empty strings", f'write e.g. {name} = ["CHEST"]')
    return [v.strip().upper() for v in value]


def _optional_str(value: Any, chk: _Checker, where: str, line: int | None, name: str) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise chk.fail(where, line, f"{name} must be a string", f'write {name} = "..." or leave it out')
    return value.strip()


def load_rules(path: str | Path | None = None) -> RuleSet:
    """Read and validate a rule file (default: the shipped ``examtypes_default.toml``)."""
    file = Path(path) if path is not None else DEFAULT_RULES_PATH
    try:
        raw = file.read_bytes()
    except OSError as exc:
        raise RulesError(f"{file}: cannot read the exam-type rules ({exc.strerror}); check the path") from exc
    text = raw.decode("utf-8", errors="replace")
    chk = _Checker(str(file), text)
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RulesError(f"{file}: not valid TOML ({exc}); fix the syntax at that line") from exc

    version = doc.get("version")
    if not isinstance(version, str) or not version.strip():
        fix = 'add e.g. version = "2025.06-1" and bump it on every edit'
        raise chk.fail("top level", None, "missing `version`", fix)

    concepts = doc.get("concepts") or {}
    regions = frozenset(_str_list(concepts.get("regions"), chk, "[concepts]", None, "regions"))
    modifiers = frozenset(_str_list(concepts.get("modifiers"), chk, "[concepts]", None, "modifiers"))
    if not regions:
        raise chk.fail("[concepts]", None, "no regions declared", 'add regions = ["HEAD", "CHEST", ...]')
    both = regions & modifiers
    if both:
        raise chk.fail("[concepts]", None, f"{sorted(both)} are both regions and modifiers", "keep each in one list")
    missing = (CONTRAST_CONCEPTS | {LOCALIZER_CONCEPT}) - modifiers
    if missing:
        raise chk.fail("[concepts]", None, f"modifiers lack {sorted(missing)}", "the classifier needs them; add them")
    known = regions | modifiers

    phrases: dict[tuple[str, ...], tuple[str, ...]] = {}
    cjk: dict[str, tuple[str, ...]] = {}
    synonyms = doc.get("synonyms") or {}
    if not isinstance(synonyms, dict):
        raise chk.fail("[synonyms]", None, "must be a table", 'write [synonyms] then lines like "ABD" = "ABDOMEN"')
    for key, value in synonyms.items():
        where = f"synonym {key!r}"
        if not isinstance(value, str):
            raise chk.fail(where, None, "value must be a string of concepts", f'write "{key}" = "CHEST"')
        targets = tuple(value.upper().split())
        for target in targets:
            if target not in known:
                raise chk.fail(
                    where,
                    None,
                    f"maps to unknown concept {target!r}{_suggest(target, known)}",
                    "use a concept from [concepts] or add it there",
                )
        tokens = basic_tokens(key)
        if not tokens:
            raise chk.fail(where, None, "has no letters or digits", "remove it")
        kinds = {_is_cjk(t[0]) for t in tokens}
        if kinds == {True}:
            if len(tokens) != 1:
                raise chk.fail(where, None, "Chinese terms must be one run without spaces", "remove the spaces")
            cjk[tokens[0]] = targets
        elif kinds == {False}:
            phrases[tuple(tokens)] = targets
        else:
            raise chk.fail(where, None, "mixes Chinese and Latin text", "split it into a Chinese and a Latin synonym")

    type_lines = _header_lines(text, "type")
    types: dict[str, ExamType] = {}
    for i, item in enumerate(doc.get("type") or []):
        line = type_lines[i] if i < len(type_lines) else None
        key = item.get("key")
        where = f"type #{i + 1} ({key!r})"
        if not isinstance(key, str) or not _KEY_RE.match(key):
            raise chk.fail(where, line, "key must be upper case letters, digits and _", 'e.g. key = "CT_HEAD"')
        if key in types or key == UNMAPPED:
            raise chk.fail(where, line, f"duplicate or reserved key {key!r}", "give each type its own key")
        family = item.get("modality")
        if family not in FAMILIES:
            raise chk.fail(where, line, f"modality {family!r} unknown", f"use one of {sorted(FAMILIES)}")
        names = {n: _optional_str(item.get(n), chk, where, line, n) for n in ("name_en", "name_zh")}
        for n, v in names.items():
            if not v:
                raise chk.fail(where, line, f"missing {n}", f'add {n} = "..." (shown on dashboards)')
        rpids = {n: _optional_str(item.get(n), chk, where, line, n) for n in ("rpid", "rpid_wo", "rpid_w", "rpid_wwo")}
        for n, v in rpids.items():
            if v is not None and not _RPID_RE.match(v):
                fix = 'use "RPID<digits>" or leave it out'
                raise chk.fail(where, line, f"{n} {v!r} is not a RadLex Playbook ID", fix)
        drl = item.get("drl_key", key)
        if drl is not None and not (isinstance(drl, str) and (drl == "" or _KEY_RE.match(drl))):
            raise chk.fail(where, line, f"drl_key {drl!r} invalid", 'use an upper-case key, or "" to never compare')
        types[key] = ExamType(
            key=key,
            name_en=str(names["name_en"]),
            name_zh=str(names["name_zh"]),
            modality=family,
            drl_key=drl or None,
            **rpids,
        )
    if not types:
        raise chk.fail("top level", None, "no [[type]] tables", "define the exam types before the rules")

    rule_lines = _header_lines(text, "rule")
    rules: list[Rule] = []
    ids: set[str] = set()
    for i, item in enumerate(doc.get("rule") or []):
        line = rule_lines[i] if i < len(rule_lines) else None
        rid = item.get("id")
        where = f"rule #{i + 1} ({rid!r})"
        if not isinstance(rid, str) or not rid.strip():
            raise chk.fail(where, line, "missing id", 'add id = "ct.chest" (ids are stored with each exam)')
        if rid in ids:
            raise chk.fail(where, line, f"duplicate id {rid!r}", "ids must be unique")
        ids.add(rid)
        target = item.get("exam_type")
        if target not in types:
            raise chk.fail(
                where,
                line,
                f"exam_type {target!r} is not a [[type]]{_suggest(str(target), types)}",
                "define the type or fix the key",
            )
        mods = frozenset(_str_list(item.get("modality"), chk, where, line, "modality"))
        if not mods or not mods <= FAMILIES:
            raise chk.fail(where, line, f"modality {sorted(mods)} invalid", f"use some of {sorted(FAMILIES)}")
        family = types[target].modality
        if family not in mods and not (family in _FLUORO_FAMILIES and mods & _FLUORO_FAMILIES):
            raise chk.fail(
                where, line, f"maps {sorted(mods)} exams to {target}, a {family} type", "fix the modality or the type"
            )
        conds = {n: frozenset(_str_list(item.get(n), chk, where, line, n)) for n in ("all", "any", "none")}
        for n, values in conds.items():
            for v in sorted(values - known):
                raise chk.fail(
                    where,
                    line,
                    f"{n} names unknown concept {v!r}{_suggest(v, known)}",
                    "use a concept from [concepts] or add it there",
                )
        fallback = bool(item.get("fallback", False))
        if not fallback and not (conds["all"] or conds["any"]):
            raise chk.fail(where, line, "has no all/any condition", "add one, or set fallback = true to match any text")
        confidence = item.get("confidence", 0.9)
        if not isinstance(confidence, int | float) or isinstance(confidence, bool) or not 0 < confidence <= 1:
            raise chk.fail(where, line, f"confidence {confidence!r} out of range", "use a number in (0, 1]")
        rules.append(
            Rule(rid, target, mods, conds["all"], conds["any"], conds["none"], float(confidence), fallback, line)
        )

    return RuleSet(
        version=version.strip(),
        digest=hashlib.sha256(raw).hexdigest()[:12],
        path=str(file),
        types=types,
        rules=tuple(rules),
        regions=regions,
        modifiers=modifiers,
        phrases=phrases,
        cjk=cjk,
        max_phrase=max((len(k) for k in phrases), default=1),
        max_cjk=max((len(k) for k in cjk), default=1),
    )
