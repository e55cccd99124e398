// mem_put: stores one JSON value in Object Memory, optionally as a compare-and-set.
import { defineTool } from "libos:tool";

export default defineTool({
  name: "mem_put",
  description:
    "Stores a JSON value in Object Memory under `key`, creating the object or replacing its value (its version goes up by 1). `ns` is the namespace (default: this agent's own, which needs no permission; others need mem.write). `type` names what the value is (default \"json\"). With `ifVersion` the write happens only if the object's current version is exactly that (0: only if it does not exist yet); otherwise it fails with Conflict and nothing changes. Values over 1 MiB of JSON fail with LimitExceeded. Fails with PermissionDenied if this agent may not write the namespace.",
  input: {
    type: "object",
    properties: {
      key: { type: "string", minLength: 1, maxLength: 512, description: "The object's key." },
      value: { description: "Any JSON value." },
      type: { type: "string", minLength: 1, maxLength: 128, description: "Type name, e.g. \"note/v1\"; default \"json\"." },
      ns: { type: "string", minLength: 1, maxLength: 200, description: "Namespace, e.g. \"shared/notes\"; default: this agent's own." },
      ifVersion: { type: "integer", minimum: 0, description: "Write only if the current version is this (0: only if absent)." },
    },
    required: ["key", "value"],
    additionalProperties: false,
  },
  output: {
    type: "object",
    properties: {
      key: { type: "string" },
      ns: { type: ["string", "null"] },
      version: { type: "integer" },
    },
    required: ["key", "ns", "version"],
    additionalProperties: false,
  },
  capabilities: ["mem.write:**"],
  run: async (
    { key, value, type, ns, ifVersion }: { key: string; value: unknown; type?: string; ns?: string; ifVersion?: number },
  ) => {
    const { version } = await libos.mem.put(key, value, { type, ns, ifVersion });
    // null: this agent's own namespace.
    return { key, ns: ns ?? null, version };
  },
  tests: [
    {
      name: "stores a value in the own namespace",
      args: { key: "notes/today", value: { done: ["x"] } },
      mocks: [{ call: "mem.put", args: { key: "notes/today", value: { done: ["x"] } }, reply: { ok: { version: 1 } } }],
      expect: { key: "notes/today", ns: null, version: 1 },
      expectCalls: [{ call: "mem.put", args: { key: "notes/today", value: { done: ["x"] } } }],
    },
    {
      name: "passes type, namespace and ifVersion through",
      args: { key: "plan", value: "v2", type: "text", ns: "shared/team", ifVersion: 1 },
      mocks: [
        {
          call: "mem.put",
          args: { key: "plan", value: "v2", type: "text", ns: "shared/team", ifVersion: 1 },
          reply: { ok: { version: 2 } },
        },
      ],
      expect: { key: "plan", ns: "shared/team", version: 2 },
    },
    {
      name: "a stale ifVersion is Conflict",
      args: { key: "plan", value: 1, ifVersion: 0 },
      mocks: [{ call: "mem.put", reply: { err: { class: "Conflict", message: "mem.put \"plan\": version is 4, not 0" } } }],
      expectError: "Conflict",
    },
    {
      name: "a denied namespace is PermissionDenied",
      args: { key: "k", value: 1, ns: "shared/other" },
      mocks: [{ call: "mem.put", reply: { err: { class: "PermissionDenied", message: "it needs mem.write:shared/other" } } }],
      expectError: "PermissionDenied",
    },
    {
      name: "a too large value is LimitExceeded",
      args: { key: "k", value: "huge" },
      mocks: [{ call: "mem.put", reply: { err: { class: "LimitExceeded", message: "value over 1 MiB" } } }],
      expectError: "LimitExceeded",
    },
  ],
});
