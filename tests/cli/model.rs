//! `libos.model.complete` end to end: the real `alos` binary against the loopback fake
//! OpenAI server (tool calls, retries, errors, timeouts, budgets, a 5 MB message, the
//! API key kept out of every record), the scripted model, and resume without a second
//! call.

use std::process::Command as StdCommand;
use std::process::Stdio;

use serde_json::Value;

use super::common::Run;
use super::common::Sandbox;
use super::fake_openai::FakeOpenAi;
use super::fake_openai::Response;

const KEY: &str = "sk-test-0123456789";
const MODEL: &str = "openai:gpt-test";
const CAP: &str = "model:openai/gpt-test";

/// Runs `code` as `agent.ts` against `fake` with `--model openai:gpt-test` and `args`.
fn run(sandbox: &Sandbox, fake: &FakeOpenAi, code: &str, args: &[&str]) -> Run {
  sandbox.write("agent.ts", code);
  let mut cmd = sandbox.alos();
  cmd.env("OPENAI_BASE_URL", fake.base_url()).env("OPENAI_API_KEY", KEY).args(["run", "agent.ts", "--model", MODEL]).args(args);
  Run::from(cmd.output().unwrap())
}

/// A script making one call with `request` (JS), printing the reply as JSON, or the
/// error's class and message.
fn one_call(request: &str) -> String {
  format!(
    r#"
    try {{
      const reply = await libos.model.complete({request});
      console.log(JSON.stringify(reply));
    }} catch (e) {{
      console.log(`${{e.name}}: ${{e.message}} | capability=${{e.capability}}`);
    }}"#
  )
}

const HELLO: &str = r#"{ messages: [{ role: "user", content: "hello" }] }"#;

fn reply(run: &Run) -> Value {
  let line = run.stdout.lines().find(|l| l.starts_with('{')).unwrap_or_else(|| panic!("no reply\n{}\n{}", run.stdout, run.stderr));
  serde_json::from_str(line).unwrap()
}

#[test]
fn tool_calls_come_back_parsed_and_the_request_is_the_wire_format() {
  let fake = FakeOpenAi::with([Response::tool_calls(&[
    ("read_file", r#"{"path": "notes.txt"}"#),
    ("write_file", r#"{"path": "x", "#),
    ("", "{}"),
  ])]);
  let sandbox = Sandbox::new();
  let code = one_call(
    r#"{
      messages: [{ role: "system", content: "you are terse" }, { role: "user", content: "read notes.txt" }],
      tools: (await libos.tools.list()).filter((t) => t.name === "read_file"),
      maxTokens: 100,
    }"#,
  );
  let run = run(&sandbox, &fake, &code, &["--allow", CAP]);
  run.expect_code(0);
  let reply = reply(&run);
  let calls = reply["toolCalls"].as_array().unwrap();
  assert_eq!(calls[0]["name"], "read_file");
  assert_eq!(calls[0]["args"], serde_json::json!({"path": "notes.txt"}));
  assert_eq!(calls[1]["args"], Value::Null, "malformed arguments: args is null");
  assert_eq!(calls[1]["arguments"], r#"{"path": "x", "#, "and the raw text is kept");
  assert_eq!(calls[2]["name"], "", "an empty name is kept for the agent loop");
  assert_eq!(reply["message"]["toolCalls"], reply["toolCalls"]);
  assert_eq!(reply["message"]["role"], "assistant");
  assert_eq!(reply["finishReason"], "tool_calls");
  assert_eq!(reply["usage"], serde_json::json!({"inputTokens": 20, "outputTokens": 8}));
  assert_eq!(reply["model"], "openai/gpt-test");

  let requests = fake.requests();
  assert_eq!(requests.len(), 1);
  let request = &requests[0];
  assert_eq!((request.method.as_str(), request.path.as_str()), ("POST", "/v1/chat/completions"));
  assert_eq!(request.header("authorization"), Some(format!("Bearer {KEY}").as_str()));
  assert_eq!(request.header("content-type"), Some("application/json"));
  let body = request.json();
  assert_eq!(body["model"], "gpt-test");
  assert_eq!(body["max_tokens"], 100);
  assert_eq!(body["messages"][0], serde_json::json!({"role": "system", "content": "you are terse"}));
  assert_eq!(body["messages"][1]["content"], "read notes.txt");
  assert_eq!(body["tools"][0]["type"], "function");
  assert_eq!(body["tools"][0]["function"]["name"], "read_file");
  assert!(body["tools"][0]["function"]["parameters"]["properties"]["path"].is_object(), "{body}");
  // Decided and audited: allowed by the grant, and it needs no net capability.
  let audit = sandbox.audit();
  let record = audit.iter().find(|r| r["syscall"] == "model.complete").expect("a model.complete record");
  assert_eq!(record["decision"], "allow");
  assert_eq!(record["capability"], CAP);
  assert_eq!(record["outcome"], "ok");
}

#[test]
fn a_conversation_with_tool_results_goes_back_on_the_wire() {
  let fake = FakeOpenAi::with([Response::tool_calls(&[("read_file", r#"{"path": "a.txt"}"#)]), Response::text("a.txt says hi")]);
  let sandbox = Sandbox::new();
  sandbox.write("a.txt", "hi");
  let code = r#"
    const messages = [{ role: "user", content: "what does a.txt say?" }];
    const first = await libos.model.complete({ messages });
    messages.push(first.message);
    for (const call of first.toolCalls) {
      const output = await libos.tools.call(call.name, call.args);
      messages.push({ role: "tool", toolCallId: call.id, name: call.name, content: JSON.stringify(output) });
    }
    const second = await libos.model.complete({ messages });
    console.log("answer:", second.message.content);"#;
  let run = run(&sandbox, &fake, code, &["--allow", CAP, "--allow", "fs.read:a.txt"]);
  run.expect_code(0).stdout_has("answer: a.txt says hi");
  let body = fake.requests()[1].json();
  let messages = body["messages"].as_array().unwrap();
  assert_eq!(messages[1]["role"], "assistant");
  assert_eq!(messages[1]["tool_calls"][0]["id"], "call_fake_1_1");
  assert_eq!(messages[1]["tool_calls"][0]["function"]["arguments"], r#"{"path": "a.txt"}"#);
  assert_eq!(messages[2]["role"], "tool");
  assert_eq!(messages[2]["tool_call_id"], "call_fake_1_1");
  assert!(messages[2]["content"].as_str().unwrap().contains("hi"), "{body}");
}

#[test]
fn a_server_error_is_retried_and_a_refused_key_is_not() {
  let fake = FakeOpenAi::with([Response::error(500, "boom"), Response::text("recovered")]);
  let sandbox = Sandbox::new();
  let run1 = run(&sandbox, &fake, &one_call(HELLO), &["--allow", CAP]);
  run1.expect_code(0);
  assert_eq!(reply(&run1)["message"]["content"], "recovered");
  assert_eq!(fake.count(), 2, "one retry");

  let fake = FakeOpenAi::with([Response::error(401, "Incorrect API key provided")]);
  let run2 = run(&sandbox, &fake, &one_call(HELLO), &["--allow", CAP]);
  run2.expect_code(0).stdout_has("OperationFailed: model.complete (openai/gpt-test):").stdout_has("refused the API key (HTTP 401");
  run2.stdout_has("check OPENAI_API_KEY");
  assert_eq!(fake.count(), 1, "a refused key is not retried");
}

#[test]
fn retry_after_is_honoured() {
  let fake = FakeOpenAi::with([Response::rate_limited(1), Response::text("after the wait")]);
  let sandbox = Sandbox::new();
  let run = run(&sandbox, &fake, &one_call(HELLO), &["--allow", CAP]);
  run.expect_code(0);
  assert_eq!(reply(&run)["message"]["content"], "after the wait");
  let requests = fake.requests();
  assert_eq!(requests.len(), 2);
  // A lower bound only: the retry came no sooner than the server asked.
  let gap = requests[1].at.duration_since(requests[0].at);
  assert!(gap >= std::time::Duration::from_millis(950), "retried after {gap:?}, before Retry-After: 1");
}

#[test]
fn a_hanging_endpoint_times_out() {
  let fake = FakeOpenAi::with([Response::Hang]);
  let sandbox = Sandbox::new();
  let run = run(&sandbox, &fake, &one_call(HELLO), &["--allow", CAP, "--model-timeout", "1s"]);
  run.expect_code(0).stdout_has("Timeout: model.complete (openai/gpt-test):").stdout_has("raise --model-timeout");
  assert_eq!(fake.count(), 1, "a timed-out attempt is not repeated");
}

#[test]
fn malformed_and_unreachable_endpoints_are_clear_errors() {
  let fake = FakeOpenAi::with([Response::malformed()]);
  let sandbox = Sandbox::new();
  let run1 = run(&sandbox, &fake, &one_call(HELLO), &["--allow", CAP]);
  run1.expect_code(0).stdout_has("OperationFailed: ").stdout_has("the response is not JSON");
  assert_eq!(fake.count(), 1);

  // A port nothing listens on.
  let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
  let port = closed.local_addr().unwrap().port();
  drop(closed);
  sandbox.write("agent.ts", one_call(HELLO));
  let mut cmd = sandbox.alos();
  cmd.env("OPENAI_BASE_URL", format!("http://127.0.0.1:{port}/v1")).env("OPENAI_API_KEY", KEY);
  let run2 = Run::from(cmd.args(["run", "agent.ts", "--model", MODEL, "--allow", CAP]).output().unwrap());
  run2.expect_code(0).stdout_has("OperationFailed: ").stdout_has(&format!("cannot reach the model endpoint http://127.0.0.1:{port}/v1"));
  run2.stdout_has("after 4 attempts");
}

#[test]
fn no_capability_is_denied_naming_the_model_and_nothing_is_sent() {
  let fake = FakeOpenAi::with([Response::text("never")]);
  let sandbox = Sandbox::new();
  let run1 = run(&sandbox, &fake, &one_call(HELLO), &["--allow", "model:openai/other"]);
  run1.expect_code(0).stdout_has("PermissionDenied: ").stdout_has(&format!("--allow {CAP}")).stdout_has(&format!("capability={CAP}"));
  // Another model than the default is another capability.
  let run2 = run(&sandbox, &fake, &one_call(r#"{ model: "openai:gpt-big", messages: [{ role: "user", content: "hi" }] }"#), &["--allow", CAP]);
  run2.expect_code(0).stdout_has("capability=model:openai/gpt-big");
  assert_eq!(fake.count(), 0);
}

#[test]
fn the_call_budget_runs_out_mid_run() {
  let fake = FakeOpenAi::with([Response::text("one"), Response::text("two"), Response::text("three")]);
  let sandbox = Sandbox::new();
  let code = r#"
    for (let i = 0; i < 3; i++) {
      try {
        const r = await libos.model.complete({ messages: [{ role: "user", content: `call ${i}` }] });
        console.log("ok", r.message.content);
      } catch (e) {
        console.log(`${e.name}: ${e.message}`);
      }
    }"#;
  let caught = run(&sandbox, &fake, code, &["--allow", CAP, "--model-calls", "2"]);
  caught.expect_code(0).stdout_has("ok one").stdout_has("ok two").stdout_has("LimitExceeded: ").stdout_has("model_calls=2");
  assert_eq!(fake.count(), 2);
  // Uncaught, it ends the script as an error of that class.
  let forever = "for (;;) await libos.model.complete({ messages: [{ role: 'user', content: 'x' }] });";
  let uncaught = run(&sandbox, &fake, forever, &["--allow", CAP, "--model-calls", "1", "--json"]);
  let out: Value = serde_json::from_str(uncaught.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {}", uncaught.stdout));
  assert_eq!(out["class"], "LimitExceeded", "{out}");
}

#[test]
fn the_token_budget_is_shared_with_children_and_runs_out() {
  let sandbox = Sandbox::new();
  sandbox.write(
    "script.json",
    r#"{"responses": [
      {"match": {"lastUser": "child"}, "content": "child answer", "usage": {"inputTokens": 50, "outputTokens": 10}},
      {"content": "parent answer", "usage": {"inputTokens": 50, "outputTokens": 10}}
    ]}"#,
  );
  sandbox.write(
    "child.ts",
    r#"
    const r = await libos.model.complete({ messages: [{ role: "user", content: "child" }] });
    try {
      await libos.model.complete({ messages: [{ role: "user", content: "child again" }] });
    } catch (e) {
      libos.exit({ first: r.message.content, second: `${e.name}: ${e.message}` });
    }"#,
  );
  let code = r#"
    const first = await libos.model.complete({ messages: [{ role: "user", content: "parent" }] });
    const pid = await libos.proc.spawn({ entry: "child.ts", caps: ["model:scripted/default"] });
    const child = await libos.proc.wait(pid);
    let last;
    try {
      await libos.model.complete({ messages: [{ role: "user", content: "parent again" }] });
      last = "allowed";
    } catch (e) { last = `${e.name}: ${e.message}`; }
    console.log(JSON.stringify({ first: first.message.content, child: child.exit.result, last }));"#;
  sandbox.write("agent.ts", code);
  let run = sandbox.cmd(&[
    "run", "agent.ts", "--model", "scripted:script.json", "--allow", "model:scripted/default", "--allow", "proc.spawn",
    "--model-tokens", "100",
  ]);
  run.expect_code(0);
  let out = reply(&run);
  assert_eq!(out["first"], "parent answer");
  assert_eq!(out["child"]["first"], "child answer", "{out}");
  // The child started with the 40 tokens its parent had left, and spent them.
  assert!(out["child"]["second"].as_str().unwrap().contains("model_tokens=40"), "{out}");
  // And what the child spent counts against the parent.
  assert!(out["last"].as_str().unwrap().starts_with("LimitExceeded: ") && out["last"].as_str().unwrap().contains("model_tokens=100"), "{out}");
}

#[test]
fn a_5_mb_message_is_sent_whole() {
  let fake = FakeOpenAi::with([Response::text("that was long")]);
  let sandbox = Sandbox::new();
  let code = one_call(r#"{ messages: [{ role: "user", content: "x".repeat(5 * 1024 * 1024) }] }"#);
  let run = run(&sandbox, &fake, &code, &["--allow", CAP]);
  run.expect_code(0);
  assert_eq!(reply(&run)["message"]["content"], "that was long");
  let body = fake.requests()[0].json();
  assert_eq!(body["messages"][0]["content"].as_str().unwrap().len(), 5 * 1024 * 1024);
}

#[test]
fn the_api_key_appears_in_no_record_output_or_log() {
  let key = "sk-alos-leak-probe-5f1c9e27d3";
  let fake = FakeOpenAi::with([
    Response::error(503, "overloaded"),
    Response::text("fine"),
    Response::EchoAuthorization,
    Response::Hang,
  ]);
  let sandbox = Sandbox::new();
  let code = r#"
    for (const timeout of [0, 1, 2]) {
      try {
        const r = await libos.model.complete({ messages: [{ role: "user", content: `attempt ${timeout}` }] });
        console.log("reply", JSON.stringify(r));
      } catch (e) {
        console.log("error", e.name, e.message);
        console.error("error", e.name, e.message);
      }
    }
    await libos.mem.put("last", { done: true });"#;
  sandbox.write("agent.ts", code);
  let mut cmd = sandbox.alos();
  cmd.env("OPENAI_BASE_URL", fake.base_url()).env("OPENAI_API_KEY", key).env("RUST_LOG", "debug");
  let run = Run::from(cmd.args(["run", "agent.ts", "--model", MODEL, "--allow", CAP, "--model-timeout", "1s"]).output().unwrap());
  run.expect_code(0).stdout_has("reply").stdout_has("refused the API key").stdout_has("Timeout");
  // The fake did get it: that is where it belongs.
  assert!(fake.requests().iter().all(|r| r.header("authorization") == Some(format!("Bearer {key}").as_str())));
  // And the 401 body echoed it, so the error path had it in hand.
  assert!(run.stdout.contains("[redacted]"), "{}", run.stdout);

  let mut places = vec![("stdout", run.stdout.clone()), ("stderr", run.stderr.clone())];
  for args in [&["audit", "--json"][..], &["ps", "--all", "--json"], &["audit", "verify"]] {
    let out = sandbox.cmd(args);
    places.push((args[0], format!("{}{}", out.stdout, out.stderr)));
  }
  for entry in std::fs::read_dir(sandbox.path().join(".alos")).unwrap() {
    let path = entry.unwrap().path();
    if path.is_file() {
      places.push(("state file", String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned()));
    }
  }
  assert!(places.iter().any(|(_, text)| text.contains("model.complete")), "the probe looked at real records");
  for (place, text) in places {
    assert!(!text.contains(key), "the API key leaked into {place}");
    assert!(!text.contains("sk-alos-leak"), "part of the API key leaked into {place}");
  }
}

#[test]
fn the_scripted_model_runs_a_tool_loop() {
  let sandbox = Sandbox::new();
  sandbox.write("data/a.txt", "alpha");
  sandbox.write(
    "script.json",
    r#"{"responses": [
      {"toolCalls": [{"name": "read_file", "arguments": {"path": "data/a.txt"}}]},
      {"match": {"lastTool": "alpha"}, "content": "the file says alpha"},
      {"content": "unexpected"}
    ]}"#,
  );
  let code = r#"
    const tools = await libos.tools.list();
    const messages = [{ role: "system", content: "read files" }, { role: "user", content: "what is in data/a.txt?" }];
    for (let step = 0; step < 5; step++) {
      const r = await libos.model.complete({ messages, tools });
      messages.push(r.message);
      if (r.toolCalls.length === 0) { console.log(JSON.stringify({ answer: r.message.content, model: r.model, steps: step + 1, id: messages[2].toolCalls[0].id })); break; }
      for (const call of r.toolCalls) {
        const out = await libos.tools.call(call.name, call.args);
        messages.push({ role: "tool", toolCallId: call.id, content: JSON.stringify(out) });
      }
    }"#;
  sandbox.write("agent.ts", code);
  let run = sandbox.cmd(&[
    "run", "agent.ts", "--model", "scripted:script.json", "--allow", "model:scripted/default", "--allow", "fs.read:data/**",
  ]);
  run.expect_code(0);
  let out = reply(&run);
  assert_eq!(out["answer"], "the file says alpha");
  assert_eq!(out["model"], "scripted/default");
  assert_eq!(out["steps"], 2);
  assert_eq!(out["id"], "call_1");
  // Running out is a clear error naming the request.
  sandbox.write("script.json", r#"{"responses": []}"#);
  let run = sandbox.run("agent.ts", &one_call(r#"{ messages: [{ role: "user", content: "anyone there?" }] }"#), &[
    "--model", "scripted:script.json", "--allow", "model:scripted/default",
  ]);
  run.expect_code(0).stdout_has("OperationFailed: ").stdout_has("no response left").stdout_has("anyone there?");
  // A bad script is a usage error before anything runs.
  sandbox.write("script.json", r#"{"responses": [{"text": "typo"}]}"#);
  sandbox.run("agent.ts", "console.log('ran')", &["--model", "scripted:script.json"]).expect_code(2).stderr_has("unknown field");
}

#[test]
fn a_resumed_process_is_served_its_journaled_answer_without_a_new_call() {
  let fake = FakeOpenAi::with([Response::text("first answer"), Response::text("second answer")]);
  let sandbox = Sandbox::new();
  let code = r#"
    const messages = [{ role: "user", content: "one" }];
    const a = await libos.model.complete({ messages });
    messages.push(a.message, { role: "user", content: "two" });
    const b = await libos.model.complete({ messages });
    libos.exit({ a: a.message.content, b: b.message.content });"#;
  sandbox.write("agent.ts", code);
  let alos = |args: &[&str], crash_at: Option<&str>| {
    let mut cmd = StdCommand::new(assert_cmd::cargo::cargo_bin("alos"));
    cmd.current_dir(sandbox.path()).args(args).stdin(Stdio::null()).env_remove("RUST_LOG");
    cmd.env("OPENAI_BASE_URL", fake.base_url()).env("OPENAI_API_KEY", KEY);
    match crash_at {
      Some(n) => cmd.env("ALOS_TEST_CRASH_AT", n),
      None => cmd.env_remove("ALOS_TEST_CRASH_AT"),
    };
    Run::from(cmd.output().unwrap())
  };
  // Journal points: proc.self done, the first call waiting, then done: crash right after.
  let crashed = alos(&["run", "agent.ts", "--json", "--model", MODEL, "--allow", CAP], Some("3"));
  assert!(crashed.stderr.contains("crashing at journal point 3"), "{}", crashed.stderr);
  assert_eq!(fake.count(), 1);
  let ps = sandbox.cmd(&["ps", "--all", "--json"]);
  let rows: Vec<Value> = serde_json::from_str(&ps.stdout).unwrap();
  let pid = rows[0]["pid"].as_str().unwrap().to_string();

  // No --model: the resume uses the one the process was started with.
  let resumed = alos(&["resume", &pid, "--json"], None);
  resumed.expect_code(0);
  let out: Value = serde_json::from_str(resumed.stdout.trim()).unwrap();
  assert_eq!(out["result"], serde_json::json!({"a": "first answer", "b": "second answer"}));
  assert_eq!(fake.count(), 2, "the first answer came from the journal");
  // The live call after the resume carried the journaled first answer.
  let body = fake.requests()[1].json();
  assert_eq!(body["messages"][1]["content"], "first answer");
}
