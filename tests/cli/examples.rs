//! The examples, run the way the README shows them.


use super::common::Run;
use super::common::Sandbox;

#[test]
fn the_approval_example_as_the_readme_tours_it() {
  let sandbox = Sandbox::new();
  sandbox.copy_example("approval");
  let child = sandbox.spawn(&["run", "agent.ts", "--allow", "fs.write:drafts/**", "--ask", "fs.write:public/**"]);
  let first = sandbox.next_request(&[]);
  assert_eq!(first["id"], "r1");
  assert!(first["detail"].as_str().unwrap().contains("public/release.md"), "{first}");
  sandbox.cmd(&["inbox"]).expect_code(0).stdout_has("r1").stdout_has("# Release notes");
  sandbox.cmd(&["approve", "r1"]).expect_code(0);
  assert_eq!(sandbox.next_request(&["r1"])["id"], "r2");
  sandbox.cmd(&["deny", "r2", "--reason", "one edition is enough"]).expect_code(0);
  Run::finish(child)
    .expect_code(0)
    .stdout_has("drafted drafts/release.md")
    .stdout_has("published public/release.md")
    .stdout_has("the edit was not published")
    .stdout_has("one edition is enough")
    .stderr_has("alos approve r1");
  assert!(!sandbox.read("public/release.md").contains("P.S."));
  sandbox.cmd(&["audit", "verify"]).expect_code(0).stdout_has("chain intact");
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
  let child = sandbox.spawn(&["run", "agent.ts", "--json"]);
  let request = sandbox.next_request(&[]);
  assert!(request["detail"].as_str().unwrap().contains("requests capability fs.read:secret/**: to summarise the plan"));
  sandbox.cmd(&["approve", "r1", "--once"]).expect_code(0);
  let end: serde_json::Value = serde_json::from_str(&Run::finish(child).stdout).unwrap();
  assert_eq!(end["result"], serde_json::json!({ "first": "PermissionDenied", "scope": "once", "text": "the plan", "again": "PermissionDenied" }));
}

#[test]
fn the_jit_example_registers_a_tool_a_human_approves_and_calls_it() {
  let sandbox = Sandbox::new();
  sandbox.copy_example("jit");
  let child = sandbox.spawn(&["run", "agent.ts", "--allow", "fs.read:logs/**", "--allow", "fs.read:failed_ids.ts", "--ask", "tool.register"]);
  let request = sandbox.next_request(&[]);
  let detail = request["detail"].as_str().unwrap();
  // The human sees what they approve: the source, its capabilities, the test results.
  assert!(detail.contains("failed_test_ids") && detail.contains("fs.read:logs/**"), "{detail}");
  assert!(detail.contains("2 passed, 0 failed") && detail.contains("defineTool"), "{detail}");
  sandbox.cmd(&["approve", request["id"].as_str().unwrap()]).expect_code(0);
  Run::finish(child)
    .expect_code(0)
    .stdout_has("2 tests passed, 0 failed")
    .stdout_has("registered failed_test_ids (scope process)")
    .stdout_has("failed tests: tests/test_parser.py::test_nested, tests/test_cli.py::test_bad_flag");
  // The audit shows the whole pipeline, and the chain is intact.
  let audit = sandbox.audit();
  let steps: Vec<&str> = audit
    .iter()
    .filter_map(|r| r["syscall"].as_str())
    .filter(|s| s.starts_with("tools.") || *s == "human.resolve")
    .collect();
  for step in ["tools.propose", "tools.register", "tools.call"] {
    assert!(steps.contains(&step), "{step} missing from {steps:?}");
  }
  assert!(audit.iter().any(|r| r["syscall"] == "tools.register" && r["decision"] == "ask"));
  assert!(audit.iter().any(|r| r["tool"] == "failed_test_ids" && r["syscall"] == "fs.readText"));
  sandbox.cmd(&["audit", "verify"]).expect_code(0).stdout_has("chain intact");
}
