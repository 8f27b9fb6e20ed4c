"""A small SQL lexer for ClickHouse text: comments, string literals, quoted identifiers, words and ``;``.

Used by the read-only guard (``sql.py``) and to split migration files (``migrate.py``). Pure.
Callers run the text this module hands back (comments removed), never the original, so anything the lexer
misreads is at worst refused, never executed unseen.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["word", "string", "ident", "number", "symbol", "space", "comment", "semicolon"]


class LexError(ValueError):
    """Unterminated string, quoted identifier or comment."""


@dataclass(frozen=True, slots=True)
class Token:
    kind: Kind
    text: str

    @property
    def upper(self) -> str:
        return self.text.upper()


def _quoted_end(sql: str, start: int, quote: str) -> int:
    """Index after the closing quote; backslash escapes and doubled quotes stay inside (ClickHouse rules)."""
    i = start + 1
    while i < len(sql):
        ch = sql[i]
        if ch == "\\":
            i += 2
            continue
        if ch == quote:
            if i + 1 < len(sql) and sql[i + 1] == quote:
                i += 2
                continue
            return i + 1
        i += 1
    raise LexError(f"unterminated {quote}…{quote} starting at character {start + 1}")


def _block_comment_end(sql: str, start: int) -> int:
    depth, i = 0, start
    while i < len(sql) - 1:
        pair = sql[i : i + 2]
        if pair == "/*":
            depth, i = depth + 1, i + 2
        elif pair == "*/":
            depth, i = depth - 1, i + 2
            if depth == 0:
                return i
        else:
            i += 1
    raise LexError(f"unterminated /* comment starting at character {start + 1}")


def lex(sql: str) -> list[Token]:
    """Every token of ``sql``, comments and whitespace included (joined, they give ``sql`` back)."""
    out: list[Token] = []
    i, n = 0, len(sql)
    while i < n:
        ch = sql[i]
        if ch.isspace():
            j = i
            while j < n and sql[j].isspace():
                j += 1
            out.append(Token("space", sql[i:j]))
        elif sql.startswith("--", i) or ch == "#":
            j = sql.find("\n", i)
            j = n if j < 0 else j
            out.append(Token("comment", sql[i:j]))
        elif sql.startswith("/*", i):
            j = _block_comment_end(sql, i)
            out.append(Token("comment", sql[i:j]))
        elif ch == "'":
            j = _quoted_end(sql, i, "'")
            out.append(Token("string", sql[i:j]))
        elif ch in '`"':
            j = _quoted_end(sql, i, ch)
            out.append(Token("ident", sql[i:j]))
        elif ch == ";":
            j = i + 1
            out.append(Token("semicolon", ";"))
        elif ch.isalpha() or ch == "_":
            j = i
            while j < n and (sql[j].isalnum() or sql[j] in "_$"):
                j += 1
            out.append(Token("word", sql[i:j]))
        elif ch.isdigit():
            j = i
            while j < n and (sql[j].isalnum() or sql[j] in "._"):
                j += 1
            out.append(Token("number", sql[i:j]))
        else:
            j = i + 1
            out.append(Token("symbol", ch))
        i = j
    return out


def split_statements(sql: str) -> list[list[Token]]:
    """Statements of ``sql`` as token lists, comments dropped, split on top-level ``;``, empty ones skipped."""
    statements: list[list[Token]] = []
    current: list[Token] = []
    for tok in lex(sql):
        if tok.kind == "comment":
            current.append(Token("space", " "))  # a comment separates tokens like a space does
        elif tok.kind == "semicolon":
            statements.append(current)
            current = []
        else:
            current.append(tok)
    statements.append(current)
    return [s for s in statements if any(t.kind != "space" for t in s)]


def render(tokens: list[Token]) -> str:
    """Statement text from its tokens, whitespace runs collapsed and trimmed."""
    parts: list[str] = []
    for t in tokens:
        if t.kind != "space":
            parts.append(t.text)
        elif parts and parts[-1] != " ":
            parts.append(" ")
    return "".join(parts).strip()


def words(tokens: list[Token]) -> list[Token]:
    """The bare words (keywords and unquoted names) of a statement, in order."""
    return [t for t in tokens if t.kind == "word"]
