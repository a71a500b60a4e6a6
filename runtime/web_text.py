"""The data the web page's tokenizer (web/src/textclean.js) needs to clean text exactly as runtime/tokenizer.py.

runtime/tokenizer.py cleans a prompt with ftfy.fix_text, html.unescape (twice) and Python's notion of
whitespace before the BPE. The JavaScript port keeps the logic and takes every table from the
installed Python packages through `text_tables()`, so the two cannot drift apart: ftfy's HTML
entities, single-byte code pages, mojibake regexes (translated from Python's to JavaScript's regex
dialect), ligature, width and control-character maps; html.entities.html5 and html's invalid
character references; and the code points Python's `str.isspace`, `re`'s \\s/\\d/\\w and the `regex`
module's \\s cover (JavaScript's own classes differ, e.g. \\w is ASCII-only there).
"""
from __future__ import annotations

import functools
import html
import html.entities
import re

import ftfy
import ftfy.badness
import ftfy.chardata
import ftfy.fixes
import regex

FORMAT = "styleclip-edge-text-tables"
FORMAT_VERSION = 1
# Code pages ftfy encodes to; plain windows-1252 is its strict Latin-1 -> Windows-1252 repair step.
CODE_PAGES = (*ftfy.chardata.CHARMAP_ENCODINGS, "windows-1252")
UNICODE_SIZE = 0x110000
VERBOSE_SPACE = " \t\n\r\v\f"  # what re.VERBOSE skips (sre_parse: ASCII whitespace only)


@functools.lru_cache(maxsize=1)
def _all_code_points() -> str:
    return "".join(map(chr, range(UNICODE_SIZE)))


def _ranges(pattern, flags=0) -> list[tuple[int, int]]:
    """The code point ranges a one-character class `pattern` of the `regex` module matches."""
    return [(m.start(), m.end() - 1) for m in regex.finditer(f"(?:{pattern})+", _all_code_points(), flags)]


def _class(ranges) -> str:
    """A JavaScript (u-flag) character class body for code point ranges."""
    def esc(cp):
        return f"\\u{{{cp:x}}}"
    return "".join(esc(a) if a == b else f"{esc(a)}-{esc(b)}" for a, b in ranges)


@functools.lru_cache(maxsize=1)
def _python_classes() -> dict[str, str]:
    chars = _all_code_points()
    def re_ranges(pattern):
        return [(m.start(), m.end() - 1) for m in re.finditer(f"{pattern}+", chars)]
    return {
        "re_s": _class(re_ranges(r"\s")),  # exactly str.isspace, and so strip() and split()
        "re_d": _class(re_ranges(r"\d")),
        "re_w": _class(re_ranges(r"\w")),
    }


def tokenizer_pattern(pattern: regex.Pattern = None) -> str:
    """runtime/tokenizer.py's split pattern as a JavaScript pattern for the 'gu' flags (no 'i').

    Each class alternative is spelled out with the code points the `regex` module matches for it
    with the pattern's flags (IGNORECASE: U+0345, which folds to a Greek letter, is in no class), and
    each letter of a literal alternative as the characters it matches case-insensitively ('s: also ſ).
    So the page splits as Python does even where the browser's Unicode tables are older or newer.
    """
    from .tokenizer import _PATTERN

    pattern = pattern or _PATTERN
    out = []
    for alt in pattern.pattern.split("|"):
        if alt.startswith("["):
            body, plus = (alt[:-1], "+") if alt.endswith("+") else (alt, "")
            if not body.endswith("]") or "[" in body[1:]:
                raise ValueError(f"cannot translate the tokenizer pattern's alternative {alt!r}")
            out.append(f"[{_class(_ranges(body, pattern.flags))}]{plus}")
        else:
            if any(c in "\\[](){}.*+?^$" for c in alt):
                raise ValueError(f"cannot translate the tokenizer pattern's alternative {alt!r}")
            out.append("".join(_literal(c, pattern.flags) for c in alt))
    return "|".join(out)


def _literal(char: str, flags) -> str:
    matches = [a for a, b in _ranges(regex.escape(char), flags) for a in range(a, b + 1)]
    if len(matches) == 1:
        return char
    return "[" + "".join(f"\\u{{{cp:x}}}" for cp in matches) + "]"


def js_pattern(pattern: str, verbose: bool) -> str:
    """Python `re` pattern (str) -> the same pattern for a JavaScript RegExp with the 'u' flag.

    Handles what ftfy's patterns use: verbose whitespace and comments (kept inside classes), \\s \\d \\w
    (Unicode in Python, so spelled out as classes), \\xNN escapes and literal characters. Anything else
    escaped raises, so a future ftfy pattern with a construct this does not know fails the site build
    instead of matching differently in the page.
    """
    classes = _python_classes()
    expand = {"s": classes["re_s"], "d": classes["re_d"], "w": classes["re_w"]}
    out, i, in_class = [], 0, False
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            nxt = pattern[i + 1]
            if nxt in expand:
                out.append(expand[nxt] if in_class else f"[{expand[nxt]}]")
                i += 2
            elif nxt == "x":
                out.append(f"\\x{pattern[i + 2:i + 4]}")
                i += 4
            elif nxt in "\\[]()|?*+.^$-{}":
                out.append(pattern[i:i + 2])
                i += 2
            else:
                raise ValueError(f"cannot translate the regex escape \\{nxt} in {pattern[:60]!r}")
            continue
        if in_class:
            if c == "]":
                in_class = False
            out.append(c)
        elif verbose and c in VERBOSE_SPACE:
            pass
        elif verbose and c == "#":
            while i < len(pattern) and pattern[i] != "\n":
                i += 1
            continue
        else:
            if c == "[":
                in_class = True
            out.append(c)
        i += 1
    return "".join(out)


def _bytes_pattern(pattern: bytes) -> str:
    """A bytes regex as a JavaScript pattern over 'binary strings' (one char per byte, no 'u' flag)."""
    return pattern.decode("latin-1")


def _code_page(encoding: str) -> list[str | None]:
    """The character each byte decodes to (None where the code page leaves the byte undefined)."""
    chars = []
    for b in range(256):
        try:
            chars.append(bytes([b]).decode(encoding))
        except UnicodeDecodeError:
            chars.append(None)
    return chars


def _charmap(table: dict) -> dict[str, str]:
    """str.translate table -> {char: replacement} (deletions map to '')."""
    return {chr(k): ("" if v is None else v if isinstance(v, str) else chr(v)) for k, v in table.items()}


def text_tables() -> dict:
    """Everything web/src/textclean.js reads (JSON-serializable; ~0.5 MB, ~1 s to build)."""
    chardata, fixes = ftfy.chardata, ftfy.fixes
    classes = _python_classes()
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "versions": {"ftfy": ftfy.__version__, "regex": regex.__version__},
        "python_space": classes["re_s"],  # str.isspace: strip() and split()
        "tokenizer_pattern": tokenizer_pattern(),
        "html5": dict(html.entities.html5),
        "invalid_charrefs": {str(k): v for k, v in html._invalid_charrefs.items()},
        "invalid_codepoints": sorted(html._invalid_codepoints),
        "ftfy": {
            "max_decode_length": ftfy.TextFixerConfig().max_decode_length,
            "charmap_encodings": list(chardata.CHARMAP_ENCODINGS),
            "code_pages": {enc: _code_page(enc) for enc in CODE_PAGES},
            "entities": dict(chardata.HTML_ENTITIES),
            "entity_re": js_pattern(chardata.HTML_ENTITY_RE.pattern, False),
            "badness_re": js_pattern(ftfy.badness.BADNESS_RE.pattern, bool(ftfy.badness.BADNESS_RE.flags & re.VERBOSE)),
            "utf8_detector_re": js_pattern(chardata.UTF8_DETECTOR_RE.pattern, bool(chardata.UTF8_DETECTOR_RE.flags & re.VERBOSE)),
            "c1_control_re": js_pattern(chardata.C1_CONTROL_RE.pattern, False),
            "single_quote_re": js_pattern(chardata.SINGLE_QUOTE_RE.pattern, False),
            "double_quote_re": js_pattern(chardata.DOUBLE_QUOTE_RE.pattern, False),
            "ansi_re": js_pattern(fixes.ANSI_RE.pattern, False),
            "altered_utf8_re": _bytes_pattern(chardata.ALTERED_UTF8_RE.pattern),
            "lossy_utf8_re": _bytes_pattern(chardata.LOSSY_UTF8_RE.pattern),
            "a_grave_word_re": _bytes_pattern(fixes.A_GRAVE_WORD_RE.pattern),
            "ligatures": _charmap(chardata.LIGATURES),
            "width_map": _charmap(chardata.WIDTH_MAP),
            "control_chars": _charmap(chardata.CONTROL_CHARS),
        },
    }
