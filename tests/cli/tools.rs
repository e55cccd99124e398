//! The tool table from scripts: `libos.tools.list/call` on built-in tools (visibility,
//! invocation, authority as three checks), the JIT pipeline (`propose` → `register` →
//! call → `revoke`) and the attacks on it, each failing safe with an audit record.

use serde_json::json;
use serde_json::Value;

use super::common::Run;
use super::common::Sandbox;

/// Runs `code` with `args` (plus `--json`) and returns the `libos.exit` result.
fn result_of(sandbox: &Sandbox, code: &str, args: &[&str]) -> Value {
  let mut args = args.to_vec();
  args.push("--json");
  let run = sandbox.run("main.ts", code, &args);
  exit_result(&run)
}

fn exit_result(run: &Run) -> Value {
  let last = run.stdout.lines().last().unwrap_or("");
  let end: Value = serde_json::from_str(last).unwrap_or_else(|e| panic!("{e}: stdout {}\nstderr {}", run.stdout, run.stderr));
  assert_eq!(end["status"], "ok", "{end}\nstderr {}", run.stderr);
  end["result"].clone()
}

/// `await EXPR` as its value or the error's `"Class: message"`.
const TRY: &str = r#"
  async function attempt(promise) {
    try { return await promise; } catch (e) { return e.name + ": " + e.message; }
  }
"#;

/// A JIT tool's source: `run` is the body of an async function of `args`.
fn tool_source(name: &str, caps: &[&str], run: &str) -> String {
  format!(
    r#"import {{ defineTool }} from "libos:tool";
export default defineTool({{
  name: "{name}",
  description: "a test tool",
  input: {{ type: "object" }},
  capabilities: {caps},
  run: async (args) => {{ {run} }},
}});
"#,
    caps = serde_json::to_string(caps).unwrap()
  )
}

/// A script proposing `source` as `name` (declaring `caps`) and returning the report.
fn propose_script(name: &str, caps: &[&str], source: &str) -> String {
  format!(
    r#"{TRY}
    const report = await attempt(libos.tools.propose({{
      name: {name}, description: "a test tool", input: {{ type: "object" }},
      capabilities: {caps}, source: {source}, tests: [],
    }}));
    libos.exit(report);"#,
    name = json!(name),
    caps = json!(caps),
    source = json!(source),
  )
}

#[test]
fn the_table_lists_every_builtin_tool_as_a_model_ready_schema() {
  let sandbox = Sandbox::new();
  let tools = result_of(&sandbox, "libos.exit(await libos.tools.list());", &[]);
  let names: Vec<&str> = tools.as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
  for name in ["read_file", "write_file", "list_dir", "search_text", "shell", "file_to_object", "object_to_file"] {
    assert!(names.contains(&name), "{name} missing from {names:?}");
  }
  let read_file = tools.as_array().unwrap().iter().find(|t| t["name"] == "read_file").unwrap();
  assert_eq!(read_file["parameters"]["type"], "object");
  assert!(read_file["description"].as_str().unwrap().len() > 10);
  assert_eq!(read_file["origin"], "builtin");
}

#[test]
fn calling_a_tool_is_checked_three_times_table_arguments_authority() {
  let sandbox = Sandbox::new();
  sandbox.write("notes/a.txt", "hello tools\n");
  sandbox.write("secret.txt", "no");
  let result = result_of(
    &sandbox,
    &format!(
      r#"{TRY}
      libos.exit({{
        read: await attempt(libos.tools.call("read_file", {{ path: "notes/a.txt" }})),
        missing_tool: await attempt(libos.tools.call("rm_rf", {{}})),
        bad_args: await attempt(libos.tools.call("read_file", {{ path: 7 }})),
        extra_arg: await attempt(libos.tools.call("read_file", {{ path: "a", sneaky: true }})),
        no_grant: await attempt(libos.tools.call("read_file", {{ path: "secret.txt" }})),
      }});"#
    ),
    &["--allow", "fs.read:notes/**"],
  );
  assert_eq!(result["read"]["text"], "hello tools\n", "{result}");
  let missing = result["missing_tool"].as_str().unwrap();
  assert!(missing.starts_with("NotFound") && missing.contains("rm_rf"), "{missing}");
  let bad = result["bad_args"].as_str().unwrap();
  assert!(bad.starts_with("InvalidArgument") && bad.contains("args.path"), "{bad}");
  assert!(result["extra_arg"].as_str().unwrap().starts_with("InvalidArgument"), "{result}");
  // Being in the table grants nothing: the read is decided at the primitive.
  let denied = result["no_grant"].as_str().unwrap();
  assert!(denied.starts_with("PermissionDenied") && denied.contains("fs.read:secret.txt"), "{denied}");

  // The tool's syscalls are audited as the caller's, naming the tool.
  let audit = sandbox.audit();
  let by_tool: Vec<&Value> = audit.iter().filter(|r| r["tool"] == "read_file").collect();
  assert!(by_tool.iter().any(|r| r["syscall"] == "fs.readText" && r["decision"] == "allow"), "{by_tool:?}");
  assert!(by_tool.iter().any(|r| r["resource"] == "secret.txt" && r["decision"] == "deny"), "{by_tool:?}");
  assert!(audit.iter().any(|r| r["syscall"] == "tools.call" && r["decided_by"].as_str().unwrap_or("").contains("tool table")));
}

#[test]
fn a_deny_rule_on_tool_call_holds_even_for_a_tool_in_the_table() {
  let sandbox = Sandbox::new();
  let result = result_of(
    &sandbox,
    &format!(r#"{TRY} libos.exit(await attempt(libos.tools.call("now", {{}})));"#),
    &["--deny", "tool.call:now"],
  );
  let text = result.as_str().unwrap();
  assert!(text.starts_with("PermissionDenied") && text.contains("tool.call:now"), "{text}");
}

#[test]
fn a_jit_tool_is_proposed_registered_called_listed_and_revoked() {
  let sandbox = Sandbox::new();
  sandbox.write("log.txt", "FAILED tests/test_a.py::test_one\nok\nFAILED tests/test_b.py::test_two\n");
  let source = tool_source(
    "failed_ids",
    &["fs.read:**"],
    r#"const text = await libos.fs.readText(args.path);
       return text.split("\n").filter((l) => l.startsWith("FAILED ")).map((l) => l.slice(7));"#,
  );
  let result = result_of(
    &sandbox,
    &format!(
      r#"{TRY}
      const source = {source};
      const proposal = await libos.tools.propose({{
        name: "failed_ids", description: "a test tool", input: {{ type: "object" }},
        capabilities: ["fs.read:**"], source,
        tests: [{{ name: "extracts ids", args: {{ path: "x.log" }},
                  mocks: [{{ call: "fs.readText", args: {{ path: "x.log" }}, reply: {{ ok: "FAILED t::a\nok" }} }}],
                  expect: ["t::a"] }}],
      }});
      const again = await libos.tools.propose({{
        name: "failed_ids", description: "a test tool", input: {{ type: "object" }},
        capabilities: ["fs.read:**"], source,
        tests: [{{ name: "extracts ids", args: {{ path: "x.log" }},
                  mocks: [{{ call: "fs.readText", args: {{ path: "x.log" }}, reply: {{ ok: "FAILED t::a\nok" }} }}],
                  expect: ["t::a"] }}],
      }});
      const before = (await libos.tools.list()).map((t) => t.name).includes("failed_ids");
      const registered = await libos.tools.register(proposal.candidateId);
      const listed = (await libos.tools.list()).find((t) => t.name === "failed_ids");
      const ids = await libos.tools.call("failed_ids", {{ path: "log.txt" }});
      const revoked = await libos.tools.revoke("failed_ids");
      const after = await attempt(libos.tools.call("failed_ids", {{ path: "log.txt" }}));
      const event = await libos.events.next("tools", {{ timeoutMs: 1000 }});
      libos.exit({{ proposal, same_id: again.candidateId === proposal.candidateId, before, registered, listed, ids, revoked, after, event }});"#,
      source = json!(source)
    ),
    &["--allow", "fs.read:**", "--allow", "tool.register", "--allow", "event.wait:tools"],
  );
  assert_eq!(result["proposal"]["ok"], true, "{result}");
  assert_eq!(result["proposal"]["tests"]["passed"], 1, "{result}");
  assert_eq!(result["same_id"], true);
  assert_eq!(result["before"], false);
  assert_eq!(result["registered"], json!({ "name": "failed_ids", "scope": "process" }));
  assert_eq!(result["listed"]["capabilities"], json!(["fs.read:**"]));
  assert_eq!(result["ids"], json!(["tests/test_a.py::test_one", "tests/test_b.py::test_two"]));
  assert_eq!(result["revoked"], json!({ "name": "failed_ids" }));
  assert!(result["after"].as_str().unwrap().starts_with("NotFound"), "{result}");
  assert_eq!(result["event"]["payload"], json!({ "registered": "failed_ids", "scope": "process" }));

  let audit = sandbox.audit();
  for syscall in ["tools.propose", "tools.register", "tools.call", "tools.revoke"] {
    assert!(audit.iter().any(|r| r["syscall"] == syscall), "no {syscall} record");
  }
  let register = audit.iter().find(|r| r["syscall"] == "tools.register").unwrap();
  assert_eq!(register["decision"], "allow");
  assert_eq!(register["capability"], "tool.register");
}

#[test]
fn registering_needs_tool_register() {
  let sandbox = Sandbox::new();
  let source = tool_source("noop_tool", &[], "return 1;");
  let result = result_of(
    &sandbox,
    &format!(
      r#"{TRY}
      const p = await libos.tools.propose({{ name: "noop_tool", description: "a test tool", input: {{ type: "object" }}, source: {source} }});
      libos.exit(await attempt(libos.tools.register(p.candidateId)));"#,
      source = json!(source)
    ),
    &[],
  );
  let text = result.as_str().unwrap();
  assert!(text.starts_with("PermissionDenied") && text.contains("tool.register"), "{text}");
  assert!(sandbox.audit().iter().any(|r| r["syscall"] == "tools.register" && r["decision"] == "deny"));
}

/// Each malicious candidate is refused by the checks: findings name the rule, nothing
/// is registered, and the proposal is audited.
#[test]
fn malicious_candidates_are_refused_by_static_analysis() {
  let cases = [
    ("node_fs", r#"import fs from "node:fs"; export default 1;"#, "import"),
    ("url_import", r#"import x from "https://evil.example/x.js"; export default x;"#, "import"),
    ("relative_import", r#"import x from "../x.ts"; export default x;"#, "import"),
    ("computed_eval", &tool_source("computed_eval", &[], r#"return globalThis["ev" + "al"]("1");"#), "eval"),
    ("ctor", &tool_source("ctor", &[], r#"return Function.prototype.constructor("return 1")();"#), "function-constructor"),
    ("dyn_import", &tool_source("dyn_import", &[], r#"return await import("libos:tool");"#), "dynamic-import"),
  ];
  for (name, source, rule) in cases {
    let sandbox = Sandbox::new();
    let result = result_of(&sandbox, &propose_script(name, &[], source), &["--allow", "tool.register"]);
    assert_eq!(result["ok"], false, "{name}: {result}");
    let findings = result["findings"].as_array().unwrap();
    assert!(findings.iter().any(|f| f["rule"] == rule), "{name}: expected a {rule} finding in {result}");
    assert!(sandbox.audit().iter().any(|r| r["syscall"] == "tools.propose"), "{name}: proposal not audited");
  }
}

#[test]
fn a_candidate_cannot_declare_more_than_its_proposer_holds_or_shadow_a_tool() {
  let sandbox = Sandbox::new();
  let widen = tool_source("widen", &["fs.write:**"], "return 1;");
  let result = result_of(&sandbox, &propose_script("widen", &["fs.write:**"], &widen), &["--allow", "fs.read:**"]);
  assert_eq!(result["ok"], false);
  let problems = result["problems"].to_string();
  assert!(problems.contains("fs.write:**") && problems.contains("does not hold"), "{problems}");

  let shadow = tool_source("read_file", &[], "return 1;");
  let result = result_of(&sandbox, &propose_script("read_file", &[], &shadow), &[]);
  assert_eq!(result["ok"], false);
  assert!(result["problems"].to_string().contains("shadow"), "{result}");
}

#[test]
fn a_candidate_whose_tests_loop_forever_fails_its_checks() {
  let sandbox = Sandbox::new();
  let source = tool_source("spin", &[], "while (true) {}");
  let result = result_of(
    &sandbox,
    &format!(
      r#"libos.exit(await libos.tools.propose({{ name: "spin", description: "a test tool", input: {{ type: "object" }},
         source: {source}, tests: [{{ name: "spins", args: {{}} }}] }}));"#,
      source = json!(source)
    ),
    &[],
  );
  assert_eq!(result["ok"], false, "{result}");
  assert_eq!(result["tests"]["failed"], 1, "{result}");
}

/// A JIT tool registered and then run: its authority is the caller's grants ∩ its
/// declaration, its result is bounded, a runaway call is stopped, and globals it sets
/// do not reach another tool.
#[test]
fn a_registered_tool_runs_with_at_most_its_declared_authority() {
  let sandbox = Sandbox::new();
  sandbox.write("notes/a.txt", "note");
  sandbox.write("secret.txt", "the caller may read this, the tool may not");
  let tools = [
    ("peek", tool_source("peek", &["fs.read:notes/**"], "return await libos.fs.readText(args.path);")),
    ("huge", tool_source("huge", &[], r#"return "x".repeat(100 * 1024 * 1024);"#)),
    ("spin_call", tool_source("spin_call", &[], "if (args.spin) { while (true) {} } return 'fine';")),
    ("setter", tool_source("setter", &[], "globalThis.leak = 'set by setter'; return true;")),
    ("getter", tool_source("getter", &[], "return typeof globalThis.leak;")),
  ];
  let mut script = String::from(TRY);
  script.push_str("const out = {};\n");
  for (name, source) in &tools {
    script.push_str(&format!(
      r#"{{ const p = await libos.tools.propose({{ name: "{name}", description: "a test tool", input: {{ type: "object" }},
           capabilities: {caps}, source: {source} }});
         out["{name}_registered"] = await attempt(libos.tools.register(p.candidateId)); }}
      "#,
      caps = if *name == "peek" { r#"["fs.read:notes/**"]"# } else { "[]" },
      source = json!(source)
    ));
  }
  script.push_str(
    r#"out.allowed = await attempt(libos.tools.call("peek", { path: "notes/a.txt" }));
    out.undeclared = await attempt(libos.tools.call("peek", { path: "secret.txt" }));
    out.caller_reads = await libos.fs.readText("secret.txt");
    out.huge = await attempt(libos.tools.call("huge", {}));
    out.spin = await attempt(libos.tools.call("spin_call", { spin: true }));
    out.after_spin = await attempt(libos.tools.call("spin_call", {}));
    out.set = await attempt(libos.tools.call("setter", {}));
    out.get = await attempt(libos.tools.call("getter", {}));
    libos.exit(out);"#,
  );
  let result =
    result_of(&sandbox, &script, &["--allow", "fs.read:**", "--allow", "tool.register", "--tool-timeout", "2s"]);
  for (name, _) in &tools {
    assert_eq!(result[format!("{name}_registered")]["name"], *name, "{result}");
  }
  assert_eq!(result["allowed"], "note");
  let undeclared = result["undeclared"].as_str().unwrap();
  assert!(undeclared.starts_with("PermissionDenied") && undeclared.contains("does not declare"), "{undeclared}");
  assert_eq!(result["caller_reads"], "the caller may read this, the tool may not");
  assert!(result["huge"].as_str().unwrap().starts_with("LimitExceeded"), "{result}");
  let spin = result["spin"].as_str().unwrap();
  assert!(spin.starts_with("LimitExceeded") || spin.starts_with("Timeout"), "{spin}");
  assert_eq!(result["after_spin"], "fine", "a stopped tool's isolate is replaced: {result}");
  assert_eq!(result["set"], true);
  assert_eq!(result["get"], "undefined", "globals of one tool reached another: {result}");

  let audit = sandbox.audit();
  let denial = audit.iter().find(|r| r["tool"] == "peek" && r["decision"] == "deny").expect("the tool's denial is audited");
  assert!(denial["decided_by"].as_str().unwrap().contains("not declared by tool peek"), "{denial}");
}

/// A registered tool is stored: a process killed after registering it, and resumed by
/// another `alos`, still finds it in its table and calls it; the journal serves the
/// proposal and registration instead of doing them again.
#[test]
fn a_registered_tool_survives_its_alos_being_killed_and_the_process_resumed() {
  let sandbox = Sandbox::new();
  sandbox.write("data.txt", "three\nlines\nhere\n");
  let source = tool_source("count_lines", &["fs.read:**"], r#"return (await libos.fs.readText(args.path)).split("\n").length - 1;"#);
  sandbox.write(
    "main.ts",
    format!(
      r#"const p = await libos.tools.propose({{ name: "count_lines", description: "a test tool", input: {{ type: "object" }},
           capabilities: ["fs.read:**"], source: {source} }});
      await libos.tools.register(p.candidateId);
      const go = await libos.human.ask("go on?");
      libos.exit({{ go, lines: await libos.tools.call("count_lines", {{ path: "data.txt" }}) }});"#,
      source = json!(source)
    ),
  );
  let mut host =
    sandbox.spawn(&["run", "main.ts", "--json", "--allow", "fs.read:**", "--allow", "tool.register", "--allow", "human.ask"]);
  let request = sandbox.next_request(&[]);
  host.kill().unwrap();
  host.wait().unwrap();
  sandbox.cmd(&["approve", request["id"].as_str().unwrap(), "--answer", "yes"]).expect_code(0);
  let ps = sandbox.cmd(&["ps", "--all", "--json"]);
  let rows: Vec<Value> = serde_json::from_str(&ps.stdout).unwrap();
  let pid = rows[0]["pid"].as_str().unwrap().to_string();
  let resumed = sandbox.cmd(&["resume", &pid, "--json"]);
  assert_eq!(exit_result(&resumed), json!({ "go": "yes", "lines": 3 }));
  let audit = sandbox.audit();
  let count = |syscall: &str| audit.iter().filter(|r| r["syscall"] == syscall && r["pid"] == pid.as_str()).count();
  assert_eq!((count("tools.propose"), count("tools.register")), (1, 1), "replay repeated the pipeline");
  sandbox.cmd(&["audit", "verify"]).expect_code(0);
}

/// A tool that waits for a human (ask_human) keeps its caller's isolate: the process does
/// not hibernate mid-call, and the answer reaches the tool.
#[test]
fn a_tool_waiting_for_a_human_does_not_hibernate_its_caller() {
  let sandbox = Sandbox::new();
  sandbox.write("main.ts", r#"libos.exit(await libos.tools.call("ask_human", { question: "which colour?" }));"#);
  let child = sandbox.spawn(&["run", "main.ts", "--json", "--allow", "human.ask"]);
  let request = sandbox.next_request(&[]);
  assert!(request["detail"].as_str().unwrap_or_default().contains("which colour?") || request.to_string().contains("which colour?"), "{request}");
  sandbox.cmd(&["approve", request["id"].as_str().unwrap(), "--answer", "blue"]).expect_code(0);
  let run = Run::finish(child);
  let result = exit_result(&run);
  assert!(result.to_string().contains("blue"), "{result}");
  // No in-doubt question was raised: the only request was the tool's.
  assert!(sandbox.cmd(&["inbox", "--json"]).stdout.trim() == "[]", "a second request appeared");
}

/// A tool's wall-time limit counts only its running time: an approval that takes longer
/// than the limit does not stop the tool that waits for it.
#[test]
fn waiting_for_an_approval_inside_a_tool_does_not_count_against_its_time_limit() {
  let sandbox = Sandbox::new();
  sandbox.write("out/.keep", "");
  sandbox.write("main.ts", r#"libos.exit(await libos.tools.call("write_file", { path: "out/a.txt", text: "approved" }));"#);
  let child = sandbox.spawn(&["run", "main.ts", "--json", "--ask", "fs.write:out/**", "--tool-timeout", "1s"]);
  let request = sandbox.next_request(&[]);
  // Longer than the tool's limit.
  std::thread::sleep(std::time::Duration::from_millis(2500));
  sandbox.cmd(&["approve", request["id"].as_str().unwrap()]).expect_code(0);
  let run = Run::finish(child);
  let result = exit_result(&run);
  assert_eq!(result["path"], "out/a.txt", "{result}");
  assert_eq!(sandbox.read("out/a.txt"), "approved");
}
