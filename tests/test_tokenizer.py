"""runtime/tokenizer.py: the torch-free CLIP BPE tokenizer gives open_clip's ids exactly."""
import gzip
import html
import random
import string
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from runtime.edit_math import TEMPLATES
from runtime.tokenizer import ClipTokenizer

open_clip = pytest.importorskip("open_clip")
from open_clip.tokenizer import default_bpe  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

WORDS = (
    "a photo of the face person with blonde hair smiling old young man woman child tanned pale makeup "
    "curly straight bald beard glasses surprised angry sad happy Taylor Swift Obama Hillary Clinton "
    "Mohawk hairstyle hi-top fade bob cut purple red lipstick eyes nose Trump Zuckerberg grumpy "
    "i it he she we they you don can won isn aren wouldn"
).split()
CONTRACTIONS = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'T", "'RE", "'Ve", "'LL", "'D", "'x", "'"]
UNICODE = [
    "café", "naïve", "Ångström", "crème brûlée", "İstanbul", "straße", "STRASSE", "ǅemal", "e\u0301", "ñandú",
    "ſtar", "Kelvin \u212a", "東京", "北京大学", "こんにちは", "ｶﾀｶﾅ", "한국어", "Привет мир", "ЁЖИК", "їжак",
    "مرحبا بالعالم", "שָׁלוֹם", "ελληνικά ΣΊΣΥΦΟΣ", "हिन्दी", "ไทย", "ﬁnd ﬂow", "ＬＯＵＤ　ＮＯＩＳＥＳ", "①②③",
    "x²", "Ⅻ", "٣٤٥", "३", "½", "😀", "👍🏽", "👩🏿‍🔬", "👨‍👩‍👧‍👦", "🏳️‍🌈", "🇯🇵🇫🇷", "❤️", "✔", "©®™",
    "\U0001f9d1\u200d\U0001f91d\u200d\U0001f9d1", "𝒥ohn", "\ud83d\ude00", "\ud83d", "\ufffd", "\ue000",
]
ENTITIES = [
    "&amp;", "&lt;", "&gt;", "&#39;", "&quot;", "&amp;amp;", "&amp;lt;", "&amp;amp;amp;", "&#x2019;", "&#8217;",
    "&nbsp;", "&hellip;", "&eacute;", "&EACUTE;", "&NTILDE;", "&nTILDE;", "&not", "&amp", "&lt", "&#0;",
    "&#128512;", "&bogus;", "&", "&&", "AT&T",
]
MOJIBAKE = [
    "sÃ³", "Ã©tÃ©", "doesnâ€™t", "âœ” No problems", "Ã¼ber", "cafÃ©", "ÃƒÂ©", "â€œquotedâ€\x9d", "Ã\xa0 la",
    "&macr;\\_(ã\x83\x84)_/&macr;", "voilÃ  le travail", "Ð¿Ñ€Ð¸Ð²ÐµÑ‚", "\x80\x93",
]
SPACES = [" ", "  ", "\t", "\n", "\r\n", "\r", "\u00a0", "\u200b", "\u2009", "\u3000", "\u2028", "\u2029", "\x0b",
          "\x0c", "\x1c", "\x1f", "\x85", "\u200d", "\u200e", "\ufeff", "\u2060"]
CONTROLS = ["\x00", "\x07", "\x08", "\x1b[31m", "\x1b[0m", "\x7f", "\x9d", "\u206a", "\ufff9"]
SPECIALS = ["<start_of_text>", "<end_of_text>", "<START_OF_TEXT>", "<End_Of_Text>", "<ſtart_of_text>",
            "x<start_of_text>y", "!<end_of_text>", "<<start_of_text>>", "<start_of_text", "<|endoftext|>", "</w>"]
PROMPTS = ["face", "face with blonde hair", "Taylor Swift", "a man's smiling face", "Émilie & co."]


def _case(rng, s):
    return rng.choice([s, s, s.upper(), s.title(), s.capitalize(), s.swapcase(),
                       "".join(c.upper() if rng.random() < 0.5 else c for c in s)])


def _random_codepoints(rng, n):
    blocks = [(0x20, 0x7F), (0xA0, 0x250), (0x370, 0x530), (0x590, 0x700), (0x900, 0x980), (0x3040, 0x3100),
              (0x4E00, 0x4F00), (0xAC00, 0xAD00), (0xFF00, 0xFFF0), (0x1F300, 0x1F700), (0x2000, 0x2070), (0, 0x20)]
    return "".join(chr(rng.randrange(*rng.choice(blocks))) for _ in range(n))


def corpus():
    """Deterministic strings covering CLIP's cleaning, splitting, byte mapping, BPE and truncation."""
    rng = random.Random(20240601)
    fixed = ["", " ", "   ", "\t\n", "\u00a0\u3000", "\u200b", "a", "A", "0", "!", "'", "'s", "the", "The Rock",
             "hello world", "Hello, World!", "it's", "IT'S", "she'll've", "y'all'd", "rock'n'roll", "3.14159",
             "1,000,000", "2024-06-01", "$100", "50%", "#hashtag", "@user", "e-mail", "foo_bar", "a/b\\c",
             "...", "?!?!", "!!!!!!!!!!!!", "--", "~~~", "(((parens)))", "[x]", "{y}", "<b>bold</b> &amp; more",
             "line1 <tag>\nline2 &amp; &lt; &quot;", "line1 &amp;\nline2 <\nline3 &amp;", "\x1b[36;44mblue\x1b[0m",
             "DON\u2019T \u201cquote\u201d", "don\u2019t", "\u2018s", "x\u0301\u0302\u0303",
             *SPECIALS, *CONTRACTIONS, *UNICODE, *ENTITIES, *MOJIBAKE, *SPACES, *CONTROLS]
    texts = list(fixed)
    texts += [t.upper() for t in fixed] + [t.title() for t in fixed]

    pools = [WORDS] * 4 + [CONTRACTIONS, UNICODE, ENTITIES, MOJIBAKE, CONTROLS, SPECIALS,
                           list(string.punctuation), list(string.digits)]
    for _ in range(700):
        parts = []
        for _ in range(rng.randint(1, 12)):
            pool = rng.choice(pools)
            if pool is WORDS and rng.random() < 0.3:
                parts.append(rng.choice(WORDS) + rng.choice(CONTRACTIONS))
            elif rng.random() < 0.1:
                parts.append(rng.choice(string.punctuation) * rng.randint(2, 6))
            elif rng.random() < 0.1:
                parts.append(str(rng.randint(0, 10 ** rng.randint(1, 12))))
            else:
                parts.append(rng.choice(pool))
        seps = [" "] * 6 + [""] * 2 + SPACES
        text = parts[0]
        for p in parts[1:]:
            text += rng.choice(seps) + p
        texts.append(_case(rng, text))
    texts += [_random_codepoints(rng, rng.randint(1, 30)) for _ in range(200)]
    # too long for the context: ~100-600 tokens of words and punctuation, one of thousands of characters
    texts += [" ".join(rng.choice(WORDS + CONTRACTIONS + UNICODE[:20]) for _ in range(rng.randint(80, 400)))
              for _ in range(20)]
    texts.append(" ".join(rng.choice(WORDS + UNICODE + ENTITIES + list(string.punctuation)) for _ in range(1500)))
    texts.append("".join(rng.choice(string.ascii_lowercase) for _ in range(400)))  # one long word
    texts.append("a" * 2000)
    texts.append("!?" * 300)
    texts.append("7" * 200)
    texts += [tpl.format(p) for tpl in TEMPLATES for p in PROMPTS]
    return texts


@pytest.fixture(scope="module")
def reference():
    return open_clip.get_tokenizer("ViT-B-32")


@pytest.fixture(scope="module")
def tok():
    return ClipTokenizer(default_bpe())


def test_corpus_parity(tok, reference):
    texts = corpus()
    assert len(texts) >= 1000
    assert max(map(len, texts)) > 5000
    ours = tok(texts)
    theirs = reference(texts).numpy()
    assert ours.dtype == np.int64 and ours.shape == theirs.shape == (len(texts), 77)
    bad = [t for t, a, b in zip(texts, ours, theirs) if not np.array_equal(a, b)]
    assert not bad, f"{len(bad)} strings differ, e.g. {bad[:5]!r}"
    assert (ours[:, -1] != 0).sum() >= 20  # the long strings really were truncated ...
    assert np.all(ours[ours[:, -1] != 0, -1] == 49407)  # ... keeping EOT last


def test_encode_parity(tok, reference):
    for text in corpus()[::7]:
        assert tok.encode(text) == reference.encode(text), repr(text)


def test_templates_parity(tok, reference):
    texts = [tpl.format(p) for p in PROMPTS for tpl in TEMPLATES]
    assert len(TEMPLATES) == 79
    np.testing.assert_array_equal(tok(texts), reference(texts).numpy())


def test_ascii_fast_path_matches_ftfy():
    """clean_text skips ftfy for printable ASCII without "&"; that is only right while ftfy leaves it unchanged."""
    import ftfy

    from runtime.tokenizer import clean_text

    chars = [c for c in map(chr, range(0x20, 0x7F)) if c != "&"]
    rng = random.Random(7)
    samples = [a + b for a in chars for b in chars[::3]]
    samples += ["".join(rng.choice(chars) for _ in range(rng.randint(1, 80))) for _ in range(1000)]
    assert [s for s in samples if ftfy.fix_text(s) != s] == []
    for s in samples[::10] + ["x&amp;y", "a\tb", "\x7f", "é"]:
        assert clean_text(s) == " ".join(html.unescape(html.unescape(ftfy.fix_text(s))).split()).lower()


def test_shapes_specials_and_context_length(tok, reference):
    empty = tok("")
    assert empty.shape == (1, 77) and empty.dtype == np.int64
    assert empty[0, :2].tolist() == [49406, 49407] and not empty[0, 2:].any()
    np.testing.assert_array_equal(tok("   \n\t"), empty)
    assert tok([]).shape == (0, 77)
    assert tok.sot_token_id == 49406 and tok.eot_token_id == 49407 and tok.vocab_size == 49408
    texts = corpus()[::11]
    for ctx in (2, 5, 16, 77, 100):
        np.testing.assert_array_equal(tok(texts, context_length=ctx), reference(texts, context_length=ctx).numpy())
    short = ClipTokenizer(default_bpe(), context_length=8)
    np.testing.assert_array_equal(short(texts), reference(texts, context_length=8).numpy())
    assert tok.decode(tok.encode("a photo of a face")) == "a photo of a face "


def test_thread_safe(reference):
    fresh = ClipTokenizer(default_bpe())  # empty cache, so the threads race to fill it
    texts = corpus()[:600]
    expected = dict(zip(texts, reference(texts).numpy()))
    orders = [random.Random(k).sample(texts, len(texts)) for k in range(6)]
    results, errors = [None] * len(orders), []

    def work(k):
        try:
            results[k] = fresh(orders[k])
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(len(orders))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for order, out in zip(orders, results):
        np.testing.assert_array_equal(out, np.stack([expected[t] for t in order]))


def test_missing_or_corrupted_vocabulary(tmp_path):
    missing = tmp_path / "tokenizer" / "bpe_simple_vocab_16e6.txt.gz"
    with pytest.raises(ValueError, match="bpe_simple_vocab_16e6.txt.gz"):
        ClipTokenizer(missing)
    with pytest.raises(ValueError, match="tokenizer"):
        ClipTokenizer(tmp_path / "tokenizer")  # does not exist either
    (tmp_path / "tokenizer").mkdir()
    with pytest.raises(ValueError, match="directory"):
        ClipTokenizer(tmp_path / "tokenizer")

    not_gzip = tmp_path / "plain.txt.gz"
    not_gzip.write_text("#version: 0.2\ni n\n")
    truncated = tmp_path / "truncated.txt.gz"
    truncated.write_bytes(Path(default_bpe()).read_bytes()[:5000])
    too_short = tmp_path / "short.txt.gz"
    too_short.write_bytes(gzip.compress(b"#version: 0.2\ni n\nt h\n"))
    malformed = tmp_path / "malformed.txt.gz"
    lines = gzip.decompress(Path(default_bpe()).read_bytes()).split(b"\n")
    lines[100] = b"onlyone"
    malformed.write_bytes(gzip.compress(b"\n".join(lines)))
    not_utf8 = tmp_path / "latin1.txt.gz"
    not_utf8.write_bytes(gzip.compress(b"#version: 0.2\n\xff\xfe x\n"))
    for path in (not_gzip, truncated, too_short, malformed, not_utf8):
        with pytest.raises(ValueError, match=path.name):
            ClipTokenizer(path)


def test_runtime_import_is_torch_free():
    code = (
        "import sys\n"
        "import runtime.tokenizer as t\n"
        "ids = t.ClipTokenizer(sys.argv[1])(['a photo of a face', 'café &amp; 👍🏽'])\n"
        "assert ids.shape == (2, 77), ids.shape\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'open_clip'))\n"
        "assert not bad, bad\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code, default_bpe()], cwd=ROOT, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
