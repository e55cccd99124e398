// sleep: waits on the kernel's clock (a long sleep hibernates the agent instead of holding an isolate).
import { defineTool } from "libos:tool";

export default defineTool({
  name: "sleep",
  description:
    "Waits for `ms` milliseconds (at most one hour), e.g. before polling something again. Returns how long it was asked to sleep.",
  input: {
    type: "object",
    properties: {
      ms: { type: "integer", minimum: 0, maximum: 3600000, description: "Milliseconds to wait." },
    },
    required: ["ms"],
    additionalProperties: false,
  },
  output: {
    type: "object",
    properties: { sleptMs: { type: "integer" } },
    required: ["sleptMs"],
    additionalProperties: false,
  },
  capabilities: [],
  run: async ({ ms }: { ms: number }) => {
    await libos.sleep(ms);
    return { sleptMs: ms };
  },
  tests: [
    {
      name: "sleeps through the kernel",
      args: { ms: 1500 },
      mocks: [{ call: "sleep", args: { ms: 1500 }, reply: { ok: null } }],
      expect: { sleptMs: 1500 },
      expectCalls: [{ call: "sleep", args: { ms: 1500 } }],
    },
    {
      name: "a cancelled agent's sleep is Cancelled",
      args: { ms: 60000 },
      mocks: [{ call: "sleep", reply: { err: { class: "Cancelled", message: "sleep: the process was cancelled" } } }],
      expectError: "Cancelled",
    },
  ],
});
