//! AgentProcesses: identity, lineage, cwd, held grants, limits, lifecycle.

use serde::Serialize;
use serde_json::Value;

use super::grant::Grant;
use crate::provider::fs::WsPath;

/// Stops the process's isolate; installed by whoever runs it (the kernel knows nothing
/// of engines).
pub type Stop = Box<dyn Fn() + Send + Sync>;

#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct ProcessLimits {
  /// Syscalls this process may make in its lifetime.
  pub max_syscalls: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum ExitStatus {
  Ok { result: Value },
  /// The script failed; `class` is the uncaught error's class name when known.
  Error {
    #[serde(skip_serializing_if = "Option::is_none")]
    class: Option<String>,
    error: String,
  },
  LimitExceeded { limit: String },
  Killed { reason: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
  Running,
  Exited,
}

pub struct Process {
  pub pid: String,
  /// Root first, this process last.
  pub lineage: Vec<String>,
  pub image: String,
  pub args: Vec<String>,
  pub cwd: WsPath,
  pub grants: Vec<Grant>,
  pub limits: ProcessLimits,
  pub state: State,
  pub syscalls: u64,
  pub exit: Option<ExitStatus>,
  pub stop: Option<Stop>,
}

impl Process {
  /// Records how the process ended, once: the first exit wins (a script that calls
  /// `exit` and is then terminated exited, it was not killed).
  pub fn end(&mut self, status: ExitStatus) -> bool {
    if self.state == State::Exited {
      return false;
    }
    self.state = State::Exited;
    self.exit = Some(status);
    true
  }
}
