// worker.ts: a sub-agent beside every built-in image's entry, so an agent can fork one
// with spawn_agent({ entry: "worker.ts", args: [TASK, ROLE?], mode: "worker", caps }).
// It runs the agent loop on TASK with the capabilities its parent gave it, and exits
// with its report (which wait_agent returns to the parent).
import { runAgent } from "libos:agent";

const [task, role] = libos.args;
const report = await runAgent({
  goal: task ?? libos.goal ?? "",
  system: role ??
    "You are a worker agent forked for one sub-task. Do exactly the task, with the tools you " +
    "have, and report the result in summary and evidence.",
  maxSteps: 15,
});
libos.exit(report);
