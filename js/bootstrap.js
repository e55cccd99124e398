// The alos bootstrap: runs once per isolate, before any user code.
//
// It builds the `libos` global (DESIGN.md section 5) on top of the three broker ops,
// then removes every path back to the engine: `Deno`, `Deno.core` and `__bootstrap`
// are deleted from the global, and everything user code can reach is frozen. The ops
// are held only in this module's closure.
//
// Keep this file ASCII: it is embedded in the binary as a one-byte string.

import { core } from "ext:core/mod.js";
import { op_syscall, op_syscall_async } from "ext:core/ops";

const print = core.print;
const freeze = Object.freeze;

// ---- errors -------------------------------------------------------------------------

class LibosError extends Error {
  constructor(message, details) {
    super(message);
    this.name = new.target.name;
    if (details) {
      for (const key of Object.keys(details)) {
        Object.defineProperty(this, key, { value: details[key], enumerable: true });
      }
    }
  }
}
class PermissionDenied extends LibosError {}
class InvalidArgument extends LibosError {}
class NotFound extends LibosError {}
class AlreadyExists extends LibosError {}
class Conflict extends LibosError {}
class LimitExceeded extends LibosError {}
class Cancelled extends LibosError {}
class Timeout extends LibosError {}
class OperationFailed extends LibosError {}

const errors = freeze({
  LibosError, PermissionDenied, InvalidArgument, NotFound, AlreadyExists, Conflict,
  LimitExceeded, Cancelled, Timeout, OperationFailed,
});
for (const cls of Object.values(errors)) {
  freeze(cls);
  freeze(cls.prototype);
}

// ---- the syscall path ---------------------------------------------------------------

function unwrap(reply) {
  if (reply && Object.prototype.hasOwnProperty.call(reply, "err")) {
    const fault = reply.err;
    const cls = errors[fault.class] ?? LibosError;
    throw new cls(fault.message, fault.details);
  }
  return reply.ok;
}

function call(name, args) {
  return unwrap(op_syscall(name, args ?? null));
}

let nextTicket = 1;

// Starts an async syscall. The ticket names the call for `op_syscall_cancel`.
function callAsync(name, args) {
  const ticket = nextTicket++;
  return op_syscall_async(name, args ?? null, ticket).then(unwrap);
}

// Drops `undefined` option values so the kernel sees only what the caller set.
function options(opts) {
  if (opts === undefined || opts === null) return {};
  if (typeof opts !== "object") {
    throw new InvalidArgument(`options must be an object, got ${typeof opts}`);
  }
  const out = {};
  for (const key of Object.keys(opts)) {
    if (opts[key] !== undefined) out[key] = opts[key];
  }
  return out;
}

// ---- bytes <-> base64 (no atob/btoa in a bare engine) -------------------------------

const B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const B64_INDEX = (() => {
  const index = new Int16Array(128).fill(-1);
  for (let i = 0; i < B64.length; i++) index[B64.charCodeAt(i)] = i;
  return index;
})();

function toBase64(bytes) {
  if (!(bytes instanceof Uint8Array)) {
    throw new InvalidArgument("writeBytes expects a Uint8Array");
  }
  const parts = [];
  let chunk = "";
  for (let i = 0; i < bytes.length; i += 3) {
    const n = (bytes[i] << 16) | ((bytes[i + 1] ?? 0) << 8) | (bytes[i + 2] ?? 0);
    chunk += B64[(n >> 18) & 63] + B64[(n >> 12) & 63] +
      (i + 1 < bytes.length ? B64[(n >> 6) & 63] : "=") +
      (i + 2 < bytes.length ? B64[n & 63] : "=");
    if (chunk.length >= 8192) {
      parts.push(chunk);
      chunk = "";
    }
  }
  parts.push(chunk);
  return parts.join("");
}

function fromBase64(text) {
  const clean = text.replace(/=+$/, "");
  const out = new Uint8Array((clean.length * 3) >> 2);
  let bits = 0, acc = 0, j = 0;
  for (let i = 0; i < clean.length; i++) {
    acc = (acc << 6) | B64_INDEX[clean.charCodeAt(i)];
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[j++] = (acc >> bits) & 255;
    }
  }
  return out;
}

// ---- console ------------------------------------------------------------------------

function inspect(value, seen = new Set(), depth = 0) {
  switch (typeof value) {
    case "string": return depth === 0 ? value : JSON.stringify(value);
    case "function": return `[Function ${value.name || "(anonymous)"}]`;
    case "symbol": return value.toString();
    case "bigint": return `${value}n`;
    case "undefined": return "undefined";
    case "object": break;
    default: return String(value);
  }
  if (value === null) return "null";
  if (value instanceof Error) return value.stack ?? `${value.name}: ${value.message}`;
  if (seen.has(value)) return "[Circular]";
  if (depth > 4) return Array.isArray(value) ? "[Array]" : "[Object]";
  seen.add(value);
  let text;
  if (Array.isArray(value)) {
    text = `[ ${value.map((v) => inspect(v, seen, depth + 1)).join(", ")} ]`;
  } else if (value instanceof Uint8Array) {
    text = `Uint8Array(${value.length}) [ ${Array.from(value.slice(0, 32)).join(", ")}${value.length > 32 ? ", ..." : ""} ]`;
  } else {
    const entries = Object.keys(value).map((k) => `${/^[A-Za-z_$][\w$]*$/.test(k) ? k : JSON.stringify(k)}: ${inspect(value[k], seen, depth + 1)}`);
    text = entries.length ? `{ ${entries.join(", ")} }` : "{}";
  }
  seen.delete(value);
  return text;
}

function formatArgs(args) {
  return args.map((a) => inspect(a)).join(" ") + "\n";
}

const console = freeze({
  log: (...args) => print(formatArgs(args), false),
  info: (...args) => print(formatArgs(args), false),
  debug: (...args) => print(formatArgs(args), false),
  warn: (...args) => print(formatArgs(args), true),
  error: (...args) => print(formatArgs(args), true),
});

// ---- libos --------------------------------------------------------------------------

const self = call("proc.self");

const fs = freeze({
  readText: (path) => callAsync("fs.readText", { path }),
  readBytes: async (path) => fromBase64(await callAsync("fs.readBytes", { path })),
  writeText: (path, text, opts) => callAsync("fs.writeText", { path, text, ...options(opts) }),
  writeBytes: (path, bytes, opts) => callAsync("fs.writeBytes", { path, data: toBase64(bytes), ...options(opts) }),
  list: (path) => callAsync("fs.list", { path: path ?? "." }),
  stat: (path) => callAsync("fs.stat", { path }),
  remove: (path, opts) => callAsync("fs.remove", { path, ...options(opts) }),
  mkdir: (path, opts) => callAsync("fs.mkdir", { path, ...options(opts) }),
  cwd: () => call("fs.cwd"),
  chdir: (path) => callAsync("fs.chdir", { path }),
});

const proc = freeze({
  spawn: (opts) => callAsync("proc.spawn", options(opts)),
  wait: (pid, opts) => callAsync("proc.wait", { pid, ...options(opts) }),
  signal: (pid, signal) => callAsync("proc.signal", { pid, signal }),
  list: () => callAsync("proc.list"),
});

const shell = freeze({
  exec: (program, args, opts) => callAsync("shell.exec", { program, args: args ?? [], ...options(opts) }),
});

const events = freeze({
  emit: (topic, payload) => callAsync("events.emit", { topic, payload: payload === undefined ? null : payload }),
  next: (topic, opts) => callAsync("events.next", { topic, ...options(opts) }),
});

const human = freeze({
  ask: (question, opts) => callAsync("human.ask", { question, ...options(opts) }),
});

const net = freeze({
  fetch: (url, opts) => callAsync("net.fetch", { url, ...options(opts) }),
});

const caps = freeze({
  list: () => call("caps.list"),
  drop: (capability) => callAsync("caps.drop", { capability }),
  request: (capability, reason) => callAsync("caps.request", { capability, reason: reason ?? "" }),
});

const mem = freeze({
  put: (key, value, opts) => callAsync("mem.put", { key, value: value === undefined ? null : value, ...options(opts) }),
  get: (key, opts) => callAsync("mem.get", { key, ...options(opts) }),
  list: (prefix, opts) => callAsync("mem.list", { prefix: prefix ?? "", ...options(opts) }),
  delete: (key, opts) => callAsync("mem.delete", { key, ...options(opts) }),
});

const tools = freeze({
  list: () => callAsync("tools.list"),
  call: (name, args) => callAsync("tools.call", { name, args: args === undefined ? {} : args }),
  propose: (candidate) => callAsync("tools.propose", options(candidate)),
  register: (candidateId, opts) => callAsync("tools.register", { candidateId, ...options(opts) }),
  revoke: (name) => callAsync("tools.revoke", { name }),
});

// Needs `model:PROVIDER/MODEL`. The reply's tool calls carry `arguments` as the model
// sent them and `args` parsed (null when not JSON).
const model = freeze({
  complete: (request) => callAsync("model.complete", options(request)),
});

const libos = freeze({
  pid: self.pid,
  args: freeze(self.args ?? []),
  goal: self.goal ?? null,
  fs,
  proc,
  caps,
  mem,
  net,
  human,
  shell,
  events,
  tools,
  model,
  sleep: (ms) => callAsync("sleep", { ms }),
  checkpoint: (label) => callAsync("checkpoint", { label: label === undefined ? null : label }),
  now: () => call("now"),
  random: () => call("random"),
  exit: (result) => {
    // The kernel records the exit and stops this isolate before the call returns;
    // the syscall's promise never settles and nothing after this line runs.
    callAsync("exit", { result: result === undefined ? null : result });
  },
  errors,
});

// ---- seal the global ----------------------------------------------------------------

Object.defineProperty(globalThis, "libos", { value: libos, enumerable: false, writable: false, configurable: false });
Object.defineProperty(globalThis, "console", { value: console, enumerable: false, writable: true, configurable: true });
delete globalThis.Deno;
delete globalThis.__bootstrap;
// Engine extras that are not ECMAScript: a GC trigger, a high-resolution clock that the
// kernel does not see, and a second code loader. (The QuickJS backend's own
// non-enumerable `__v8x*` helpers stay: it looks them up at run time; they reach no op.)
for (const name of ["WebAssembly", "gc", "performance"]) delete globalThis[name];
