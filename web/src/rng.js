// numpy's `np.random.default_rng(seed).standard_normal(n, dtype=np.float32)`, bit for bit, so the page
// samples the same faces from the same seeds as runtime/editor.py (Editor.sample).
//
//   seed      SeedSequence(seed): the integer as 32-bit words (lowest first), hash-mixed into a
//             4-word pool, then 8 words drawn from the pool = PCG64's 128-bit state and increment
//   bits      PCG64 (XSL-RR 128/64); 32-bit draws use the low half of a 64-bit draw first, then the high
//   normal    numpy's float32 ziggurat (256 layers, 23-bit magnitudes); its tables follow from the
//             ziggurat's two constants (r, v) by the Marsaglia-Tsang recurrence, computed below
//
// The state is BigInt: sampling one 128-dim latent costs well under a millisecond.

const M32 = 0xffffffffn;
const M64 = (1n << 64n) - 1n;
const M128 = (1n << 128n) - 1n;
const PCG_MULT = (2549297995355413924n << 64n) | 4865540595714422341n;

// --- SeedSequence ----------------------------------------------------------------------------
const INIT_A = 0x43b0d7e5, MULT_A = 0x931e8875, INIT_B = 0x8b51f9dd, MULT_B = 0x58f38ded;
const MIX_MULT_L = 0xca01f9dd, MIX_MULT_R = 0x4973f715, XSHIFT = 16, POOL_SIZE = 4;

function seedWords(seed) {
  let n = BigInt(seed);
  if (n < 0n) throw new RangeError(`seeds must be non-negative integers, got ${seed}`);
  if (n === 0n) return [0];
  const words = [];
  for (; n > 0n; n >>= 32n) words.push(Number(n & M32));
  return words;
}

function seedSequenceState(seed, nWords32) {
  const entropy = seedWords(seed);
  let hashA = INIT_A;
  const hashmix = (value) => {
    value = (value ^ hashA) >>> 0;
    hashA = Math.imul(hashA, MULT_A) >>> 0;
    value = Math.imul(value, hashA) >>> 0;
    return (value ^ (value >>> XSHIFT)) >>> 0;
  };
  const mix = (x, y) => {
    const r = (Math.imul(MIX_MULT_L, x) - Math.imul(MIX_MULT_R, y)) >>> 0;
    return (r ^ (r >>> XSHIFT)) >>> 0;
  };
  const pool = new Array(POOL_SIZE);
  for (let i = 0; i < POOL_SIZE; i++) pool[i] = hashmix(i < entropy.length ? entropy[i] : 0);
  for (let src = 0; src < POOL_SIZE; src++)
    for (let dst = 0; dst < POOL_SIZE; dst++)
      if (src !== dst) pool[dst] = mix(pool[dst], hashmix(pool[src]));
  for (let src = POOL_SIZE; src < entropy.length; src++)
    for (let dst = 0; dst < POOL_SIZE; dst++) pool[dst] = mix(pool[dst], hashmix(entropy[src]));
  let hashB = INIT_B;
  const out = [];
  for (let i = 0; i < nWords32; i++) {
    let v = (pool[i % POOL_SIZE] ^ hashB) >>> 0;
    hashB = Math.imul(hashB, MULT_B) >>> 0;
    v = Math.imul(v, hashB) >>> 0;
    out.push((v ^ (v >>> XSHIFT)) >>> 0);
  }
  return out;
}

// --- PCG64 -----------------------------------------------------------------------------------
export class PCG64 {
  constructor(seed) {
    const w = seedSequenceState(seed, 8).map(BigInt);
    const u64 = (i) => w[2 * i] | (w[2 * i + 1] << 32n); // uint32 pairs viewed as little-endian uint64
    const initState = (u64(0) << 64n) | u64(1);
    const initSeq = (u64(2) << 64n) | u64(3);
    this.inc = ((initSeq << 1n) | 1n) & M128;
    this.state = 0n;
    this.step();
    this.state = (this.state + initState) & M128;
    this.step();
    this.half = null; // the high half of the last 64-bit draw, handed out by the next 32-bit draw
  }

  step() {
    this.state = (this.state * PCG_MULT + this.inc) & M128;
  }

  next64() {
    this.step();
    const hi = this.state >> 64n, lo = this.state & M64;
    const x = hi ^ lo, rot = hi >> 58n;
    return ((x >> rot) | (x << ((64n - rot) & 63n))) & M64;
  }

  next32() {
    if (this.half !== null) {
      const v = this.half;
      this.half = null;
      return v;
    }
    const next = this.next64();
    this.half = Number(next >> 32n);
    return Number(next & M32);
  }

  nextFloat() {
    return Math.fround((this.next32() >>> 8) * (1 / 16777216));
  }
}

// --- float32 log1p as Linux's libm computes it -------------------------------------------------
// numpy's tail sampler calls the C library's log1pf, which on glibc is not correctly rounded (it
// differs from fround(Math.log1p(x)) on ~7% of inputs). This is the fdlibm float algorithm that glibc
// uses, every step rounded to float32; web/test checks it on all 2^24 inputs the sampler can pass.
const f32 = Math.fround;
const F32 = new Float32Array(1), I32 = new Int32Array(F32.buffer);
const floatBits = (x) => ((F32[0] = x), I32[0]);
const bitsFloat = (i) => ((I32[0] = i), F32[0]);
const LN2_HI = bitsFloat(0x3f317180), LN2_LO = bitsFloat(0x3717f7d1);
const LP = [0x3f2aaaab, 0x3ecccccd, 0x3e924925, 0x3e638e29, 0x3e3a3325, 0x3e1cd04f, 0x3e178897].map(bitsFloat);

export function log1pf(x) {
  x = f32(x);
  const hx = floatBits(x), ax = hx & 0x7fffffff;
  let k = 1, f = 0, c = 0, hu = 0;
  if (hx < 0x3ed413d7) { // x < 0.41422
    if (ax >= 0x3f800000) return x === -1 ? -Infinity : NaN;
    if (ax < 0x31000000) return ax < 0x24800000 ? x : f32(x - f32(f32(x * x) * 0.5)); // |x| < 2^-29
    if (hx > 0 || hx <= (0xbe95f61f | 0)) { k = 0; f = x; hu = 1; } // -0.2929 < x < 0.41422
  }
  if (hx >= 0x7f800000) return f32(x + x);
  if (k !== 0) {
    let u;
    if (hx < 0x5a000000) {
      u = f32(1 + x);
      hu = floatBits(u);
      k = (hu >> 23) - 127;
      c = k > 0 ? f32(1 - f32(u - x)) : f32(x - f32(u - 1)); // rounding error of 1 + x
      c = f32(c / u);
    } else {
      u = x;
      hu = floatBits(u);
      k = (hu >> 23) - 127;
      c = 0;
    }
    hu &= 0x007fffff;
    if (hu < 0x3504f7) {
      u = bitsFloat(hu | 0x3f800000);
    } else {
      k += 1;
      u = bitsFloat(hu | 0x3f000000);
      hu = (0x00800000 - hu) >> 2;
    }
    f = f32(u - 1);
  }
  const kf = f32(k);
  const hfsq = f32(f32(0.5 * f) * f);
  if (hu === 0) { // |f| < 2^-20
    if (f === 0) return k === 0 ? 0 : f32(f32(kf * LN2_HI) + f32(c + f32(kf * LN2_LO)));
    const R = f32(hfsq * f32(1 - f32(f32(0.66666666666666666) * f)));
    return k === 0 ? f32(f - R) : f32(f32(kf * LN2_HI) - f32(f32(R - f32(f32(kf * LN2_LO) + c)) - f));
  }
  const s = f32(f / f32(2 + f));
  const z = f32(s * s);
  let R = LP[6];
  for (let i = 5; i >= 0; i--) R = f32(LP[i] + f32(z * R));
  R = f32(z * R);
  if (k === 0) return f32(f - f32(hfsq - f32(s * f32(hfsq + R))));
  return f32(f32(kf * LN2_HI) - f32(f32(hfsq - f32(f32(s * f32(hfsq + R)) + f32(f32(kf * LN2_LO) + c))) - f));
}

// --- float32 ziggurat --------------------------------------------------------------------------
const ZIG_R = 3.6541528853610087963519472518; // start of the tail
const ZIG_V = 4.92867323399e-3; // area of each layer
const R_F = f32(ZIG_R);
const INV_R_F = f32(1 / ZIG_R);

function zigguratTables() {
  const m = 2 ** 23; // magnitudes are 23-bit
  const k = new Uint32Array(256), w = new Float32Array(256), f = new Float32Array(256);
  let dn = ZIG_R, tn = dn;
  const q = ZIG_V / Math.exp(-0.5 * dn * dn);
  k[0] = Math.round((dn / q) * m);
  k[1] = 0;
  w[0] = q / m;
  w[255] = dn / m;
  f[0] = 1;
  f[255] = Math.exp(-0.5 * dn * dn);
  for (let i = 254; i >= 1; i--) {
    dn = Math.sqrt(-2 * Math.log(ZIG_V / dn + Math.exp(-0.5 * dn * dn)));
    k[i + 1] = Math.round((dn / tn) * m);
    tn = dn;
    f[i] = Math.exp(-0.5 * dn * dn);
    w[i] = dn / m;
  }
  return { k, w, f };
}
export const ZIGGURAT = zigguratTables();

function standardNormalF(bits) {
  const { k, w, f } = ZIGGURAT;
  for (;;) {
    const r = bits.next32();
    const idx = r & 0xff;
    const sign = (r >>> 8) & 1;
    const rabs = (r >>> 9) & 0x7fffff;
    let x = f32(rabs * w[idx]);
    if (sign) x = -x;
    if (rabs < k[idx]) return x;
    if (idx === 0) {
      for (;;) {
        const xx = f32(-INV_R_F * log1pf(-bits.nextFloat()));
        const yy = f32(-log1pf(-bits.nextFloat()));
        if (f32(yy + yy) > f32(xx * xx)) return (rabs >>> 8) & 1 ? -f32(R_F + xx) : f32(R_F + xx);
      }
    } else if (f32(f32(f32(f[idx - 1] - f[idx]) * bits.nextFloat()) + f[idx]) < Math.exp(-0.5 * x * x)) {
      return x;
    }
  }
}

/** z ~ N(0, I) as numpy's default_rng(seed).standard_normal(n, dtype=float32): Float32Array(n). */
export function standardNormal(seed, n) {
  const bits = new PCG64(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = standardNormalF(bits);
  return out;
}
