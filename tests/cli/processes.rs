//! Child processes: attenuation, fork modes, budgets, wait, signals, revocation.

use super::common::Sandbox;

/// Runs `main.ts` (with `files` beside it) and returns the parsed exit result.
fn run_main(sandbox: &Sandbox, main: &str, caps: &[&str]) -> serde_json::Value {
  let mut args = caps.to_vec();
  args.push("--json");
  let run = sandbox.run("main.ts", main, &args);
  let last = run.stdout.lines().last().unwrap_or("");
  let end: serde_json::Value =
    serde_json::from_str(last).unwrap_or_else(|e| panic!("{e}: stdout {}\nstderr {}", run.stdout, run.stderr));
  assert_eq!(end["status"], "ok", "{end}\nstderr {}", run.stderr);
  end["result"].clone()
}

#[test]
fn a_child_gets_what_it_asks_within_the_parent_and_reports_back() {
  let sandbox = Sandbox::new();
  sandbox.write("data/a.txt", "alpha");
  sandbox.write("sub/.keep", "");
  sandbox.write(
    "child.ts",
    r#"
    const text = await libos.fs.readText("../data/a.txt");
    let write = "ok";
    try { await libos.fs.writeText("../data/b.txt", "x"); } catch (e) { write = e.name; }
    libos.exit({ text, write, cwd: libos.fs.cwd(), caps: libos.caps.list().map(c => c.capability), args: libos.args });"#,
  );
  let result = run_main(
    &sandbox,
    r#"
    await libos.fs.chdir("sub");
    const pid = await libos.proc.spawn({ entry: "child.ts", caps: ["fs.read:data/**"], args: ["x"] });
    const done = await libos.proc.wait(pid);
    const list = await libos.proc.list();
    libos.exit({ done, pids: list.map(p => p.pid), me: libos.pid, child: pid });"#,
    &["--allow", "fs.read", "--allow", "fs.write:data/**", "--allow", "proc.spawn"],
  );
  let child = &result["done"]["exit"]["result"];
  assert_eq!(child["text"], "alpha");
  assert_eq!(child["write"], "PermissionDenied", "the parent's fs.write was not asked for, so not given");
  assert_eq!(child["cwd"], "sub", "a child starts in its parent's cwd");
  assert_eq!(child["caps"], serde_json::json!(["fs.read:data/**"]));
  assert_eq!(child["args"], serde_json::json!(["x"]));
  assert_eq!(result["pids"][0], result["me"]);
  let audit = sandbox.audit();
  let child_pid = result["child"].as_str().unwrap();
  let read = audit.iter().find(|r| r["pid"] == child_pid && r["syscall"] == "fs.readText").unwrap();
  assert_eq!(read["lineage"], serde_json::json!([result["me"], child_pid]));
}

#[test]
fn asking_for_more_than_the_parent_holds_fails_and_never_widens() {
  let sandbox = Sandbox::new();
  sandbox.write("child.ts", "libos.exit('ran');");
  let result = run_main(
    &sandbox,
    r#"
    const out = {};
    for (const caps of [["fs.write:**"], ["fs.read"], ["fs.read:data/../etc"], ["net:example.com"]]) {
      try { await libos.proc.spawn({ entry: "child.ts", caps }); out[caps[0]] = "spawned"; }
      catch (e) { out[caps[0]] = e.name + ": " + e.message; }
    }
    libos.exit({ out, children: (await libos.proc.list()).length - 1 });"#,
    &["--allow", "fs.read:data/**", "--allow", "proc.spawn"],
  );
  let out = &result["out"];
  assert!(out["fs.write:**"].as_str().unwrap().starts_with("PermissionDenied"), "{out}");
  assert!(out["fs.write:**"].as_str().unwrap().contains("holds: fs.read:data/**"), "{out}");
  assert!(out["fs.read"].as_str().unwrap().starts_with("PermissionDenied"), "{out}");
  assert!(out["fs.read:data/../etc"].as_str().unwrap().starts_with("InvalidArgument"), "{out}");
  assert!(out["net:example.com"].as_str().unwrap().starts_with("PermissionDenied"), "{out}");
  assert_eq!(result["children"], 0);
}

#[test]
fn spawning_needs_the_proc_spawn_capability() {
  let sandbox = Sandbox::new();
  sandbox.write("child.ts", "");
  let run = sandbox.run("main.ts", r#"await libos.proc.spawn({ entry: "child.ts" });"#, &[]);
  run.expect_code(3).stderr_has("--allow proc.spawn");
}

#[test]
fn a_speculative_child_cannot_write() {
  let sandbox = Sandbox::new();
  sandbox.write("child.ts", r#"await libos.fs.writeText("out/x.txt", "x");"#);
  let result = run_main(
    &sandbox,
    r#"
    const pid = await libos.proc.spawn({ entry: "child.ts", caps: ["fs.write:out/**"], mode: "speculative" });
    libos.exit((await libos.proc.wait(pid)).exit);"#,
    &["--allow", "fs.write:out/**", "--allow", "proc.spawn"],
  );
  assert_eq!(result["status"], "error");
  assert_eq!(result["class"], "PermissionDenied");
  assert!(result["error"].as_str().unwrap().contains("fork mode (speculative child of"), "{result}");
  assert!(!sandbox.exists("out/x.txt"));
}

#[test]
fn a_fork_bomb_ends_by_itself() {
  let sandbox = Sandbox::new();
  let bomb = r#"
    let spawned = 0, refused = "";
    const kids = [];
    for (let i = 0; i < 100; i++) {
      try { kids.push(await libos.proc.spawn({ entry: "main.ts", caps: ["proc.spawn"] })); spawned++; }
      catch (e) { refused = e.name + ": " + e.message; break; }
    }
    for (const k of kids) await libos.proc.wait(k);
    libos.exit({ spawned, refused });"#;
  let run = sandbox.run("main.ts", bomb, &["--allow", "proc.spawn", "--json", "--timeout", "120s"]);
  run.expect_code(0);
  let end: serde_json::Value = serde_json::from_str(run.stdout.lines().last().unwrap()).unwrap();
  let refused = end["result"]["refused"].as_str().unwrap_or_default();
  assert!(refused.starts_with("LimitExceeded"), "{refused}");
  let spawns = sandbox.audit().iter().filter(|r| r["syscall"] == "spawn").count();
  // Budgets shrink per generation: with the defaults, 1 + 8 + 8·4 + 8·4·2 = 105 at most.
  assert!(spawns <= 105, "{spawns} processes");
}

#[test]
fn cancelling_a_child_cancels_its_descendants() {
  let sandbox = Sandbox::new();
  sandbox.write("loop.ts", "while (true) { await libos.fs.stat('.'); }");
  sandbox.write(
    "middle.ts",
    r#"
    const pid = await libos.proc.spawn({ entry: "loop.ts", caps: ["fs.read"] });
    await libos.proc.wait(pid);"#,
  );
  let result = run_main(
    &sandbox,
    r#"
    const middle = await libos.proc.spawn({ entry: "middle.ts", caps: ["fs.read", "proc.spawn"] });
    let tree = [];
    while (tree.length < 3) tree = await libos.proc.list();
    await libos.proc.signal(middle, "cancel");
    const done = await libos.proc.wait(middle);
    const after = await libos.proc.list();
    libos.exit({ done: done.exit, states: after.map(p => p.state) });"#,
    &["--allow", "fs.read", "--allow", "proc.spawn", "--allow", "proc.signal"],
  );
  assert_eq!(result["done"]["status"], "killed");
  assert_eq!(result["states"], serde_json::json!(["running", "exited", "exited"]));
}

#[test]
fn pause_and_resume_move_the_child_through_its_lifecycle() {
  let sandbox = Sandbox::new();
  sandbox.write("loop.ts", "while (true) { await libos.fs.stat('.'); }");
  let result = run_main(
    &sandbox,
    r#"
    const pid = await libos.proc.spawn({ entry: "loop.ts", caps: ["fs.read"] });
    const state = async () => (await libos.proc.list()).find(p => p.pid === pid).state;
    await libos.proc.signal(pid, "pause");
    const paused = await state();
    let twice = "";
    try { await libos.proc.signal(pid, "pause"); } catch (e) { twice = e.name; }
    await libos.proc.signal(pid, "resume");
    const resumed = await state();
    await libos.proc.signal(pid, "cancel");
    libos.exit({ paused, twice, resumed, end: (await libos.proc.wait(pid)).exit.status });"#,
    &["--allow", "fs.read", "--allow", "proc.spawn", "--allow", "proc.signal"],
  );
  assert_eq!(result["paused"], "paused");
  assert_eq!(result["twice"], "InvalidArgument");
  assert_eq!(result["resumed"], "running");
  assert_eq!(result["end"], "killed");
}

#[test]
fn revoking_a_grant_revokes_what_a_child_derived_from_it() {
  let sandbox = Sandbox::new();
  sandbox.write("data/a.txt", "alpha");
  sandbox.write("flags/.keep", "");
  sandbox.write(
    "child.ts",
    r#"
    const first = await libos.fs.readText("data/a.txt");
    await libos.fs.writeText("flags/ready", "1");
    while (true) { try { await libos.fs.stat("flags/go"); break; } catch {} }
    let second = "";
    try { second = await libos.fs.readText("data/a.txt"); } catch (e) { second = e.name; }
    libos.exit({ first, second, caps: libos.caps.list().map(c => c.capability) });"#,
  );
  let result = run_main(
    &sandbox,
    r#"
    const pid = await libos.proc.spawn({ entry: "child.ts", caps: ["fs.read:data/**", "fs.read:flags/**", "fs.write:flags/**"] });
    const alive = async () => (await libos.proc.list()).find(p => p.pid === pid).state !== "exited";
    while (true) { try { await libos.fs.stat("flags/ready"); break; } catch {} if (!await alive()) throw new Error("child died"); }
    const dropped = await libos.caps.drop("fs.read:data/**");
    await libos.fs.writeText("flags/go", "1");
    libos.exit({ dropped, child: (await libos.proc.wait(pid)).exit.result });"#,
    &["--allow", "fs.read:data/**", "--allow", "fs.read:flags/**", "--allow", "fs.write:flags/**", "--allow", "proc.spawn"],
  );
  assert_eq!(result["dropped"], serde_json::json!({ "dropped": 1, "revoked": 1 }));
  assert_eq!(result["child"]["first"], "alpha");
  assert_eq!(result["child"]["second"], "PermissionDenied");
  assert_eq!(result["child"]["caps"], serde_json::json!(["fs.read:flags/**", "fs.write:flags/**"]));
}

#[test]
fn processes_reach_only_their_descendants() {
  let sandbox = Sandbox::new();
  sandbox.write("child.ts", "libos.exit(1);");
  sandbox.write("escape.ts", "");
  let result = run_main(
    &sandbox,
    r#"
    const out = {};
    for (const [name, f] of [
      ["self", () => libos.proc.signal(libos.pid, "cancel")],
      ["stranger", () => libos.proc.wait("p00000000")],
      ["entry", () => libos.proc.spawn({ entry: "../escape.ts" })],
      ["mode", () => libos.proc.spawn({ entry: "child.ts", mode: "root" })],
    ]) {
      try { await f(); out[name] = "ok"; } catch (e) { out[name] = e.name; }
    }
    libos.exit(out);"#,
    &["--allow", "proc.spawn", "--allow", "proc.signal"],
  );
  assert_eq!(result, serde_json::json!({ "self": "NotFound", "stranger": "NotFound", "entry": "InvalidArgument", "mode": "InvalidArgument" }));
}

#[test]
fn wait_times_out() {
  let sandbox = Sandbox::new();
  sandbox.write("loop.ts", "while (true) { await libos.fs.stat('.'); }");
  let result = run_main(
    &sandbox,
    r#"
    const pid = await libos.proc.spawn({ entry: "loop.ts", caps: ["fs.read"] });
    let timed = "";
    try { await libos.proc.wait(pid, { timeoutMs: 200 }); } catch (e) { timed = e.name; }
    await libos.proc.signal(pid, "cancel");
    libos.exit(timed);"#,
    &["--allow", "fs.read", "--allow", "proc.spawn", "--allow", "proc.signal"],
  );
  assert_eq!(result, "Timeout");
}

#[test]
fn a_copy_child_holds_what_its_parent_holds_and_nothing_more() {
  let sandbox = Sandbox::new();
  sandbox.write("child.ts", "libos.exit(libos.caps.list().map(c => c.capability + ' from ' + c.source));");
  let result = run_main(
    &sandbox,
    r#"
    const pid = await libos.proc.spawn({ entry: "child.ts", mode: "copy" });
    let asked = "";
    try { await libos.proc.spawn({ entry: "child.ts", mode: "copy", caps: ["fs.read"] }); } catch (e) { asked = e.name; }
    libos.exit({ caps: (await libos.proc.wait(pid)).exit.result, asked, me: libos.pid });"#,
    &["--allow", "fs.read:data/**", "--allow", "proc.spawn"],
  );
  let me = result["me"].as_str().unwrap();
  assert_eq!(
    result["caps"],
    serde_json::json!([format!("fs.read:data/** from parent \"{me}\""), format!("proc.spawn from parent \"{me}\"")])
  );
  assert_eq!(result["asked"], "InvalidArgument");
}
