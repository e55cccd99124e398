//! `alos tool test FILE` and `alos tool check FILE`: a tool author's loop. `test` runs
//! the tool's tests against mocks in fresh isolates under tight limits; `check` runs the
//! static analysis a JIT tool must pass.

use std::path::Path;
use std::path::PathBuf;

use clap::Args;
use clap::Subcommand;
use serde_json::json;

use super::exit;
use super::usage_error;
use crate::engine::analysis;
use crate::engine::builtins;
use crate::engine::tool_test;
use crate::engine::tool_test::TestLimits;

#[derive(Args, Debug)]
pub struct ToolArgs {
  #[command(subcommand)]
  action: Action,
}

#[derive(Subcommand, Debug)]
enum Action {
  /// Run a tool's tests against mocked syscalls.
  Test(TestArgs),
  /// Statically check a tool module (imports, forbidden constructs, literal spec).
  Check(CheckArgs),
}

#[derive(Args, Debug)]
#[command(after_help = "\
Examples:
  alos tool test tools/read_file.ts
  alos tool test my_tool.ts --mock mock.json --json

The tests are the `tests` of the module's defineTool({...}) plus the default export of
<stem>.test.ts beside it. Each runs in a fresh isolate (64 MiB heap, 5 s) whose syscalls
go to mock rules: the test's `mocks`, then the mock file's `rules`. A syscall no rule
matches fails the test. Exit code: 0 all passed, 1 a test failed, 2 the tool or the mock
file could not be loaded.")]
pub struct TestArgs {
  /// The tool module (.ts or .js).
  file: PathBuf,
  /// A JSON file {\"rules\": [rule, ...]} whose rules answer after each test's own mocks.
  #[arg(long, value_name = "FILE")]
  mock: Option<PathBuf>,
  /// Print one JSON object instead of the report.
  #[arg(long)]
  json: bool,
}

#[derive(Args, Debug)]
pub struct CheckArgs {
  /// The tool module (.ts or .js).
  file: PathBuf,
  /// Print one JSON object instead of one line per finding.
  #[arg(long)]
  json: bool,
}

pub fn run(args: ToolArgs) -> u8 {
  match args.action {
    Action::Test(args) => test(args),
    Action::Check(args) => check(args),
  }
}

/// How a path the user gave is shown: as given, marked relative like `deno test` does.
fn display(path: &Path) -> String {
  let text = path.display().to_string();
  if path.is_relative() && !text.starts_with("./") && !text.starts_with("../") {
    format!("./{text}")
  } else {
    text
  }
}

fn test(args: TestArgs) -> u8 {
  let rules = match &args.mock {
    Some(path) => match tool_test::read_mock_file(path) {
      Ok(rules) => rules,
      Err(e) => return usage_error(e),
    },
    None => Vec::new(),
  };
  let shown = display(&args.file);
  let report = match tool_test::test_file(&args.file, &shown, rules, &TestLimits::default(), builtins::modules()) {
    Ok(report) => report,
    Err(e) => return usage_error(e),
  };
  if args.json {
    println!("{}", report.to_json());
  } else {
    print!("{}", report.render());
  }
  if report.ok() {
    exit::OK
  } else {
    exit::SCRIPT_ERROR
  }
}

fn check(args: CheckArgs) -> u8 {
  let shown = display(&args.file);
  let source = match std::fs::read_to_string(&args.file) {
    Ok(source) => source,
    Err(e) => return usage_error(format!("cannot read {shown}: {e}")),
  };
  let analysis = analysis::analyze(&shown, &source);
  if args.json {
    let findings: Vec<_> = analysis
      .findings
      .iter()
      .map(|f| json!({ "line": f.line, "col": f.col, "rule": f.rule, "message": f.message }))
      .collect();
    println!("{}", json!({ "file": shown, "findings": findings, "spec": analysis.spec }));
  } else {
    for f in &analysis.findings {
      println!("{shown}:{}:{}: {}: {}", f.line, f.col, f.rule, crate::provider::human::printable(&f.message));
    }
    let n = analysis.findings.len();
    println!("{n} finding{}", if n == 1 { "" } else { "s" });
  }
  if analysis.findings.is_empty() {
    exit::OK
  } else {
    exit::SCRIPT_ERROR
  }
}
