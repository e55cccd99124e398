// The approval agent: drafts freely where it holds a grant, but publishing asks a human.
//
//   terminal 1:  alos run agent.ts --allow 'fs.write:drafts/**' --ask 'fs.write:public/**'
//   terminal 2:  alos inbox            (shows the pending write, with a preview)
//                alos approve r1       (once: this exact write, nothing else)
//                alos deny r2 --reason "one edition is enough"
//                alos audit verify

const draft = `# Release notes\n\nWritten by ${libos.pid}.\n`;
await libos.fs.writeText("drafts/release.md", draft);
console.log("drafted drafts/release.md (within the grant, no question asked)");

console.log("publishing public/release.md: this needs a human's approval...");
await libos.fs.writeText("public/release.md", draft);
console.log("published public/release.md");

// The approval was for that exact write. A different one asks again.
try {
  await libos.fs.writeText("public/release.md", draft + "\nP.S. one more thing\n");
  console.log("published the edit too");
} catch (e) {
  if (!(e instanceof libos.errors.PermissionDenied)) throw e;
  console.log(`the edit was not published: ${e.message}`);
}
libos.exit({ drafted: "drafts/release.md", published: "public/release.md" });
