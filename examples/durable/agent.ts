// A long-running agent with durable steps: it remembers progress in Object Memory,
// checkpoints before a write that needs a human, and can be killed at any point and
// resumed without repeating what it already did.
const run = libos.random().toString(36).slice(2, 8);
await libos.fs.writeText("out/log.txt", `run ${run}: started\n`, { append: true });
await libos.mem.put("progress", { step: "drafted", run });
const checkpoint = await libos.checkpoint("before-publish");
console.log(`checkpoint ${checkpoint}; publishing needs a human's approval (alos inbox)`);
await libos.fs.writeText("out/published.txt", `published by run ${run}\n`);
await libos.mem.put("progress", { step: "published", run });
await libos.fs.writeText("out/log.txt", `run ${run}: published\n`, { append: true });
libos.exit({ run, checkpoint });
