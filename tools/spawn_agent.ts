// spawn_agent: starts a child agent. The child gets only the capabilities listed, each of
// which the kernel checks against what this agent holds (it can never widen them).
import { defineTool } from "libos:tool";

export default defineTool({
  name: "spawn_agent",
  description:
    "Starts a child agent running the script `entry` (a path relative to this agent's script directory) with `args`, and returns its pid at once; use wait_agent to get its result. The child holds only the capabilities in `caps` (e.g. [\"fs.read:data/**\"]), each of which must be within what this agent holds. `mode`: \"restricted\" (default: exactly `caps`), \"copy\" (everything this agent holds), \"worker\" (no shared-memory writes) or \"speculative\" (no file writes or deletes, no shell, no network). Fails with PermissionDenied if this agent may not spawn or asks for a capability it does not hold, NotFound if the script does not exist, LimitExceeded if the child budget is spent.",
  input: {
    type: "object",
    properties: {
      entry: { type: "string", minLength: 1, maxLength: 4096, description: "The child's script, e.g. \"worker.ts\"." },
      args: {
        type: "array",
        items: { type: "string", maxLength: 65536 },
        maxItems: 256,
        default: [],
        description: "Arguments the child sees as libos.args.",
      },
      caps: {
        type: "array",
        items: { type: "string", minLength: 1, maxLength: 1024 },
        maxItems: 64,
        default: [],
        description: "Capabilities for the child, e.g. \"fs.write:out/**\".",
      },
      mode: { enum: ["restricted", "worker", "speculative", "copy"], default: "restricted", description: "Fork mode." },
      cwd: { type: "string", minLength: 1, maxLength: 4096, description: "The child's working directory, relative to this agent's." },
      maxSyscalls: { type: "integer", minimum: 1, description: "Syscall budget for the child." },
    },
    required: ["entry"],
    additionalProperties: false,
  },
  output: {
    type: "object",
    properties: { pid: { type: "string" } },
    required: ["pid"],
    additionalProperties: false,
  },
  capabilities: ["proc.spawn"],
  run: async (
    { entry, args, caps, mode, cwd, maxSyscalls }: {
      entry: string;
      args?: string[];
      caps?: string[];
      mode?: "restricted" | "worker" | "speculative" | "copy";
      cwd?: string;
      maxSyscalls?: number;
    },
  ) => {
    const pid = await libos.proc.spawn({ entry, args, caps, mode, cwd, maxSyscalls });
    return { pid };
  },
  tests: [
    {
      name: "spawns a child with narrowed capabilities",
      args: { entry: "worker.ts", args: ["chunk-1"], caps: ["fs.read:data/**"], mode: "worker" },
      mocks: [
        {
          call: "proc.spawn",
          args: { entry: "worker.ts", args: ["chunk-1"], caps: ["fs.read:data/**"], mode: "worker" },
          reply: { ok: "p1a2b3c4d" },
        },
      ],
      expect: { pid: "p1a2b3c4d" },
      expectCalls: [
        { call: "proc.spawn", args: { entry: "worker.ts", args: ["chunk-1"], caps: ["fs.read:data/**"], mode: "worker" } },
      ],
    },
    {
      name: "asking for more than is held is PermissionDenied",
      args: { entry: "worker.ts", caps: ["shell:*"] },
      mocks: [{ call: "proc.spawn", reply: { err: { class: "PermissionDenied", message: "proc.spawn: shell:* is not held" } } }],
      expectError: "PermissionDenied",
    },
    {
      name: "a missing script is NotFound",
      args: { entry: "nope.ts" },
      mocks: [{ call: "proc.spawn", reply: { err: { class: "NotFound", message: "proc.spawn: no such script nope.ts" } } }],
      expectError: "NotFound",
    },
    {
      name: "a spent child budget is LimitExceeded",
      args: { entry: "worker.ts" },
      mocks: [{ call: "proc.spawn", reply: { err: { class: "LimitExceeded", message: "proc.spawn: child budget spent" } } }],
      expectError: "LimitExceeded",
    },
  ],
});
