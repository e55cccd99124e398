//! The built-in tools in tools/: every module passes its own tests against the mock
//! broker (`alos tool test`) and static analysis (`alos tool check`), as shipped.

use std::path::Path;
use std::path::PathBuf;

use super::common::Run;
use super::common::Sandbox;

/// Every tool module in the repository's tools/ directory, sorted.
fn tool_files() -> Vec<PathBuf> {
  let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tools");
  let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
    .expect("read tools/")
    .map(|entry| entry.expect("tools/ entry").path())
    .filter(|path| path.extension().is_some_and(|ext| ext == "ts"))
    .collect();
  files.sort();
  assert_eq!(files.len(), alos::kernel::image::BUILTIN_TOOLS.len(), "one module per built-in tool: {files:?}");
  files
}

/// The `N` of the report's `running N tests from FILE` line.
fn tests_announced(run: &Run) -> Option<usize> {
  let line = run.stdout.lines().find(|line| line.starts_with("running "))?;
  line.split_whitespace().nth(1)?.parse().ok()
}

/// Runs `alos tool SUBCOMMAND FILE` for every tool and returns one problem per failure,
/// so a single run reports every broken tool.
fn each_tool(subcommand: &str, check: impl Fn(&Run) -> Option<String>) -> Vec<String> {
  let sandbox = Sandbox::new();
  tool_files()
    .iter()
    .filter_map(|file| {
      let run = sandbox.cmd(&["tool", subcommand, file.to_str().expect("UTF-8 path")]);
      check(&run)
        .map(|why| format!("{}: {why}\n--- stdout\n{}\n--- stderr\n{}", file.display(), run.stdout, run.stderr))
    })
    .collect()
}

#[test]
fn every_builtin_tool_passes_its_tests() {
  let problems = each_tool("test", |run| {
    if run.code != 0 {
      return Some(format!("exit code {}, expected 0", run.code));
    }
    let count = tests_announced(run).filter(|n| *n > 0);
    let Some(count) = count else {
      return Some("no `running N tests` line with N > 0".into());
    };
    let summary = format!("ok | {count} passed | 0 failed");
    (!run.stdout.contains(&summary)).then(|| format!("no summary line {summary:?}"))
  });
  assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}

#[test]
fn every_builtin_tool_passes_static_analysis() {
  let problems = each_tool("check", |run| {
    if run.code != 0 {
      return Some(format!("exit code {}, expected 0", run.code));
    }
    (!run.stdout.contains("0 findings")).then(|| "no `0 findings` line".to_string())
  });
  assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}

/// The runs above mean something only if a wrong expectation fails: break one of
/// read_file's expectations in a copy and `alos tool test` must report it.
#[test]
fn a_builtin_tool_with_a_wrong_expectation_fails() {
  let sandbox = Sandbox::new();
  let source = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/read_file.ts")).unwrap();
  let expected = r#"expect: { path: "notes/a.txt", text: "hello\nworld\n", bytes: 12, truncated: false },"#;
  assert!(source.contains(expected), "read_file.ts changed; update this test");
  sandbox.write("read_file.ts", source.replace(expected, &expected.replace("bytes: 12", "bytes: 13")));
  sandbox
    .cmd(&["tool", "test", "read_file.ts"])
    .expect_code(1)
    .stdout_has("reads a file ... FAILED")
    .stdout_has("FAILED | 4 passed | 1 failed");
}
