// wait_agent: waits for a child agent to finish; a large result is cut to a JSON preview.
import { defineTool, truncate } from "libos:tool";

const MAX_ERROR_BYTES = 4096;

export default defineTool({
  name: "wait_agent",
  description:
    "Waits until a child agent started by spawn_agent (or one of its descendants) exits, and returns its final state and exit: status (ok, error, limit_exceeded, killed) with its result, error message or reason. A result whose JSON is larger than `maxBytes` (default 65536) is replaced by `resultPreview`, the start of its JSON text, and `truncated` is true. Fails with Timeout if it has not exited within `timeoutMs`, NotFound if `pid` is not a descendant of this agent.",
  input: {
    type: "object",
    properties: {
      pid: { type: "string", minLength: 1, maxLength: 64, description: "The child's pid, from spawn_agent." },
      timeoutMs: { type: "integer", minimum: 1, maximum: 86400000, description: "Give up after this many milliseconds." },
      maxBytes: { type: "integer", minimum: 1, maximum: 1048576, default: 65536, description: "Largest result (as JSON) to return whole." },
    },
    required: ["pid"],
    additionalProperties: false,
  },
  output: {
    type: "object",
    properties: {
      pid: { type: "string" },
      state: { type: "string" },
      image: { type: "string" },
      mode: { type: "string" },
      exit: {
        type: "object",
        properties: {
          status: { enum: ["ok", "error", "limit_exceeded", "killed"] },
          result: {},
          resultPreview: { type: "string" },
          error: { type: "string" },
          reason: { type: "string" },
        },
      },
      truncated: { type: "boolean" },
    },
    required: ["pid", "state", "truncated"],
    additionalProperties: false,
  },
  capabilities: [],
  run: async ({ pid, timeoutMs, maxBytes = 65536 }: { pid: string; timeoutMs?: number; maxBytes?: number }) => {
    const info = await libos.proc.wait(pid, { timeoutMs });
    const out: Record<string, unknown> = { pid: info.pid, state: info.state, image: info.image, mode: info.mode };
    let truncated = false;
    if (info.exit) {
      const { result, error, ...rest } = info.exit;
      const exit: Record<string, unknown> = { ...rest };
      if (result !== undefined && result !== null) {
        const json = truncate(JSON.stringify(result), maxBytes);
        if (json.truncated) exit.resultPreview = json.text;
        else exit.result = result;
        truncated = json.truncated;
      }
      if (typeof error === "string") {
        const cut = truncate(error, MAX_ERROR_BYTES);
        exit.error = cut.text;
        truncated = truncated || cut.truncated;
      }
      out.exit = exit;
    }
    return { ...out, truncated };
  },
  tests: [
    {
      name: "returns a finished child's result",
      args: { pid: "p00000001", timeoutMs: 60000 },
      mocks: [
        {
          call: "proc.wait",
          args: { pid: "p00000001", timeoutMs: 60000 },
          reply: {
            ok: {
              pid: "p00000001",
              parent: "p00000000",
              image: "worker.ts",
              state: "exited",
              mode: "worker",
              exit: { status: "ok", result: { lines: 42 } },
            },
          },
        },
      ],
      expect: {
        pid: "p00000001",
        state: "exited",
        image: "worker.ts",
        mode: "worker",
        exit: { status: "ok", result: { lines: 42 } },
        truncated: false,
      },
      expectCalls: [{ call: "proc.wait", args: { pid: "p00000001", timeoutMs: 60000 } }],
    },
    {
      name: "reports a failed child's error",
      args: { pid: "p00000002" },
      mocks: [
        {
          call: "proc.wait",
          reply: {
            ok: {
              pid: "p00000002",
              parent: "p00000000",
              image: "worker.ts",
              state: "exited",
              mode: "restricted",
              exit: { status: "error", error: "TypeError: x is undefined" },
            },
          },
        },
      ],
      expect: {
        pid: "p00000002",
        state: "exited",
        image: "worker.ts",
        mode: "restricted",
        exit: { status: "error", error: "TypeError: x is undefined" },
        truncated: false,
      },
    },
    {
      name: "a large result becomes a cut preview",
      args: { pid: "p00000003", maxBytes: 8 },
      mocks: [
        {
          call: "proc.wait",
          reply: {
            ok: {
              pid: "p00000003",
              parent: "p00000000",
              image: "worker.ts",
              state: "exited",
              mode: "copy",
              exit: { status: "ok", result: [1, 2, 3, 4, 5, 6, 7] },
            },
          },
        },
      ],
      expect: {
        pid: "p00000003",
        state: "exited",
        image: "worker.ts",
        mode: "copy",
        exit: { status: "ok", resultPreview: "[1,2,3,4" },
        truncated: true,
      },
    },
    {
      name: "a child still running at the deadline is Timeout",
      args: { pid: "p00000004", timeoutMs: 10 },
      mocks: [{ call: "proc.wait", reply: { err: { class: "Timeout", message: "proc.wait: p00000004 did not exit within 10ms" } } }],
      expectError: "Timeout",
    },
    {
      name: "a process that is not a descendant is NotFound",
      args: { pid: "p99999999" },
      mocks: [
        {
          call: "proc.wait",
          reply: { err: { class: "NotFound", message: "proc.wait: p99999999 is not a descendant of p00000000" } },
        },
      ],
      expectError: "NotFound",
    },
  ],
});
