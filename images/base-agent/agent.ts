// base-agent: the agent loop over the process's whole tool table.
import { checkpointAction, delegateAction, runAgent } from "libos:agent";

const report = await runAgent({
  goal: libos.goal ?? libos.args.join(" "),
  system:
    "You are a careful general-purpose agent working in a sandboxed workspace. Use the tools to " +
    "inspect before you change anything, prefer small reversible steps, take a checkpoint before a " +
    "risky change, fork sub-agents (delegate) for independent parts of the work, and ask the " +
    "human (ask_human) when a decision is theirs to make.",
  actions: { checkpoint: checkpointAction, delegate: delegateAction },
});
libos.exit(report);
