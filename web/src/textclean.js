// CLIP's text cleaning exactly as runtime/tokenizer.py does it (clean_text):
//   ftfy.fix_text -> html.unescape twice -> Python's split()/join -> lower-case
// ftfy.fix_text is ported step by step (ftfy 6: HTML entities, mojibake repair over ten code pages,
// C1 controls, ligatures, character width, curly quotes, line breaks, surrogates, terminal escapes,
// control characters, NFC), with every table and regex taken from the installed Python packages by
// runtime/web_text.py (the site's text_tables.json), so the two sides share one source of truth.

const BOM_KEEPING_UTF8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/** JS string -> Python-style code point array (a lone surrogate stays one element). */
const codePoints = (s) => Array.from(s);

function translate(text, map) {
  let out = "";
  for (const ch of text) {
    const r = map.get(ch);
    out += r === undefined ? ch : r;
  }
  return out;
}

function binaryToBytes(bin) {
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

function strictUtf8(bin) {
  try {
    return BOM_KEEPING_UTF8.decode(binaryToBytes(bin));
  } catch {
    return null;
  }
}

// Python's `$` without MULTILINE: at the end, or before a newline that ends the input.
const pyEnd = (bin, p) => p === bin.length || (p === bin.length - 1 && bin.charCodeAt(p) === 0x0a);
const inRange = (bin, p, lo, hi) => p < bin.length && bin.charCodeAt(p) >= lo && bin.charCodeAt(p) <= hi;

/** ftfy's "utf-8-variants" codec (UTF-8 plus CESU-8 surrogate pairs and Java's C0 80 null); null = error. */
function utf8Variants(bin) {
  const slot = (p, lo, hi) => (inRange(bin, p, lo, hi) ? p + 1 : pyEnd(bin, p) ? p : -1);
  const special = (i) => {
    const b = bin.charCodeAt(i);
    if (b === 0xc0) return slot(i + 1, 0x80, 0x80) >= 0 ? "null" : null;
    if (b !== 0xed) return null;
    const p = slot(i + 1, 0xa0, 0xbf);
    return p >= 0 && slot(p, 0x80, 0xbf) >= 0 ? "surrogate" : null;
  };
  const cesu = (i) => { // CESU8_RE.match at i: ED [A0-AF] [80-BF] ED [B0-BF] [80-BF], each slot or `$`
    let p = i + 1;
    for (const [lo, hi] of [[0xa0, 0xaf], [0x80, 0xbf], [0xed, 0xed], [0xb0, 0xbf], [0x80, 0xbf]]) {
      p = slot(p, lo, hi);
      if (p < 0) return false;
    }
    return true;
  };
  let out = "", pos = 0;
  while (pos < bin.length) {
    let i = pos;
    while (i < bin.length && special(i) === null) i++;
    if (i > pos) {
      const part = strictUtf8(bin.slice(pos, i));
      if (part === null) return null;
      out += part;
      pos = i;
      continue;
    }
    const rest = bin.length - pos;
    if (special(pos) === "null") {
      if (rest < 2) return null;
      out += "\u0000";
      pos += 2;
    } else {
      if (rest < 6 || !cesu(pos)) return null;
      const b = (k) => bin.charCodeAt(pos + k);
      out += String.fromCodePoint(((b(1) & 0x0f) << 16) + ((b(2) & 0x3f) << 10) + ((b(4) & 0x0f) << 6) + (b(5) & 0x3f) + 0x10000);
      pos += 6;
    }
  }
  return out;
}

export class TextCleaner {
  constructor(tables) {
    if (tables.format !== "styleclip-edge-text-tables" || tables.format_version !== 1)
      throw new Error("text_tables.json is not a version-1 styleclip-edge text table file; rebuild the site");
    const t = tables.ftfy;
    this.maxDecodeLength = t.max_decode_length;
    this.pySpaceRun = new RegExp(`[${tables.python_space}]+`, "u");
    this.pyNonSpace = new RegExp(`[^${tables.python_space}]`, "u");
    this.pyEdgeSpace = new RegExp(`^[${tables.python_space}]+|[${tables.python_space}]+$`, "gu");
    this.html5 = new Map(Object.entries(tables.html5));
    this.invalidCharrefs = new Map(Object.entries(tables.invalid_charrefs).map(([k, v]) => [Number(k), v]));
    this.invalidCodepoints = new Set(tables.invalid_codepoints);
    this.charref = /&(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)/gu; // html.unescape's pattern
    this.entities = new Map(Object.entries(t.entities));
    const u = (p, flags = "") => new RegExp(p, "u" + flags);
    this.entityRe = u(t.entity_re, "g");
    this.badness = u(t.badness_re);
    this.utf8Detector = u(t.utf8_detector_re);
    this.utf8DetectorAll = u(t.utf8_detector_re, "g");
    this.c1 = u(t.c1_control_re);
    this.c1All = u(t.c1_control_re, "g");
    this.singleQuotes = u(t.single_quote_re, "g");
    this.doubleQuotes = u(t.double_quote_re, "g");
    this.ansi = u(t.ansi_re, "g");
    this.alteredUtf8 = new RegExp(t.altered_utf8_re); // over binary strings: no 'u'
    this.alteredUtf8All = new RegExp(t.altered_utf8_re, "g");
    this.lossyUtf8All = new RegExp(t.lossy_utf8_re, "g");
    this.aGraveWordAll = new RegExp(t.a_grave_word_re, "g");
    this.ligatures = new Map(Object.entries(t.ligatures));
    this.widthMap = new Map(Object.entries(t.width_map));
    this.controlChars = new Map(Object.entries(t.control_chars));
    this.charmapEncodings = t.charmap_encodings;
    this.codePages = {};
    for (const [name, chars] of Object.entries(t.code_pages)) {
      const encode = new Map();
      chars.forEach((ch, b) => ch !== null && encode.set(ch, b));
      // ENCODING_REGEXES: [\x00-\x19\x1b-\x7f] plus what bytes 0x80-0xff and 0x1a decode to
      const possible = new Set(chars.slice(0x80).concat([chars[0x1a]]).filter((c) => c !== null));
      for (let b = 0; b < 0x80; b++) if (b !== 0x1a) possible.add(String.fromCharCode(b));
      this.codePages[name] = { decode: chars, encode, possible };
    }
  }

  // --- Python's html.unescape --------------------------------------------------------------------
  unescape(s) {
    if (!s.includes("&")) return s;
    return s.replace(this.charref, (_, ref) => {
      if (ref[0] === "#") {
        const hex = ref[1] === "x" || ref[1] === "X";
        const num = parseInt(ref.slice(hex ? 2 : 1).replace(/;$/, ""), hex ? 16 : 10);
        if (this.invalidCharrefs.has(num)) return this.invalidCharrefs.get(num);
        if ((num >= 0xd800 && num <= 0xdfff) || num > 0x10ffff) return "\ufffd";
        if (this.invalidCodepoints.has(num)) return "";
        return String.fromCodePoint(num);
      }
      if (this.html5.has(ref)) return this.html5.get(ref);
      const cps = codePoints(ref); // the longest entity name the reference starts with
      for (let x = cps.length - 1; x > 1; x--) {
        const name = cps.slice(0, x).join("");
        if (this.html5.has(name)) return this.html5.get(name) + cps.slice(x).join("");
      }
      return "&" + ref;
    });
  }

  // --- ftfy.fix_text -----------------------------------------------------------------------------
  fixText(text) {
    let unescapeHtml = "auto";
    const out = [];
    let pos = 0;
    while (pos < text.length) {
      let brk = text.indexOf("\n", pos) + 1;
      if (brk === 0) brk = text.length;
      const cps = codePoints(text.slice(pos, brk));
      if (cps.length > this.maxDecodeLength) brk = pos + cps.slice(0, this.maxDecodeLength).join("").length;
      const segment = text.slice(pos, brk);
      if (unescapeHtml === "auto" && segment.includes("<")) unescapeHtml = false; // ftfy keeps it off from here on
      out.push(this.fixSegment(segment, unescapeHtml));
      pos = brk;
    }
    return out.join("");
  }

  fixSegment(text, unescapeHtml) {
    if (unescapeHtml === "auto" && text.includes("<")) unescapeHtml = false;
    for (;;) {
      const orig = text;
      if (unescapeHtml) text = this.unescapeHtml(text);
      text = this.fixEncoding(text);
      text = this.fixC1Controls(text);
      text = translate(text, this.ligatures);
      text = translate(text, this.widthMap);
      text = text.replace(this.doubleQuotes, '"').replace(this.singleQuotes, "'");
      text = text.replaceAll("\r\n", "\n").replaceAll("\r", "\n").replaceAll("\u2028", "\n")
        .replaceAll("\u2029", "\n").replaceAll("\u0085", "\n");
      text = text.replace(/[\ud800-\udfff]/gu, "\ufffd"); // lone surrogates (pairs are already code points)
      text = text.replace(this.ansi, "");
      text = translate(text, this.controlChars);
      text = text.normalize("NFC");
      if (text === orig) return text;
    }
  }

  unescapeHtml(text) {
    return text.replace(this.entityRe, (m) => {
      if (this.entities.has(m)) return this.entities.get(m);
      if (m.startsWith("&#")) {
        const u = this.unescape(m);
        return u.includes(";") ? m : u;
      }
      return m;
    });
  }

  isBad(text) {
    return this.badness.test(text);
  }

  possibleEncoding(text, encoding) {
    const { possible } = this.codePages[encoding];
    for (const ch of text) if (!possible.has(ch)) return false;
    return true;
  }

  encode(text, encoding) {
    const { encode } = this.codePages[encoding];
    let out = "";
    for (const ch of text) out += String.fromCharCode(encode.get(ch));
    return out;
  }

  decodeCodePage(bin, encoding) {
    const { decode } = this.codePages[encoding];
    let out = "";
    for (let i = 0; i < bin.length; i++) {
      const ch = decode[bin.charCodeAt(i)];
      if (ch === null) return null;
      out += ch;
    }
    return out;
  }

  fixEncoding(text) {
    for (;;) {
      const prev = text;
      text = this.fixEncodingStep(text);
      if (text === prev) return text;
    }
  }

  fixEncodingStep(text) {
    if (text.length === 0 || /^[\x00-\x7f]*$/.test(text) || !this.isBad(text)) return text;
    const possible = [];
    for (const encoding of this.charmapEncodings) {
      if (!this.possibleEncoding(text, encoding)) continue;
      possible.push(encoding);
      let bin = this.encode(text, encoding);
      if (encoding !== "macroman" && this.alteredUtf8.test(bin)) bin = this.restoreByteA0(bin);
      if (encoding.startsWith("sloppy")) bin = bin.replace(this.lossyUtf8All, "\xef\xbf\xbd");
      const fixed = bin.includes("\xed") || bin.includes("\xc0") ? utf8Variants(bin) : strictUtf8(bin);
      if (fixed !== null) return fixed;
    }
    if (this.utf8Detector.test(text)) {
      const fixed = text.replace(this.utf8DetectorAll, (m) =>
        m.length < text.length && this.isBad(m) ? this.fixEncoding(m) : m);
      if (fixed !== text) return fixed;
    }
    if (possible.includes("latin-1")) {
      if (possible.includes("windows-1252")) return text; // as in ftfy (only its sloppy variant is listed)
      const fixed = this.decodeCodePage(this.encode(text, "latin-1"), "windows-1252");
      if (fixed !== null && fixed !== text) return fixed;
    }
    if (this.c1.test(text)) return this.fixC1Controls(text);
    return text;
  }

  restoreByteA0(bin) {
    bin = bin.replace(this.aGraveWordAll, "\xc3\xa0 ");
    return bin.replace(this.alteredUtf8All, (m) => m.replaceAll(" ", "\xa0"));
  }

  fixC1Controls(text) {
    const page = this.codePages["sloppy-windows-1252"].decode;
    return text.replace(this.c1All, (m) => page[m.charCodeAt(0)]);
  }

  // --- runtime/tokenizer.py clean_text -------------------------------------------------------------
  clean(text) {
    text = this.unescape(this.unescape(this.fixText(text)));
    return text.split(this.pySpaceRun).filter(Boolean).join(" ").toLowerCase();
  }

  /** Python's str.strip(). */
  strip(text) {
    return text.replace(this.pyEdgeSpace, "");
  }

  /** Python's `not text.strip()`. */
  isBlank(text) {
    return !this.pyNonSpace.test(text);
  }
}
