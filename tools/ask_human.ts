// ask_human: a question to the human operator, through the kernel's durable human queue.
import { defineTool } from "libos:tool";

export default defineTool({
  name: "ask_human",
  description:
    "Asks the human operator a question and waits for the answer (this can take minutes or hours; the agent sleeps meanwhile). Use it for decisions or facts only a person can provide, not for routine confirmation. Optional `choices` limits the answer to one of them. With `timeoutMs`, the answer is `default` once the deadline passes (or the call fails with Timeout if there is no default). Fails with PermissionDenied if this agent may not ask a human.",
  input: {
    type: "object",
    properties: {
      question: { type: "string", minLength: 1, maxLength: 4000, description: "The question, self-contained: the human sees nothing else." },
      choices: {
        type: "array",
        items: { type: "string", minLength: 1, maxLength: 200 },
        minItems: 2,
        maxItems: 20,
        uniqueItems: true,
        description: "Allowed answers, e.g. [\"yes\", \"no\"].",
      },
      timeoutMs: { type: "integer", minimum: 1000, maximum: 604800000, description: "How long to wait for an answer." },
      default: { type: "string", maxLength: 200, description: "The answer if the deadline passes." },
    },
    required: ["question"],
    additionalProperties: false,
  },
  output: {
    type: "object",
    properties: { answer: { type: "string" } },
    required: ["answer"],
    additionalProperties: false,
  },
  capabilities: ["human.ask"],
  run: async (
    { question, choices, timeoutMs, default: fallback }: {
      question: string;
      choices?: string[];
      timeoutMs?: number;
      default?: string;
    },
  ) => {
    const answer = await libos.human.ask(question, { choices, timeoutMs, default: fallback });
    return { answer };
  },
  tests: [
    {
      name: "asks and returns the answer",
      args: { question: "Deploy to production now?", choices: ["yes", "no"] },
      mocks: [
        {
          call: "human.ask",
          args: { question: "Deploy to production now?", choices: ["yes", "no"] },
          reply: { ok: "no" },
        },
      ],
      expect: { answer: "no" },
      expectCalls: [{ call: "human.ask", args: { question: "Deploy to production now?", choices: ["yes", "no"] } }],
    },
    {
      name: "passes the deadline and its default",
      args: { question: "Which region?", timeoutMs: 60000, default: "eu-west-1" },
      mocks: [
        {
          call: "human.ask",
          args: { question: "Which region?", timeoutMs: 60000, default: "eu-west-1" },
          reply: { ok: "eu-west-1" },
        },
      ],
      expect: { answer: "eu-west-1" },
    },
    {
      name: "no answer and no default is Timeout",
      args: { question: "Anyone there?", timeoutMs: 1000 },
      mocks: [{ call: "human.ask", reply: { err: { class: "Timeout", message: "human.ask: no answer within 1s" } } }],
      expectError: "Timeout",
    },
    {
      name: "without human.ask it is PermissionDenied",
      args: { question: "May I?" },
      mocks: [{ call: "human.ask", reply: { err: { class: "PermissionDenied", message: "it needs human.ask" } } }],
      expectError: "PermissionDenied",
    },
  ],
});
