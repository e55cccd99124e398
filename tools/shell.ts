// shell: runs one program with an argument list. There is deliberately no command-line
// string: nothing is ever parsed by a shell, so arguments cannot smuggle in `; rm -rf`.
import { defineTool, truncate } from "libos:tool";

export default defineTool({
  name: "shell",
  description:
    "Runs a program with an argument list (argv) and returns its exit code, stdout and stderr. `program` is a bare name such as \"git\" or \"python3\", looked up on the configured search path; it is NOT a shell command line: no pipes, redirections, globbing or variable expansion (to use those, run e.g. program \"sh\" with args [\"-c\", \"...\"] if permitted). `cwd` is a workspace-relative directory (default: the agent's), `stdin` text is fed to the program, and the environment holds only `env`. Each of stdout and stderr is cut at `maxOutputBytes` (default 16384) with a truncated flag. A program still running after `timeoutMs` is killed (`timedOut: true`). Fails with PermissionDenied if this agent may not run the program, NotFound if it does not exist.",
  input: {
    type: "object",
    properties: {
      program: { type: "string", minLength: 1, maxLength: 255, pattern: "^[^/\\s]+$", description: "Bare program name, e.g. \"ls\"." },
      args: {
        type: "array",
        items: { type: "string", maxLength: 65536 },
        maxItems: 1024,
        default: [],
        description: "Arguments, one string each (no quoting needed).",
      },
      cwd: { type: "string", minLength: 1, maxLength: 4096, description: "Workspace-relative working directory." },
      stdin: { type: "string", maxLength: 1048576, description: "Text to write to the program's standard input." },
      env: {
        type: "object",
        additionalProperties: { type: "string", maxLength: 65536 },
        maxProperties: 64,
        description: "Environment variables; nothing else is inherited.",
      },
      timeoutMs: { type: "integer", minimum: 1, maximum: 3600000, description: "Kill the program after this many milliseconds." },
      maxOutputBytes: {
        type: "integer",
        minimum: 1,
        maximum: 1048576,
        default: 16384,
        description: "Most bytes of stdout, and of stderr, to return.",
      },
    },
    required: ["program"],
    additionalProperties: false,
  },
  output: {
    type: "object",
    properties: {
      code: { type: ["integer", "null"] },
      signal: { type: ["integer", "null"] },
      stdout: { type: "string" },
      stderr: { type: "string" },
      stdoutTruncated: { type: "boolean" },
      stderrTruncated: { type: "boolean" },
      timedOut: { type: "boolean" },
      durationMs: { type: "integer" },
    },
    required: ["code", "signal", "stdout", "stderr", "stdoutTruncated", "stderrTruncated", "timedOut", "durationMs"],
    additionalProperties: false,
  },
  capabilities: ["shell:*"],
  run: async ({
    program,
    args = [],
    cwd,
    stdin,
    env,
    timeoutMs,
    maxOutputBytes = 16384,
  }: {
    program: string;
    args?: string[];
    cwd?: string;
    stdin?: string;
    env?: Record<string, string>;
    timeoutMs?: number;
    maxOutputBytes?: number;
  }) => {
    const out = await libos.shell.exec(program, args, { cwd, stdin, env, timeoutMs });
    const stdout = truncate(out.stdout, maxOutputBytes);
    const stderr = truncate(out.stderr, maxOutputBytes);
    return {
      code: out.code,
      signal: out.signal,
      stdout: stdout.text,
      stderr: stderr.text,
      // The kernel may already have cut the stream; either cut counts.
      stdoutTruncated: stdout.truncated || out.stdoutTruncated,
      stderrTruncated: stderr.truncated || out.stderrTruncated,
      timedOut: out.timedOut,
      durationMs: out.durationMs,
    };
  },
  tests: [
    {
      name: "runs a program with arguments",
      args: { program: "git", args: ["status", "--short"], cwd: "repo" },
      mocks: [
        {
          call: "shell.exec",
          args: { program: "git", args: ["status", "--short"], cwd: "repo" },
          reply: {
            ok: {
              code: 0,
              signal: null,
              stdout: " M README.md\n",
              stderr: "",
              stdoutTruncated: false,
              stderrTruncated: false,
              timedOut: false,
              durationMs: 12,
            },
          },
        },
      ],
      expect: {
        code: 0,
        signal: null,
        stdout: " M README.md\n",
        stderr: "",
        stdoutTruncated: false,
        stderrTruncated: false,
        timedOut: false,
        durationMs: 12,
      },
      expectCalls: [{ call: "shell.exec", args: { program: "git", args: ["status", "--short"], cwd: "repo" } }],
    },
    {
      name: "passes stdin, env and timeout, and reports a failing exit",
      args: { program: "wc", args: ["-l"], stdin: "a\nb\n", env: { LC_ALL: "C" }, timeoutMs: 5000 },
      mocks: [
        {
          call: "shell.exec",
          args: { program: "wc", args: ["-l"], stdin: "a\nb\n", env: { LC_ALL: "C" }, timeoutMs: 5000 },
          reply: {
            ok: {
              code: 1,
              signal: null,
              stdout: "",
              stderr: "wc: oops\n",
              stdoutTruncated: false,
              stderrTruncated: false,
              timedOut: false,
              durationMs: 3,
            },
          },
        },
      ],
      expect: {
        code: 1,
        signal: null,
        stdout: "",
        stderr: "wc: oops\n",
        stdoutTruncated: false,
        stderrTruncated: false,
        timedOut: false,
        durationMs: 3,
      },
    },
    {
      name: "cuts long output at maxOutputBytes",
      args: { program: "cat", args: ["big.txt"], maxOutputBytes: 5 },
      mocks: [
        {
          call: "shell.exec",
          reply: {
            ok: {
              code: 0,
              signal: null,
              stdout: "0123456789",
              stderr: "warn",
              stdoutTruncated: false,
              stderrTruncated: true,
              timedOut: false,
              durationMs: 1,
            },
          },
        },
      ],
      expect: {
        code: 0,
        signal: null,
        stdout: "01234",
        stderr: "warn",
        stdoutTruncated: true,
        stderrTruncated: true,
        timedOut: false,
        durationMs: 1,
      },
    },
    {
      name: "a denied program is PermissionDenied",
      args: { program: "rm", args: ["-rf", "."] },
      mocks: [{ call: "shell.exec", reply: { err: { class: "PermissionDenied", message: "it needs shell:rm" } } }],
      expectError: "PermissionDenied",
    },
    {
      name: "an unknown program is NotFound",
      args: { program: "no-such-program" },
      mocks: [
        {
          call: "shell.exec",
          args: { program: "no-such-program", args: [] },
          reply: { err: { class: "NotFound", message: "shell.exec: no-such-program: not found on the search path" } },
        },
      ],
      expectError: "NotFound",
    },
  ],
});
