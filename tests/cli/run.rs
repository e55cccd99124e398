//! `alos run`: the example, capabilities from the command line, exit codes, output.

use super::common::Sandbox;

/// The README's example, run from its own directory exactly as documented.
#[test]
fn hello_example_reads_is_denied_and_writes() {
  let sandbox = Sandbox::new();
  let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/hello");
  for rel in ["agent.ts", "data/greeting.txt", "secrets/api-key.txt"] {
    sandbox.write(rel, std::fs::read(example.join(rel)).unwrap());
  }
  let out = sandbox
    .alos()
    .args(["run", "agent.ts", "--allow", "fs.read:data/**", "--allow", "fs.write:out/**"])
    .output()
    .unwrap();
  let run = super::common::Run::from(out);
  run
    .expect_code(0)
    .stdout_has("read data/greeting.txt: Hello from the alos workspace")
    .stdout_has("denied: fs.readText \"secrets/api-key.txt\" denied")
    .stdout_has("--allow fs.read:secrets/api-key.txt")
    .stdout_has("wrote out/report.json")
    .stdout_has("\"denied\": \"fs.read:secrets/api-key.txt\"");
  let report: serde_json::Value = serde_json::from_str(&sandbox.read("out/report.json")).unwrap();
  assert_eq!(report["greeting"], "Hello from the alos workspace");
  assert_eq!(report["words"], 5);
  // The secret never reached the script's output.
  assert!(!run.stdout.contains("sk-demo"));

  let audit = sandbox.audit();
  let denial = audit.iter().find(|r| r["decision"] == "deny").expect("a deny record");
  assert_eq!(denial["syscall"], "fs.readText");
  assert_eq!(denial["resource"], "secrets/api-key.txt");
  assert_eq!(denial["capability"], "fs.read:secrets/api-key.txt");
  let write = audit.iter().find(|r| r["syscall"] == "fs.writeText").expect("a write record");
  assert_eq!(write["decision"], "allow");
  assert_eq!(write["outcome"], "ok");
  assert!(write["decided_by"].as_str().unwrap().contains("fs.write:out/**"), "{write}");
}

#[test]
fn default_is_deny_and_uncaught_denial_exits_3() {
  let sandbox = Sandbox::new();
  sandbox.write("notes.txt", "private");
  let run = sandbox.run("a.ts", r#"await libos.fs.readText("notes.txt");"#, &[]);
  run
    .expect_code(3)
    .stderr_has("PermissionDenied")
    .stderr_has("fs.readText \"notes.txt\" denied")
    .stderr_has("--allow fs.read:notes.txt");
}

#[test]
fn permission_denied_error_carries_structured_fields() {
  let sandbox = Sandbox::new();
  let run = sandbox.run(
    "a.ts",
    r#"
    try { await libos.fs.writeText("out/x.txt", "hi"); }
    catch (e) {
      console.log(JSON.stringify({
        cls: e instanceof libos.errors.PermissionDenied, base: e instanceof libos.errors.LibosError,
        name: e.name, syscall: e.syscall, capability: e.capability, reason: e.reason }));
    }"#,
    &[],
  );
  run.expect_code(0);
  let fields: serde_json::Value = serde_json::from_str(run.stdout.trim()).unwrap();
  assert_eq!(fields["cls"], true);
  assert_eq!(fields["base"], true);
  assert_eq!(fields["name"], "PermissionDenied");
  assert_eq!(fields["syscall"], "fs.writeText");
  assert_eq!(fields["capability"], "fs.write:out/x.txt");
  assert_eq!(fields["reason"], "no grant");
}

#[test]
fn deny_beats_allow() {
  let sandbox = Sandbox::new();
  sandbox.write("data/secrets/key", "k");
  sandbox.write("data/ok.txt", "ok");
  let run = sandbox.run(
    "a.ts",
    r#"
    console.log(await libos.fs.readText("data/ok.txt"));
    await libos.fs.readText("data/secrets/key");"#,
    &["--allow", "fs.read:data/**", "--deny", "fs.read:data/secrets/**"],
  );
  run.expect_code(3).stdout_has("ok").stderr_has("denied by rule");
  let audit = sandbox.audit();
  let denial = audit.iter().find(|r| r["decision"] == "deny").unwrap();
  assert!(denial["decided_by"].as_str().unwrap().contains("fs.read:data/secrets/**"), "{denial}");
}

#[test]
fn malformed_capabilities_are_usage_errors_naming_the_token() {
  let sandbox = Sandbox::new();
  sandbox.write("a.ts", "");
  for (bad, needle) in [
    ("fs.raed:data/**", "fs.raed"),
    ("", "capability"),
    ("fs.read:", "fs.read:"),
    ("fs.read:../etc", "../etc"),
    ("fs.read:/etc/passwd", "/etc/passwd"),
    ("net:exa mple.com", "exa mple.com"),
  ] {
    let run = super::common::Run::from(sandbox.alos().args(["run", "a.ts", "--allow", bad]).output().unwrap());
    run.expect_code(2).stderr_has(needle);
  }
}

#[test]
fn missing_script_is_a_usage_error() {
  let sandbox = Sandbox::new();
  let run = super::common::Run::from(sandbox.alos().args(["run", "nope.ts"]).output().unwrap());
  run.expect_code(2).stderr_has("nope.ts");
}

#[test]
fn args_pid_and_exit_result() {
  let sandbox = Sandbox::new();
  let run = sandbox.run(
    "a.ts",
    r#"
    console.log(typeof libos.pid, libos.pid.length > 1);
    libos.exit({ args: libos.args, now: typeof libos.now(), random: libos.random() < 1 });
    console.log("not reached");"#,
    &["--", "one", "two words"],
  );
  run.expect_code(0).stdout_has("string true");
  assert!(!run.stdout.contains("not reached"), "{}", run.stdout);
  let tail = &run.stdout[run.stdout.find('{').unwrap()..];
  let result: serde_json::Value = serde_json::from_str(tail).unwrap();
  assert_eq!(result["args"], serde_json::json!(["one", "two words"]));
  assert_eq!(result["now"], "number");
  assert_eq!(result["random"], true);
}

#[test]
fn json_output_describes_the_end() {
  let sandbox = Sandbox::new();
  let run = sandbox.run("a.ts", "libos.exit(42);", &["--json"]);
  run.expect_code(0);
  let end: serde_json::Value = serde_json::from_str(run.stdout.trim()).unwrap();
  assert_eq!(end["status"], "ok");
  assert_eq!(end["result"], 42);
  assert_eq!(end["exit_code"], 0);
  assert!(end["pid"].as_str().unwrap().starts_with('p'));
}

#[test]
fn audit_records_are_hash_chained() {
  let sandbox = Sandbox::new();
  sandbox.write("a.txt", "a");
  sandbox.run("a.ts", r#"await libos.fs.readText("a.txt"); await libos.fs.readText("b.txt").catch(() => {});"#, &["--allow", "fs.read"]);
  let audit = sandbox.audit();
  assert!(audit.len() >= 4, "spawn, two reads, exit: {audit:?}");
  for pair in audit.windows(2) {
    assert_eq!(pair[1]["prev_hash"], pair[0]["hash"]);
    assert_eq!(pair[1]["seq"].as_u64().unwrap(), pair[0]["seq"].as_u64().unwrap() + 1);
  }
  assert!(audit.iter().any(|r| r["syscall"] == "spawn"));
  assert!(audit.iter().any(|r| r["syscall"] == "exit"));
  let missing = audit.iter().find(|r| r["resource"] == "b.txt").unwrap();
  assert!(missing["outcome"].as_str().unwrap().contains("NotFound"), "{missing}");
}

#[test]
fn a_policy_file_adds_rules_and_bad_files_are_usage_errors() {
  let sandbox = Sandbox::new();
  sandbox.write("data/a.txt", "a");
  sandbox.write("data/secret/k", "k");
  sandbox.write("policy.toml", "allow = [\"fs.read:data/**\"]\ndeny = [\"fs.read:data/secret/**\"]\n");
  let run = sandbox.run(
    "a.ts",
    r#"console.log(await libos.fs.readText("data/a.txt")); await libos.fs.readText("data/secret/k");"#,
    &["--policy", "policy.toml"],
  );
  run.expect_code(3).stdout_has("a").stderr_has("denied by rule \"deny fs.read:data/secret/**\" from policy file");
  sandbox.write("bad.toml", "allow = [\"fs.raed:x\"]\n");
  let run = super::common::Run::from(sandbox.alos().args(["run", "a.ts", "--policy", "bad.toml"]).output().unwrap());
  run.expect_code(2).stderr_has("fs.raed").stderr_has("bad.toml");
  sandbox.write("typo.toml", "alow = [\"fs.read\"]\n");
  let run = super::common::Run::from(sandbox.alos().args(["run", "a.ts", "--policy", "typo.toml"]).output().unwrap());
  run.expect_code(2).stderr_has("alow");
}
