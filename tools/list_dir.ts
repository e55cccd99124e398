// list_dir: one directory's entries, capped so a huge directory stays a short answer.
import { defineTool } from "libos:tool";

export default defineTool({
  name: "list_dir",
  description:
    "Lists one workspace directory (not recursive): each entry's name, kind (file, dir, symlink, other) and size in bytes, sorted by name. `path` defaults to the workspace root \".\". At most `maxEntries` (default 200) entries are returned; `total` is the full count and `truncated` says whether entries were left out. Fails with NotFound if there is no such directory, PermissionDenied if this agent may not read it.",
  input: {
    type: "object",
    properties: {
      path: { type: "string", minLength: 1, maxLength: 4096, default: ".", description: "Workspace-relative directory." },
      maxEntries: {
        type: "integer",
        minimum: 1,
        maximum: 1000,
        default: 200,
        description: "Most entries to return.",
      },
    },
    required: [],
    additionalProperties: false,
  },
  output: {
    type: "object",
    properties: {
      path: { type: "string" },
      entries: {
        type: "array",
        items: {
          type: "object",
          properties: {
            name: { type: "string" },
            kind: { enum: ["file", "dir", "symlink", "other"] },
            size: { type: "integer" },
          },
          required: ["name", "kind", "size"],
        },
      },
      total: { type: "integer" },
      truncated: { type: "boolean" },
    },
    required: ["path", "entries", "total", "truncated"],
    additionalProperties: false,
  },
  capabilities: ["fs.read:**"],
  run: async ({ path = ".", maxEntries = 200 }: { path?: string; maxEntries?: number }) => {
    const all = await libos.fs.list(path);
    const entries = all.slice(0, maxEntries).map(({ name, kind, size }) => ({ name, kind, size }));
    return { path, entries, total: all.length, truncated: all.length > entries.length };
  },
  tests: [
    {
      name: "lists the workspace root by default",
      args: {},
      mocks: [
        {
          call: "fs.list",
          args: { path: "." },
          reply: {
            ok: [
              { name: "README.md", kind: "file", size: 120 },
              { name: "src", kind: "dir", size: 4096 },
            ],
          },
        },
      ],
      expect: {
        path: ".",
        entries: [
          { name: "README.md", kind: "file", size: 120 },
          { name: "src", kind: "dir", size: 4096 },
        ],
        total: 2,
        truncated: false,
      },
      expectCalls: [{ call: "fs.list", args: { path: "." } }],
    },
    {
      name: "caps the entries at maxEntries",
      args: { path: "data", maxEntries: 2 },
      mocks: [
        {
          call: "fs.list",
          args: { path: "data" },
          reply: {
            ok: [
              { name: "a.csv", kind: "file", size: 1 },
              { name: "b.csv", kind: "file", size: 2 },
              { name: "c.csv", kind: "file", size: 3 },
            ],
          },
        },
      ],
      expect: {
        path: "data",
        entries: [
          { name: "a.csv", kind: "file", size: 1 },
          { name: "b.csv", kind: "file", size: 2 },
        ],
        total: 3,
        truncated: true,
      },
    },
    {
      name: "a missing directory is NotFound",
      args: { path: "nowhere" },
      mocks: [{ call: "fs.list", reply: { err: { class: "NotFound", message: "fs.list \"nowhere\": no such directory" } } }],
      expectError: "NotFound",
    },
    {
      name: "a denied directory is PermissionDenied",
      args: { path: "secrets" },
      mocks: [{ call: "fs.list", reply: { err: { class: "PermissionDenied", message: "it needs fs.read:secrets" } } }],
      expectError: "PermissionDenied",
    },
  ],
});
