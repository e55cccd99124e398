// libos:tool -- the built-in module every tool imports (DESIGN.md section 6).
//
// `defineTool(spec)` checks a tool's shape when its module is evaluated, so a mistake
// is a TypeError that names the field instead of a confusing failure on the first
// call, and returns the spec frozen. `sha256Hex` and `truncate` are helpers tools
// commonly need and a bare engine lacks (no TextEncoder, no crypto).
//
// Keep this file ASCII: it is embedded in the binary.

const NAME = /^[a-z][a-z0-9_]{0,63}$/;
const SPEC_FIELDS = ["name", "description", "input", "output", "capabilities", "run", "tests"];
const TEST_FIELDS = ["name", "args", "mocks", "expect", "expectError", "expectCalls"];

function kind(value) {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  return typeof value === "object" ? "an object" : `a ${typeof value}`;
}

function isPlainObject(value) {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function fail(field, message) {
  throw new TypeError(`defineTool: ${field} ${message}`);
}

// Freezes data reachable from `value` (not functions), so a registered tool's
// schema and tests cannot change after the host has read them.
function deepFreeze(value) {
  if (typeof value === "object" && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const key of Object.keys(value)) deepFreeze(value[key]);
  }
  return value;
}

function checkTest(test, index) {
  const field = `tests[${index}]`;
  if (!isPlainObject(test)) fail(field, `must be an object, got ${kind(test)}`);
  for (const key of Object.keys(test)) {
    if (!TEST_FIELDS.includes(key)) {
      fail(`${field}.${key}`, `is not a test field (expected one of ${TEST_FIELDS.join(", ")})`);
    }
  }
  if (typeof test.name !== "string" || test.name.length === 0) {
    fail(`${field}.name`, `must be a non-empty string, got ${kind(test.name)}`);
  }
  if (test.mocks !== undefined && !Array.isArray(test.mocks)) {
    fail(`${field}.mocks`, `must be an array of mock rules, got ${kind(test.mocks)}`);
  }
  if (test.expectCalls !== undefined && !Array.isArray(test.expectCalls)) {
    fail(`${field}.expectCalls`, `must be an array, got ${kind(test.expectCalls)}`);
  }
  if (test.expectError !== undefined && typeof test.expectError !== "string") {
    fail(`${field}.expectError`, `must be an error class name, got ${kind(test.expectError)}`);
  }
  if ("expect" in test && test.expectError !== undefined) {
    fail(field, "has both expect and expectError; a run either returns or throws");
  }
}

export function defineTool(spec) {
  if (!isPlainObject(spec)) throw new TypeError(`defineTool: the spec must be an object, got ${kind(spec)}`);
  for (const key of Object.keys(spec)) {
    if (!SPEC_FIELDS.includes(key)) {
      fail(key, `is not a tool field (expected one of ${SPEC_FIELDS.join(", ")})`);
    }
  }
  if (typeof spec.name !== "string" || !NAME.test(spec.name)) {
    const got = typeof spec.name === "string" ? JSON.stringify(spec.name) : kind(spec.name);
    fail("name", `must match ${NAME} (lower case, digits, _), got ${got}`);
  }
  if (typeof spec.description !== "string" || spec.description.trim().length === 0) {
    fail("description", `must be a non-empty string, got ${kind(spec.description)}`);
  }
  if (!isPlainObject(spec.input)) fail("input", `must be a JSON Schema object, got ${kind(spec.input)}`);
  if (spec.output !== undefined && !isPlainObject(spec.output)) {
    fail("output", `must be a JSON Schema object, got ${kind(spec.output)}`);
  }
  if (!Array.isArray(spec.capabilities)) {
    fail("capabilities", `must be an array of capability strings, got ${kind(spec.capabilities)}`);
  }
  spec.capabilities.forEach((cap, i) => {
    if (typeof cap !== "string" || cap.length === 0) {
      fail(`capabilities[${i}]`, `must be a capability string, got ${kind(cap)}`);
    }
  });
  if (typeof spec.run !== "function") fail("run", `must be a function, got ${kind(spec.run)}`);
  if (spec.tests !== undefined) {
    if (!Array.isArray(spec.tests)) fail("tests", `must be an array, got ${kind(spec.tests)}`);
    spec.tests.forEach(checkTest);
  }
  for (const key of SPEC_FIELDS) {
    if (key !== "run") deepFreeze(spec[key]);
  }
  return Object.freeze(spec);
}

// ---- UTF-8 ----------------------------------------------------------------------------

// The UTF-8 bytes of one code point starting at `i`, and how many UTF-16 units it
// spans. A lone surrogate encodes as U+FFFD, as TextEncoder does.
function codePointAt(text, i) {
  const c = text.charCodeAt(i);
  if (c >= 0xd800 && c <= 0xdbff && i + 1 < text.length) {
    const d = text.charCodeAt(i + 1);
    if (d >= 0xdc00 && d <= 0xdfff) return { cp: 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00), units: 2 };
  }
  if (c >= 0xd800 && c <= 0xdfff) return { cp: 0xfffd, units: 1 };
  return { cp: c, units: 1 };
}

function utf8Width(cp) {
  return cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
}

function utf8Length(text) {
  let bytes = 0;
  for (let i = 0; i < text.length;) {
    const { cp, units } = codePointAt(text, i);
    bytes += utf8Width(cp);
    i += units;
  }
  return bytes;
}

function utf8Encode(text) {
  const out = new Uint8Array(utf8Length(text));
  let j = 0;
  for (let i = 0; i < text.length;) {
    const { cp, units } = codePointAt(text, i);
    i += units;
    if (cp < 0x80) {
      out[j++] = cp;
    } else if (cp < 0x800) {
      out[j++] = 0xc0 | (cp >> 6);
      out[j++] = 0x80 | (cp & 63);
    } else if (cp < 0x10000) {
      out[j++] = 0xe0 | (cp >> 12);
      out[j++] = 0x80 | ((cp >> 6) & 63);
      out[j++] = 0x80 | (cp & 63);
    } else {
      out[j++] = 0xf0 | (cp >> 18);
      out[j++] = 0x80 | ((cp >> 12) & 63);
      out[j++] = 0x80 | ((cp >> 6) & 63);
      out[j++] = 0x80 | (cp & 63);
    }
  }
  return out;
}

// Cuts `text` to at most `maxBytes` UTF-8 bytes, never inside a character. `bytes` is
// the size of the whole text, so a caller can say how much was left out.
export function truncate(text, maxBytes) {
  if (typeof text !== "string") throw new TypeError(`truncate: text must be a string, got ${kind(text)}`);
  if (!Number.isInteger(maxBytes) || maxBytes < 0) {
    throw new TypeError(`truncate: maxBytes must be a non-negative integer, got ${String(maxBytes)}`);
  }
  let bytes = 0;
  let cut = -1;
  for (let i = 0; i < text.length;) {
    const { cp, units } = codePointAt(text, i);
    const width = utf8Width(cp);
    if (cut < 0 && bytes + width > maxBytes) cut = i;
    bytes += width;
    i += units;
  }
  if (cut < 0) return { text, truncated: false, bytes };
  return { text: text.slice(0, cut), truncated: true, bytes };
}

// ---- SHA-256 (FIPS 180-4) -------------------------------------------------------------

const K = new Uint32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
]);

function rotr(x, n) {
  return (x >>> n) | (x << (32 - n));
}

export function sha256Hex(data) {
  let bytes;
  if (typeof data === "string") bytes = utf8Encode(data);
  else if (data instanceof Uint8Array) bytes = data;
  else throw new TypeError(`sha256Hex: data must be a string or a Uint8Array, got ${kind(data)}`);

  // Padding: 0x80, zeros, then the bit length as a 64-bit big-endian integer.
  const blocks = Math.ceil((bytes.length + 9) / 64);
  const message = new Uint8Array(blocks * 64);
  message.set(bytes);
  message[bytes.length] = 0x80;
  const bitLength = bytes.length * 8;
  const view = new DataView(message.buffer);
  view.setUint32(message.length - 8, Math.floor(bitLength / 0x100000000));
  view.setUint32(message.length - 4, bitLength >>> 0);

  const h = new Uint32Array([
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
  ]);
  const w = new Uint32Array(64);
  for (let block = 0; block < blocks; block++) {
    for (let t = 0; t < 16; t++) w[t] = view.getUint32(block * 64 + t * 4);
    for (let t = 16; t < 64; t++) {
      const s0 = rotr(w[t - 15], 7) ^ rotr(w[t - 15], 18) ^ (w[t - 15] >>> 3);
      const s1 = rotr(w[t - 2], 17) ^ rotr(w[t - 2], 19) ^ (w[t - 2] >>> 10);
      w[t] = (w[t - 16] + s0 + w[t - 7] + s1) >>> 0;
    }
    let [a, b, c, d, e, f, g, hh] = h;
    for (let t = 0; t < 64; t++) {
      const S1 = rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25);
      const ch = (e & f) ^ (~e & g);
      const t1 = (hh + S1 + ch + K[t] + w[t]) >>> 0;
      const S0 = rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22);
      const maj = (a & b) ^ (a & c) ^ (b & c);
      const t2 = (S0 + maj) >>> 0;
      hh = g;
      g = f;
      f = e;
      e = (d + t1) >>> 0;
      d = c;
      c = b;
      b = a;
      a = (t1 + t2) >>> 0;
    }
    h[0] += a; h[1] += b; h[2] += c; h[3] += d; h[4] += e; h[5] += f; h[6] += g; h[7] += hh;
  }
  let hex = "";
  for (const word of h) hex += word.toString(16).padStart(8, "0");
  return hex;
}
