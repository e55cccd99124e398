//! A throwaway workspace with helpers to write scripts, run `alos` and read the audit log.

use std::io::Read;
use std::path::Path;
use std::path::PathBuf;
use std::process::Child;
use std::process::Command as StdCommand;
use std::process::Output;
use std::process::Stdio;
use std::time::Duration;
use std::time::Instant;

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

  /// Starts `alos ARGS...` in the background, as a second terminal would see it.
  pub fn spawn(&self, args: &[&str]) -> Child {
    StdCommand::new(assert_cmd::cargo::cargo_bin("alos"))
      .current_dir(self.path())
      .args(args)
      .stdin(Stdio::null())
      .stdout(Stdio::piped())
      .stderr(Stdio::piped())
      .spawn()
      .expect("start alos")
  }

  /// Waits until `alos inbox --json` shows a pending request not in `seen`.
  pub fn next_request(&self, seen: &[&str]) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
      let out = self.alos().args(["inbox", "--json"]).output().unwrap();
      let pending: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap_or_default();
      if let Some(request) = pending.into_iter().find(|r| !seen.contains(&r["id"].as_str().unwrap_or_default())) {
        return request;
      }
      assert!(Instant::now() < deadline, "no new request appeared (seen: {seen:?})");
      std::thread::sleep(Duration::from_millis(50));
    }
  }

  /// Copies `examples/NAME` (without its state or `out*` directories) into the workspace.
  pub fn copy_example(&self, name: &str) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples").join(name);
    let mut stack = vec![root.clone()];
    while let Some(dir) = stack.pop() {
      for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let rel = path.strip_prefix(&root).unwrap().to_str().unwrap().to_string();
        if rel == ".alos" || rel.starts_with("out") {
          continue;
        }
        if path.is_dir() {
          std::fs::create_dir_all(self.path().join(&rel)).unwrap();
          stack.push(path);
        } else {
          self.write(&rel, std::fs::read(&path).unwrap());
        }
      }
    }
  }

  /// Runs `alos ARGS...` to completion.
  pub fn cmd(&self, args: &[&str]) -> Run {
    Run::from(self.alos().args(args).output().unwrap())
  }

  /// The audit log's records.
  pub fn audit(&self) -> Vec<Value> {
    let db = self.path().join(".alos/alos.db");
    if !db.exists() {
      return vec![];
    }
    let out = self.alos().args(["audit", "--json"]).output().expect("alos audit");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
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
  /// Waits (at most a minute) for a background `alos` to end.
  pub fn finish(mut child: Child) -> Run {
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
      assert!(Instant::now() < deadline, "alos did not finish");
      std::thread::sleep(Duration::from_millis(50));
    }
    let mut run = Run { code: child.wait().unwrap().code().unwrap_or(-1), stdout: String::new(), stderr: String::new() };
    child.stdout.take().unwrap().read_to_string(&mut run.stdout).unwrap();
    child.stderr.take().unwrap().read_to_string(&mut run.stderr).unwrap();
    run
  }

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
