"""The tokenizer test corpus, shared by the Python tokenizer's tests and the web page's (tests/test_web.py):
deterministic strings covering CLIP's cleaning, splitting, byte mapping, BPE and truncation."""
import random
import string

from runtime.edit_math import TEMPLATES

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
