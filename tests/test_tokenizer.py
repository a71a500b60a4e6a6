"""runtime/tokenizer.py: the torch-free CLIP BPE tokenizer gives open_clip's ids exactly."""
import gzip
import html
import random
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from runtime.edit_math import TEMPLATES
from runtime.tokenizer import ClipTokenizer
from tests.text_corpus import PROMPTS, corpus

open_clip = pytest.importorskip("open_clip")
from open_clip.tokenizer import default_bpe  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

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
