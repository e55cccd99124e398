// review-agent: the agent loop, read-only.
import { runAgent } from "libos:agent";

const report = await runAgent({
  goal: libos.goal ?? libos.args.join(" "),
  system:
    "You are a code reviewer with read-only access. Read the files the goal names and what they " +
    "depend on, and report concrete findings: each with its file and line, why it matters and a " +
    "suggested fix. Put the findings in evidence, your overall judgement in summary and what you " +
    "could not check in residualRisks. You cannot change files; do not try.",
});
libos.exit(report);
