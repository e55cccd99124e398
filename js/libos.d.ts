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

  /** Milliseconds since the Unix epoch, from the kernel's clock. */
  function now(): number;
  /** A random number in [0, 1), from the kernel. */
  function random(): number;
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
