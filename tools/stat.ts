// stat: what a path is, without reading it.
import { defineTool } from "libos:tool";

export default defineTool({
  name: "stat",
  description:
    "Describes one workspace path without reading it: kind (file, dir, symlink, other), size in bytes, last modification time (ms since the Unix epoch, or null) and whether it is read-only. A symlink is described itself, not followed. Fails with NotFound if the path does not exist, PermissionDenied if this agent may not read it.",
  input: {
    type: "object",
    properties: {
      path: { type: "string", minLength: 1, maxLength: 4096, description: "Workspace-relative path." },
    },
    required: ["path"],
    additionalProperties: false,
  },
  output: {
    type: "object",
    properties: {
      path: { type: "string" },
      kind: { enum: ["file", "dir", "symlink", "other"] },
      size: { type: "integer" },
      modifiedMs: { type: ["integer", "null"] },
      readonly: { type: "boolean" },
    },
    required: ["path", "kind", "size", "modifiedMs", "readonly"],
    additionalProperties: false,
  },
  capabilities: ["fs.read:**"],
  run: async ({ path }: { path: string }) => {
    const { kind, size, modifiedMs, readonly } = await libos.fs.stat(path);
    return { path, kind, size, modifiedMs, readonly };
  },
  tests: [
    {
      name: "describes a file",
      args: { path: "src/main.rs" },
      mocks: [
        {
          call: "fs.stat",
          args: { path: "src/main.rs" },
          reply: { ok: { kind: "file", size: 2048, modifiedMs: 1700000000000, readonly: false } },
        },
      ],
      expect: { path: "src/main.rs", kind: "file", size: 2048, modifiedMs: 1700000000000, readonly: false },
      expectCalls: [{ call: "fs.stat", args: { path: "src/main.rs" } }],
    },
    {
      name: "a missing path is NotFound",
      args: { path: "gone" },
      mocks: [{ call: "fs.stat", reply: { err: { class: "NotFound", message: "fs.stat \"gone\": not found" } } }],
      expectError: "NotFound",
    },
    {
      name: "a denied path is PermissionDenied",
      args: { path: "secrets/key.txt" },
      mocks: [{ call: "fs.stat", reply: { err: { class: "PermissionDenied", message: "it needs fs.read:secrets/key.txt" } } }],
      expectError: "PermissionDenied",
    },
  ],
});
