//! Runs a tool's tests: the `tests` of its `defineTool(...)` plus the default export of
//! `<stem>.test.ts` beside it. Each test gets a fresh `ToolIsolate` and a fresh
//! `MockBroker` (the test's `mocks`, then the mock file's rules), under tight limits, so
//! a test that loops, exhausts its heap or floods the broker fails with a clear message
//! instead of hanging. The report renders like `deno test`.

use std::path::Path;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;

use serde_json::json;
use serde_json::Map;
use serde_json::Value;

use super::isolate::Termination;
use super::loader::Builtins;
use super::mock::json_equal;
use super::mock::line_diff;
use super::mock::parse_rules;
use super::mock::MockBroker;
use super::mock::MockRule;
use super::tool::ToolFailure;
use super::tool::ToolIsolate;
use super::tool::ToolLimits;
use super::tool::ToolSource;
use crate::provider::human::printable;

/// The limits every test runs under.
#[derive(Debug, Clone, Copy)]
pub struct TestLimits {
  pub heap_bytes: usize,
  /// Loading the module, and then the test's call.
  pub per_test: Duration,
  pub max_result_bytes: usize,
  /// Syscalls the mock answers per test; the rest fail with `LimitExceeded`.
  pub max_syscalls: usize,
}

impl Default for TestLimits {
  fn default() -> TestLimits {
    TestLimits {
      heap_bytes: 64 << 20,
      per_test: Duration::from_secs(5),
      max_result_bytes: 4 << 20,
      max_syscalls: 10_000,
    }
  }
}

impl TestLimits {
  fn tool_limits(&self) -> ToolLimits {
    ToolLimits {
      heap_bytes: Some(self.heap_bytes),
      call_wall_time: Some(self.per_test),
      max_result_bytes: self.max_result_bytes,
    }
  }
}

/// The pid the tested tool's syscalls carry.
const TEST_PID: &str = "tool-test";

/// One test's outcome.
#[derive(Debug, Clone)]
pub struct TestResult {
  pub name: String,
  pub duration: Duration,
  /// Why it failed, one entry per problem; empty when it passed.
  pub errors: Vec<String>,
}

impl TestResult {
  pub fn passed(&self) -> bool {
    self.errors.is_empty()
  }
}

#[derive(Debug, Clone)]
pub struct TestReport {
  /// How the tool is named in the report (`./tools/read_file.ts`).
  pub file: String,
  pub results: Vec<TestResult>,
  pub duration: Duration,
}

impl TestReport {
  pub fn passed(&self) -> usize {
    self.results.iter().filter(|r| r.passed()).count()
  }

  pub fn failed(&self) -> usize {
    self.results.len() - self.passed()
  }

  pub fn ok(&self) -> bool {
    self.failed() == 0
  }

  /// The `deno test`-style text.
  pub fn render(&self) -> String {
    let plural = if self.results.len() == 1 { "" } else { "s" };
    let mut out = format!("running {} test{plural} from {}\n", self.results.len(), self.file);
    for result in &self.results {
      let verdict = if result.passed() { "ok" } else { "FAILED" };
      out += &format!("{} ... {verdict} ({})\n", printable(&result.name), millis(result.duration));
    }
    let failed: Vec<&TestResult> = self.results.iter().filter(|r| !r.passed()).collect();
    if !failed.is_empty() {
      out += "\n ERRORS \n\n";
      for result in &failed {
        out += &format!("{} => {}\n", printable(&result.name), self.file);
        for error in &result.errors {
          out += &format!("error: {}\n", indent_continuation(error));
        }
        out += "\n";
      }
      out += " FAILURES \n\n";
      for result in &failed {
        out += &format!("{} => {}\n", printable(&result.name), self.file);
      }
      out += "\n";
    }
    let verdict = if self.ok() { "ok" } else { "FAILED" };
    out += &format!("{verdict} | {} passed | {} failed ({})\n", self.passed(), self.failed(), millis(self.duration));
    out
  }

  pub fn to_json(&self) -> Value {
    let tests: Vec<Value> = self
      .results
      .iter()
      .map(|r| json!({ "name": r.name, "ok": r.passed(), "duration_ms": r.duration.as_millis() as u64, "errors": r.errors }))
      .collect();
    json!({
      "file": self.file,
      "ok": self.ok(),
      "passed": self.passed(),
      "failed": self.failed(),
      "duration_ms": self.duration.as_millis() as u64,
      "tests": tests,
    })
  }
}

fn millis(duration: Duration) -> String {
  format!("{}ms", duration.as_millis())
}

/// Later lines of a multi-line error are indented under its `error:` line.
fn indent_continuation(text: &str) -> String {
  printable_lines(text).replace('\n', "\n  ")
}

/// Escapes control characters (a tool's error message reaches the terminal) but keeps
/// line breaks.
fn printable_lines(text: &str) -> String {
  text.split('\n').map(printable).collect::<Vec<_>>().join("\n")
}

/// Reads a mock file: `{"rules": [rule, ...]}`, its rules named "mock file rule #N".
pub fn read_mock_file(path: &Path) -> Result<Vec<MockRule>, String> {
  let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read mock file {}: {e}", path.display()))?;
  let value: Value = serde_json::from_str(&text).map_err(|e| format!("{}: not JSON: {e}", path.display()))?;
  let rules = match &value {
    Value::Object(map) if map.len() == 1 && map.contains_key("rules") => &map["rules"],
    _ => return Err(format!("{}: a mock file is {{\"rules\": [rule, ...]}}", path.display())),
  };
  let rules = parse_rules(rules).map_err(|e| format!("{}: {e}", path.display()))?;
  Ok(rules.into_iter().enumerate().map(|(i, rule)| rule.with_origin(format!("mock file rule #{}", i + 1))).collect())
}

/// Runs the tests of the tool in `path` (and of `<stem>.test.ts` beside it). `Err` is a
/// load error: no such file, or a module that does not default-export a tool.
pub fn test_file(
  path: &Path,
  display: &str,
  mock_rules: Vec<MockRule>,
  limits: &TestLimits,
  builtins: Builtins,
) -> Result<TestReport, String> {
  let started = Instant::now();
  let path = path.canonicalize().map_err(|e| format!("cannot open {display}: {e}"))?;
  let source = file_source(&path).map_err(|e| format!("cannot read {display}: {e}"))?;
  let extra = match tests_file(&path) {
    Some(tests_path) => {
      let tests_source = file_source(&tests_path).map_err(|e| format!("cannot read {}: {e}", tests_path.display()))?;
      let tests =
        default_export(tests_source, limits, builtins).map_err(|e| format!("{}: {e}", tests_path.display()))?;
      match tests {
        Value::Array(tests) => tests,
        other => {
          return Err(format!("{}: the default export must be an array of tests, got {other}", tests_path.display()))
        }
      }
    }
    None => Vec::new(),
  };
  let mut report = test_source(&source, display, extra, &mock_rules, limits, builtins)?;
  report.duration = started.elapsed();
  Ok(report)
}

fn file_source(path: &Path) -> std::io::Result<ToolSource> {
  let code = std::fs::read_to_string(path)?;
  let url = deno_core::ModuleSpecifier::from_file_path(path)
    .map_err(|()| std::io::Error::other(format!("{} is not an absolute path", path.display())))?;
  Ok(ToolSource { url: url.to_string(), code, dir: path.parent().map(Path::to_path_buf) })
}

/// `<stem>.test.ts` beside the tool, if there is one.
fn tests_file(tool: &Path) -> Option<PathBuf> {
  let stem = tool.file_stem()?.to_str()?;
  let candidate = tool.with_file_name(format!("{stem}.test.ts"));
  (candidate != tool && candidate.is_file()).then_some(candidate)
}

/// A module's default export as JSON (a tests file), evaluated under the test limits
/// with a broker that answers nothing.
fn default_export(source: ToolSource, limits: &TestLimits, builtins: Builtins) -> Result<Value, String> {
  let broker = Arc::new(MockBroker::new(Vec::new()).with_max_calls(limits.max_syscalls));
  // A data module has no `run`: wrap it in one that returns the export.
  let wrapper = ToolSource {
    url: format!("{}.tests.js", source.url.trim_end_matches(".ts")),
    code: format!(
      "import tests from {};\nexport default {{ run: () => tests }};\n",
      json!(format!("./{}", source.url.rsplit('/').next().unwrap_or_default()))
    ),
    dir: source.dir.clone(),
  };
  let isolate = ToolIsolate::start_with_builtins(TEST_PID.into(), wrapper, broker, limits.tool_limits(), builtins)
    .map_err(|e| e.to_string())?;
  block_on(isolate.call(Value::Null)).map_err(|e| e.to_string())
}

fn block_on<F: std::future::Future>(future: F) -> F::Output {
  tokio::runtime::Builder::new_current_thread().build().expect("a current-thread runtime").block_on(future)
}

/// Runs the tests of the tool `source`: its own `tests` and then `extra`. Each test's
/// mocks come before `mock_rules`. `Err` when the tool does not load at all.
pub fn test_source(
  source: &ToolSource,
  display: &str,
  extra: Vec<Value>,
  mock_rules: &[MockRule],
  limits: &TestLimits,
  builtins: Builtins,
) -> Result<TestReport, String> {
  let started = Instant::now();
  // Loading once up front reads the tool's own tests and makes a module that does not
  // export a tool a load error rather than a failure of every test.
  let probe = Arc::new(MockBroker::new(mock_rules.to_vec()).with_max_calls(limits.max_syscalls));
  let isolate =
    ToolIsolate::start_with_builtins(TEST_PID.into(), source.clone(), probe, limits.tool_limits(), builtins).map_err(
      |e| match e {
        ToolFailure::Load(why) => why,
        other => format!("{display}: {other}"),
      },
    )?;
  let mut tests: Vec<Value> = isolate.spec().get("tests").and_then(Value::as_array).cloned().unwrap_or_default();
  drop(isolate);
  tests.extend(extra);
  let results = run_tests(source, &tests, mock_rules, limits, builtins);
  Ok(TestReport { file: display.to_string(), results, duration: started.elapsed() })
}

/// Runs exactly `tests` against the tool, each in a fresh isolate.
pub fn run_tests(
  source: &ToolSource,
  tests: &[Value],
  mock_rules: &[MockRule],
  limits: &TestLimits,
  builtins: Builtins,
) -> Vec<TestResult> {
  tests.iter().enumerate().map(|(i, test)| run_test(source, i, test, mock_rules, limits, builtins)).collect()
}

/// A JIT candidate's tests (the `tests` it was proposed with), under the default test
/// limits with the binary's built-ins: one JSON object per test,
/// `{"name", "ok", "duration_ms", "errors": [...], "message"}` (`message` joins `errors`).
pub fn run_candidate_tests(source: ToolSource, tests: &[Value]) -> Vec<Value> {
  run_tests(&source, tests, &[], &TestLimits::default(), super::builtins::modules())
    .into_iter()
    .map(|r| {
      json!({
        "name": r.name,
        "ok": r.passed(),
        "duration_ms": r.duration.as_millis() as u64,
        "message": r.errors.join("\n"),
        "errors": r.errors,
      })
    })
    .collect()
}

/// A test as written (§3 of the tools contract).
struct ToolTest {
  args: Value,
  mocks: Vec<MockRule>,
  expect: Option<Value>,
  expect_error: Option<String>,
  expect_calls: Option<Value>,
}

const TEST_FIELDS: [&str; 6] = ["name", "args", "mocks", "expect", "expectError", "expectCalls"];

/// The test's name (or its position) and, when it is well formed, the test.
fn parse_test(index: usize, test: &Value) -> (String, Result<ToolTest, String>) {
  let fallback = format!("test #{}", index + 1);
  let Some(map) = test.as_object() else {
    return (fallback, Err(format!("a test must be an object, got {test}")));
  };
  let name = map.get("name").and_then(Value::as_str).filter(|n| !n.is_empty()).map(str::to_string);
  let parsed = (|| {
    if let Some(unknown) = map.keys().find(|k| !TEST_FIELDS.contains(&k.as_str())) {
      return Err(format!("unknown test field {unknown:?} (a test has {})", TEST_FIELDS.join(", ")));
    }
    if name.is_none() {
      return Err("a test needs a non-empty \"name\"".to_string());
    }
    let mocks = match map.get("mocks") {
      None => Vec::new(),
      Some(mocks) => parse_rules(mocks).map_err(|e| format!("mocks: {e}"))?,
    };
    let expect_error = match map.get("expectError") {
      None => None,
      Some(Value::String(class)) => Some(class.clone()),
      Some(other) => return Err(format!("expectError must be an error class name, got {other}")),
    };
    if expect_error.is_some() && map.contains_key("expect") {
      return Err("a test has expect or expectError, not both".to_string());
    }
    Ok(ToolTest {
      args: map.get("args").cloned().unwrap_or_else(|| Value::Object(Map::new())),
      mocks,
      expect: map.get("expect").cloned(),
      expect_error,
      expect_calls: map.get("expectCalls").cloned(),
    })
  })();
  (name.unwrap_or(fallback), parsed)
}

fn run_test(
  source: &ToolSource,
  index: usize,
  test: &Value,
  mock_rules: &[MockRule],
  limits: &TestLimits,
  builtins: Builtins,
) -> TestResult {
  let started = Instant::now();
  let (name, parsed) = parse_test(index, test);
  let errors = match parsed {
    Err(why) => vec![format!("malformed test: {why}")],
    Ok(test) => check(source, test, mock_rules, limits, builtins),
  };
  TestResult { name, duration: started.elapsed(), errors }
}

/// Runs one test and lists what is wrong with the outcome.
fn check(
  source: &ToolSource,
  test: ToolTest,
  mock_rules: &[MockRule],
  limits: &TestLimits,
  builtins: Builtins,
) -> Vec<String> {
  let rules = test.mocks.into_iter().chain(mock_rules.iter().cloned()).collect();
  let broker = Arc::new(MockBroker::new(rules).with_max_calls(limits.max_syscalls));
  let outcome =
    ToolIsolate::start_with_builtins(TEST_PID.into(), source.clone(), broker.clone(), limits.tool_limits(), builtins)
      .and_then(|isolate| block_on(isolate.call(test.args)));

  let mut errors = Vec::new();
  match (&outcome, &test.expect_error) {
    (
      Err(
        failure @ (ToolFailure::Load(_)
        | ToolFailure::Terminated(_)
        | ToolFailure::ResultTooLarge { .. }
        | ToolFailure::Dead),
      ),
      _,
    ) => {
      errors.push(describe_failure(failure, limits));
    }
    (Ok(value), Some(class)) => errors.push(format!("expected {class}, but the tool returned\n{}", pretty(value))),
    (Ok(value), None) => {
      if let Some(expected) = test.expect.as_ref().filter(|expected| !json_equal(expected, value)) {
        errors.push(format!(
          "the result differs from expect (- expected, + actual):\n{}",
          line_diff(&pretty(expected), &pretty(value))
        ));
      }
    }
    (Err(ToolFailure::Threw { class, message }), Some(expected)) => {
      if class.as_deref() != Some(expected.as_str()) {
        errors.push(format!(
          "expected {expected}, but the tool threw {}: {message}",
          class.as_deref().unwrap_or("an error")
        ));
      }
    }
    (Err(ToolFailure::Threw { class, message }), None) => {
      // An unexpected syscall's error is reported below, once.
      if class.as_deref() == Some("InternalError") && message == "out of memory" {
        // The engine refuses a single allocation larger than the heap with a catchable
        // error rather than the heap limit's termination.
        errors.push(format!(
          "the tool ran out of memory: an allocation would exceed its {} MiB heap (InternalError: out of memory)",
          limits.heap_bytes >> 20
        ));
      } else if !broker.unexpected_messages().contains(message) {
        errors.push(format!("the tool threw {}: {message}", class.as_deref().unwrap_or("an error")));
      }
    }
  }
  if broker.over_budget() > 0 {
    errors.push(format!("the tool made more than {} syscalls (the mock's limit per test)", limits.max_syscalls));
  }
  for message in broker.unexpected_messages().iter().take(5) {
    errors.push(message.trim_start_matches("mock: ").to_string());
  }
  let more = broker.unexpected_messages().len().saturating_sub(5);
  if more > 0 {
    errors.push(format!("... and {more} more unexpected syscalls"));
  }
  if let Some(expected) = &test.expect_calls {
    if let Err(diff) = broker.assert_sequence(expected) {
      errors.push(format!("the syscalls made differ from expectCalls ({diff}"));
    }
  }
  errors
}

fn describe_failure(failure: &ToolFailure, limits: &TestLimits) -> String {
  match failure {
    ToolFailure::Terminated(Termination::WallTime(limit)) => format!(
      "the test ran longer than {} and was stopped (an endless loop, or a wait that never ends?)",
      humantime::format_duration(*limit)
    ),
    ToolFailure::Terminated(Termination::Heap(_)) => {
      format!("the tool used more than its {} MiB heap and was stopped", limits.heap_bytes >> 20)
    }
    other => other.to_string(),
  }
}

fn pretty(value: &Value) -> String {
  serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
}

#[cfg(test)]
mod tests {
  use super::*;

  const BUILTINS: Builtins = &[("tool", include_str!("../../js/tool.js"))];

  fn jit(code: &str) -> ToolSource {
    ToolSource { url: "jit:0123".into(), code: code.into(), dir: None }
  }

  fn quick() -> TestLimits {
    TestLimits { per_test: Duration::from_secs(10), ..TestLimits::default() }
  }

  fn report(code: &str, mock_rules: &[MockRule]) -> TestReport {
    test_source(&jit(code), "./t.ts", Vec::new(), mock_rules, &quick(), BUILTINS).unwrap()
  }

  const ECHO: &str = r#"
    import { defineTool } from "libos:tool";
    export default defineTool({
      name: "echo", description: "reads a file", input: { type: "object" }, capabilities: [],
      run: async ({ path }) => ({ text: await libos.fs.readText(path) }),
      tests: TESTS,
    });
  "#;

  fn echo(tests: Value) -> String {
    ECHO.replace("TESTS", &tests.to_string())
  }

  #[test]
  fn a_passing_test_reports_ok() {
    let r = report(
      &echo(json!([{
        "name": "reads", "args": { "path": "a.txt" },
        "mocks": [{ "call": "fs.readText", "args": { "path": "a.txt" }, "reply": { "ok": "hi" } }],
        "expect": { "text": "hi" },
        "expectCalls": [{ "call": "fs.readText", "args": { "path": "a.txt" } }],
      }])),
      &[],
    );
    assert!(r.ok(), "{}", r.render());
    let text = r.render();
    assert!(text.starts_with("running 1 test from ./t.ts\nreads ... ok ("), "{text}");
    assert!(text.contains("ok | 1 passed | 0 failed ("), "{text}");
  }

  #[test]
  fn a_different_result_fails_with_a_line_diff() {
    let r = report(
      &echo(
        json!([{ "name": "reads", "args": { "path": "a" }, "mocks": [{ "call": "fs.readText", "reply": { "ok": "hi" } }], "expect": { "text": "bye" } }]),
      ),
      &[],
    );
    assert_eq!((r.passed(), r.failed()), (0, 1));
    assert_eq!(
      r.results[0].errors,
      vec![
        "the result differs from expect (- expected, + actual):\n  {\n-   \"text\": \"bye\"\n+   \"text\": \"hi\"\n  }"
      ]
    );
    let text = r.render();
    assert!(text.contains("\n ERRORS \n\nreads => ./t.ts\nerror: the result differs"), "{text}");
    assert!(text.contains(" FAILURES \n\nreads => ./t.ts\n\nFAILED | 0 passed | 1 failed ("), "{text}");
  }

  #[test]
  fn expect_error_passes_on_the_class_and_fails_on_a_return() {
    let r = report(
      &echo(json!([
        { "name": "missing", "args": { "path": "x" }, "mocks": [{ "call": "fs.readText", "reply": { "err": { "class": "NotFound", "message": "no" } } }], "expectError": "NotFound" },
        { "name": "returned", "args": { "path": "x" }, "mocks": [{ "call": "fs.readText", "reply": { "ok": "" } }], "expectError": "NotFound" },
        { "name": "other class", "args": { "path": "x" }, "mocks": [{ "call": "fs.readText", "reply": { "err": { "class": "PermissionDenied", "message": "no" } } }], "expectError": "NotFound" },
      ])),
      &[],
    );
    let errors: Vec<&Vec<String>> = r.results.iter().map(|r| &r.errors).collect();
    assert!(errors[0].is_empty(), "{errors:?}");
    assert_eq!(errors[1], &vec!["expected NotFound, but the tool returned\n{\n  \"text\": \"\"\n}".to_string()]);
    assert_eq!(errors[2], &vec!["expected NotFound, but the tool threw PermissionDenied: no".to_string()]);
  }

  #[test]
  fn an_unexpected_syscall_fails_the_test_and_names_it() {
    let r = report(&echo(json!([{ "name": "no mocks", "args": { "path": "x.md" } }])), &[]);
    let errors = &r.results[0].errors;
    assert_eq!(
      errors,
      &vec!["unexpected syscall fs.readText {\"path\":\"x.md\"}; no rule matches (there are no mock rules)".to_string()]
    );
  }

  #[test]
  fn mock_file_rules_come_after_the_tests_own_mocks() {
    let file_rules = vec![MockRule::parse(&json!({ "call": "fs.readText", "reply": { "ok": "from file" } })).unwrap()];
    let r = report(
      &echo(json!([
        { "name": "own mock wins", "args": { "path": "a" }, "mocks": [{ "call": "fs.readText", "reply": { "ok": "own" } }], "expect": { "text": "own" } },
        { "name": "file fills in", "args": { "path": "a" }, "expect": { "text": "from file" } },
      ])),
      &file_rules,
    );
    assert!(r.ok(), "{}", r.render());
  }

  #[test]
  fn expect_calls_mismatch_shows_the_diff() {
    let r = report(
      &echo(
        json!([{ "name": "calls", "args": { "path": "a" }, "mocks": [{ "call": "fs.readText", "reply": { "ok": "" } }], "expectCalls": [{ "call": "fs.readText", "args": { "path": "b" } }] }]),
      ),
      &[],
    );
    assert_eq!(r.results[0].errors, vec!["the syscalls made differ from expectCalls (- expected, + made:\n- fs.readText {\"path\":\"b\"}\n+ fs.readText {\"path\":\"a\"}"]);
  }

  #[test]
  fn a_malformed_test_fails_alone() {
    let r = report(
      &echo(json!([
        { "name": "bad mock", "mocks": [{ "call": "x", "args": { "p": { "$regex": "(" } }, "reply": { "ok": 1 } }] },
        { "name": "fine", "args": { "path": "a" }, "mocks": [{ "call": "fs.readText", "reply": { "ok": "" } }] },
      ])),
      &[],
    );
    assert!(
      r.results[0].errors[0].starts_with("malformed test: mocks: mock rule #1: args.p: invalid $regex \"(\""),
      "{:?}",
      r.results[0].errors
    );
    assert!(r.results[1].passed());
  }

  #[test]
  fn a_looping_test_fails_with_the_time_limit() {
    let code = r#"
      import { defineTool } from "libos:tool";
      export default defineTool({ name: "spin", description: "d", input: {}, capabilities: [],
        run: () => { while (true) {} }, tests: [{ name: "spins" }] });
    "#;
    let limits = TestLimits { per_test: Duration::from_millis(300), ..TestLimits::default() };
    let r = test_source(&jit(code), "./t.ts", Vec::new(), &[], &limits, BUILTINS).unwrap();
    assert_eq!(
      r.results[0].errors,
      vec!["the test ran longer than 300ms and was stopped (an endless loop, or a wait that never ends?)"]
    );
  }

  #[test]
  fn a_module_that_is_not_a_tool_is_a_load_error() {
    let error =
      test_source(&jit("export default { name: 'x' };"), "./t.ts", Vec::new(), &[], &quick(), BUILTINS).unwrap_err();
    assert!(
      error.contains("does not default-export a defineTool(...) result: the default export has no run function"),
      "{error}"
    );
  }

  #[test]
  fn a_mock_file_must_hold_rules() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.json");
    std::fs::write(&path, r#"{"rules": [{"call": "now", "reply": {"ok": 1}}, {"call": "x", "args": {"a": {"$regex": "("}}, "reply": {"ok": 1}}]}"#).unwrap();
    let error = read_mock_file(&path).unwrap_err();
    assert!(error.contains("m.json: mock rule #2: args.a: invalid $regex"), "{error}");
    std::fs::write(&path, r#"[]"#).unwrap();
    assert!(read_mock_file(&path).unwrap_err().contains("a mock file is {\"rules\": [rule, ...]}"));
    std::fs::write(&path, r#"{"rules": [{"call": "now", "args": 1, "reply": {"ok": 1}}]}"#).unwrap();
    let rules = read_mock_file(&path).unwrap();
    let fault = alos_ops::Broker::syscall(&MockBroker::new(rules), "p", "now", json!(2)).unwrap_err();
    assert!(fault.message.contains("nearest: mock file rule #1 expects args to equal 1"), "{}", fault.message);
  }

  #[test]
  fn a_tests_file_beside_the_tool_adds_its_tests() {
    let dir = tempfile::tempdir().unwrap();
    let tool = dir.path().join("echo.ts");
    std::fs::write(&tool, echo(json!([]))).unwrap();
    std::fs::write(
      dir.path().join("echo.test.ts"),
      r#"export default [{ name: "from the tests file", args: { path: "a" }, mocks: [{ call: "fs.readText", reply: { ok: "x" } }], expect: { text: "x" } }];"#,
    )
    .unwrap();
    let r = test_file(&tool, "./echo.ts", Vec::new(), &quick(), BUILTINS).unwrap();
    assert_eq!(r.results.len(), 1);
    assert_eq!(r.results[0].name, "from the tests file");
    assert!(r.ok(), "{}", r.render());
  }
}
