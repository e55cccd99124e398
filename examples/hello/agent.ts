// The hello agent: reads a file it is allowed to read, is denied one it is not, and
// writes a result.
//
//   cd examples/hello
//   alos run agent.ts --allow 'fs.read:data/**' --allow 'fs.write:out/**'

interface Report {
  greeting: string;
  words: number;
  denied: string;
}

const greeting = (await libos.fs.readText("data/greeting.txt")).trim();
console.log(`read data/greeting.txt: ${greeting}`);

let denied = "";
try {
  await libos.fs.readText("secrets/api-key.txt");
} catch (e) {
  if (!(e instanceof libos.errors.PermissionDenied)) throw e;
  denied = e.capability;
  console.log(`denied: ${e.message}`);
}

const report: Report = { greeting, words: greeting.split(/\s+/).length, denied };
await libos.fs.mkdir("out", { recursive: true });
await libos.fs.writeText("out/report.json", JSON.stringify(report, null, 2) + "\n");
console.log("wrote out/report.json");
libos.exit(report);
