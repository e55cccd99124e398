// A tool the agent writes mid-run: it extracts the ids of failed tests from a pytest log.
// It declares the one capability it needs; the kernel checks every read it makes.
import { defineTool } from "libos:tool";

export default defineTool({
  name: "failed_test_ids",
  description: "Lists the ids of the failed tests in a pytest log file.",
  input: {
    type: "object",
    properties: { path: { type: "string", description: "workspace path of the log" } },
    required: ["path"],
    additionalProperties: false,
  },
  capabilities: ["fs.read:logs/**"],
  run: async (args: { path: string }) => {
    const log = await libos.fs.readText(args.path);
    const ids = new Set<string>();
    for (const line of log.split("\n")) {
      const match = /^FAILED (\S+)/.exec(line);
      if (match) ids.add(match[1]);
    }
    return [...ids];
  },
});
