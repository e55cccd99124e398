// now: the time from the kernel's clock (journaled, so a resumed agent sees the same value).
import { defineTool } from "libos:tool";

export default defineTool({
  name: "now",
  description: "Returns the current time: milliseconds since the Unix epoch and the same instant in ISO 8601 (UTC).",
  input: { type: "object", properties: {}, additionalProperties: false },
  output: {
    type: "object",
    properties: { ms: { type: "integer" }, iso: { type: "string" } },
    required: ["ms", "iso"],
    additionalProperties: false,
  },
  capabilities: [],
  run: async () => {
    const ms = libos.now();
    return { ms, iso: new Date(ms).toISOString() };
  },
  tests: [
    {
      name: "reads the kernel clock",
      args: {},
      mocks: [{ call: "now", reply: { ok: 1700000000000 } }],
      expect: { ms: 1700000000000, iso: "2023-11-14T22:13:20.000Z" },
      expectCalls: [{ call: "now" }],
    },
    {
      name: "the epoch",
      args: {},
      mocks: [{ call: "now", reply: { ok: 0 } }],
      expect: { ms: 0, iso: "1970-01-01T00:00:00.000Z" },
    },
  ],
});
