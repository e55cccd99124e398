//! The human queue across terminals: one `alos run` waits, another `alos` process
//! answers. Approvals are bound to the exact operation and recorded.

use std::process::Child;
use std::process::Command;
use std::process::Stdio;

use super::common::Run;
use super::common::Sandbox;

/// Starts `alos run SCRIPT ARGS...` in the background, as a second terminal would see it.
fn start(sandbox: &Sandbox, script: &str, code: &str, args: &[&str]) -> Child {
  sandbox.write(script, code);
  sandbox.spawn(&[&["run", script], args].concat())
}

#[test]
fn approve_once_applies_to_that_operation_only_and_the_next_asks_again() {
  let sandbox = Sandbox::new();
  sandbox.write("out/.keep", "");
  let child = start(
    &sandbox,
    "agent.ts",
    r#"
    await libos.fs.writeText("out/report.txt", "first draft");
    console.log("first write done");
    try { await libos.fs.writeText("out/report.txt", "second draft"); }
    catch (e) { console.log("second: " + e.name + ": " + e.message); }"#,
    &["--allow", "fs.write:out/**", "--ask", "fs.write:out/**"],
  );
  let first = sandbox.next_request(&[]);
  assert_eq!(first["syscall"], "fs.writeText");
  assert_eq!(first["capability"], "fs.write:out/report.txt");
  assert!(first["detail"].as_str().unwrap().contains("\"first draft\""), "{first}");
  let inbox = sandbox.cmd(&["inbox"]);
  inbox.expect_code(0).stdout_has(first["id"].as_str().unwrap()).stdout_has("alos approve");
  sandbox.cmd(&["approve", first["id"].as_str().unwrap()]).expect_code(0).stdout_has("approved");

  let second = sandbox.next_request(&[first["id"].as_str().unwrap()]);
  assert!(second["detail"].as_str().unwrap().contains("\"second draft\""), "{second}");
  sandbox.cmd(&["deny", second["id"].as_str().unwrap(), "--reason", "not this one"]).expect_code(0);

  let run = Run::finish(child);
  run
    .expect_code(0)
    .stdout_has("first write done")
    .stdout_has("second: PermissionDenied")
    .stdout_has("not this one")
    .stderr_has("alos approve");
  assert_eq!(sandbox.read("out/report.txt"), "first draft");
  // A late or repeated answer changes nothing.
  sandbox.cmd(&["approve", first["id"].as_str().unwrap()]).expect_code(1).stderr_has("not pending");
  sandbox.cmd(&["approve", "r999"]).expect_code(1).stderr_has("no request r999");
  sandbox.cmd(&["audit", "verify"]).expect_code(0);
  let audit = sandbox.audit();
  let kinds: Vec<(String, String)> = audit
    .iter()
    .filter(|r| r["syscall"] == "fs.writeText" || r["syscall"] == "human.answer")
    .map(|r| (r["syscall"].as_str().unwrap().into(), r["decision"].as_str().unwrap().into()))
    .collect();
  let expected = [("fs.writeText", "ask"), ("human.answer", "allow"), ("fs.writeText", "allow"), ("fs.writeText", "ask"), ("human.answer", "deny")];
  let expected: Vec<(String, String)> = expected.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
  assert_eq!(kinds, expected);
  let human = audit.iter().find(|r| r["syscall"] == "human.answer").unwrap();
  assert_eq!(human["actor"], "human");
}

#[test]
fn approve_for_the_process_and_always() {
  let sandbox = Sandbox::new();
  sandbox.write("out/.keep", "");
  let script = r#"for (const n of [1, 2, 3]) await libos.fs.writeText(`out/${n}.txt`, "x"); console.log("all written");"#;
  let child = start(&sandbox, "agent.ts", script, &["--allow", "fs.write:out/**", "--ask", "fs.write:out/1.txt", "--ask", "fs.write:out/2.txt"]);
  let first = sandbox.next_request(&[]);
  sandbox.cmd(&["approve", first["id"].as_str().unwrap(), "--always"]).expect_code(0);
  let second = sandbox.next_request(&[first["id"].as_str().unwrap()]);
  sandbox.cmd(&["approve", second["id"].as_str().unwrap(), "--process"]).expect_code(0);
  Run::finish(child).expect_code(0).stdout_has("all written");
  // "Always" outlives the run: the next run writes out/1.txt without asking.
  let run = sandbox.run("again.ts", r#"await libos.fs.writeText("out/1.txt", "y"); console.log("no question");"#, &["--allow", "fs.write:out/**", "--ask", "fs.write:out/1.txt", "--human", "deny"]);
  run.expect_code(0).stdout_has("no question");
}

#[test]
fn human_deny_mode_and_impossible_operations_never_ask() {
  let sandbox = Sandbox::new();
  let run = sandbox.run("a.ts", r#"await libos.fs.writeText("x.txt", "x");"#, &["--allow", "fs.write", "--ask", "fs.write", "--human", "deny"]);
  run.expect_code(3).stderr_has("--human deny");
  // The parent directory does not exist: fail now, do not bother a human.
  let run = sandbox.run("b.ts", r#"await libos.fs.writeText("missing/x.txt", "x");"#, &["--allow", "fs.write", "--ask", "fs.write"]);
  run.expect_code(1).stderr_has("NotFound");
  let pending = sandbox.cmd(&["inbox", "--json"]);
  assert_eq!(pending.stdout.trim(), "[]");
}

#[test]
fn questions_take_answers_choices_and_time_out_to_their_default() {
  let sandbox = Sandbox::new();
  let child = start(
    &sandbox,
    "q.ts",
    r#"
    const color = await libos.human.ask("Which color?", { choices: ["red", "blue"] });
    const late = await libos.human.ask("Anyone there?", { timeoutMs: 300, default: "nobody" });
    let silent = "";
    try { await libos.human.ask("Last chance?", { timeoutMs: 300 }); } catch (e) { silent = e.name; }
    libos.exit({ color, late, silent });"#,
    &["--allow", "human.ask", "--json"],
  );
  let question = sandbox.next_request(&[]);
  assert_eq!(question["kind"], "question");
  let id = question["id"].as_str().unwrap();
  sandbox.cmd(&["approve", id]).expect_code(1).stderr_has("--answer");
  sandbox.cmd(&["approve", id, "--answer", "green"]).expect_code(1).stderr_has("red, blue");
  sandbox.cmd(&["approve", id, "--answer", "blue"]).expect_code(0);
  let run = Run::finish(child);
  run.expect_code(0);
  let end: serde_json::Value = serde_json::from_str(run.stdout.lines().last().unwrap()).unwrap();
  assert_eq!(end["result"], serde_json::json!({ "color": "blue", "late": "nobody", "silent": "Timeout" }));
}

#[test]
fn request_text_is_escaped_for_the_terminal() {
  let sandbox = Sandbox::new();
  let child = start(
    &sandbox,
    "q.ts",
    r#"await libos.human.ask("Approve?\u001b[2J\u001b[1;1H\rALL CLEAR \u202Eevil\u202C", { timeoutMs: 30000 }).catch(() => {});"#,
    &["--allow", "human.ask"],
  );
  let request = sandbox.next_request(&[]);
  let inbox = sandbox.cmd(&["inbox"]);
  assert!(!inbox.stdout.contains('\u{1b}') && !inbox.stdout.contains('\r') && !inbox.stdout.contains('\u{202e}'), "{:?}", inbox.stdout);
  inbox.stdout_has("\\u{1b}[2J").stdout_has("\\u{202e}evil");
  sandbox.cmd(&["deny", request["id"].as_str().unwrap()]).expect_code(0);
  let run = Run::finish(child);
  assert!(!run.stderr.contains('\u{1b}'), "the waiting notice is escaped too: {:?}", run.stderr);
}

#[test]
fn a_process_cannot_answer_requests_itself() {
  let sandbox = Sandbox::new();
  let run = sandbox.run(
    "self.ts",
    r#"
    const p = libos.human.ask("may I?", { timeoutMs: 500, default: "no" });
    const tries = [];
    for (const f of [
      () => libos.fs.writeText(".alos/alos.db", "x"),
      () => libos.fs.readBytes(".alos/alos.db"),
      () => libos.fs.remove(".alos", { recursive: true }),
    ]) { try { await f(); tries.push("ok"); } catch (e) { tries.push(e.name); } }
    console.log(JSON.stringify({ answer: await p, tries, approve: typeof (libos as any).human.approve }));"#,
    &["--allow", "human.ask", "--allow", "fs.read", "--allow", "fs.write", "--allow", "fs.delete"],
  );
  run.expect_code(0).stdout_has(r#"{"answer":"no","tries":["PermissionDenied","PermissionDenied","PermissionDenied"],"approve":"undefined"}"#);
}

/// `--human tty` prompts on the controlling terminal; `script` gives the run a real
/// pseudo-terminal and types the answer.
#[test]
fn the_terminal_prompt_answers_inline() {
  let sandbox = Sandbox::new();
  sandbox.write("out/.keep", "");
  sandbox.write("a.ts", r#"await libos.fs.writeText("out/a.txt", "inline"); console.log("written");"#);
  let alos = assert_cmd::cargo::cargo_bin("alos");
  let command = format!("{} run a.ts --allow 'fs.write:out/**' --ask 'fs.write:out/**' --human tty", alos.display());
  let mut child = Command::new("script")
    .current_dir(sandbox.path())
    .args(["-qec", &command, "/dev/null"])
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("script(1) from util-linux");
  // Answer once the prompt is up.
  sandbox.next_request(&[]);
  std::io::Write::write_all(child.stdin.as_mut().unwrap(), b"o\n").unwrap();
  let run = Run::finish(child);
  run.expect_code(0).stdout_has("allow [o]nce").stdout_has("written");
  assert_eq!(sandbox.read("out/a.txt"), "inline");
}
