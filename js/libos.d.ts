// Types of the `libos` global that alos gives every agent script and tool.
// Reference it from a script with:  /// <reference path="path/to/libos.d.ts" />
//
// Every function forwards to a capability-checked kernel primitive. A call the process
// holds no capability for throws `libos.errors.PermissionDenied`, whose message names
// the capability (and the `--allow` flag) that would allow it.

declare namespace libos {
  /** This process's id, e.g. "p3f9a12c0". */
  const pid: string;
  /** The arguments after `--` on the `alos run` command line. */
  const args: readonly string[];
  /** What this process was asked to do (`alos spawn IMAGE --goal TEXT`), or null. */
  const goal: string | null;

  /** Milliseconds since the Unix epoch, from the kernel's clock. */
  function now(): number;
  /** A random number in [0, 1), from the kernel. */
  function random(): number;
  /** Marks a point to return to: the journal up to here, this process's own Object
   * Memory namespace and its cwd. `alos rollback PID ID` restores them and resumes from
   * here (side effects after it are listed; they cannot be undone). Returns the id. */
  function checkpoint(label?: string): Promise<number>;
  /** Ends this process with `result` (JSON), which `alos run` prints. Never returns. */
  function exit(result?: unknown): never;

  /** Files in the workspace. Paths are relative to the process's cwd; nothing outside the
   * workspace (or in alos's state directory) is reachable. */
  namespace fs {
    interface Entry {
      name: string;
      kind: "file" | "dir" | "symlink" | "other";
      size: number;
    }
    interface Stat {
      kind: "file" | "dir" | "symlink" | "other";
      size: number;
      modifiedMs: number | null;
      readonly: boolean;
    }
    /** Needs `fs.read:PATH`. Fails with InvalidArgument if the file is not UTF-8. */
    function readText(path: string): Promise<string>;
    /** Needs `fs.read:PATH`. */
    function readBytes(path: string): Promise<Uint8Array>;
    /** Needs `fs.write:PATH`. Replaces the file atomically unless `append` is set. */
    function writeText(path: string, text: string, options?: { append?: boolean }): Promise<void>;
    /** Needs `fs.write:PATH`. */
    function writeBytes(path: string, bytes: Uint8Array, options?: { append?: boolean }): Promise<void>;
    /** Needs `fs.read:PATH`. Sorted by name. */
    function list(path?: string): Promise<Entry[]>;
    /** Needs `fs.read:PATH`. Does not follow a final symlink. */
    function stat(path: string): Promise<Stat>;
    /** Needs `fs.write:PATH`. */
    function mkdir(path: string, options?: { recursive?: boolean }): Promise<void>;
    /** Needs `fs.delete:PATH`. Removes a symlink itself, never its target. */
    function remove(path: string, options?: { recursive?: boolean }): Promise<void>;
    /** The process's working directory, workspace-relative ("." is the root). */
    function cwd(): string;
    /** Needs `fs.read:PATH`. */
    function chdir(path: string): Promise<void>;
  }

  /** Child processes: each runs in its own isolate, with at most what its parent holds. */
  namespace proc {
    interface Info {
      pid: string;
      parent: string | null;
      image: string;
      state: string;
      mode: "restricted" | "worker" | "speculative" | "copy";
      exit?: { status: "ok" | "error" | "limit_exceeded" | "killed"; result?: unknown; error?: string; reason?: string };
    }
    /** Needs `proc.spawn`. Each of `caps` must be included in a grant this process holds. */
    function spawn(options: {
      entry: string;
      args?: string[];
      caps?: string[];
      mode?: "restricted" | "worker" | "speculative" | "copy";
      cwd?: string;
      maxSyscalls?: number;
      /** At most what this process has left of its own model budget. */
      modelCalls?: number;
      modelTokens?: number;
    }): Promise<string>;
    /** Waits for a descendant to exit. */
    function wait(pid: string, options?: { timeoutMs?: number }): Promise<Info>;
    /** Needs `proc.signal`. Descendants only; `cancel` ends the whole subtree. */
    function signal(pid: string, signal: "pause" | "resume" | "cancel"): Promise<void>;
    /** This process and its descendants. */
    function list(): Promise<Info[]>;
  }

  namespace caps {
    interface Grant {
      id: string;
      capability: string;
      source: string;
      usesLeft: number | null;
      expiresAtMs: number | null;
    }
    function list(): Grant[];
    /** Drops this process's grants of exactly `capability`, and what descendants derived from them. */
    function drop(capability: string): Promise<{ dropped: number; revoked: number }>;
    /** Asks a human for a capability; resolves once approved (rejects when denied). */
    function request(capability: string, reason: string): Promise<{ capability: string; scope: string; request: string }>;
  }

  /** Object Memory: typed JSON objects in namespaces, versioned for compare-and-set.
   * A process's own namespace `proc/<pid>` (the default `ns`) needs no capability; any
   * other needs `mem.read:NS` (get, list) or `mem.write:NS` (put, delete). A namespace is
   * `/`-separated segments of a-z, 0-9, `.`, `_`, `-` (at most 200 bytes); a key is 1 to 512
   * bytes without control characters; a value is at most 1 MiB of JSON (else LimitExceeded). */
  namespace mem {
    interface MemObject {
      ns: string;
      key: string;
      /** The type name given to `put` ("json" by default). */
      type: string;
      value: unknown;
      /** 1 on creation, +1 on every put. A deleted and re-created key starts at 1 again. */
      version: number;
      /** The process (or `human:<name>`) that created it; updates keep it. */
      creator: string;
      createdMs: number;
      updatedMs: number;
    }
    /** A listed object: `value` is present only when its JSON is at most 16 KiB (`size`
     * says how big it is); `get` returns any value. */
    interface MemEntry extends Omit<MemObject, "value"> {
      /** Bytes of the value's JSON text. */
      size: number;
      value?: unknown;
    }
  }
  /** Object Memory's functions (a `const`, because `delete` cannot name a function). */
  const mem: {
    /** `ifVersion`: write only if the current version is this (0: only if it does not
     * exist); otherwise throws `libos.errors.Conflict` and changes nothing. */
    put(key: string, value: unknown, options?: { type?: string; ns?: string; ifVersion?: number }): Promise<{ version: number }>;
    /** The object, or null if there is none. */
    get(key: string, options?: { ns?: string }): Promise<mem.MemObject | null>;
    /** Objects whose key starts with `prefix` (exact, case-sensitive), by key; at most 1000. */
    list(prefix?: string, options?: { ns?: string }): Promise<mem.MemEntry[]>;
    /** `ifVersion` as for `put`; `deleted` is false if there was no such object. */
    delete(key: string, options?: { ns?: string; ifVersion?: number }): Promise<{ deleted: boolean }>;
  };

  namespace shell {
    interface Output {
      code: number | null;
      signal: number | null;
      stdout: string;
      stderr: string;
      stdoutTruncated: boolean;
      stderrTruncated: boolean;
      timedOut: boolean;
      durationMs: number;
    }
    /** Needs `shell:PROGRAM`. argv only, never a shell string; env is only what is passed. */
    function exec(
      program: string,
      args?: string[],
      options?: { cwd?: string; stdin?: string; env?: Record<string, string>; timeoutMs?: number },
    ): Promise<Output>;
  }

  namespace net {
    /** Needs `net:HOST:PORT` (and `net:IP:PORT` when HOST is internal). */
    function fetch(
      url: string,
      options?: { method?: string; headers?: Record<string, string>; body?: string; timeoutMs?: number },
    ): Promise<{ status: number; headers: [string, string][]; text: string; truncated: boolean; url: string; redirects: string[] }>;
  }

  namespace human {
    /** Needs `human.ask`. Resolves with the answer; at the deadline, with `default` (or Timeout). */
    function ask(question: string, options?: { choices?: string[]; timeoutMs?: number; default?: string }): Promise<string>;
  }

  namespace events {
    /** Needs `event.emit:TOPIC`. */
    function emit(topic: string, payload?: unknown): Promise<{ seq: number }>;
    /** Needs `event.wait:TOPIC`. The next event on the topic this process has not taken yet. */
    function next(topic: string, options?: { timeoutMs?: number }): Promise<{ topic: string; from: string; atMs: number; payload: unknown }>;
  }

  /** A tool as `tools.list` returns it: ready to hand to a model. */
  interface ToolInfo {
    name: string;
    description: string;
    /** The input JSON Schema. */
    parameters: Record<string, unknown>;
    output: Record<string, unknown> | null;
    /** What the tool may use; its authority is the caller's grants ∩ these. */
    capabilities: string[];
    origin: "builtin" | "image" | { jit: { scope: "process" | "task" | "image"; owner: string } };
  }

  interface ToolTest {
    name: string;
    args: unknown;
    /** Mock rules: `{ call, args?, reply: { ok } | { err: { class, message } }, times? }`. */
    mocks?: unknown[];
    expect?: unknown;
    expectError?: string;
    expectCalls?: { call: string; args?: unknown }[];
  }

  namespace tools {
    /** The process's tool table. */
    function list(): Promise<ToolInfo[]>;
    /** Calls a tool in the table; `args` must match its input schema. */
    function call(name: string, args?: unknown): Promise<unknown>;
    /** Checks a JIT tool (static analysis, capabilities, its tests against a mock broker). */
    function propose(candidate: {
      name: string;
      description: string;
      input: Record<string, unknown>;
      output?: Record<string, unknown>;
      source: string;
      tests?: ToolTest[];
      capabilities?: string[];
    }): Promise<{ candidateId: string; ok: boolean; findings: unknown[]; problems: unknown[]; tests: unknown }>;
    /** Needs `tool.register` (often an `ask` rule: a human sees the source first). */
    function register(candidateId: string, options?: { scope?: "process" | "task" | "image" }): Promise<{ name: string; scope: string }>;
    /** Revokes a JIT tool this process registered. */
    function revoke(name: string): Promise<{ name: string }>;
  }

  /** Language models, answered by the host's provider (`alos run --model`). */
  namespace model {
    /** A tool call the model made. `name` is as the model sent it (possibly empty or not
     * in the tool table); check it before calling. */
    interface ToolCall {
      id: string;
      name: string;
      /** The arguments' JSON text, exactly as the model sent it. */
      arguments: string;
      /** `arguments` parsed, or null when it is not valid JSON. */
      args: unknown | null;
    }
    type Message =
      | { role: "system" | "user"; content: string }
      | { role: "assistant"; content: string | null; toolCalls?: ToolCall[] }
      | { role: "tool"; toolCallId: string; name?: string; content: string };
    interface Reply {
      message: { role: "assistant"; content: string | null; toolCalls: ToolCall[] };
      /** The same as `message.toolCalls`. */
      toolCalls: ToolCall[];
      usage: { inputTokens: number; outputTokens: number };
      finishReason: "stop" | "tool_calls" | "length" | string;
      /** "PROVIDER/MODEL" that answered. */
      model: string;
    }
    /** Needs `model:PROVIDER/MODEL` (e.g. `model:openai/gpt-4o-mini`). `model` is
     * "PROVIDER:MODEL", by default the host's `--model`. Counts against the process's
     * `--model-calls` and `--model-tokens` budgets (shared with its ancestors): when one
     * is spent, throws LimitExceeded. Endpoint failures: Timeout (`--model-timeout`),
     * OperationFailed (key refused, unreachable, malformed answer, still failing after
     * retries). A resumed process gets its journaled answers again, without a new call. */
    function complete(request: {
      model?: string;
      messages: Message[];
      /** As `libos.tools.list()` returns them. */
      tools?: Pick<ToolInfo, "name" | "description" | "parameters">[];
      maxTokens?: number;
    }): Promise<Reply>;
  }

  function sleep(ms: number): Promise<void>;

  namespace errors {
    class LibosError extends Error {}
    class PermissionDenied extends LibosError {
      /** The syscall that was refused, e.g. "fs.writeText". */
      readonly syscall: string;
      /** The capability that would allow it, e.g. "fs.write:out/report.json". */
      readonly capability: string;
      /** What decided: "no grant", or the rule that denied it. */
      readonly reason: string;
    }
    class InvalidArgument extends LibosError {}
    class NotFound extends LibosError {}
    class AlreadyExists extends LibosError {}
    class Conflict extends LibosError {}
    class LimitExceeded extends LibosError {}
    class Cancelled extends LibosError {}
    class Timeout extends LibosError {}
    class OperationFailed extends LibosError {}
  }
}

interface Console {
  log(...data: unknown[]): void;
  info(...data: unknown[]): void;
  debug(...data: unknown[]): void;
  warn(...data: unknown[]): void;
  error(...data: unknown[]): void;
}
declare const console: Console;

/** The tool SDK (js/tool.js). A tool module's default export is `defineTool(...)`'s result. */
declare module "libos:tool" {
  interface ToolSpec<I = any, O = unknown> {
    /** /^[a-z][a-z0-9_]{0,63}$/ */
    name: string;
    description: string;
    /** JSON Schema of the arguments; `tools.call` validates against it. */
    input: Record<string, unknown>;
    output?: Record<string, unknown>;
    /** What the tool may use; its authority is its caller's grants ∩ these. */
    capabilities?: string[];
    run(args: I): O | Promise<O>;
    /** Run by `alos tool test` and by `tools.propose`, against a mock broker. */
    tests?: libos.ToolTest[];
  }
  export function defineTool<I = any, O = unknown>(spec: ToolSpec<I, O>): Readonly<ToolSpec<I, O>>;
  export function sha256Hex(data: string | Uint8Array): string;
  /** Cuts at most `maxBytes` UTF-8 bytes, never inside a character; `bytes` is the whole size. */
  export function truncate(text: string, maxBytes: number): { text: string; truncated: boolean; bytes: number };
}

/** The agent loop (js/agent.js) the built-in images run. */
declare module "libos:agent" {
  interface Action {
    description: string;
    parameters: Record<string, unknown>;
    run(args: any): unknown | Promise<unknown>;
  }
  interface Report {
    ok: boolean;
    summary: string;
    changedFiles: string[];
    evidence: string[];
    verification: string;
    residualRisks: string[];
    steps: number;
    toolCalls: unknown[];
    denials: unknown[];
    usage: { inputTokens: number; outputTokens: number };
    stoppedBecause: "done" | "max_steps" | "malformed_tool_calls" | "budget_exhausted" | "model_error";
  }
  export function runAgent(options: {
    goal: string;
    system: string;
    /** Names of tools to offer (default: the whole tool table). */
    tools?: string[];
    /** Functions of the agent script offered beside the table (e.g. checkpointAction). */
    actions?: Record<string, Action>;
    model?: string;
    maxSteps?: number;
    maxRepairs?: number;
    maxTokens?: number;
    /** Object Memory key prefix of the transcript (default "conversation"). */
    memoryKey?: string;
    onStep?(info: { step: number; message: unknown; results: unknown[] }): void;
    /** The model call (default libos.model.complete); tests pass a fake. */
    complete?(request: unknown): Promise<unknown>;
  }): Promise<Report>;
  export function systemPrompt(role: string): string;
  export const checkpointAction: Action;
  export const delegateAction: Action;
  export const proposeToolAction: Action;
  export const registerToolAction: Action;
}
