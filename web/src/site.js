// The site written by `python cli.py web`: site.json (pinned by index.html) lists every file with its
// sha256 and size; nothing fetched is used before crypto.subtle confirms it.

export class SiteError extends Error {}

const REBUILD = "rebuild the site with `python cli.py web BUNDLE --out SITE`";

export async function sha256Hex(buffer) {
  if (!globalThis.crypto?.subtle)
    throw new SiteError("this page needs a secure context (https or localhost) to check its files' sha256");
  const digest = await crypto.subtle.digest("SHA-256", buffer);
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

async function fetchBytes(url) {
  let res;
  try {
    res = await fetch(url); // may be served from index.html's preloads; the hash check follows either way
  } catch (err) {
    throw new SiteError(`cannot fetch ${url} (${err.message}); is the site still served?`);
  }
  if (!res.ok) throw new SiteError(`cannot fetch ${url}: HTTP ${res.status}; ${REBUILD}`);
  return res.arrayBuffer();
}

export async function gunzip(buffer) {
  const stream = new Blob([buffer]).stream().pipeThrough(new DecompressionStream("gzip"));
  return new Response(stream).arrayBuffer();
}

export class Site {
  constructor(base, manifest) {
    this.base = base;
    this.manifest = manifest;
  }

  /** Open the site at `base` whose site.json must have the sha256 `expected`. */
  static async open(base, expected) {
    const bytes = await fetchBytes(new URL("site.json", base));
    if ((await sha256Hex(bytes)) !== expected)
      throw new SiteError(`site.json does not match the sha256 index.html pins (corrupted or modified); ${REBUILD}`);
    const manifest = JSON.parse(new TextDecoder().decode(bytes));
    if (manifest.format !== "styleclip-edge-site" || manifest.format_version !== 1)
      throw new SiteError(`site.json is not a version-1 styleclip-edge site; ${REBUILD}`);
    return new Site(base, manifest);
  }

  /** A listed file's bytes, after checking its size and sha256 against site.json. */
  async bytes(rel) {
    const entry = this.manifest.files[rel];
    if (!entry) throw new SiteError(`${rel} is not listed in site.json; ${REBUILD}`);
    const bytes = await fetchBytes(new URL(rel, this.base));
    if (bytes.byteLength !== entry.size)
      throw new SiteError(`${rel} has ${bytes.byteLength} bytes, site.json says ${entry.size} (truncated or replaced); ${REBUILD}`);
    if ((await sha256Hex(bytes)) !== entry.sha256)
      throw new SiteError(`${rel} does not match its sha256 in site.json (corrupted or modified); refusing to use it; ${REBUILD}`);
    return bytes;
  }

  async json(rel) {
    return JSON.parse(new TextDecoder().decode(await this.bytes(rel)));
  }

  /** A table as {data: Float32Array, shape}. */
  async table(name) {
    const t = this.manifest.tables[name];
    if (!t) throw new SiteError(`this site has no '${name}' table; ${REBUILD}`);
    if (t.dtype !== "float32" || t.byte_order !== "little") throw new SiteError(`table ${name} is ${t.dtype}/${t.byte_order}, expected little-endian float32`);
    const bytes = await this.bytes(t.file);
    const count = t.shape.reduce((a, b) => a * b, 1);
    if (bytes.byteLength !== count * 4) throw new SiteError(`table ${name} has ${bytes.byteLength} bytes for shape [${t.shape}]`);
    const view = new DataView(bytes), data = new Float32Array(count);
    for (let i = 0; i < count; i++) data[i] = view.getFloat32(i * 4, true);
    return { data, shape: t.shape };
  }
}
