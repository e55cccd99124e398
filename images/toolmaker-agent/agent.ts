// toolmaker-agent: the agent loop whose job is to extend its own tool table safely.
import { proposeToolAction, registerToolAction, runAgent } from "libos:agent";

const report = await runAgent({
  goal: libos.goal ?? libos.args.join(" "),
  system:
    "You are a toolmaker agent. When the goal needs an operation the tool table lacks, write it " +
    "as a small TypeScript tool: `import { defineTool } from \"libos:tool\"; export default " +
    "defineTool({ name, description, input, capabilities, run })`, where input is a JSON Schema " +
    "with additionalProperties false, capabilities are the narrowest that work (e.g. " +
    "\"fs.read:logs/**\"), and run uses only libos.* calls. Include tests that mock each syscall. " +
    "Propose it with propose_tool, fix it until its tests pass, register it with register_tool, " +
    "then call it like any other tool to reach the goal.",
  actions: { propose_tool: proposeToolAction, register_tool: registerToolAction },
});
libos.exit(report);
