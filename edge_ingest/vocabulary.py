"""Descriptions leave the edge only as known words. Pure except for ``VocabularyStore`` (a small SQLite file).

A description is normalised (NFKC), e-mail addresses, dates and long numbers become markers, then it is split
into words: Latin/digit runs, and Chinese/Japanese/Korean runs segmented by longest match on the vocabulary (no
statistical segmenter: a word the vocabulary does not hold is dropped anyway, so a segmenter could only decide
*where* the marker goes). A word is kept when the vocabulary holds it — the shipped CN+EN radiology list, every
term of the exam-type rules, the site's own words — or when it was seen in the descriptions of at least
``[deid] vocabulary_k`` distinct patients (counted at the edge under keyed hashes of word and patient, never the
word itself). Every other word becomes ``MARK``. The identifiers the object itself carries are removed first,
even when they are known words (a patient named 胸 or HEAD).
"""

from __future__ import annotations

import re
import sqlite3
import threading
import tomllib
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from edge_ingest.text import nfkc

MARK = "*"
SHIPPED_VOCABULARY = Path(__file__).with_name("vocabulary_default.txt")
DEFAULT_RULES = Path(__file__).resolve().parents[1] / "streams" / "examtypes_default.toml"

_CJK_CLASS = (
    "\u3040-\u30ff\u3100-\u312f\u3130-\u318f\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
    "\uff66-\uff9f\U00020000-\U0002ffff"
)
_TOKEN = re.compile(rf"([{_CJK_CLASS}]+)|((?:(?![{_CJK_CLASS}])[^\W_])+)|(\s+)|(.)", re.S)
_IS_CJK = re.compile(rf"[{_CJK_CLASS}]")
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_DATE = re.compile(
    r"\d{1,4}\s*[-/.年]\s*\d{1,2}\s*[-/.月]\s*\d{1,4}\s*日?"  # 1952-03-17, 17.03.1952, 1952年3月17日
    r"|\d{1,2}\s*月\s*\d{1,2}\s*日?|\d{2,4}\s*年"  # 3月17日, 1952年
    r"|\d[\d\-/.:]{5,}\d"  # record numbers, phone numbers, times with seconds
)
_SAFE_PUNCT = frozenset("/-+.,()&:;%'#[]<>=~、。·")
_MAX_DIGITS = 3  # "5mm", "64", "320" stay; "1952", "12345" do not
_MAX_LEARNED_CJK = 8
_SPLIT_ALNUM = re.compile(r"\d+|\D+")


@dataclass(frozen=True)
class Identifiers:
    """What one object says about its person and order, normalised for matching inside words."""

    latin: frozenset[str] = frozenset()  # casefolded words (names, IDs, transliterations)
    cjk: tuple[str, ...] = ()  # CJK name parts, longest first

    def __bool__(self) -> bool:
        return bool(self.latin or self.cjk)


_EMPTY = Identifiers()


def _fold_variants(word: str) -> set[str]:
    """A name word and the ways it is transliterated: Müller → müller, muller, mueller."""
    w = nfkc(word).casefold()
    out = {w}
    if not w.isascii():
        german = w.replace("ä", "ae").replace("ö", "oe").replace("ü", "ue").replace("ß", "ss")
        import unicodedata

        stripped = "".join(c for c in unicodedata.normalize("NFKD", w) if not unicodedata.combining(c))
        out |= {german, stripped}
    return out


def identifiers_from(parts: Iterable[str]) -> Identifiers:
    """Build ``Identifiers`` from name parts, IDs and addresses (already split or not)."""
    latin: set[str] = set()
    cjk: set[str] = set()
    for part in parts:
        text = nfkc(part)
        for m in _TOKEN.finditer(text):
            run_cjk, word = m.group(1), m.group(2)
            if run_cjk:
                cjk.add(run_cjk)
                cjk.update(run_cjk)  # each character: 张先生, a lone given-name character
            elif word:
                for v in _fold_variants(word):
                    latin.add(v)
                    latin.update(p for p in _SPLIT_ALNUM.findall(v) if len(p) >= 2)
    return Identifiers(frozenset(latin), tuple(sorted(cjk, key=len, reverse=True)))


@dataclass(frozen=True)
class Filtered:
    text: str | None
    unknown: tuple[str, ...]  # casefolded unknown words that are not identifiers: candidates for learning


class Vocabulary:
    """The known words, plus the ones learned k-anonymously (by keyed hash); filters free text."""

    def __init__(self, latin: Iterable[str], cjk: Iterable[str], *, store: VocabularyStore | None = None) -> None:
        self.latin = frozenset(w.casefold() for w in latin)
        self.cjk = frozenset(cjk)
        self.max_cjk = max((len(t) for t in self.cjk), default=1)
        self.store = store
        self._cache: OrderedDict[tuple[str, Identifiers], Filtered] = OrderedDict()
        self._lock = threading.Lock()
        self._generation = store.generation if store else 0

    def __len__(self) -> int:
        return len(self.latin) + len(self.cjk)

    def _learned(self, word: str) -> bool:
        return self.store is not None and self.store.is_learned(word)

    def filter(self, text: str | None, identifiers: Identifiers = _EMPTY, max_len: int = 64) -> Filtered:
        """Known words of ``text`` (original case, NFKC) with every other word replaced by ``MARK``."""
        if not text:
            return Filtered(None, ())
        key = (text, identifiers)
        with self._lock:
            if self.store is not None and self.store.generation != self._generation:
                self._cache.clear()  # a word was promoted: earlier answers may now keep more
                self._generation = self.store.generation
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
        if hit is not None:
            return Filtered(hit.text[:max_len] if hit.text else None, hit.unknown)
        result = self._filter(text, identifiers)
        with self._lock:
            self._cache[key] = result
            if len(self._cache) > 4096:
                self._cache.popitem(last=False)
        return Filtered(result.text[:max_len] if result.text else None, result.unknown)

    def _filter(self, text: str, ids: Identifiers) -> Filtered:
        text = nfkc(text)
        text = _EMAIL.sub(f" {MARK} ", text)
        text = _DATE.sub(f" {MARK} ", text)
        out: list[str] = []
        unknown: list[str] = []

        def mark() -> None:
            if not out or out[-1] != MARK:
                out.append(MARK)

        for m in _TOKEN.finditer(text):
            run_cjk, word, space, other = m.groups()
            if word:
                folded = word.casefold()
                if folded in ids.latin:
                    mark()
                elif self._known_latin(folded):
                    out.append(word)
                else:
                    if not folded.isdigit() and len(folded) >= 2 and not any(c.isdigit() for c in folded):
                        if self._learned(folded):
                            out.append(word)
                            continue
                        unknown.append(folded)
                    mark()
            elif run_cjk:
                self._cjk_run(run_cjk, ids, out, unknown)
            elif space:
                if out and out[-1] != " ":
                    out.append(" ")
            elif other in _SAFE_PUNCT or other == MARK:
                if other == MARK:
                    mark()
                else:
                    out.append(other)
            elif out and out[-1] != " ":
                out.append(" ")
        result = re.sub(r"\s+", " ", "".join(out)).strip()
        result = re.sub(r"\*(?:\s*\*)+", MARK, result)
        return Filtered(result or None, tuple(dict.fromkeys(unknown)))

    def _known_latin(self, folded: str) -> bool:
        if folded in self.latin:
            return True
        if folded.isdigit():
            return len(folded) <= _MAX_DIGITS
        if len(folded) == 1:
            return folded.isascii()  # one Latin letter (L, R, C in C+, W/O): 26 values identify no one
        parts = _SPLIT_ALNUM.findall(folded)
        if len(parts) < 2:
            return False
        # T2W, 5mm, 120kV, 3D: known words and short numbers glued together
        return all((p.isdigit() and len(p) <= _MAX_DIGITS) or p in self.latin or (len(p) == 1 and p.isascii())
                   for p in parts)

    def _cjk_run(self, run: str, ids: Identifiers, out: list[str], unknown: list[str]) -> None:
        # identifiers first: their characters are taken out before any word is looked up
        blocked = [False] * len(run)
        for ident in ids.cjk:
            start = run.find(ident)
            while start >= 0:
                for i in range(start, start + len(ident)):
                    blocked[i] = True
                start = run.find(ident, start + 1)
        pieces: list[tuple[str, str]] = []  # (kind, text): kind known | unknown | blocked
        i = 0
        n = len(run)
        while i < n:
            if blocked[i]:
                j = i
                while j < n and blocked[j]:
                    j += 1
                pieces.append(("blocked", run[i:j]))
                i = j
                continue
            for size in range(min(self.max_cjk, n - i), 0, -1):
                chunk = run[i : i + size]
                if not any(blocked[i : i + size]) and chunk in self.cjk:
                    pieces.append(("known", chunk))
                    i += size
                    break
            else:
                if pieces and pieces[-1][0] == "unknown":
                    pieces[-1] = ("unknown", pieces[-1][1] + run[i])
                else:
                    pieces.append(("unknown", run[i]))
                i += 1
        # a one-character word next to an unknown one is likelier part of a name (王心怡: 心 is "heart")
        for idx, (kind, chunk) in enumerate(pieces):
            if kind == "known" and len(chunk) == 1:
                near = [pieces[j][0] for j in (idx - 1, idx + 1) if 0 <= j < len(pieces)]
                if "unknown" in near or "blocked" in near:
                    pieces[idx] = ("unknown", chunk)
        merged: list[tuple[str, str]] = []
        for kind, chunk in pieces:
            if merged and kind == "unknown" and merged[-1][0] == "unknown":
                merged[-1] = ("unknown", merged[-1][1] + chunk)
            else:
                merged.append((kind, chunk))
        for kind, chunk in merged:
            if kind == "known":
                out.append(chunk)
            elif kind == "unknown" and len(chunk) <= _MAX_LEARNED_CJK and self._learned(chunk):
                out.append(chunk)
            else:
                if kind == "unknown" and len(chunk) <= _MAX_LEARNED_CJK:
                    unknown.append(chunk)
                if not out or out[-1] != MARK:
                    out.append(MARK)


# ------------------------------------------------------------------------------------------------- word sources


def _words_of(term: str) -> tuple[set[str], set[str]]:
    latin: set[str] = set()
    cjk: set[str] = set()
    for m in _TOKEN.finditer(nfkc(term)):
        if m.group(1):
            cjk.add(m.group(1))
        elif m.group(2):
            latin.add(m.group(2).casefold())
    return latin, cjk


def read_word_file(path: Path) -> tuple[set[str], set[str]]:
    """One term per line (CN or EN, several words allowed); ``#`` starts a comment."""
    latin: set[str] = set()
    cjk: set[str] = set()
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ValueError(
            f"vocabulary file {path}: cannot be read ({exc.strerror}); fix [deid] vocabulary_files"
        ) from None
    for line in lines:
        term = line.split("#", 1)[0].strip()
        if term:
            a, b = _words_of(term)
            latin |= a
            cjk |= b
    return latin, cjk


def rule_terms(path: Path) -> tuple[set[str], set[str]]:
    """Every word the exam-type rules can match on (synonyms, concepts, type names), so mapping holds."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"exam-type rules {path}: cannot be read for the vocabulary ({exc})") from None
    terms: list[str] = []
    terms += list((data.get("synonyms") or {}).keys())
    terms += [v for v in (data.get("synonyms") or {}).values() if isinstance(v, str)]
    for values in (data.get("concepts") or {}).values():
        terms += [v for v in values if isinstance(v, str)]
    for t in (data.get("types") or {}).values():
        if isinstance(t, dict):
            terms += [str(t.get("name_en", "")), str(t.get("name_zh", ""))]
    latin: set[str] = set()
    cjk: set[str] = set()
    for term in terms:
        a, b = _words_of(term)
        latin |= a
        cjk |= b
    # the classifier's punctuation forms: C+, W/O, W/WO
    latin |= {"w", "wo", "c"}
    return latin, cjk


@lru_cache(maxsize=8)
def _shipped(rule_files: tuple[str, ...]) -> tuple[frozenset[str], frozenset[str]]:
    latin, cjk = read_word_file(SHIPPED_VOCABULARY)
    for f in rule_files:
        a, b = rule_terms(Path(f))
        latin |= a
        cjk |= b
    return frozenset(latin), frozenset(cjk)


def build_vocabulary(
    *,
    rule_files: Iterable[str | Path] = (),
    word_files: Iterable[str | Path] = (),
    extra_words: Iterable[str] = (),
    store: VocabularyStore | None = None,
) -> Vocabulary:
    """Shipped list + the exam-type rules (the shipped file always; a site's own too) + the site's words."""
    files = tuple(sorted({str(DEFAULT_RULES), *(str(Path(f)) for f in rule_files)}))
    latin, cjk = (set(s) for s in _shipped(files))
    for f in word_files:
        a, b = read_word_file(Path(f))
        latin |= a
        cjk |= b
    for w in extra_words:
        a, b = _words_of(w)
        latin |= a
        cjk |= b
    return Vocabulary(latin, cjk, store=store)


@lru_cache(maxsize=1)
def default_vocabulary() -> Vocabulary:
    """Shipped words only, learning nothing: for tests and tools that run without an edge data folder."""
    return build_vocabulary()


# ---------------------------------------------------------------------------------------------- the edge's state


@dataclass
class VocabularyStore:
    """k-anonymous word counts and first-seen birth years, by keyed hash / pseudonym only, in one SQLite file.

    ``hasher`` turns a word into a keyed hash (HMAC with the pseudonym key), so the file holds no description
    word in clear. Written once per study and word (an LRU of recent studies absorbs the other instances).
    """

    path: Path
    k: int
    hasher: Callable[[str], str]
    generation: int = 0
    _learned: set[str] = field(default_factory=set)
    _recent: OrderedDict[tuple[str, str], None] = field(default_factory=OrderedDict)
    _years: OrderedDict[str, int] = field(default_factory=OrderedDict)

    def __post_init__(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # a count lost in a power cut only delays a promotion
        self._db.execute("CREATE TABLE IF NOT EXISTS words (word TEXT, patient TEXT, PRIMARY KEY (word, patient))"
                         " WITHOUT ROWID")
        self._db.execute("CREATE TABLE IF NOT EXISTS birth_years (patient TEXT PRIMARY KEY, year INTEGER)")
        self._lock = threading.Lock()
        rows = self._db.execute("SELECT word FROM words GROUP BY word HAVING count(*) >= ?", (self.k,))
        self._learned = {r[0] for r in rows}

    def is_learned(self, word: str) -> bool:
        return bool(self._learned) and self.hasher(word) in self._learned

    def record(self, study: str, patient: str | None, words: Iterable[str]) -> None:
        """Count each unknown word once per (study, word) for this patient; promote at k distinct patients."""
        if not patient:
            return
        with self._lock:
            fresh = []
            for w in words:
                key = (study, w)
                if key in self._recent:
                    continue
                self._recent[key] = None
                fresh.append(self.hasher(w))
            while len(self._recent) > 20000:
                self._recent.popitem(last=False)
            if not fresh:
                return
            self._db.execute("BEGIN")
            self._db.executemany("INSERT OR IGNORE INTO words VALUES (?, ?)", [(h, patient) for h in fresh])
            promoted = False
            for h in fresh:
                if h in self._learned:
                    continue
                (count,) = self._db.execute("SELECT count(*) FROM words WHERE word = ?", (h,)).fetchone()
                if count >= self.k:
                    self._learned.add(h)
                    promoted = True
            self._db.execute("COMMIT")
            if promoted:
                self.generation += 1

    def birth_year(self, patient: str, candidate: int) -> int:
        """The birth year first derived for this patient; later events reuse it so ages only change on 1 Jan."""
        with self._lock:
            year = self._years.get(patient)
            if year is None:
                row = self._db.execute("SELECT year FROM birth_years WHERE patient = ?", (patient,)).fetchone()
                if row is None:
                    self._db.execute("INSERT INTO birth_years VALUES (?, ?)", (patient, candidate))
                    year = candidate
                else:
                    year = int(row[0])
                self._years[patient] = year
                if len(self._years) > 10000:
                    self._years.popitem(last=False)
            else:
                self._years.move_to_end(patient)
            return year

    def close(self) -> None:
        self._db.close()


def is_cjk(text: str) -> bool:
    return bool(_IS_CJK.search(text))
