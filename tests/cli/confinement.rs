//! Hostile paths: nothing outside the workspace, and nothing in the state directory, is
//! reachable, whatever the capability; failures are clear, audited, and lose nothing.

use std::os::unix::fs::symlink;

use super::common::Run;
use super::common::Sandbox;

/// Runs a script that tries `op` on each path and prints `path -> ErrorClass` lines.
fn attempt(sandbox: &Sandbox, op: &str, paths: &[&str], caps: &[&str]) -> String {
  let list = serde_json::to_string(paths).unwrap();
  let code = format!(
    r#"
    for (const p of {list}) {{
      try {{ await {op}; console.log(`${{JSON.stringify(p)}} -> ok`); }}
      catch (e) {{ console.log(`${{JSON.stringify(p)}} -> ${{e.name}}: ${{e.message}}`); }}
    }}"#
  );
  let run = sandbox.run("probe.ts", &code, caps);
  run.expect_code(0);
  run.stdout.clone()
}

fn line_for<'a>(out: &'a str, path: &str) -> &'a str {
  let key = format!("{} ->", serde_json::to_string(path).unwrap());
  out.lines().find(|l| l.starts_with(&key)).unwrap_or_else(|| panic!("no line for {path} in\n{out}"))
}

#[test]
fn escapes_are_denied_even_with_full_fs_capabilities() {
  let outside = tempfile::tempdir().unwrap();
  std::fs::write(outside.path().join("secret.txt"), "outside secret").unwrap();
  let sandbox = Sandbox::new();
  symlink(outside.path(), sandbox.path().join("link-out")).unwrap();
  symlink(outside.path().join("secret.txt"), sandbox.path().join("file-link-out")).unwrap();
  symlink("../", sandbox.path().join("rel-up")).unwrap();
  let outside_abs = outside.path().join("secret.txt").display().to_string();
  let paths = [
    "../secret.txt",
    "a/../../secret.txt",
    outside_abs.as_str(),
    "/etc/passwd",
    "/proc/self/root/etc/passwd",
    "link-out/secret.txt",
    "file-link-out",
    "rel-up/etc/passwd",
  ];
  let caps = ["--allow", "fs.read", "--allow", "fs.write", "--allow", "fs.delete"];
  let reads = attempt(&sandbox, "libos.fs.readText(p)", &paths, &caps);
  for path in paths {
    let line = line_for(&reads, path);
    assert!(line.contains("PermissionDenied"), "{line}");
  }
  assert!(!reads.contains("outside secret"), "{reads}");
  let writes = attempt(&sandbox, "libos.fs.writeText(p, 'x')", &paths, &caps);
  for path in paths {
    let line = line_for(&writes, path);
    if path == "file-link-out" {
      // Replacing a file never writes through a final symlink: the link itself is
      // replaced by a regular file in the workspace.
      assert!(line.contains("-> ok"), "{line}");
    } else {
      assert!(line.contains("PermissionDenied"), "{line}");
    }
  }
  assert!(!sandbox.path().join("file-link-out").symlink_metadata().unwrap().file_type().is_symlink());
  let removes = attempt(&sandbox, "libos.fs.remove(p, {recursive: true})", &["link-out/secret.txt", "../x"], &caps);
  assert!(removes.lines().all(|l| l.contains("PermissionDenied")), "{removes}");
  // Nothing outside changed.
  assert_eq!(std::fs::read_to_string(outside.path().join("secret.txt")).unwrap(), "outside secret");
  assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 1);
  // Every refused attempt is in the audit log.
  let audit = sandbox.audit();
  let refused = audit.iter().filter(|r| r["outcome"].as_str().unwrap_or("").contains("PermissionDenied")).count();
  assert!(refused >= paths.len() * 2 - 1, "{refused} refusals recorded");
}

#[test]
fn the_state_directory_is_unreachable() {
  let sandbox = Sandbox::new();
  // A first run creates .alos/ and its audit log.
  sandbox.run("first.ts", "", &[]).expect_code(0);
  symlink(".alos", sandbox.path().join("state-link")).unwrap();
  symlink(sandbox.path().join(".alos/alos.db"), sandbox.path().join("audit-link")).unwrap();
  let paths = [".alos/alos.db", "./.alos/x", "state-link/alos.db", "audit-link", "state-link/new.txt"];
  let caps = ["--allow", "fs.read", "--allow", "fs.write", "--allow", "fs.delete"];
  let reads = attempt(&sandbox, "libos.fs.readText(p)", &paths, &caps);
  let writes = attempt(&sandbox, "libos.fs.writeText(p, 'forged')", &paths, &caps);
  let removes = attempt(&sandbox, "libos.fs.remove(p)", &[".alos/alos.db", "state-link/alos.db"], &caps);
  for path in paths {
    let line = line_for(&reads, path);
    assert!(line.contains("PermissionDenied"), "{line}");
    let line = line_for(&writes, path);
    // Writing onto `audit-link` replaces the link itself, never the log it points to.
    assert!(path == "audit-link" || line.contains("PermissionDenied"), "{line}");
  }
  assert!(!removes.contains("-> ok"), "{removes}");
  // The database and its audit chain are intact and hold no forged content.
  Run::from(sandbox.alos().args(["audit", "verify"]).output().unwrap()).expect_code(0);
  for file in [".alos/alos.db", ".alos/alos.db-wal"] {
    let bytes = std::fs::read(sandbox.path().join(file)).unwrap_or_default();
    assert!(!bytes.windows(6).any(|w| w == b"forged"), "{file} holds forged content");
  }
  assert!(!sandbox.exists(".alos/new.txt"));
  // The state dir is hidden from listings.
  let list = sandbox.run("list.ts", "console.log(JSON.stringify((await libos.fs.list()).map(e => e.name)))", &caps);
  assert!(!list.stdout.contains(".alos"), "{}", list.stdout);
}

#[test]
fn a_state_directory_that_does_not_exist_yet_is_unreachable() {
  let sandbox = Sandbox::new();
  let caps = ["--allow", "fs.write", "--state", "future-state"];
  // `--state` names a directory inside the workspace; alos creates it, and the script
  // cannot create or write anything inside it.
  let out = attempt(&sandbox, "libos.fs.mkdir(p, {recursive: true})", &["future-state/x"], &caps);
  assert!(!out.contains("-> ok"), "{out}");
}

#[test]
fn nul_bytes_and_overlong_paths_are_invalid_arguments() {
  let sandbox = Sandbox::new();
  let long_segment = "a".repeat(300);
  let long_path = ["b"; 2100].join("/");
  let out = attempt(&sandbox, "libos.fs.readText(p)", &["a\u{0}b", &long_segment, &long_path], &["--allow", "fs.read"]);
  for line in out.lines() {
    assert!(line.contains("InvalidArgument"), "{line}");
  }
}

#[test]
fn wrong_argument_types_are_invalid_arguments() {
  let sandbox = Sandbox::new();
  let run = sandbox.run(
    "a.ts",
    r#"
    for (const f of [() => libos.fs.readText(42), () => libos.fs.writeText("a", {}), () => libos.fs.mkdir("a", {recursive: "yes"}), () => libos.fs.writeText("a", "x", {apend: true})]) {
      try { await f(); console.log("ok"); } catch (e) { console.log(e.name + ": " + e.message); }
    }"#,
    &["--allow", "fs.read", "--allow", "fs.write"],
  );
  run.expect_code(0);
  let lines: Vec<&str> = run.stdout.lines().collect();
  assert_eq!(lines.len(), 4, "{}", run.stdout);
  assert!(lines.iter().all(|l| l.starts_with("InvalidArgument")), "{}", run.stdout);
  assert!(lines[3].contains("apend"), "{}", lines[3]);
  assert!(!sandbox.exists("a"));
}

#[test]
fn a_write_denied_halfway_keeps_earlier_writes_and_leaves_no_partial_file() {
  let sandbox = Sandbox::new();
  sandbox.write("out/keep.txt", "old");
  let run = sandbox.run(
    "a.ts",
    r#"
    await libos.fs.writeText("out/one.txt", "first");
    await libos.fs.writeText("out/keep.txt", "new");
    await libos.fs.writeText("elsewhere/two.txt", "x".repeat(1 << 20));
    await libos.fs.writeText("out/three.txt", "never");"#,
    &["--allow", "fs.write:out/**"],
  );
  run.expect_code(3).stderr_has("elsewhere/two.txt");
  assert_eq!(sandbox.read("out/one.txt"), "first");
  assert_eq!(sandbox.read("out/keep.txt"), "new");
  assert!(!sandbox.exists("elsewhere"));
  assert!(!sandbox.exists("out/three.txt"));
  let names: Vec<String> =
    std::fs::read_dir(sandbox.path().join("out")).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
  let mut names = names;
  names.sort();
  assert_eq!(names, ["keep.txt", "one.txt"], "no temp files left behind");
}

#[test]
fn non_utf8_text_is_a_clear_error_and_bytes_work() {
  let sandbox = Sandbox::new();
  sandbox.write("bin.dat", [0x66u8, 0x6f, 0xff, 0xfe, 0x00, 0x80]);
  let run = sandbox.run(
    "a.ts",
    r#"
    try { await libos.fs.readText("bin.dat"); } catch (e) { console.log(e.name + ": " + e.message); }
    const bytes = await libos.fs.readBytes("bin.dat");
    console.log(Array.from(bytes).join(","));
    await libos.fs.writeBytes("copy.dat", bytes);"#,
    &["--allow", "fs.read", "--allow", "fs.write"],
  );
  run.expect_code(0).stdout_has("InvalidArgument").stdout_has("not UTF-8").stdout_has("readBytes").stdout_has("102,111,255,254,0,128");
  assert_eq!(std::fs::read(sandbox.path().join("copy.dat")).unwrap(), [0x66u8, 0x6f, 0xff, 0xfe, 0x00, 0x80]);
}

#[test]
fn fs_api_round_trip() {
  let sandbox = Sandbox::new();
  let run = sandbox.run(
    "a.ts",
    r#"
    await libos.fs.mkdir("w/sub", { recursive: true });
    await libos.fs.writeText("w/sub/a.txt", "one\n");
    await libos.fs.writeText("w/sub/a.txt", "two\n", { append: true });
    await libos.fs.chdir("w");
    console.log("cwd", libos.fs.cwd());
    console.log(JSON.stringify(await libos.fs.list("sub")));
    const st = await libos.fs.stat("sub/a.txt");
    console.log("stat", st.kind, st.size);
    console.log(JSON.stringify(await libos.fs.readText("sub/a.txt")));
    try { await libos.fs.remove("sub"); } catch (e) { console.log(e.name); }
    await libos.fs.remove("sub", { recursive: true });
    try { await libos.fs.stat("sub"); } catch (e) { console.log(e.name); }"#,
    &["--allow", "fs.read:w/**", "--allow", "fs.write:w/**", "--allow", "fs.delete:w/**"],
  );
  run
    .expect_code(0)
    .stdout_has("cwd w")
    .stdout_has(r#"[{"name":"a.txt","kind":"file","size":8}]"#)
    .stdout_has("stat file 8")
    .stdout_has(r#""one\ntwo\n""#)
    .stdout_has("InvalidArgument")
    .stdout_has("NotFound");
  assert!(!sandbox.exists("w/sub"));
}

#[test]
fn a_symlink_inside_the_workspace_does_not_bypass_a_capability() {
  let sandbox = Sandbox::new();
  sandbox.write("docs/readme.txt", "docs");
  sandbox.write("secrets/key", "the secret key");
  sandbox.write("protected/keep.txt", "kept");
  std::fs::create_dir(sandbox.path().join("out")).unwrap();
  symlink("../secrets/key", sandbox.path().join("docs/x")).unwrap();
  symlink("../secrets", sandbox.path().join("docs/s")).unwrap();
  symlink("../protected", sandbox.path().join("out/link")).unwrap();

  // Reads: the capability is checked on where the link leads, and the deny rule holds there.
  let read_caps = ["--allow", "fs.read:docs/**", "--deny", "fs.read:secrets/**"];
  let run = sandbox.run(
    "read.ts",
    r#"
    try { await libos.fs.readText("docs/x"); console.log("read ok"); }
    catch (e) { console.log(`${e.name} | ${e.capability} | ${e.reason} | ${e.message}`); }"#,
    &read_caps,
  );
  run.expect_code(0);
  let line = run.stdout.trim();
  assert!(line.starts_with("PermissionDenied | fs.read:secrets/key | rule \"deny fs.read:secrets/**\" | "), "{line}");
  assert!(
    line.contains(
      r#"fs.readText "docs/x" resolves to "secrets/key" through a symlink, and that is denied by rule "deny fs.read:secrets/**""#
    ),
    "{line}"
  );
  let paths = ["docs/s/key", "docs/s", "docs/s/missing", "docs/readme.txt"];
  let reads = attempt(&sandbox, "(p === 'docs/s' ? libos.fs.list(p) : libos.fs.readText(p))", &paths, &read_caps);
  assert!(line_for(&reads, "docs/s/key").contains(r#"resolves to "secrets/key""#), "{reads}");
  assert!(line_for(&reads, "docs/s").contains(r#"resolves to "secrets" through a symlink"#), "{reads}");
  // Whether something exists there is not revealed either.
  assert!(line_for(&reads, "docs/s/missing").contains(r#"PermissionDenied: fs.readText "docs/s/missing" resolves to "secrets/missing""#), "{reads}");
  assert!(line_for(&reads, "docs/readme.txt").ends_with("-> ok"), "{reads}");
  assert!(!run.stdout.contains("the secret key") && !reads.contains("the secret key"));
  assert!(
    sandbox.audit().iter().any(|r| r["outcome"].as_str().unwrap_or("").contains(r#"resolves to "secrets/key""#)),
    "the refusal is in the audit log"
  );

  // Writes through `out/link -> ../protected` are refused before anything is touched.
  let write_caps = ["--allow", "fs.write:out/**", "--allow", "fs.delete:out/**"];
  let ops = [
    ("new", "libos.fs.writeText('out/link/new.txt', 'x')"),
    ("replace", "libos.fs.writeText('out/link/keep.txt', 'x')"),
    ("append", "libos.fs.writeText('out/link/keep.txt', 'x', {append: true})"),
    ("mkdir", "libos.fs.mkdir('out/link/d')"),
    ("mkdir-p", "libos.fs.mkdir('out/link/a/b', {recursive: true})"),
    ("remove", "libos.fs.remove('out/link/keep.txt')"),
    ("fine", "libos.fs.writeText('out/fine.txt', 'ok')"),
  ];
  let names: Vec<&str> = ops.iter().map(|(name, _)| *name).collect();
  let dispatch: String = ops.iter().map(|(name, op)| format!("p === '{name}' ? {op} : ")).collect();
  let writes = attempt(&sandbox, &format!("({dispatch} null)"), &names, &write_caps);
  for (name, _) in &ops[..ops.len() - 1] {
    let line = line_for(&writes, name);
    assert!(line.contains("PermissionDenied"), "{line}");
    assert!(line.contains(r#""out/link/"#) && line.contains(r#"resolves to "protected/"#), "{line}");
  }
  assert!(line_for(&writes, "new").contains(r#"resolves to "protected/new.txt" through a symlink, and that needs fs.write:protected/new.txt"#), "{writes}");
  assert!(line_for(&writes, "fine").ends_with("-> ok"), "{writes}");
  assert_eq!(sandbox.read("out/fine.txt"), "ok");
  let protected: Vec<_> = std::fs::read_dir(sandbox.path().join("protected")).unwrap().map(|e| e.unwrap().file_name()).collect();
  assert_eq!(protected, ["keep.txt"], "nothing was created in protected/");
  assert_eq!(sandbox.read("protected/keep.txt"), "kept");
}
