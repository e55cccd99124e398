//! Object Memory: `libos.mem.*` in scripts (own namespace, shared namespaces by
//! capability, compare-and-set, worker children, hostile arguments) and `alos mem`.

use serde_json::json;
use serde_json::Value;

use super::common::Run;
use super::common::Sandbox;

/// Runs `code` as `name` with `args` and returns the script's `libos.exit` result.
fn result_of(sandbox: &Sandbox, name: &str, code: &str, args: &[&str]) -> Value {
  let mut args = args.to_vec();
  args.push("--json");
  let run = sandbox.run(name, code, &args);
  let last = run.stdout.lines().last().unwrap_or("");
  let end: Value = serde_json::from_str(last).unwrap_or_else(|e| panic!("{e}: stdout {}\nstderr {}", run.stdout, run.stderr));
  assert_eq!(end["status"], "ok", "{end}\nstderr {}", run.stderr);
  end["result"].clone()
}

/// `await EXPR` as `"ok"` or the error's `"Class: message"`.
const OUTCOME: &str = r#"
  async function outcome(promise) {
    try { await promise; return "ok"; } catch (e) { return e.name + ": " + e.message; }
  }"#;

#[test]
fn a_process_uses_its_own_namespace_without_any_capability() {
  let sandbox = Sandbox::new();
  let result = result_of(
    &sandbox,
    "main.ts",
    r#"
    const a = await libos.mem.put("notes/a", { text: "alpha" });
    const a2 = await libos.mem.put("notes/a", { text: "alpha 2" }, { type: "note" });
    await libos.mem.put("notes/b", [1, 2, 3]);
    await libos.mem.put("other", null);
    const got = await libos.mem.get("notes/a");
    const same = await libos.mem.get("notes/a", { ns: "proc/" + libos.pid });
    const missing = await libos.mem.get("nope");
    const listed = await libos.mem.list("notes/");
    const all = await libos.mem.list();
    const deleted = await libos.mem.delete("notes/b");
    const again = await libos.mem.delete("notes/b");
    libos.exit({ a, a2, got, same: same.version, missing, listed, all: all.map(o => o.key), deleted, again, pid: libos.pid });"#,
    &[],
  );
  let pid = result["pid"].as_str().unwrap();
  assert_eq!(result["a"], json!({ "version": 1 }));
  assert_eq!(result["a2"], json!({ "version": 2 }));
  let got = &result["got"];
  assert_eq!(got["ns"], format!("proc/{pid}"));
  assert_eq!((got["key"].clone(), got["type"].clone(), got["value"].clone()), (json!("notes/a"), json!("note"), json!({ "text": "alpha 2" })));
  assert_eq!((got["version"].clone(), got["creator"].clone()), (json!(2), json!(pid)));
  assert!(got["createdMs"].as_f64().unwrap() <= got["updatedMs"].as_f64().unwrap());
  assert_eq!(result["same"], 2);
  assert_eq!(result["missing"], Value::Null);
  let listed = result["listed"].as_array().unwrap();
  assert_eq!(listed.iter().map(|o| o["key"].clone()).collect::<Vec<_>>(), [json!("notes/a"), json!("notes/b")]);
  assert_eq!(listed[1]["value"], json!([1, 2, 3]), "small values are listed");
  assert_eq!(listed[1]["size"], 7);
  assert_eq!(result["all"], json!(["notes/a", "notes/b", "other"]));
  assert_eq!(result["deleted"], json!({ "deleted": true }));
  assert_eq!(result["again"], json!({ "deleted": false }));
}

#[test]
fn a_shared_namespace_needs_mem_write_and_mem_read() {
  let sandbox = Sandbox::new();
  let script = format!(
    r#"{OUTCOME}
    libos.exit({{
      put: await outcome(libos.mem.put("k", 1, {{ ns: "team/x" }})),
      get: await outcome(libos.mem.get("k", {{ ns: "team/x" }})),
      other: await outcome(libos.mem.put("k", 1, {{ ns: "elsewhere" }})),
      sibling: await outcome(libos.mem.get("k", {{ ns: "proc/p00000000" }})),
    }});"#
  );
  let none = result_of(&sandbox, "main.ts", &script, &[]);
  let put = none["put"].as_str().unwrap();
  assert!(put.starts_with("PermissionDenied: mem.put \"team/x\" denied"), "{put}");
  assert!(put.contains("--allow mem.write:team/x"), "{put}");
  assert!(none["get"].as_str().unwrap().contains("--allow mem.read:team/x"), "{none}");
  assert!(none["sibling"].as_str().unwrap().contains("mem.read:proc/p00000000"), "another process's namespace: {none}");

  let writer = result_of(&sandbox, "main.ts", &script, &["--allow", "mem.write:team/*"]);
  assert_eq!(writer["put"], "ok");
  assert!(writer["get"].as_str().unwrap().starts_with("PermissionDenied"), "mem.write does not let it read: {writer}");
  assert!(writer["other"].as_str().unwrap().starts_with("PermissionDenied"), "{writer}");

  let reader = result_of(&sandbox, "main.ts", &script, &["--allow", "mem.read:team/*"]);
  assert!(reader["put"].as_str().unwrap().starts_with("PermissionDenied"), "mem.read does not let it write: {reader}");
  assert_eq!(reader["get"], "ok");

  let denials = audit(&sandbox)
    .into_iter()
    .filter(|r| r["syscall"] == "mem.put" && r["decision"] == "deny" && r["resource"] == "team/x")
    .count();
  assert_eq!(denials, 2, "each denial is audited");
}

#[test]
fn a_stale_version_is_a_conflict() {
  let sandbox = Sandbox::new();
  let result = result_of(
    &sandbox,
    "main.ts",
    r#"
    const first = await libos.mem.put("counter", 1, { ifVersion: 0 });
    const out = { first };
    try { await libos.mem.put("counter", 2, { ifVersion: 0 }); } catch (e) {
      out.create = { conflict: e instanceof libos.errors.Conflict, name: e.name, message: e.message };
    }
    try { await libos.mem.put("counter", 2, { ifVersion: 7 }); } catch (e) {
      out.stale = { conflict: e instanceof libos.errors.Conflict, message: e.message };
    }
    try { await libos.mem.delete("counter", { ifVersion: 3 }); } catch (e) { out.del = e instanceof libos.errors.Conflict; }
    out.next = await libos.mem.put("counter", 2, { ifVersion: 1 });
    out.value = (await libos.mem.get("counter")).value;
    libos.exit(out);"#,
    &[],
  );
  assert_eq!(result["first"], json!({ "version": 1 }));
  assert_eq!(result["create"]["conflict"], true);
  assert_eq!(result["create"]["name"], "Conflict");
  let message = result["create"]["message"].as_str().unwrap();
  assert!(message.contains("mem.put \"counter\"") && message.contains("expected no object, found version 1"), "{message}");
  assert_eq!(result["stale"]["conflict"], true);
  assert!(result["stale"]["message"].as_str().unwrap().contains("expected version 7, found version 1"), "{result}");
  assert_eq!(result["del"], true);
  assert_eq!(result["next"], json!({ "version": 2 }));
  assert_eq!(result["value"], 2);
}

#[test]
fn values_survive_across_runs() {
  let sandbox = Sandbox::new();
  let wrote = result_of(
    &sandbox,
    "write.ts",
    r#"libos.exit(await libos.mem.put("plan", { steps: ["a", "b"] }, { ns: "team/x", type: "plan" }));"#,
    &["--allow", "mem.write:team/*"],
  );
  assert_eq!(wrote, json!({ "version": 1 }));
  let read = result_of(
    &sandbox,
    "read.ts",
    r#"
    const o = await libos.mem.get("plan", { ns: "team/x" });
    libos.exit({ value: o.value, type: o.type, creator: o.creator, me: libos.pid, listed: (await libos.mem.list("", { ns: "team/x" })).length });"#,
    &["--allow", "mem.read:team/*"],
  );
  assert_eq!(read["value"], json!({ "steps": ["a", "b"] }));
  assert_eq!(read["type"], "plan");
  assert_ne!(read["creator"], read["me"], "written by the first run's process");
  assert_eq!(read["listed"], 1);
}

#[test]
fn a_worker_child_writes_only_its_own_namespace() {
  let sandbox = Sandbox::new();
  sandbox.write(
    "child.ts",
    r#"
    const own = await libos.mem.put("result", { done: true });
    let shared = "ok";
    try { await libos.mem.put("k", 1, { ns: "team/x" }); } catch (e) { shared = e.name + ": " + e.message; }
    libos.exit({ own, shared });"#,
  );
  let result = result_of(
    &sandbox,
    "main.ts",
    r#"
    const pid = await libos.proc.spawn({ entry: "child.ts", mode: "worker", caps: ["mem.write:team/*"] });
    const child = (await libos.proc.wait(pid)).exit.result;
    const written = await libos.mem.get("result", { ns: "proc/" + pid });
    const team = await libos.mem.put("k", "parent", { ns: "team/x" });
    libos.exit({ child, written: written.value, creator: written.creator === pid, team });"#,
    &["--allow", "proc.spawn", "--allow", "mem.write:team/*", "--allow", "mem.read:proc/*"],
  );
  assert_eq!(result["child"]["own"], json!({ "version": 1 }));
  let shared = result["child"]["shared"].as_str().unwrap();
  assert!(shared.starts_with("PermissionDenied"), "{shared}");
  assert!(shared.contains("fork mode (worker child of"), "{shared}");
  assert_eq!(result["written"], json!({ "done": true }));
  assert_eq!(result["creator"], true);
  assert_eq!(result["team"], json!({ "version": 1 }), "the parent's own grant still works");
}

#[test]
fn hostile_arguments_fail_cleanly() {
  let sandbox = Sandbox::new();
  let script = format!(
    r#"{OUTCOME}
    const big = "x".repeat(2 * 1024 * 1024);
    libos.exit({{
      big: await outcome(libos.mem.put("big", big)),
      empty: await outcome(libos.mem.put("", 1)),
      control: await outcome(libos.mem.put("a\u001b[2Jb", 1)),
      newline: await outcome(libos.mem.get("a\nb")),
      longKey: await outcome(libos.mem.get("k".repeat(513))),
      keyType: await outcome(libos.mem.put(5, 1)),
      versionType: await outcome(libos.mem.put("k", 1, {{ ifVersion: "1" }})),
      negative: await outcome(libos.mem.put("k", 1, {{ ifVersion: -1 }})),
      nsType: await outcome(libos.mem.get("k", {{ ns: 7 }})),
      nsEscape: await outcome(libos.mem.get("k", {{ ns: "team/../proc" }})),
      nsGlob: await outcome(libos.mem.list("", {{ ns: "team/*" }})),
      typeEmpty: await outcome(libos.mem.put("k", 1, {{ type: "" }})),
      unknown: await outcome(libos.mem.put("k", 1, {{ version: 2 }})),
      stored: (await libos.mem.list()).length,
    }});"#
  );
  let result = result_of(&sandbox, "main.ts", &script, &[]);
  let expect = |field: &str, prefix: &str, needle: &str| {
    let text = result[field].as_str().unwrap_or_else(|| panic!("{field}: {result}"));
    assert!(text.starts_with(prefix) && text.contains(needle), "{field}: {text}");
  };
  expect("big", "LimitExceeded", "over the limit of 1048576 bytes");
  expect("big", "LimitExceeded", "2097154 bytes");
  expect("empty", "InvalidArgument", "invalid key");
  expect("control", "InvalidArgument", "invalid key");
  assert!(!result["control"].as_str().unwrap().contains('\u{1b}'), "the key is shown escaped");
  expect("newline", "InvalidArgument", "invalid key");
  expect("longKey", "InvalidArgument", "invalid key");
  expect("keyType", "InvalidArgument", "mem.put: invalid arguments");
  expect("versionType", "InvalidArgument", "mem.put: invalid arguments");
  expect("negative", "InvalidArgument", "mem.put: invalid arguments");
  expect("nsType", "InvalidArgument", "mem.get: invalid arguments");
  expect("nsEscape", "InvalidArgument", "invalid ns");
  expect("nsGlob", "InvalidArgument", "invalid ns");
  expect("typeEmpty", "InvalidArgument", "invalid type");
  expect("unknown", "InvalidArgument", "version");
  assert_eq!(result["stored"], 0, "nothing was written");
}

/// The audit log, through `alos audit --json`.
fn audit(sandbox: &Sandbox) -> Vec<Value> {
  let run = sandbox.cmd(&["audit", "--json"]);
  run.expect_code(0);
  run.stdout.lines().map(|l| serde_json::from_str(l).expect("audit line is JSON")).collect()
}

#[test]
fn a_human_writes_and_reads_memory_from_the_terminal() {
  let sandbox = Sandbox::new();
  sandbox.cmd(&["mem", "ls"]).expect_code(2).stderr_has("no alos state");

  sandbox.cmd(&["mem", "put", "team/x", "plan", r#"{"step": 1}"#, "--type", "plan"]).expect_code(0).stdout_has("version 1");
  sandbox.cmd(&["mem", "put", "team/x", "plan", "{step: 2}"]).expect_code(2).stderr_has("not JSON");
  sandbox.cmd(&["mem", "put", "team/x", "plan", "text"]).expect_code(2).stderr_has("a string needs quotes");
  sandbox.cmd(&["mem", "put", "Team", "plan", "1"]).expect_code(2).stderr_has("invalid ns");
  sandbox.cmd(&["mem", "put", "team/x", "plan", "2", "--if-version", "5"]).expect_code(1).stderr_has("expected version 5, found version 1");
  sandbox.cmd(&["mem", "put", "team/x", "plan", r#"{"step": 2}"#, "--if-version", "1", "--type", "plan"]).expect_code(0).stdout_has("version 2");

  let got = sandbox.cmd(&["mem", "get", "team/x", "plan", "--json"]);
  got.expect_code(0);
  let object: Value = serde_json::from_str(got.stdout.trim()).unwrap();
  assert_eq!((object["value"].clone(), object["type"].clone(), object["version"].clone()), (json!({"step": 2}), json!("plan"), json!(2)));
  assert!(object["creator"].as_str().unwrap().starts_with("human:"), "{object}");
  sandbox.cmd(&["mem", "get", "team/x", "plan"]).expect_code(0).stdout_has(r#"{"step":2}"#).stdout_has("version 2");
  sandbox.cmd(&["mem", "get", "team/x", "nope"]).expect_code(1).stderr_has("no object \"nope\" in namespace team/x");

  // A later run reads what the human wrote, and writes beside it.
  let read = result_of(
    &sandbox,
    "main.ts",
    r#"
    const o = await libos.mem.get("plan", { ns: "team/x" });
    await libos.mem.put("reply", "ack", { ns: "team/y" });
    libos.exit({ value: o.value, creator: o.creator });"#,
    &["--allow", "mem.read:team/*", "--allow", "mem.write:team/*"],
  );
  assert_eq!(read["value"], json!({"step": 2}));
  assert_eq!(read["creator"], object["creator"]);

  let ls = sandbox.cmd(&["mem", "ls"]);
  ls.expect_code(0).stdout_has("team/x  plan  plan  v2").stdout_has("team/y  reply  json  v1");
  let only_x = sandbox.cmd(&["mem", "ls", "team/x", "--json"]);
  let entries: Vec<Value> = serde_json::from_str(only_x.expect_code(0).stdout.trim()).unwrap();
  assert_eq!(entries.len(), 1);
  assert_eq!(entries[0]["value"], json!({"step": 2}));
  let glob = sandbox.cmd(&["mem", "ls", "team/*", "--prefix", "re", "--json"]);
  let entries: Vec<Value> = serde_json::from_str(glob.expect_code(0).stdout.trim()).unwrap();
  assert_eq!(entries.iter().map(|e| e["key"].clone()).collect::<Vec<_>>(), [json!("reply")]);
  sandbox.cmd(&["mem", "ls", "team/**x"]).expect_code(2).stderr_has("not a namespace");

  let puts: Vec<Value> = audit(&sandbox).into_iter().filter(|r| r["actor"] == "human" && r["syscall"] == "mem.put").collect();
  assert_eq!(puts.len(), 2, "each successful human put is recorded: {puts:?}");
  assert_eq!(puts[0]["resource"], "team/x");
  assert_eq!(puts[0]["capability"], "mem.write:team/x");
  assert!(puts[1]["outcome"].as_str().unwrap().contains("version 2"), "{puts:?}");
  let shown = Run::from(sandbox.alos().arg("audit").output().unwrap());
  shown.expect_code(0).stdout_has("mem.put team/x allow by");
  sandbox.cmd(&["audit", "verify"]).expect_code(0);
}
