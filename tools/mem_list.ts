// mem_list: what is in a namespace, without the values (mem_get reads one).
import { defineTool } from "libos:tool";

export default defineTool({
  name: "mem_list",
  description:
    "Lists Object Memory objects whose key starts with `prefix` (exact, case-sensitive; default: all), sorted by key, without their values: key, type, version, size of the value's JSON in bytes, creator and last update time. Use mem_get to read a value. `ns` is the namespace (default: this agent's own; others need mem.read). At most `maxEntries` (default 100) are returned and `truncated` says whether more exist. Fails with PermissionDenied if this agent may not read the namespace.",
  input: {
    type: "object",
    properties: {
      prefix: { type: "string", maxLength: 512, default: "", description: "Only keys starting with this." },
      ns: { type: "string", minLength: 1, maxLength: 200, description: "Namespace, e.g. \"shared/notes\"; default: this agent's own." },
      maxEntries: { type: "integer", minimum: 1, maximum: 1000, default: 100, description: "Most objects to return." },
    },
    required: [],
    additionalProperties: false,
  },
  output: {
    type: "object",
    properties: {
      entries: {
        type: "array",
        items: {
          type: "object",
          properties: {
            key: { type: "string" },
            type: { type: "string" },
            version: { type: "integer" },
            size: { type: "integer" },
            creator: { type: "string" },
            updatedMs: { type: "integer" },
          },
          required: ["key", "type", "version", "size", "creator", "updatedMs"],
          additionalProperties: false,
        },
      },
      truncated: { type: "boolean" },
    },
    required: ["entries", "truncated"],
    additionalProperties: false,
  },
  capabilities: ["mem.read:**"],
  run: async ({ prefix = "", ns, maxEntries = 100 }: { prefix?: string; ns?: string; maxEntries?: number }) => {
    const all = await libos.mem.list(prefix, ns === undefined ? undefined : { ns });
    const entries = all
      .slice(0, maxEntries)
      .map(({ key, type, version, size, creator, updatedMs }) => ({ key, type, version, size, creator, updatedMs }));
    // The kernel itself stops at 1000 objects, so a full page may hide more.
    return { entries, truncated: all.length > maxEntries || all.length >= 1000 };
  },
  tests: [
    {
      name: "lists keys by prefix without values",
      args: { prefix: "notes/" },
      mocks: [
        {
          call: "mem.list",
          args: { prefix: "notes/" },
          reply: {
            ok: [
              { ns: "proc/p1", key: "notes/a", type: "json", version: 2, creator: "p1", createdMs: 1, updatedMs: 9, size: 7, value: "hello" },
              { ns: "proc/p1", key: "notes/b", type: "text", version: 1, creator: "p1", createdMs: 3, updatedMs: 3, size: 20000 },
            ],
          },
        },
      ],
      expect: {
        entries: [
          { key: "notes/a", type: "json", version: 2, size: 7, creator: "p1", updatedMs: 9 },
          { key: "notes/b", type: "text", version: 1, size: 20000, creator: "p1", updatedMs: 3 },
        ],
        truncated: false,
      },
      expectCalls: [{ call: "mem.list", args: { prefix: "notes/" } }],
    },
    {
      name: "caps the list at maxEntries",
      args: { ns: "shared/team", maxEntries: 1 },
      mocks: [
        {
          call: "mem.list",
          args: { prefix: "", ns: "shared/team" },
          reply: {
            ok: [
              { ns: "shared/team", key: "a", type: "json", version: 1, creator: "p2", createdMs: 1, updatedMs: 1, size: 1, value: 1 },
              { ns: "shared/team", key: "b", type: "json", version: 1, creator: "p2", createdMs: 1, updatedMs: 1, size: 1, value: 2 },
            ],
          },
        },
      ],
      expect: { entries: [{ key: "a", type: "json", version: 1, size: 1, creator: "p2", updatedMs: 1 }], truncated: true },
    },
    {
      name: "an empty namespace lists nothing",
      args: {},
      mocks: [{ call: "mem.list", reply: { ok: [] } }],
      expect: { entries: [], truncated: false },
    },
    {
      name: "a denied namespace is PermissionDenied",
      args: { ns: "shared/secret" },
      mocks: [{ call: "mem.list", reply: { err: { class: "PermissionDenied", message: "it needs mem.read:shared/secret" } } }],
      expectError: "PermissionDenied",
    },
  ],
});
