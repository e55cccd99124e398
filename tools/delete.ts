// delete: removes one path; a non-empty directory needs an explicit `recursive`.
import { defineTool } from "libos:tool";

export default defineTool({
  name: "delete",
  description:
    "Deletes a workspace file, symlink (the link itself, never its target) or directory. A non-empty directory is only removed when `recursive` is true. This cannot be undone. Fails with NotFound if the path does not exist, PermissionDenied if this agent may not delete it.",
  input: {
    type: "object",
    properties: {
      path: { type: "string", minLength: 1, maxLength: 4096, description: "Workspace-relative path to delete." },
      recursive: { type: "boolean", default: false, description: "Also delete a directory's contents." },
    },
    required: ["path"],
    additionalProperties: false,
  },
  output: {
    type: "object",
    properties: { path: { type: "string" }, deleted: { const: true } },
    required: ["path", "deleted"],
    additionalProperties: false,
  },
  capabilities: ["fs.delete:**"],
  run: async ({ path, recursive = false }: { path: string; recursive?: boolean }) => {
    await libos.fs.remove(path, { recursive });
    return { path, deleted: true };
  },
  tests: [
    {
      name: "deletes a file",
      args: { path: "tmp/old.txt" },
      mocks: [{ call: "fs.remove", args: { path: "tmp/old.txt", recursive: false }, reply: { ok: null } }],
      expect: { path: "tmp/old.txt", deleted: true },
      expectCalls: [{ call: "fs.remove", args: { path: "tmp/old.txt", recursive: false } }],
    },
    {
      name: "deletes a directory tree when recursive",
      args: { path: "tmp", recursive: true },
      mocks: [{ call: "fs.remove", args: { path: "tmp", recursive: true }, reply: { ok: null } }],
      expect: { path: "tmp", deleted: true },
    },
    {
      name: "a missing path is NotFound",
      args: { path: "gone.txt" },
      mocks: [{ call: "fs.remove", reply: { err: { class: "NotFound", message: "fs.remove \"gone.txt\": not found" } } }],
      expectError: "NotFound",
    },
    {
      name: "a denied delete is PermissionDenied",
      args: { path: "src/main.rs" },
      mocks: [{ call: "fs.remove", reply: { err: { class: "PermissionDenied", message: "it needs fs.delete:src/main.rs" } } }],
      expectError: "PermissionDenied",
    },
  ],
});
