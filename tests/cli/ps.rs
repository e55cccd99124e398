//! `alos ps` and `alos kill` from another terminal while `alos run` works.

use std::time::Duration;
use std::time::Instant;

use super::common::Run;
use super::common::Sandbox;

fn ps(sandbox: &Sandbox, extra: &[&str]) -> Vec<serde_json::Value> {
  let mut args = vec!["ps", "--json"];
  args.extend_from_slice(extra);
  let out = sandbox.alos().args(args).output().unwrap();
  serde_json::from_slice(&out.stdout).unwrap_or_default()
}

#[test]
fn ps_shows_the_tree_and_kill_ends_a_subtree_from_another_terminal() {
  let sandbox = Sandbox::new();
  sandbox.write("loop.ts", "while (true) await libos.sleep(20);");
  sandbox.write(
    "agent.ts",
    r#"
    const worker = await libos.proc.spawn({ entry: "loop.ts", mode: "worker" });
    const done = await libos.proc.wait(worker);
    console.log("worker ended: " + done.exit.status + " " + done.exit.reason);
    while (true) await libos.sleep(20);"#,
  );
  let mut child = sandbox.spawn(&["run", "agent.ts", "--allow", "proc.spawn"]);
  let deadline = Instant::now() + Duration::from_secs(60);
  let rows = loop {
    let rows = ps(&sandbox, &[]);
    if rows.len() == 2 {
      break rows;
    }
    assert!(Instant::now() < deadline, "processes never showed up: {rows:?}");
    std::thread::sleep(Duration::from_millis(50));
  };
  let root = rows.iter().find(|r| r["parent"].is_null()).unwrap();
  let worker = rows.iter().find(|r| !r["parent"].is_null()).unwrap();
  assert_eq!(worker["parent"], root["pid"]);
  assert_eq!(worker["mode"], "worker");
  let tree = Run::from(sandbox.alos().args(["ps", "--tree"]).output().unwrap());
  tree.expect_code(0).stdout_has(&format!("  {}", worker["pid"].as_str().unwrap()));

  Run::from(sandbox.alos().args(["kill", worker["pid"].as_str().unwrap()]).output().unwrap()).expect_code(0).stdout_has("killed");
  Run::from(sandbox.alos().args(["kill", root["pid"].as_str().unwrap()]).output().unwrap()).expect_code(0);
  let status = child.wait().unwrap();
  assert_eq!(status.code(), Some(1));
  let mut stdout = String::new();
  std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut stdout).unwrap();
  assert!(stdout.contains("worker ended: killed killed by"), "{stdout}");
  let left = ps(&sandbox, &[]);
  assert!(left.is_empty(), "nothing is left running: {left:?}");
  let all = ps(&sandbox, &["--all"]);
  assert!(all.iter().all(|r| r["state"] == "exited"), "{all:?}");
  Run::from(sandbox.alos().args(["kill", root["pid"].as_str().unwrap()]).output().unwrap()).expect_code(1).stderr_has("already exited");
  Run::from(sandbox.alos().args(["kill", "p-none"]).output().unwrap()).expect_code(2);
  let audit = sandbox.audit();
  assert!(audit.iter().any(|r| r["syscall"] == "human.kill"), "the kill is audited");
}

#[test]
fn a_process_whose_host_died_shows_as_orphaned_and_can_be_killed() {
  let sandbox = Sandbox::new();
  sandbox.write("loop.ts", "while (true) await libos.sleep(20);");
  let mut host = sandbox.spawn(&["run", "loop.ts"]);
  let deadline = Instant::now() + Duration::from_secs(60);
  let pid = loop {
    if let Some(row) = ps(&sandbox, &[]).into_iter().next() {
      break row["pid"].as_str().unwrap().to_string();
    }
    assert!(Instant::now() < deadline, "the process never showed up");
    std::thread::sleep(Duration::from_millis(50));
  };
  host.kill().unwrap(); // SIGKILL: the host dies without recording anything
  host.wait().unwrap();
  let rows = ps(&sandbox, &[]);
  assert_eq!(rows[0]["shown_state"], "orphaned (its alos host is gone)", "{rows:?}");
  sandbox.cmd(&["kill", &pid]).expect_code(0).stdout_has("its alos host was gone");
  assert!(ps(&sandbox, &[]).is_empty());
  let audit = sandbox.audit();
  let kill = audit.iter().find(|r| r["syscall"] == "human.kill").expect("the kill is audited");
  assert_eq!(kill["actor"], "human");
  sandbox.cmd(&["audit", "verify"]).expect_code(0);
}
