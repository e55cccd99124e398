// Registers a tool mid-run (the JIT pipeline of DESIGN §6), with a human approving it,
// then calls it. Run it as the README shows:
//
//   cd examples/jit
//   alos run agent.ts --allow 'fs.read:logs/**' --allow fs.read:failed_ids.ts --ask tool.register
//
// and approve the registration from another terminal (`alos inbox`, `alos approve r1`).

const source = await libos.fs.readText("failed_ids.ts");

// 1. Propose: the kernel parses it, checks it statically, checks that its capabilities
//    are within ours, and runs its tests against a mock broker in a fresh isolate.
const proposal = await libos.tools.propose({
  name: "failed_test_ids",
  description: "Lists the ids of the failed tests in a pytest log file.",
  input: {
    type: "object",
    properties: { path: { type: "string", description: "workspace path of the log" } },
    required: ["path"],
    additionalProperties: false,
  },
  capabilities: ["fs.read:logs/**"],
  source,
  tests: [
    {
      name: "finds each failed test once",
      args: { path: "logs/x.log" },
      mocks: [{
        call: "fs.readText",
        args: { path: "logs/x.log" },
        reply: { ok: "a PASSED\nFAILED t.py::a - boom\nFAILED t.py::b\nFAILED t.py::a - boom\n" },
      }],
      expect: ["t.py::a", "t.py::b"],
    },
    {
      name: "a missing log is an error",
      args: { path: "logs/none.log" },
      mocks: [{ call: "fs.readText", reply: { err: { class: "NotFound", message: "no such file" } } }],
      expectError: "NotFound",
    },
  ],
});
console.log(`proposed ${proposal.candidateId}: ${proposal.tests.passed} tests passed, ${proposal.tests.failed} failed`);
if (!proposal.ok) libos.exit({ refused: proposal });

// 2. Register: needs tool.register; with `--ask tool.register` a human sees the source,
//    its capabilities and the test results first.
const registered = await libos.tools.register(proposal.candidateId);
console.log(`registered ${registered.name} (scope ${registered.scope})`);

// 3. Call it like any tool in the table.
const ids = await libos.tools.call("failed_test_ids", { path: "logs/pytest.log" });
console.log(`failed tests: ${ids.join(", ")}`);
libos.exit({ failed: ids });
