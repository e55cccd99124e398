//! The agent demos (examples/coding-demo, research-demo, longrun-demo), run as the README
//! shows them with the scripted model, and the real-model smoke script against the
//! loopback fake OpenAI endpoint.

use std::path::Path;
use std::time::Duration;
use std::time::Instant;

use serde_json::Value;

use super::common::Run;
use super::common::Sandbox;
use super::fake_openai::FakeOpenAi;
use super::fake_openai::Response;

/// The JSON lines of a `--json` run: its events, then its end.
fn events(run: &Run) -> (Vec<Value>, Value) {
  let mut lines: Vec<Value> =
    run.stdout.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}\n{}", run.stdout))).collect();
  let end = lines.pop().expect("an end line");
  assert!(end.get("event").is_none() && lines.iter().all(|e| e.get("event").is_some()), "{}", run.stdout);
  (lines, end)
}

fn has(events: &[Value], pred: impl Fn(&Value) -> bool) -> bool {
  events.iter().any(pred)
}

#[test]
fn the_coding_demo_runs_the_papers_scenario() {
  let sandbox = Sandbox::new();
  sandbox.copy_example("coding-demo");
  let before = sandbox.read("src/parser.py");
  let child = sandbox.spawn(&[
    "spawn", "coding-agent", "--json",
    "--goal", "Make the failing tests in logs/pytest.log pass",
    "--model", "scripted:script.json",
    "--allow", "fs.read:**", "--allow", "proc.spawn", "--allow", "tool.register",
    "--ask", "fs.write:patches/**",
  ]);
  // The agent asks a question after its write to src/ is refused...
  let question = sandbox.next_request(&[]);
  assert_eq!(question["kind"], "question");
  assert!(question["detail"].as_str().unwrap().contains("Writing src/parser.py was refused"), "{question}");
  sandbox.cmd(&["approve", "r1", "--answer", "yes"]).expect_code(0);
  // ...then its patch preview waits for an approval, given once.
  let approval = sandbox.next_request(&["r1"]);
  assert_eq!(approval["kind"], "approval");
  assert!(approval["detail"].as_str().unwrap().contains("patches/parser.diff"), "{approval}");
  sandbox.cmd(&["approve", "r2", "--once"]).expect_code(0);
  let run = Run::finish(child);
  run.expect_code(0);

  let (events, end) = events(&run);
  let report = &end["result"];
  assert_eq!(report["ok"], true, "{report}");
  assert_eq!(report["changedFiles"], serde_json::json!(["patches/parser.diff"]));
  let names: Vec<&str> = report["toolCalls"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
  assert_eq!(
    names,
    ["delegate", "propose_tool", "register_tool", "failed_test_ids", "read_file", "checkpoint", "write_file", "ask_human", "write_file"]
  );
  assert_eq!(report["denials"][0]["path"], "src/parser.py");
  // The worker's report came back through delegate; the JIT tool found the failed ids.
  assert!(report["evidence"][0].as_str().unwrap().contains("test_parse_negative"), "{report}");
  assert_eq!(sandbox.read("src/parser.py"), before, "the refused write changed nothing");
  assert!(sandbox.read("patches/parser.diff").contains("+    stripped = text.strip()"));

  // The progress events tell the same story.
  let root = end["pid"].as_str().unwrap();
  assert!(has(&events, |e| e["event"] == "child" && e["parent"] == root), "a worker was forked");
  assert!(has(&events, |e| e["event"] == "child_exit" && e["ok"] == true));
  assert!(has(&events, |e| e["event"] == "action" && e["syscall"] == "tools.register" && e["ok"] == true));
  assert!(has(&events, |e| e["event"] == "action" && e["syscall"] == "checkpoint"));
  assert!(has(&events, |e| e["event"] == "denied" && e["capability"] == "fs.write:src/parser.py"));
  assert!(has(&events, |e| e["event"] == "human_wait" && e["request"] == "r2"));
  assert!(has(&events, |e| e["event"] == "human_answer" && e["request"] == "r2" && e["scope"] == "once"));
  assert!(has(&events, |e| e["event"] == "tool" && e["tool"] == "failed_test_ids" && e["ok"] == true));

  // The worker ran as a worker: read-only, and its model calls are its own.
  let audit = sandbox.audit();
  let worker = audit.iter().find(|r| r["syscall"] == "spawn" && r["pid"] != root).unwrap()["pid"].as_str().unwrap().to_string();
  assert!(audit.iter().any(|r| r["pid"] == worker.as_str() && r["syscall"] == "model.complete"));
  assert!(audit.iter().any(|r| r["syscall"] == "fs.writeText" && r["decision"] == "deny" && r["resource"] == "src/parser.py"));
  sandbox.cmd(&["audit", "verify"]).expect_code(0).stdout_has("chain intact");
}

#[test]
fn the_research_demo_fans_out_speculative_children_and_merges_from_memory() {
  let sandbox = Sandbox::new();
  sandbox.copy_example("research-demo");
  let run = sandbox.cmd(&[
    "spawn", "base-agent", "--json",
    "--goal", "What makes agent runtimes safe? Research the three sources and merge the findings.",
    "--model", "scripted:script.json",
    "--allow", "fs.read:sources/**", "--allow", "proc.spawn", "--allow", "mem.read:research", "--allow", "mem.write:research",
  ]);
  run.expect_code(0);
  let (events, end) = events(&run);
  let report = &end["result"];
  assert_eq!(report["ok"], true, "{report}");
  assert_eq!(report["toolCalls"].as_array().unwrap().iter().filter(|c| c["name"] == "delegate").count(), 3);
  // Each child stored its finding in the shared namespace; the merge read them there.
  let stored: Value = serde_json::from_str(&sandbox.cmd(&["mem", "ls", "research", "--json"]).stdout).unwrap();
  let keys: Vec<&str> = stored.as_array().unwrap().iter().map(|o| o["key"].as_str().unwrap()).collect();
  assert_eq!(keys, ["alpha", "beta", "gamma"]);
  let root = end["pid"].as_str().unwrap();
  assert_eq!(events.iter().filter(|e| e["event"] == "child" && e["parent"] == root).count(), 3);
  assert!(has(&events, |e| e["event"] == "tool" && e["pid"] == root && e["tool"] == "mem_list" && e["ok"] == true));
  // One child tried to write a file: refused by its fork mode, not by luck.
  let refusal = events.iter().find(|e| e["event"] == "denied").expect("a refused write");
  assert_eq!(refusal["capability"], "fs.write:notes/gamma.md");
  assert!(refusal["decided_by"].as_str().unwrap().contains("speculative"), "{refusal}");
  assert!(!sandbox.exists("notes/gamma.md"));
  let audit = sandbox.audit();
  let spawns: Vec<&Value> = audit.iter().filter(|r| r["syscall"] == "spawn" && r["pid"] != root).collect();
  assert_eq!(spawns.len(), 3);
  sandbox.cmd(&["audit", "verify"]).expect_code(0);
}

/// The longrun demo's command.
const LONGRUN: &[&str] = &[
  "spawn", "base-agent", "--json", "--goal", "Import data/batches.txt into ledger.txt, one batch at a time",
  "--model", "scripted:script.json", "--allow", "fs.read:data/**", "--allow", "fs.write:ledger.txt",
];

#[test]
fn the_longrun_demo_survives_kill_9_with_no_repeated_side_effect() {
  // Uninterrupted.
  let calm = Sandbox::new();
  calm.copy_example("longrun-demo");
  let child = calm.spawn(LONGRUN);
  calm.next_request(&[]);
  calm.cmd(&["approve", "r1", "--answer", "yes"]).expect_code(0);
  let run = Run::finish(child);
  run.expect_code(0);
  let calm_report = events(&run).1["result"].clone();

  // Killed with SIGKILL while it waits for the operator, then resumed.
  let sandbox = Sandbox::new();
  sandbox.copy_example("longrun-demo");
  let mut child = sandbox.spawn(LONGRUN);
  sandbox.next_request(&[]);
  assert_eq!(sandbox.read("ledger.txt"), "batch 1: 120 records imported\n");
  child.kill().unwrap();
  child.wait().unwrap();
  let ps: Value = serde_json::from_str(&sandbox.cmd(&["ps", "--all", "--json"]).stdout).unwrap();
  let pid = ps[0]["pid"].as_str().unwrap().to_string();
  // The operator answers while no alos runs; resuming replays the journal (the model's
  // answers included) and picks the answered question up: nothing is asked again.
  sandbox.cmd(&["approve", "r1", "--answer", "yes"]).expect_code(0);
  let deadline = Instant::now() + Duration::from_secs(60);
  let run = loop {
    // The model it was started with is recorded: the resume needs no --model.
    let run = sandbox.cmd(&["resume", &pid, "--json"]);
    // Refused while the killed host still looked alive: try again.
    if run.code == 0 || Instant::now() > deadline {
      break run;
    }
    std::thread::sleep(Duration::from_millis(300));
  };
  assert_eq!(sandbox.cmd(&["inbox", "--json"]).stdout.trim(), "[]", "a question was asked again");
  run.expect_code(0);
  let end: Value = serde_json::from_str(run.stdout.lines().last().unwrap()).unwrap();
  let report = &end["result"];

  // Same result, each batch imported exactly once.
  assert_eq!(sandbox.read("ledger.txt"), calm.read("ledger.txt"));
  assert_eq!(sandbox.read("ledger.txt"), "batch 1: 120 records imported\nbatch 2: 80 records imported\n");
  for field in ["ok", "summary", "changedFiles", "steps", "stoppedBecause"] {
    assert_eq!(report[field], calm_report[field], "{field}: {report} vs {calm_report}");
  }
  let writes = sandbox.audit().into_iter().filter(|r| r["syscall"] == "fs.writeText" && r["outcome"] == "ok").count();
  assert_eq!(writes, 2, "one append per batch");
  sandbox.cmd(&["audit", "verify"]).expect_code(0);
}

#[test]
fn the_smoke_script_passes_against_the_loopback_openai_endpoint() {
  let fake = FakeOpenAi::with([
    Response::error(500, "the fake is warming up"),
    Response::tool_calls(&[("read_file", r#"{"path":"logs/pytest.log"}"#), ("read_file", r#"{"path":"src/parser.py"}"#)]),
    Response::tool_calls(&[("write_file", r#"{"path":"patches/parser.diff","text":"--- a/src/parser.py\n+++ b/src/parser.py\n"}"#)]),
    Response::text(r#"{"summary":"parse_int rejects signs and spaces; patch in patches/parser.diff","changedFiles":["patches/parser.diff"],"evidence":["2 failed"],"verification":"not run","residualRisks":[]}"#),
  ]);
  let key = "sk-smoke-test-key-7c1e";
  let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/smoke-real-model.sh");
  let output = std::process::Command::new("bash")
    .arg(&script)
    .env("OPENAI_BASE_URL", fake.base_url())
    .env("OPENAI_API_KEY", key)
    .env("ALOS_SMOKE_MODEL", "fake-model")
    .env("ALOS", assert_cmd::cargo::cargo_bin("alos"))
    .env_remove("RUST_LOG")
    .output()
    .unwrap();
  let run = Run::from(output);
  run.expect_code(0).stdout_has("smoke: done after 3 steps, 3 tool calls").stdout_has("smoke: ok");
  // The 500 was retried, and every request carried the key to the endpoint (only there).
  let requests = fake.requests();
  assert_eq!(requests.len(), 4);
  assert!(requests.iter().all(|r| r.header("authorization") == Some(format!("Bearer {key}").as_str())));
  assert_eq!(requests[1].json()["model"], "fake-model");
  assert!(requests[1].json()["tools"].as_array().unwrap().iter().any(|t| t["function"]["name"] == "read_file"));
}
