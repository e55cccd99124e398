// make_dir: creates a directory; recursive by default, the way a model usually means it.
import { defineTool } from "libos:tool";

export default defineTool({
  name: "make_dir",
  description:
    "Creates a workspace directory. With `recursive` (the default) missing parent directories are created too and an existing directory is not an error; with `recursive: false` the parent must exist and the directory must not (AlreadyExists). Fails with PermissionDenied if this agent may not write there.",
  input: {
    type: "object",
    properties: {
      path: { type: "string", minLength: 1, maxLength: 4096, description: "Workspace-relative directory to create." },
      recursive: { type: "boolean", default: true, description: "Also create missing parents; accept an existing directory." },
    },
    required: ["path"],
    additionalProperties: false,
  },
  output: {
    type: "object",
    properties: { path: { type: "string" }, recursive: { type: "boolean" } },
    required: ["path", "recursive"],
    additionalProperties: false,
  },
  capabilities: ["fs.write:**"],
  run: async ({ path, recursive = true }: { path: string; recursive?: boolean }) => {
    await libos.fs.mkdir(path, { recursive });
    return { path, recursive };
  },
  tests: [
    {
      name: "creates a directory and its parents",
      args: { path: "out/reports/2024" },
      mocks: [{ call: "fs.mkdir", args: { path: "out/reports/2024", recursive: true }, reply: { ok: null } }],
      expect: { path: "out/reports/2024", recursive: true },
      expectCalls: [{ call: "fs.mkdir", args: { path: "out/reports/2024", recursive: true } }],
    },
    {
      name: "non-recursive creation of an existing directory is AlreadyExists",
      args: { path: "out", recursive: false },
      mocks: [
        {
          call: "fs.mkdir",
          args: { path: "out", recursive: false },
          reply: { err: { class: "AlreadyExists", message: "fs.mkdir \"out\": already exists" } },
        },
      ],
      expectError: "AlreadyExists",
    },
    {
      name: "a missing parent without recursive is NotFound",
      args: { path: "a/b", recursive: false },
      mocks: [{ call: "fs.mkdir", reply: { err: { class: "NotFound", message: "fs.mkdir \"a/b\": no such directory \"a\"" } } }],
      expectError: "NotFound",
    },
    {
      name: "a denied directory is PermissionDenied",
      args: { path: "etc/new" },
      mocks: [{ call: "fs.mkdir", reply: { err: { class: "PermissionDenied", message: "it needs fs.write:etc/new" } } }],
      expectError: "PermissionDenied",
    },
  ],
});
