//! The kernel over swapped providers: a recording filesystem and a virtual clock change
//! what performs an operation, never what is decided.

use std::path::Path;
use std::sync::Arc;

use serde_json::json;
use serde_json::Value;

use super::dispatch::Dispatched;
use super::error::SyscallError;
use super::grant::GrantSource;
use super::process::ProcessLimits;
use super::Kernel;
use super::KernelConfig;
use super::ProcessSpec;
use super::Providers;
use crate::provider::clock::Clock;
use crate::provider::clock::SystemClock;
use crate::provider::clock::VirtualClock;
use crate::provider::fs::Workspace;
use crate::provider::recording::FsOp;
use crate::provider::recording::RecordingFs;

fn config(dir: &Path, clock: Arc<dyn Clock>) -> KernelConfig {
  let config = KernelConfig { clock, ..KernelConfig::for_tests(dir) };
  std::fs::create_dir_all(dir.join("ws/data")).unwrap();
  std::fs::write(dir.join("ws/data/a.txt"), "alpha").unwrap();
  std::fs::write(dir.join("ws/secret.txt"), "no").unwrap();
  config
}

fn start(kernel: &Kernel, dir: &Path, caps: &[&str]) -> String {
  kernel
    .spawn_root(ProcessSpec {
      image: "test".into(),
      entry: dir.join("ws/main.ts"),
      args: Vec::new(),
      goal: None,
      grants: caps.iter().map(|c| (c.parse().unwrap(), GrantSource::Cli)).collect(),
      limits: ProcessLimits::default(),
      tools: None,
    })
    .unwrap()
}

fn call(kernel: &Kernel, pid: &str, name: &str, args: Value) -> Result<Value, SyscallError> {
  match kernel.dispatch(pid, name, args) {
    Dispatched::Ready(result) => result,
    Dispatched::Waiting(future) => {
      tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(future)
    }
  }
}

/// The same syscalls on the host workspace and on a recording one.
fn session(kernel: &Kernel, pid: &str) -> Vec<String> {
  let calls = [
    ("fs.readText", json!({ "path": "data/a.txt" })),
    ("fs.readText", json!({ "path": "secret.txt" })),
    ("fs.writeText", json!({ "path": "data/b.txt", "text": "beta" })),
    ("fs.list", json!({ "path": "data" })),
  ];
  calls
    .into_iter()
    .map(|(name, args)| match call(kernel, pid, name, args) {
      Ok(value) => format!("ok {}", if value.is_array() { value.as_array().unwrap().len().to_string() } else { value.to_string() }),
      Err(e) => format!("err {:?}", e.class()),
    })
    .collect()
}

#[test]
fn a_recording_filesystem_changes_no_decision_and_sees_no_denied_operation() {
  let caps = ["fs.read:data/**", "fs.write:data/**"];
  let host_dir = tempfile::tempdir().unwrap();
  let host = Kernel::open(config(host_dir.path(), Arc::new(SystemClock))).unwrap();
  let host_pid = start(&host, host_dir.path(), &caps);
  let on_host = session(&host, &host_pid);

  let dir = tempfile::tempdir().unwrap();
  let cfg = config(dir.path(), Arc::new(SystemClock));
  let recording = Arc::new(RecordingFs::new(Workspace::open(&cfg.workspace, std::slice::from_ref(&cfg.state_dir)).unwrap()));
  let kernel = Kernel::open_with(cfg, Providers { fs: Some(recording.clone()), ..Providers::default() }).unwrap();
  let pid = start(&kernel, dir.path(), &caps);
  let recorded = session(&kernel, &pid);

  assert_eq!(recorded, on_host);
  assert_eq!(recorded[1], "err PermissionDenied");
  // The denied read was decided before the filesystem was touched.
  let op = |op: &'static str, path: &str| FsOp { op, path: path.into(), ok: true };
  assert_eq!(recording.ops(), [op("read", "data/a.txt"), op("write", "data/b.txt"), op("list", "data")]);
}

#[test]
fn on_a_virtual_clock_a_sleep_and_now_are_deterministic_and_instant() {
  let dir = tempfile::tempdir().unwrap();
  let clock = Arc::new(VirtualClock::starting_at(VirtualClock::EPOCH_MS));
  let kernel = Kernel::open(config(dir.path(), clock.clone())).unwrap();
  let pid = start(&kernel, dir.path(), &[]);
  assert_eq!(call(&kernel, &pid, "now", Value::Null).unwrap(), json!(VirtualClock::EPOCH_MS));
  // An hour's sleep: it would hibernate on the host clock; here it passes at once.
  assert_eq!(call(&kernel, &pid, "sleep", json!({ "ms": 3_600_000 })).unwrap(), Value::Null);
  assert_eq!(call(&kernel, &pid, "now", Value::Null).unwrap(), json!(VirtualClock::EPOCH_MS + 3_600_000));
  assert_eq!(clock.now_ms(), VirtualClock::EPOCH_MS + 3_600_000);
}
