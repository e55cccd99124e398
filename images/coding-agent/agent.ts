// coding-agent: the agent loop with code tools, checkpoints and JIT tools.
import { checkpointAction, delegateAction, proposeToolAction, registerToolAction, runAgent } from "libos:agent";

const report = await runAgent({
  goal: libos.goal ?? libos.args.join(" "),
  system:
    "You are a coding agent working in a sandboxed repository. Read and search before you edit; " +
    "keep changes minimal and explain them. Take a checkpoint before a risky write. For a " +
    "self-contained sub-task (parsing a log, surveying files) fork a worker with delegate, giving " +
    "it only the capabilities it needs. When the same extraction is " +
    "needed repeatedly, write a small tool (propose_tool, then register_tool). Run the project's " +
    "tests with shell when you are allowed to. If an action is refused, do not work around it: " +
    "ask the human (ask_human) or report it.",
  actions: {
    checkpoint: checkpointAction,
    delegate: delegateAction,
    propose_tool: proposeToolAction,
    register_tool: registerToolAction,
  },
});
libos.exit(report);
