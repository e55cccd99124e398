//! The examples, run the way the README shows them.

use std::path::Path;
use std::time::Duration;
use std::time::Instant;

use super::common::Run;
use super::common::Sandbox;

fn copy_example(name: &str, sandbox: &Sandbox) {
  let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples").join(name);
  let mut stack = vec![root.clone()];
  while let Some(dir) = stack.pop() {
    for entry in std::fs::read_dir(&dir).unwrap() {
      let path = entry.unwrap().path();
      let rel = path.strip_prefix(&root).unwrap().to_str().unwrap().to_string();
      if rel == ".alos" || rel.starts_with("out") {
        continue;
      }
      if path.is_dir() {
        std::fs::create_dir_all(sandbox.path().join(&rel)).unwrap();
        stack.push(path);
      } else {
        sandbox.write(&rel, std::fs::read(&path).unwrap());
      }
    }
  }
}

fn wait_for_request(sandbox: &Sandbox, id: &str) -> serde_json::Value {
  let deadline = Instant::now() + Duration::from_secs(60);
  loop {
    let out = sandbox.alos().args(["inbox", "--json"]).output().unwrap();
    let pending: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap_or_default();
    if let Some(request) = pending.into_iter().find(|r| r["id"] == id) {
      return request;
    }
    assert!(Instant::now() < deadline, "request {id} never appeared");
    std::thread::sleep(Duration::from_millis(50));
  }
}

#[test]
fn the_approval_example_as_the_readme_tours_it() {
  let sandbox = Sandbox::new();
  copy_example("approval", &sandbox);
  let child = std::process::Command::new(assert_cmd::cargo::cargo_bin("alos"))
    .current_dir(sandbox.path())
    .args(["run", "agent.ts", "--allow", "fs.write:drafts/**", "--ask", "fs.write:public/**"])
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped())
    .spawn()
    .unwrap();
  let first = wait_for_request(&sandbox, "r1");
  assert!(first["detail"].as_str().unwrap().contains("public/release.md"), "{first}");
  Run::from(sandbox.alos().arg("inbox").output().unwrap()).expect_code(0).stdout_has("r1").stdout_has("# Release notes");
  Run::from(sandbox.alos().args(["approve", "r1"]).output().unwrap()).expect_code(0);
  wait_for_request(&sandbox, "r2");
  Run::from(sandbox.alos().args(["deny", "r2", "--reason", "one edition is enough"]).output().unwrap()).expect_code(0);
  let out = child.wait_with_output().unwrap();
  let run = Run { code: out.status.code().unwrap_or(-1), stdout: String::from_utf8_lossy(&out.stdout).into(), stderr: String::from_utf8_lossy(&out.stderr).into() };
  run
    .expect_code(0)
    .stdout_has("drafted drafts/release.md")
    .stdout_has("published public/release.md")
    .stdout_has("the edit was not published")
    .stdout_has("one edition is enough")
    .stderr_has("alos approve r1");
  assert!(!sandbox.read("public/release.md").contains("P.S."));
  Run::from(sandbox.alos().args(["audit", "verify"]).output().unwrap()).expect_code(0).stdout_has("chain intact");
}

#[test]
fn capabilities_can_be_requested_from_a_human() {
  let sandbox = Sandbox::new();
  sandbox.write("secret/plan.txt", "the plan");
  sandbox.write(
    "agent.ts",
    r#"
    let first = "";
    try { await libos.fs.readText("secret/plan.txt"); } catch (e) { first = e.name; }
    const granted = await libos.caps.request("fs.read:secret/**", "to summarise the plan");
    const text = await libos.fs.readText("secret/plan.txt");
    let again = "";
    try { await libos.fs.readText("secret/plan.txt"); } catch (e) { again = e.name; }
    libos.exit({ first, scope: granted.scope, text, again });"#,
  );
  let child = std::process::Command::new(assert_cmd::cargo::cargo_bin("alos"))
    .current_dir(sandbox.path())
    .args(["run", "agent.ts", "--json"])
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::null())
    .spawn()
    .unwrap();
  let request = wait_for_request(&sandbox, "r1");
  assert!(request["detail"].as_str().unwrap().contains("requests capability fs.read:secret/**: to summarise the plan"));
  Run::from(sandbox.alos().args(["approve", "r1", "--once"]).output().unwrap()).expect_code(0);
  let out = child.wait_with_output().unwrap();
  let end: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
  assert_eq!(end["result"], serde_json::json!({ "first": "PermissionDenied", "scope": "once", "text": "the plan", "again": "PermissionDenied" }));
}
