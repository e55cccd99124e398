//! A recording filesystem: the host's [`Workspace`] underneath, and a log of every
//! operation the kernel made through it, in order. Tests swap it in to see exactly
//! which file operations an agent's syscalls caused (and that a denied one caused none).

use std::sync::Mutex;

use cap_std::fs::Dir;

use super::fs::Entry;
use super::fs::FileSystem;
use super::fs::FsError;
use super::fs::Guard;
use super::fs::Stat;
use super::fs::Workspace;
use super::fs::WriteMode;
use super::fs::WsPath;

/// One operation, as recorded: what was asked, on which path, and whether it succeeded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsOp {
  pub op: &'static str,
  pub path: String,
  pub ok: bool,
}

pub struct RecordingFs {
  inner: Workspace,
  log: Mutex<Vec<FsOp>>,
}

impl RecordingFs {
  pub fn new(inner: Workspace) -> RecordingFs {
    RecordingFs { inner, log: Mutex::default() }
  }

  /// Every operation so far, oldest first.
  pub fn ops(&self) -> Vec<FsOp> {
    self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
  }

  fn record<T>(&self, op: &'static str, path: &WsPath, result: Result<T, FsError>) -> Result<T, FsError> {
    let entry = FsOp { op, path: path.as_str().to_string(), ok: result.is_ok() };
    self.log.lock().unwrap_or_else(|e| e.into_inner()).push(entry);
    result
  }
}

impl FileSystem for RecordingFs {
  fn read(&self, path: &WsPath, max_bytes: u64, guard: Guard<'_>) -> Result<Vec<u8>, FsError> {
    self.record("read", path, self.inner.read(path, max_bytes, guard))
  }
  fn write(&self, path: &WsPath, bytes: &[u8], mode: WriteMode, guard: Guard<'_>) -> Result<u64, FsError> {
    self.record("write", path, self.inner.write(path, bytes, mode, guard))
  }
  fn list(&self, path: &WsPath, guard: Guard<'_>) -> Result<Vec<Entry>, FsError> {
    self.record("list", path, self.inner.list(path, guard))
  }
  fn stat(&self, path: &WsPath, guard: Guard<'_>) -> Result<Stat, FsError> {
    self.record("stat", path, self.inner.stat(path, guard))
  }
  fn mkdir(&self, path: &WsPath, recursive: bool, guard: Guard<'_>) -> Result<(), FsError> {
    self.record("mkdir", path, self.inner.mkdir(path, recursive, guard))
  }
  fn remove(&self, path: &WsPath, recursive: bool, guard: Guard<'_>) -> Result<(), FsError> {
    self.record("remove", path, self.inner.remove(path, recursive, guard))
  }
  fn directory(&self, path: &WsPath, guard: Guard<'_>) -> Result<Dir, FsError> {
    self.record("directory", path, self.inner.directory(path, guard))
  }
}
