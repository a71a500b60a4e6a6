"""CLIP's byte-level BPE tokenizer in pure Python (numpy + regex + ftfy; no torch, no open_clip).

Produces the same ids as `open_clip.get_tokenizer("ViT-B-32")` (open_clip's SimpleTokenizer with its
default "lower" cleaning) from the merges file a bundle carries (`tokenizer/bpe_simple_vocab_16e6.txt.gz`):

  clean     ftfy.fix_text -> html.unescape twice -> strip -> collapse whitespace runs -> lower()
  split     <start_of_text> | <end_of_text> | 's 't 're 've 'm 'll 'd | letters+ | one digit | other+
            (case-insensitive, so e.g. "<ſtart_of_text>" also splits as one piece, as in open_clip)
  bytes     each piece's UTF-8 bytes mapped to 256 printable stand-in characters
  BPE       repeatedly merge the adjacent pair with the lowest merge rank; the last symbol ends in </w>
  ids       [SOT 49406] + ids + [EOT 49407], zero-padded to context_length; longer texts are cut to
            context_length with EOT kept as the last token

A literal "<start_of_text>" / "<end_of_text>" in the text becomes the special id, as in open_clip.

Thread safety: the only shared mutable state is the BPE cache, a plain dict that is only ever read
with `dict.get`, written with single-item assignment and emptied with `clear()`; each of those is
atomic in CPython (and internally locked on free-threaded builds), racing writers store the same value
for a key, and a miss merely recomputes, so concurrent calls are safe without a lock.
"""
from __future__ import annotations

import gzip
import html
import zlib
from pathlib import Path

import ftfy
import numpy as np
import regex

__all__ = ["ClipTokenizer", "SOT_TOKEN", "EOT_TOKEN", "DEFAULT_CONTEXT_LENGTH"]

DEFAULT_CONTEXT_LENGTH = 77
SOT_TOKEN = "<start_of_text>"
EOT_TOKEN = "<end_of_text>"
_SPECIALS = (SOT_TOKEN, EOT_TOKEN)
# The merges file's first line is a header; CLIP uses the next 49152 - 256 - 2 lines.
_N_MERGES = 49152 - 256 - 2
_END = "</w>"
# Neither special token contains a regex metacharacter, so they go into the pattern verbatim.
_PATTERN = regex.compile(
    "|".join(_SPECIALS) + r"""|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
    regex.IGNORECASE,
)
_CACHE_LIMIT = 100_000  # distinct pieces kept; the cache is emptied (then refilled) past this


def _byte_alphabet() -> tuple[list[str], list[str]]:
    """The 256 stand-in characters (in vocabulary order, and indexed by byte value). Byte values that are
    printable Latin-1 map to themselves and come first in the vocabulary; the other 68 map to chr(256 + k)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars = {b: chr(b) for b in printable}
    others = [b for b in range(256) if b not in chars]
    chars.update({b: chr(256 + k) for k, b in enumerate(others)})
    return [chars[b] for b in printable + others], [chars[b] for b in range(256)]


def trim_padding(tokens):
    """Token ids [N, L] (numpy or torch) cut after the batch's last non-padding column (at least 2).

    A causal text transformer pooled at end-of-text (every CLIP) gives the same embeddings for the
    cut ids, at a fraction of the cost: prompts are ~10 of the 77 positions."""
    used = np.flatnonzero(np.asarray(tokens != 0).any(0))
    return tokens[:, : max(2, int(used[-1]) + 1 if len(used) else 0)]


def clean_text(text: str) -> str:
    """open_clip's "lower" cleaning: ftfy, HTML-unescape twice, strip, collapse whitespace, lower-case.

    Fast path: printable ASCII without "&" skips ftfy and unescaping, which leave such text unchanged
    (ftfy 6: entity decoding needs "&"; mojibake repair, C1/ligature/width/quote/surrogate fixes and
    NFC touch only non-ASCII; line-break, terminal-escape and control-char fixes only characters
    outside 0x20-0x7E). ftfy costs ~20 us per short prompt, most of a prompt's tokenizing time.
    """
    if not (text.isascii() and text.isprintable() and "&" not in text):
        text = html.unescape(html.unescape(ftfy.fix_text(text)))
    return " ".join(text.split()).lower()


class ClipTokenizer:
    """CLIP BPE tokenizer. `encode(text)` -> ids without SOT/EOT; `tok(texts)` -> int64 [N, context_length]."""

    def __init__(self, vocab_path, context_length: int = DEFAULT_CONTEXT_LENGTH):
        if int(context_length) < 2:
            raise ValueError(f"context_length must be at least 2 (SOT and EOT), got {context_length}")
        self.vocab_path = Path(vocab_path)
        self.context_length = int(context_length)
        merges = self._read_merges(self.vocab_path)

        vocab_order, by_value = _byte_alphabet()
        # byte value -> stand-in char, as a str.translate table over the Latin-1 decoding of the bytes
        self._byte_table = {i: c for i, c in enumerate(by_value)}
        vocab = vocab_order + [c + _END for c in vocab_order] + ["".join(m) for m in merges] + list(_SPECIALS)
        self.encoder: dict[str, int] = {tok: i for i, tok in enumerate(vocab)}  # a later duplicate wins
        self.decoder: dict[int, str] = {i: tok for tok, i in self.encoder.items()}
        self._byte_decoder = {c: b for b, c in enumerate(by_value)}
        self.bpe_ranks: dict[tuple[str, str], int] = {m: r for r, m in enumerate(merges)}
        self.vocab_size = len(vocab)
        self.sot_token_id = self.encoder[SOT_TOKEN]
        self.eot_token_id = self.encoder[EOT_TOKEN]
        self.pad_token_id = 0
        # pieces matched as special tokens map straight to their ids (kept apart from the clearable cache)
        self._special_ids = {tok: (self.encoder[tok],) for tok in _SPECIALS}
        self._cache: dict[str, tuple[int, ...]] = {}

    # ---------------------------------------------------------------- loading
    @staticmethod
    def _read_merges(path: Path) -> list[tuple[str, str]]:
        def bad(why):
            return ValueError(f"CLIP BPE vocabulary {str(path)!r} is missing or corrupted: {why}")

        try:
            with gzip.open(path, "rb") as f:
                text = f.read().decode("utf-8")
        except FileNotFoundError:
            raise bad("no such file") from None
        except IsADirectoryError:
            raise bad("it is a directory") from None
        except (OSError, EOFError, zlib.error) as e:  # gzip.BadGzipFile is an OSError
            raise bad(f"not a readable gzip file ({type(e).__name__}: {e})") from None
        except UnicodeDecodeError as e:
            raise bad(f"not UTF-8 text ({e})") from None
        lines = text.split("\n")
        if len(lines) < _N_MERGES + 1:
            raise bad(f"{len(lines) - 1} merge lines, expected at least {_N_MERGES}")
        merges = []
        for n, line in enumerate(lines[1:_N_MERGES + 1], start=2):
            pair = tuple(line.split())
            if len(pair) != 2:
                raise bad(f"line {n} is not a pair of symbols: {line[:60]!r}")
            merges.append(pair)
        return merges

    # ---------------------------------------------------------------- BPE
    def _bpe(self, piece: str) -> tuple[int, ...]:
        """Ids of one byte-mapped piece (cached)."""
        ids = self._cache.get(piece)
        if ids is not None:
            return ids
        ids = self._special_ids.get(piece)  # specials are plain ASCII, so byte mapping left them unchanged
        if ids is not None:
            return ids
        word = list(piece[:-1]) + [piece[-1] + _END]
        ranks = self.bpe_ranks
        while len(word) > 1:
            best = None
            best_rank = None
            for pair in zip(word, word[1:]):
                r = ranks.get(pair)
                if r is not None and (best_rank is None or r < best_rank):
                    best, best_rank = pair, r
            if best is None:
                break
            first, second = best
            merged = first + second
            out = []
            i, n = 0, len(word)
            while i < n:
                if i < n - 1 and word[i] == first and word[i + 1] == second:
                    out.append(merged)
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            word = out
        ids = tuple(self.encoder[sym] for sym in word)
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[piece] = ids
        return ids

    def _encode(self, text: str, limit: int | None = None) -> list[int]:
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        out: list[int] = []
        table = self._byte_table
        for m in _PATTERN.finditer(clean_text(text)):
            piece = m.group().encode("utf-8").decode("latin-1").translate(table)
            out.extend(self._bpe(piece))
            if limit is not None and len(out) >= limit:
                break
        return out

    # ---------------------------------------------------------------- public API
    def encode(self, text: str) -> list[int]:
        """BPE ids of `text` after CLIP's cleaning, without SOT/EOT and without truncation."""
        return self._encode(text)

    def decode(self, ids) -> str:
        """Text of ids, for debugging; as open_clip's, special ids and padding (id 0 is "!") come out verbatim."""
        syms = "".join(self.decoder[int(i)] for i in ids)
        return bytes(self._byte_decoder[c] for c in syms).decode("utf-8", errors="replace").replace(_END, " ")

    def __call__(self, texts, context_length: int | None = None) -> np.ndarray:
        """int64 [N, context_length]: SOT, ids, EOT, zero padding; too-long texts end in EOT."""
        if isinstance(texts, str):
            texts = [texts]
        else:
            texts = list(texts)
        ctx = int(context_length or self.context_length)
        if ctx < 2:
            raise ValueError(f"context_length must be at least 2 (SOT and EOT), got {ctx}")
        result = np.zeros((len(texts), ctx), dtype=np.int64)
        for row, text in enumerate(texts):
            ids = self._encode(text, limit=ctx - 1)[: ctx - 2]
            result[row, 0] = self.sot_token_id
            result[row, 1:len(ids) + 1] = ids
            result[row, len(ids) + 1] = self.eot_token_id
        return result
