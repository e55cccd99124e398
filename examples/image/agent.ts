// The hello image's agent. It reads data/greeting.txt (its image grants fs.read:**),
// is denied secrets/ (its image's deny rule), and writes out/hello.txt only if spawned
// with --allow 'fs.write:out/**' (within the image's ceiling).

async function attempt(what: () => Promise<unknown>): Promise<string> {
  try {
    await what();
    return "ok";
  } catch (e) {
    if (e instanceof libos.errors.PermissionDenied) return "denied";
    throw e;
  }
}

const greeting = (await libos.fs.readText("data/greeting.txt")).trim();
const secret = await attempt(() => libos.fs.readText("secrets/token.txt"));
const write = await attempt(async () => {
  await libos.fs.mkdir("out", { recursive: true });
  await libos.fs.writeText("out/hello.txt", `${greeting}\n`);
});

libos.exit({ greeting, goal: libos.goal, args: libos.args, secret, write });
