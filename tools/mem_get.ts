// mem_get: one Object Memory object; a large value is returned as a cut JSON preview.
import { defineTool, truncate } from "libos:tool";

export default defineTool({
  name: "mem_get",
  description:
    "Reads one object from Object Memory by key. `ns` is the namespace (default: this agent's own, which needs no permission; others such as \"shared/team\" need mem.read). Returns found: false if there is no such key. Otherwise returns its type, version, creator, timestamps and value; if the value's JSON is larger than `maxBytes` (default 65536), `value` is omitted and `preview` holds the start of its JSON text with `truncated: true`. Fails with PermissionDenied if this agent may not read the namespace.",
  input: {
    type: "object",
    properties: {
      key: { type: "string", minLength: 1, maxLength: 512, description: "The object's key." },
      ns: { type: "string", minLength: 1, maxLength: 200, description: "Namespace, e.g. \"shared/notes\"; default: this agent's own." },
      maxBytes: { type: "integer", minimum: 1, maximum: 1048576, default: 65536, description: "Largest value (as JSON) to return whole." },
    },
    required: ["key"],
    additionalProperties: false,
  },
  output: {
    type: "object",
    properties: {
      found: { type: "boolean" },
      key: { type: "string" },
      ns: { type: "string" },
      type: { type: "string" },
      version: { type: "integer" },
      creator: { type: "string" },
      createdMs: { type: "integer" },
      updatedMs: { type: "integer" },
      size: { type: "integer" },
      value: {},
      preview: { type: "string" },
      truncated: { type: "boolean" },
    },
    required: ["found", "key"],
    additionalProperties: false,
  },
  capabilities: ["mem.read:**"],
  run: async ({ key, ns, maxBytes = 65536 }: { key: string; ns?: string; maxBytes?: number }) => {
    const object = await libos.mem.get(key, ns === undefined ? undefined : { ns });
    if (object === null) return { found: false, key };
    const { type, version, creator, createdMs, updatedMs, value } = object;
    const json = truncate(JSON.stringify(value), maxBytes);
    const body = json.truncated ? { preview: json.text, truncated: true } : { value, truncated: false };
    return { found: true, key, ns: object.ns, type, version, creator, createdMs, updatedMs, size: json.bytes, ...body };
  },
  tests: [
    {
      name: "reads an object",
      args: { key: "plan", ns: "shared/team" },
      mocks: [
        {
          call: "mem.get",
          args: { key: "plan", ns: "shared/team" },
          reply: {
            ok: {
              ns: "shared/team",
              key: "plan",
              type: "json",
              value: { steps: ["a", "b"] },
              version: 3,
              creator: "p1",
              createdMs: 1000,
              updatedMs: 2000,
            },
          },
        },
      ],
      expect: {
        found: true,
        key: "plan",
        ns: "shared/team",
        type: "json",
        version: 3,
        creator: "p1",
        createdMs: 1000,
        updatedMs: 2000,
        size: 19,
        value: { steps: ["a", "b"] },
        truncated: false,
      },
      expectCalls: [{ call: "mem.get", args: { key: "plan", ns: "shared/team" } }],
    },
    {
      name: "a missing key is found: false",
      args: { key: "nothing" },
      mocks: [{ call: "mem.get", args: { key: "nothing" }, reply: { ok: null } }],
      expect: { found: false, key: "nothing" },
    },
    {
      name: "a large value becomes a cut preview",
      args: { key: "big", maxBytes: 10 },
      mocks: [
        {
          call: "mem.get",
          reply: {
            ok: {
              ns: "proc/p1",
              key: "big",
              type: "text",
              value: "0123456789abcdef",
              version: 1,
              creator: "p1",
              createdMs: 5,
              updatedMs: 5,
            },
          },
        },
      ],
      expect: {
        found: true,
        key: "big",
        ns: "proc/p1",
        type: "text",
        version: 1,
        creator: "p1",
        createdMs: 5,
        updatedMs: 5,
        size: 18,
        preview: "\"012345678",
        truncated: true,
      },
    },
    {
      name: "a denied namespace is PermissionDenied",
      args: { key: "k", ns: "shared/secret" },
      mocks: [{ call: "mem.get", reply: { err: { class: "PermissionDenied", message: "it needs mem.read:shared/secret" } } }],
      expectError: "PermissionDenied",
    },
  ],
});
