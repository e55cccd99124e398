//! Durable state: a process survives its `alos` being killed (`kill -9` at every
//! journal point), waits for a human without a host, resumes without repeating a side
//! effect, and rolls back to a checkpoint.

use std::process::Command as StdCommand;
use std::process::Stdio;
use std::time::Duration;
use std::time::Instant;

use serde_json::Value;

use super::common::Run;
use super::common::Sandbox;

/// A scripted agent with every kind of journaled step: clock and randomness, appends
/// (which would show a repeat), a shell command (counted), Object Memory, a checkpoint,
/// and a write that needs a human's approval.
const AGENT: &str = r#"
const r = libos.random();
const t = libos.now();
await libos.fs.writeText("out/start.txt", `start ${r}\n`, { append: true });
// A command found in doubt after a crash and skipped by the human has no result.
const bump = await libos.shell.exec("bump", []).catch((e) => {
  if (!(e instanceof libos.errors.Cancelled)) throw e;
  return { stdout: "skipped" };
});
await libos.mem.put("progress", { step: 1, r });
await libos.checkpoint("before-approval");
await libos.fs.writeText("out/approved.txt", `approved ${r}`);
await libos.mem.put("progress", { step: 2, r });
await libos.fs.writeText("out/end.txt", `end ${r}\n`, { append: true });
libos.exit({ r, t, bumped: bump.stdout.trim() });
"#;

struct Agent {
  sandbox: Sandbox,
  _bin: tempfile::TempDir,
  shell_path: String,
}

fn agent() -> Agent {
  let sandbox = Sandbox::new();
  sandbox.write("agent.ts", AGENT);
  sandbox.write("out/.keep", "");
  let bin = tempfile::tempdir().unwrap();
  let bump = bin.path().join("bump");
  std::fs::write(&bump, "#!/bin/sh\necho x >> \"$PWD/out/bumps.txt\"\necho bumped\n").unwrap();
  std::fs::set_permissions(&bump, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
  let shell_path = bin.path().display().to_string();
  Agent { sandbox, _bin: bin, shell_path }
}

impl Agent {
  fn alos(&self, args: &[&str], crash_at: Option<u64>) -> std::process::Child {
    let mut cmd = StdCommand::new(assert_cmd::cargo::cargo_bin("alos"));
    cmd.current_dir(self.sandbox.path()).args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    match crash_at {
      Some(n) => cmd.env("ALOS_TEST_CRASH_AT", n.to_string()),
      None => cmd.env_remove("ALOS_TEST_CRASH_AT"),
    };
    cmd.spawn().expect("start alos")
  }

  fn run(&self, crash_at: Option<u64>) -> std::process::Child {
    let args = [
      "run", "agent.ts", "--json", "--allow", "fs.write:out/**", "--ask", "fs.write:out/approved.txt", "--allow", "shell:bump",
      "--shell-path", &self.shell_path,
    ];
    self.alos(&args, crash_at)
  }

  fn root_pid(&self) -> String {
    let out = self.sandbox.cmd(&["ps", "--all", "--json"]);
    let rows: Vec<Value> = serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("ps --json: {e}: {}", out.stdout));
    rows[0]["pid"].as_str().unwrap().to_string()
  }

  /// Whether the effect an in-doubt question is about is visible in the workspace.
  fn happened(&self, question: &str) -> bool {
    let exists = |f: &str| self.sandbox.exists(f);
    if question.contains("shell.exec") {
      exists("out/bumps.txt")
    } else if question.contains("out/start.txt") {
      exists("out/start.txt")
    } else if question.contains("out/end.txt") {
      exists("out/end.txt")
    } else if question.contains("out/approved.txt") {
      exists("out/approved.txt")
    } else {
      panic!("an in-doubt question about an unexpected effect: {question}")
    }
  }

  /// Plays the human: approves the write, and settles in-doubt effects as a careful
  /// human would (skip what visibly happened, retry what did not). Returns the final
  /// run of the host that finished the process, and how many in-doubt questions came.
  fn drive(&self, crash_at: Option<u64>) -> (Run, usize) {
    let mut host = self.run(crash_at);
    let mut answered: Vec<String> = vec![];
    let mut in_doubt = 0;
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
      assert!(Instant::now() < deadline, "the agent did not finish (crash point {crash_at:?})");
      if let Some(status) = host.try_wait().unwrap() {
        if status.code().is_some() {
          return (Run::finish(host), in_doubt);
        }
        // Killed by the test hook: another alos takes over.
        host = self.alos(&["resume", &self.root_pid(), "--json"], None);
        continue;
      }
      let inbox = self.sandbox.cmd(&["inbox", "--json"]);
      let pending: Vec<Value> = serde_json::from_str(&inbox.stdout).unwrap_or_default();
      for request in pending {
        let id = request["id"].as_str().unwrap().to_string();
        if answered.contains(&id) {
          continue;
        }
        let detail = request["detail"].as_str().unwrap_or_default().to_string();
        let answer = if request["kind"] == "approval" {
          self.sandbox.cmd(&["approve", &id, "--once"])
        } else {
          in_doubt += 1;
          let choice = if self.happened(&detail) { "skip" } else { "retry" };
          self.sandbox.cmd(&["approve", &id, "--answer", choice])
        };
        answer.expect_code(0);
        answered.push(id);
      }
      std::thread::sleep(Duration::from_millis(50));
    }
  }

  /// Files, memory and audit as a comparison sees them.
  fn outcome(&self, run: &Run) -> (Value, Vec<String>) {
    run.expect_code(0);
    let result: Value = serde_json::from_str(run.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {}", run.stdout));
    let r = result["result"]["r"].as_f64().unwrap();
    let read = |f: &str| if self.sandbox.exists(f) { self.sandbox.read(f) } else { String::new() };
    assert_eq!(read("out/start.txt"), format!("start {r}\n"), "the first append ran exactly once");
    assert_eq!(read("out/end.txt"), format!("end {r}\n"), "the last append ran exactly once");
    assert_eq!(read("out/approved.txt"), format!("approved {r}"));
    assert_eq!(read("out/bumps.txt"), "x\n", "the shell command ran exactly once");
    let pid = result["pid"].as_str().unwrap();
    let memory = self.sandbox.cmd(&["mem", "get", &format!("proc/{pid}"), "progress", "--json"]);
    let memory: Value = serde_json::from_str(&memory.stdout).unwrap_or_else(|e| panic!("{e}: {}", memory.stdout));
    assert_eq!(memory["value"]["step"], 2);
    assert_eq!(memory["value"]["r"].as_f64(), Some(r));
    self.sandbox.cmd(&["audit", "verify"]).expect_code(0);
    // The process's own records, without what a human or the host added.
    let syscalls = self
      .sandbox
      .audit()
      .iter()
      .filter(|a| a["actor"] != "system" && a["decision"] != "ask" && !a["syscall"].as_str().unwrap().starts_with("human."))
      .map(|a| a["syscall"].as_str().unwrap().to_string())
      .collect();
    let bumped = result["result"]["bumped"].as_str().unwrap();
    assert!(bumped == "bumped" || bumped == "skipped", "{bumped}");
    (serde_json::json!({ "memoryVersion": memory["version"] }), syscalls)
  }
}

#[test]
fn a_process_waiting_for_approval_survives_its_alos_being_killed() {
  let agent = agent();
  let mut host = agent.run(None);
  let request = agent.sandbox.next_request(&[]);
  // It waits without an isolate: hibernated, as another terminal sees it.
  let ps = agent.sandbox.cmd(&["ps"]);
  assert!(ps.stdout.contains("hibernated(human)"), "{}", ps.stdout);
  host.kill().unwrap();
  host.wait().unwrap();
  // Approved while no alos runs; a new one resumes it and it finishes.
  agent.sandbox.cmd(&["approve", request["id"].as_str().unwrap(), "--once"]).expect_code(0);
  let pid = agent.root_pid();
  let resumed = Run::from(agent.sandbox.alos().args(["resume", &pid, "--json"]).output().unwrap());
  let (state, syscalls) = agent.outcome(&resumed);
  assert_eq!(state["memoryVersion"], 2);
  assert!(syscalls.contains(&"fs.writeText".to_string()));
  // Resuming a finished process is a clear error that changes nothing.
  agent.sandbox.cmd(&["resume", &pid]).expect_code(1).stderr_has("already exited");
}

#[test]
fn crash_matrix_kill_at_every_journal_point_then_resume() {
  let reference = agent();
  let (run, in_doubt) = reference.drive(None);
  assert_eq!(in_doubt, 0);
  let expected = reference.outcome(&run);

  let mut points = 0;
  for n in 1..=60 {
    let agent = agent();
    let (run, _) = agent.drive(Some(n));
    let crashed = run.stderr.contains("resum") || agent.sandbox.audit().iter().any(|a| a["syscall"] == "resume");
    assert_eq!(agent.outcome(&run), expected, "crash point {n}: the result differs from an uninterrupted run");
    if !crashed {
      points = n - 1;
      break;
    }
  }
  eprintln!("crash matrix: {points} journal points, each killed and resumed");
  assert!(points >= 10, "the agent passes through at least 10 journal points (saw {points})");
}

#[test]
fn a_journal_from_another_script_version_fails_clearly() {
  let agent = agent();
  let mut host = agent.run(None);
  let request = agent.sandbox.next_request(&[]);
  host.kill().unwrap();
  host.wait().unwrap();
  agent.sandbox.cmd(&["approve", request["id"].as_str().unwrap(), "--once"]).expect_code(0);
  // The script changes while its process is down: the journal no longer matches.
  agent.sandbox.write("agent.ts", AGENT.replace("out/start.txt", "out/other.txt"));
  let pid = agent.root_pid();
  let resumed = agent.sandbox.cmd(&["resume", &pid]);
  resumed.expect_code(1).stderr_has("diverged from its journal").stderr_has("fs.writeText");
  assert!(!agent.sandbox.exists("out/other.txt"), "nothing of the new script ran");
}

#[test]
fn rollback_restores_memory_and_reruns_from_the_checkpoint() {
  let agent = agent();
  let (run, _) = agent.drive(None);
  let (_, _) = agent.outcome(&run);
  let pid = agent.root_pid();
  let mut host = agent.alos(&["rollback", &pid, "1", "--json"], None);
  // The write after the checkpoint needs a new approval: the one-shot one was spent.
  let request = agent.sandbox.next_request(&[]);
  let memory = agent.sandbox.cmd(&["mem", "get", &format!("proc/{pid}"), "progress", "--json"]);
  assert!(memory.stdout.contains("\"step\":1"), "memory is back at the checkpoint: {}", memory.stdout);
  agent.sandbox.cmd(&["approve", request["id"].as_str().unwrap(), "--once"]).expect_code(0);
  while host.try_wait().unwrap().is_none() {
    std::thread::sleep(Duration::from_millis(50));
  }
  let run = Run::finish(host);
  run.expect_code(0).stderr_has("cannot be undone").stderr_has("fs.writetext");
  // Before the checkpoint nothing ran again; after it, the append ran a second time.
  assert_eq!(agent.sandbox.read("out/bumps.txt"), "x\n");
  assert_eq!(agent.sandbox.read("out/end.txt").lines().count(), 2);
  agent.sandbox.cmd(&["audit", "verify"]).expect_code(0);
  assert!(agent.sandbox.audit().iter().any(|a| a["syscall"] == "human.rollback"));
}
