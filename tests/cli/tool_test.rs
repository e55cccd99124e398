//! `alos tool test` and `alos tool check` on real files: passing and failing tests, the
//! limits that keep a bad test from hanging the runner, mock files, and load errors.

use serde_json::Value;

use super::common::Run;
use super::common::Sandbox;

/// A tool module: `run` is its run function's source, `tests` its tests (a JS literal).
fn tool(run: &str, tests: &str) -> String {
  format!(
    r#"import {{ defineTool }} from "libos:tool";
export default defineTool({{
  name: "sample",
  description: "a tool under test",
  input: {{ type: "object" }},
  capabilities: ["fs.read:**"],
  run: {run},
  tests: {tests},
}});
"#
  )
}

const READ: &str = "async ({ path }: { path: string }) => ({ text: await libos.fs.readText(path) })";

fn test(sandbox: &Sandbox, file: &str, code: &str, extra: &[&str]) -> Run {
  sandbox.write(file, code);
  let mut args = vec!["tool", "test", file];
  args.extend_from_slice(extra);
  sandbox.cmd(&args)
}

#[test]
fn a_passing_tool_reports_ok_and_exits_0() {
  let sandbox = Sandbox::new();
  let tests = r#"[
    { name: "reads a file", args: { path: "a.txt" },
      mocks: [{ call: "fs.readText", args: { path: "a.txt" }, reply: { ok: "hello" } }],
      expect: { text: "hello" }, expectCalls: [{ call: "fs.readText", args: { path: "a.txt" } }] },
    { name: "missing file", args: { path: "b.txt" },
      mocks: [{ call: "fs.readText", reply: { err: { class: "NotFound", message: "no b.txt" } } }],
      expectError: "NotFound" },
  ]"#;
  let run = test(&sandbox, "read.ts", &tool(READ, tests), &[]);
  run
    .expect_code(0)
    .stdout_has("running 2 tests from ./read.ts\nreads a file ... ok (")
    .stdout_has("missing file ... ok (");
  assert!(run.stdout.lines().last().unwrap().starts_with("ok | 2 passed | 0 failed ("), "{}", run.stdout);
}

#[test]
fn a_failing_test_shows_a_diff_and_exits_1() {
  let sandbox = Sandbox::new();
  let tests = r#"[
    { name: "wrong text", args: { path: "a.txt" },
      mocks: [{ call: "fs.readText", reply: { ok: "hello" } }], expect: { text: "goodbye" } },
    { name: "right text", args: { path: "a.txt" },
      mocks: [{ call: "fs.readText", reply: { ok: "hello" } }], expect: { text: "hello" } },
  ]"#;
  let run = test(&sandbox, "read.ts", &tool(READ, tests), &[]);
  run
    .expect_code(1)
    .stdout_has("wrong text ... FAILED (")
    .stdout_has("right text ... ok (")
    .stdout_has(" ERRORS \n\nwrong text => ./read.ts\nerror: the result differs from expect (- expected, + actual):\n")
    .stdout_has("  -   \"text\": \"goodbye\"\n  +   \"text\": \"hello\"\n")
    .stdout_has(" FAILURES \n\nwrong text => ./read.ts\n")
    .stdout_has("FAILED | 1 passed | 1 failed (");
}

#[test]
fn a_test_that_loops_forever_fails_at_the_time_limit() {
  let sandbox = Sandbox::new();
  let tests = r#"[{ name: "spins" }, { name: "still runs", args: { quick: true } }]"#;
  let code = tool("(args: { quick?: boolean }) => { while (!args.quick) {} return 1; }", tests);
  let run = test(&sandbox, "spin.ts", &code, &[]);
  run
    .expect_code(1)
    .stdout_has("spins ... FAILED (")
    .stdout_has("error: the test ran longer than 5s and was stopped")
    .stdout_has("still runs ... ok (");
}

#[test]
fn a_test_that_allocates_until_out_of_memory_fails_at_the_heap_limit() {
  let sandbox = Sandbox::new();
  let code = tool(
    "() => { const hoard: string[][] = []; while (true) hoard.push(new Array(100000).fill('x'.repeat(16))); }",
    r#"[{ name: "hoards" }]"#,
  );
  test(&sandbox, "hoard.ts", &code, &[])
    .expect_code(1)
    .stdout_has("hoards ... FAILED (")
    .stdout_has("error: the tool used more than its 64 MiB heap and was stopped");
}

#[test]
fn a_test_that_makes_a_million_syscalls_fails_at_the_syscall_limit() {
  let sandbox = Sandbox::new();
  let code = tool(
    "() => { let n = 0; for (let i = 0; i < 1000000; i++) { try { libos.now(); n++; } catch (_) {} } return n; }",
    r#"[{ name: "chatty", mocks: [{ call: "now", reply: { ok: 0 } }] }]"#,
  );
  test(&sandbox, "chatty.ts", &code, &[])
    .expect_code(1)
    .stdout_has("chatty ... FAILED (")
    .stdout_has("error: the tool made more than 10000 syscalls (the mock's limit per test)");
}

#[test]
fn a_test_that_returns_100_mb_fails_without_taking_the_runner_down() {
  let sandbox = Sandbox::new();
  let code = tool("() => 'x'.repeat(100 * 1024 * 1024)", r#"[{ name: "huge" }]"#);
  // The 100 MB string cannot even be built inside the 64 MiB heap: the engine refuses
  // the one allocation.
  test(&sandbox, "huge.ts", &code, &[])
    .expect_code(1)
    .stdout_has("huge ... FAILED (")
    .stdout_has("error: the tool ran out of memory: an allocation would exceed its 64 MiB heap");
}

#[test]
fn a_result_over_the_size_limit_fails_the_test() {
  let sandbox = Sandbox::new();
  let code = tool("() => 'x'.repeat(5 * 1024 * 1024)", r#"[{ name: "large" }]"#);
  test(&sandbox, "large.ts", &code, &[])
    .expect_code(1)
    .stdout_has("error: the tool's result is 5242882 bytes of JSON, more than the 4194304-byte limit");
}

#[test]
fn an_unexpected_syscall_fails_the_test_and_names_it() {
  let sandbox = Sandbox::new();
  let tests = r#"[{ name: "reads", args: { path: "x.md" },
    mocks: [{ call: "fs.readText", args: { path: { $glob: "notes/*.md" } }, reply: { ok: "hi" } }] }]"#;
  test(&sandbox, "read.ts", &tool(READ, tests), &[]).expect_code(1).stdout_has(
    "error: unexpected syscall fs.readText {\"path\":\"x.md\"}; no rule matches \
     (nearest: rule #1 expects args.path to match $glob \"notes/*.md\")",
  );
}

#[test]
fn an_expect_calls_mismatch_shows_the_calls_diff() {
  let sandbox = Sandbox::new();
  let tests = r#"[{ name: "reads", args: { path: "a.txt" }, mocks: [{ call: "fs.readText", reply: { ok: "" } }],
    expectCalls: [{ call: "fs.readText", args: { path: "b.txt" } }, { call: "fs.stat" }] }]"#;
  test(&sandbox, "read.ts", &tool(READ, tests), &[])
    .expect_code(1)
    .stdout_has("error: the syscalls made differ from expectCalls (- expected, + made:\n")
    .stdout_has("  - fs.readText {\"path\":\"b.txt\"}\n  - fs.stat (any args)\n  + fs.readText {\"path\":\"a.txt\"}\n");
}

#[test]
fn a_mock_file_answers_after_the_tests_own_mocks() {
  let sandbox = Sandbox::new();
  sandbox.write("mock.json", r#"{"rules": [{"call": "fs.readText", "args": {"path": {"$regex": "\\.txt$"}}, "reply": {"ok": "from the file"}}]}"#);
  let tests = r#"[{ name: "uses the file", args: { path: "a.txt" }, expect: { text: "from the file" } }]"#;
  test(&sandbox, "read.ts", &tool(READ, tests), &["--mock", "mock.json"])
    .expect_code(0)
    .stdout_has("uses the file ... ok (");
}

#[test]
fn a_mock_file_with_a_bad_regex_is_a_usage_error_naming_the_rule() {
  let sandbox = Sandbox::new();
  sandbox.write(
    "mock.json",
    r#"{"rules": [{"call": "now", "reply": {"ok": 1}}, {"call": "fs.readText", "args": {"path": {"$regex": "("}}, "reply": {"ok": ""}}]}"#,
  );
  let run = test(&sandbox, "read.ts", &tool(READ, "[]"), &["--mock", "mock.json"]);
  run.expect_code(2).stderr_has("mock.json: mock rule #2: args.path: invalid $regex \"(\": ");
  assert!(run.stdout.is_empty(), "no tests ran: {}", run.stdout);
}

#[test]
fn a_module_that_does_not_export_a_tool_is_a_usage_error() {
  let sandbox = Sandbox::new();
  test(&sandbox, "plain.ts", "export default { name: 'plain', run: 42 };", &[])
    .expect_code(2)
    .stderr_has("does not default-export a defineTool(...) result: the default export has no run function");
  test(
    &sandbox,
    "shape.ts",
    "import { defineTool } from 'libos:tool';\nexport default defineTool({ name: 'Bad' });",
    &[],
  )
  .expect_code(2)
  .stderr_has("TypeError")
  .stderr_has("defineTool: name must match");
  sandbox.cmd(&["tool", "test", "missing.ts"]).expect_code(2).stderr_has("cannot open ./missing.ts");
}

#[test]
fn tests_beside_the_tool_run_too() {
  let sandbox = Sandbox::new();
  sandbox.write(
    "read.test.ts",
    r#"export default [{ name: "from read.test.ts", args: { path: "a" }, mocks: [{ call: "fs.readText", reply: { ok: "z" } }], expect: { text: "z" } }];"#,
  );
  let tests = r#"[{ name: "inline", args: { path: "a" }, mocks: [{ call: "fs.readText", reply: { ok: "y" } }], expect: { text: "y" } }]"#;
  test(&sandbox, "read.ts", &tool(READ, tests), &[])
    .expect_code(0)
    .stdout_has("running 2 tests from ./read.ts\ninline ... ok (")
    .stdout_has("from read.test.ts ... ok (");
}

#[test]
fn the_json_report_lists_each_test() {
  let sandbox = Sandbox::new();
  let tests = r#"[{ name: "good", args: { path: "a" }, mocks: [{ call: "fs.readText", reply: { ok: "" } }] },
    { name: "bad", args: { path: "a" }, mocks: [{ call: "fs.readText", reply: { ok: "" } }], expectError: "NotFound" }]"#;
  let run = test(&sandbox, "read.ts", &tool(READ, tests), &["--json"]);
  run.expect_code(1);
  let report: Value = serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {}", run.stdout));
  assert_eq!(
    (report["ok"].clone(), report["passed"].clone(), report["failed"].clone()),
    (false.into(), 1.into(), 1.into())
  );
  assert_eq!(report["file"], "./read.ts");
  assert_eq!(report["tests"][0]["name"], "good");
  assert_eq!(report["tests"][0]["ok"], true);
  assert_eq!(report["tests"][1]["errors"][0], "expected NotFound, but the tool returned\n{\n  \"text\": \"\"\n}");
}

#[test]
fn check_prints_findings_and_exits_1_when_there_are_any() {
  let sandbox = Sandbox::new();
  sandbox.write("clean.ts", tool(READ, "[]"));
  sandbox.cmd(&["tool", "check", "clean.ts"]).expect_code(0).stdout_has("0 findings");
  sandbox.write("risky.ts", format!("import x from \"https://example.com/x.js\";\n{}", tool("() => eval('1')", "[]")));
  let run = sandbox.cmd(&["tool", "check", "risky.ts"]);
  run.expect_code(1).stdout_has("./risky.ts:1:");
  let count = run.stdout.lines().filter(|l| l.starts_with("./risky.ts:")).count();
  assert!(count >= 2, "an import and an eval: {}", run.stdout);
  run.stdout_has(&format!("{count} findings"));
  let json = sandbox.cmd(&["tool", "check", "clean.ts", "--json"]);
  let report: Value = serde_json::from_str(&json.expect_code(0).stdout).unwrap();
  assert_eq!(report["findings"], serde_json::json!([]));
  assert_eq!(report["spec"]["name"], "sample");
}
