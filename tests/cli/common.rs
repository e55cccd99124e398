//! A throwaway workspace with helpers to write scripts, run `alos` and read the audit log.

use std::path::Path;
use std::path::PathBuf;
use std::process::Output;

use assert_cmd::Command;
use serde_json::Value;
use tempfile::TempDir;

pub struct Sandbox {
  dir: TempDir,
}

impl Sandbox {
  pub fn new() -> Sandbox {
    Sandbox { dir: tempfile::tempdir().expect("temp dir") }
  }

  pub fn path(&self) -> &Path {
    self.dir.path()
  }

  /// Writes a file (creating parent directories) relative to the workspace.
  pub fn write(&self, rel: &str, contents: impl AsRef<[u8]>) -> PathBuf {
    let path = self.path().join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, contents).unwrap();
    path
  }

  pub fn read(&self, rel: &str) -> String {
    std::fs::read_to_string(self.path().join(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
  }

  pub fn exists(&self, rel: &str) -> bool {
    self.path().join(rel).symlink_metadata().is_ok()
  }

  /// `alos` with the workspace as its current directory.
  pub fn alos(&self) -> Command {
    let mut cmd = Command::cargo_bin("alos").expect("alos binary");
    cmd.current_dir(self.path()).env_remove("RUST_LOG");
    cmd.timeout(std::time::Duration::from_secs(120));
    cmd
  }

  /// Writes `code` as `name` and runs it with `args` (capabilities etc.).
  pub fn run(&self, name: &str, code: &str, args: &[&str]) -> Run {
    self.write(name, code);
    let output = self.alos().arg("run").arg(name).args(args).output().expect("run alos");
    Run::from(output)
  }

  /// The audit log's records.
  pub fn audit(&self) -> Vec<Value> {
    let text = std::fs::read_to_string(self.path().join(".alos/audit.jsonl")).unwrap_or_default();
    text.lines().filter(|l| !l.is_empty()).map(|l| serde_json::from_str(l).expect("audit line is JSON")).collect()
  }
}

pub struct Run {
  pub code: i32,
  pub stdout: String,
  pub stderr: String,
}

impl From<Output> for Run {
  fn from(output: Output) -> Run {
    Run {
      code: output.status.code().unwrap_or(-1),
      stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
      stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
  }
}

impl Run {
  /// Asserts the exit code, showing the output when it differs.
  #[track_caller]
  pub fn expect_code(&self, code: i32) -> &Run {
    assert_eq!(self.code, code, "exit code\n--- stdout\n{}\n--- stderr\n{}", self.stdout, self.stderr);
    self
  }

  #[track_caller]
  pub fn stdout_has(&self, needle: &str) -> &Run {
    assert!(self.stdout.contains(needle), "stdout lacks {needle:?}\n--- stdout\n{}\n--- stderr\n{}", self.stdout, self.stderr);
    self
  }

  #[track_caller]
  pub fn stderr_has(&self, needle: &str) -> &Run {
    assert!(self.stderr.contains(needle), "stderr lacks {needle:?}\n--- stdout\n{}\n--- stderr\n{}", self.stdout, self.stderr);
    self
  }
}
