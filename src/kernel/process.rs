//! AgentProcesses: identity, lineage, cwd, held grants, limits, and a lifecycle whose
//! transitions are enforced.

use std::path::PathBuf;

use serde::Serialize;
use serde_json::Value;

use super::grant::Grant;
use super::policy::Rule;
use crate::provider::fs::WsPath;

/// Stops the process's isolate; installed by whoever runs it (the kernel knows nothing
/// of engines).
pub type Stop = Box<dyn Fn() + Send + Sync>;

/// Budgets. Each generation gets less than its parent (see [`ProcessLimits::for_child`]),
/// so a fork bomb runs out by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ProcessLimits {
  /// Syscalls this process may make in its lifetime.
  pub max_syscalls: Option<u64>,
  /// Children this process may spawn in its lifetime.
  pub max_children: u32,
  /// Generations below this process that may still exist (0: it cannot spawn).
  pub max_depth: u32,
  /// `model.complete` calls this process and its descendants may make.
  #[serde(default)]
  pub model_calls: Option<u64>,
  /// Model tokens (input + output) this process and its descendants may use.
  #[serde(default)]
  pub model_tokens: Option<u64>,
}

impl Default for ProcessLimits {
  fn default() -> Self {
    ProcessLimits { max_syscalls: None, max_children: 8, max_depth: 3, model_calls: None, model_tokens: None }
  }
}

/// What a process and its descendants have spent on models (see `kernel::model`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelUsage {
  pub calls: u64,
  pub tokens: u64,
}

impl ProcessLimits {
  /// A child's budget: one generation less, half the fan-out, and at most half of the
  /// syscalls the parent has left.
  pub fn for_child(&self, parent_syscalls_used: u64, asked: Option<u64>) -> ProcessLimits {
    let inherited = self.max_syscalls.map(|max| max.saturating_sub(parent_syscalls_used) / 2);
    let max_syscalls = match (inherited, asked) {
      (Some(a), Some(b)) => Some(a.min(b)),
      (a, b) => a.or(b),
    };
    ProcessLimits {
      max_syscalls,
      max_children: self.max_children / 2,
      max_depth: self.max_depth.saturating_sub(1),
      model_calls: self.model_calls,
      model_tokens: self.model_tokens,
    }
  }

  /// These limits with a child's model budget: at most what the parent (with `used`
  /// spent) has left, and at most what the child asks for.
  pub fn with_model_budget(self, parent: &ProcessLimits, used: ModelUsage, calls: Option<u64>, tokens: Option<u64>) -> ProcessLimits {
    let least = |left: Option<u64>, asked: Option<u64>| match (left, asked) {
      (Some(a), Some(b)) => Some(a.min(b)),
      (a, b) => a.or(b),
    };
    ProcessLimits {
      model_calls: least(parent.model_calls.map(|max| max.saturating_sub(used.calls)), calls),
      model_tokens: least(parent.model_tokens.map(|max| max.saturating_sub(used.tokens)), tokens),
      ..self
    }
  }
}

/// How a child is derived from its parent (DESIGN §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ForkMode {
  /// Only the capabilities listed, each covered by one the parent holds.
  #[default]
  Restricted,
  /// Like restricted, and it cannot write memory outside its own namespace or register
  /// tools.
  Worker,
  /// Like restricted, and every external side effect (file writes and deletes, shell,
  /// network) is denied.
  Speculative,
  /// Everything the parent holds (as derived grants), plus nothing.
  Copy,
}

#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum ExitStatus {
  Ok {
    result: Value,
  },
  /// The script failed; `class` is the uncaught error's class name when known.
  Error {
    #[serde(skip_serializing_if = "Option::is_none")]
    class: Option<String>,
    error: String,
  },
  LimitExceeded {
    limit: String,
  },
  Killed {
    reason: String,
  },
}

/// What a waiting process waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WaitReason {
  Human,
  Sleep,
  Event,
  Child,
  /// Its host stopped (`alos serve` shutting down); the next host resumes it.
  Host,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "state", content = "detail", rename_all = "snake_case")]
pub enum State {
  Created,
  Running,
  Waiting(WaitReason),
  /// Paused by a signal; `resume_to` is where `resume` returns it.
  Paused { resume_to: Resumable },
  /// Persisted while it waits, with no isolate in memory; woken, it resumes by replay.
  Hibernated(WaitReason),
  Exited,
}

/// The states a pause can return to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Resumable {
  Running,
  Waiting(WaitReason),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("process {pid} cannot go from {from} to {to}")]
pub struct IllegalTransition {
  pub pid: String,
  pub from: String,
  pub to: String,
}

impl State {
  pub fn name(&self) -> String {
    match self {
      State::Created => "created".into(),
      State::Running => "running".into(),
      State::Waiting(why) => format!("waiting({why:?})").to_lowercase(),
      State::Paused { .. } => "paused".into(),
      State::Hibernated(why) => format!("hibernated({why:?})").to_lowercase(),
      State::Exited => "exited".into(),
    }
  }

  /// Whether `self → to` is a transition of the lifecycle:
  /// `created → running ⇄ waiting → exited`, pause/resume from running or waiting, and
  /// exit from anywhere but exited.
  fn allows(&self, to: &State) -> bool {
    use State::*;
    match (self, to) {
      (Exited, _) => false,
      (_, Exited) => true,
      (Created, Running) => true,
      (Running | Waiting(_), Hibernated(_)) | (Hibernated(_), Running) => true,
      (Running, Waiting(_)) | (Waiting(_), Running) => true,
      (Running, Paused { resume_to: Resumable::Running }) => true,
      (Waiting(a), Paused { resume_to: Resumable::Waiting(b) }) => a == b,
      (Paused { resume_to: Resumable::Running }, Running) => true,
      (Paused { resume_to: Resumable::Waiting(a) }, Waiting(b)) => a == b,
      _ => false,
    }
  }
}

pub struct Process {
  pub pid: String,
  pub parent: Option<String>,
  /// Root first, this process last.
  pub lineage: Vec<String>,
  pub image: String,
  /// Absolute path of the entry module, and the directory its imports are confined to.
  pub entry: PathBuf,
  pub script_root: PathBuf,
  pub args: Vec<String>,
  /// What the process is asked to do (`libos.goal`); `None` unless spawned with one.
  pub goal: Option<String>,
  /// The image's tool table (children inherit it); `None`: every built-in tool.
  pub tools: Option<Vec<super::tools::ImageTool>>,
  pub cwd: WsPath,
  pub grants: Vec<Grant>,
  /// Rules that apply to this process only, on top of the kernel's policy (a worker's
  /// or a speculative child's restrictions).
  pub rules: Vec<Rule>,
  pub mode: ForkMode,
  pub limits: ProcessLimits,
  state: State,
  pub syscalls: u64,
  pub children_spawned: u32,
  /// Spent on models by it and its descendants.
  pub model_used: ModelUsage,
  /// Syscalls of this process now waiting for a human.
  pub human_waits: u32,
  pub started_ms: u64,
  pub exit: Option<ExitStatus>,
  /// Set once the exit is in the audit log and the process table; waiters wait for it,
  /// not for `exit`, so nobody acts on an end that is not yet recorded.
  pub exit_recorded: bool,
  pub stop: Option<Stop>,
  /// The sequence number the next syscall gets in the journal.
  pub next_seq: u64,
  /// Whether syscalls are still being served from the journal (after a resume).
  pub replaying: bool,
  /// Syscalls of this process now in progress (a waiting process with one may hibernate).
  pub in_flight: u32,
  /// Tool calls in progress: a tool's own wait must not hibernate the process, which
  /// would stop the caller in the middle of the call.
  pub tools_running: u32,
  /// The `tools.call` in progress per tool (see `Trace::within`).
  pub(super) tool_calls: std::collections::HashMap<String, super::dispatch::Trace>,
  /// Position in each event topic: the last event seq taken.
  pub cursors: std::collections::BTreeMap<String, u64>,
  /// The policy it was started under, when it is not this host's (a resumed process).
  pub policy: Option<super::policy::Policy>,
  /// Where its `shell.exec` looks programs up, when it is not this host's.
  pub shell_path: Option<Vec<PathBuf>>,
  /// What wakes it, while hibernated.
  pub wake: Option<super::hibernate::Wake>,
}

impl Process {
  pub fn new(pid: String, parent: Option<&Process>, image: String, args: Vec<String>) -> Process {
    let mut lineage = parent.map(|p| p.lineage.clone()).unwrap_or_default();
    lineage.push(pid.clone());
    Process {
      pid,
      parent: parent.map(|p| p.pid.clone()),
      lineage,
      image,
      entry: PathBuf::new(),
      script_root: parent.map(|p| p.script_root.clone()).unwrap_or_default(),
      args,
      goal: None,
      tools: parent.and_then(|p| p.tools.clone()),
      cwd: parent.map(|p| p.cwd.clone()).unwrap_or_else(WsPath::root),
      grants: Vec::new(),
      rules: Vec::new(),
      mode: ForkMode::Restricted,
      limits: ProcessLimits::default(),
      state: State::Created,
      syscalls: 0,
      children_spawned: 0,
      model_used: ModelUsage::default(),
      human_waits: 0,
      started_ms: 0,
      exit: None,
      exit_recorded: false,
      stop: None,
      next_seq: 0,
      replaying: false,
      in_flight: 0,
      tools_running: 0,
      tool_calls: Default::default(),
      cursors: Default::default(),
      wake: None,
      policy: None,
      shell_path: None,
    }
  }

  pub fn state(&self) -> State {
    self.state
  }

  pub fn is_live(&self) -> bool {
    self.state != State::Exited
  }

  /// Moves to `to`, or explains why the lifecycle does not allow it.
  pub fn transition(&mut self, to: State) -> Result<(), IllegalTransition> {
    if !self.state.allows(&to) {
      return Err(IllegalTransition { pid: self.pid.clone(), from: self.state.name(), to: to.name() });
    }
    self.state = to;
    Ok(())
  }

  /// Pauses a running or waiting process.
  pub fn pause(&mut self) -> Result<(), IllegalTransition> {
    let resume_to = match self.state {
      State::Running => Resumable::Running,
      State::Waiting(why) => Resumable::Waiting(why),
      _ => Resumable::Running,
    };
    self.transition(State::Paused { resume_to })
  }

  /// Resumes a paused process to where it was.
  pub fn resume(&mut self) -> Result<(), IllegalTransition> {
    let to = match self.state {
      State::Paused { resume_to: Resumable::Running } => State::Running,
      State::Paused { resume_to: Resumable::Waiting(why) } => State::Waiting(why),
      _ => return Err(IllegalTransition { pid: self.pid.clone(), from: self.state.name(), to: "resumed".into() }),
    };
    self.transition(to)
  }

  /// Records how the process ended, once: the first exit wins (a script that calls
  /// `exit` and is then terminated exited, it was not killed).
  pub fn end(&mut self, status: ExitStatus) -> bool {
    if self.transition(State::Exited).is_err() {
      return false;
    }
    self.exit = Some(status);
    true
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  fn process() -> Process {
    Process::new("p1".into(), None, "a.ts".into(), vec![])
  }

  #[test]
  fn the_lifecycle_runs_forward() {
    let mut p = process();
    assert_eq!(p.state(), State::Created);
    p.transition(State::Running).unwrap();
    p.transition(State::Waiting(WaitReason::Human)).unwrap();
    p.pause().unwrap();
    assert_eq!(p.state(), State::Paused { resume_to: Resumable::Waiting(WaitReason::Human) });
    p.resume().unwrap();
    assert_eq!(p.state(), State::Waiting(WaitReason::Human));
    p.transition(State::Running).unwrap();
    assert!(p.end(ExitStatus::Ok { result: Value::Null }));
    assert_eq!(p.state(), State::Exited);
  }

  #[test]
  fn illegal_transitions_are_errors() {
    let mut p = process();
    let err = p.transition(State::Waiting(WaitReason::Sleep)).unwrap_err();
    assert_eq!(err.to_string(), "process p1 cannot go from created to waiting(sleep)");
    assert!(p.resume().is_err(), "resume of a process that is not paused");
    p.transition(State::Running).unwrap();
    assert!(p.transition(State::Created).is_err());
    p.pause().unwrap();
    assert!(p.transition(State::Waiting(WaitReason::Child)).is_err(), "a paused process only resumes");
    assert!(p.pause().is_err(), "pausing twice");
    assert!(p.end(ExitStatus::Killed { reason: "cancelled".into() }));
    for to in [State::Running, State::Created, State::Exited, State::Waiting(WaitReason::Event)] {
      assert!(p.transition(to).is_err(), "exited is final: {to:?}");
    }
    assert!(!p.end(ExitStatus::Ok { result: Value::Null }), "the first exit wins");
    assert_eq!(p.exit, Some(ExitStatus::Killed { reason: "cancelled".into() }));
  }

  #[test]
  fn the_default_budget_bounds_a_fork_bomb_to_105_processes() {
    fn total(limits: ProcessLimits) -> u64 {
      if limits.max_depth == 0 {
        return 1;
      }
      1 + (0..limits.max_children).map(|_| total(limits.for_child(0, None))).sum::<u64>()
    }
    // 1 + 8 × (1 + 4 × (1 + 2 × 1)) = 105.
    assert_eq!(total(ProcessLimits::default()), 105);
  }

  #[test]
  fn budgets_shrink_per_generation_until_nothing_is_left() {
    let root = ProcessLimits { max_syscalls: Some(1000), max_children: 16, max_depth: 4, ..ProcessLimits::default() };
    let child = root.for_child(200, None);
    assert_eq!(child, ProcessLimits { max_syscalls: Some(400), max_children: 8, max_depth: 3, ..ProcessLimits::default() });
    assert_eq!(root.for_child(0, Some(10)).max_syscalls, Some(10));
    // A fork bomb: every process spawns as many children as it may, as deep as it may.
    fn total(limits: ProcessLimits) -> u64 {
      if limits.max_depth == 0 {
        return 1;
      }
      1 + (0..limits.max_children).map(|_| total(limits.for_child(0, None))).sum::<u64>()
    }
    // 1 + 16 × (1 + 8 × (1 + 4 × (1 + 2 × 1))) = 1 + 16 × 105 = 1681 processes at most.
    assert_eq!(total(root), 1681);
  }

  #[test]
  fn a_childs_model_budget_is_at_most_what_its_parent_has_left() {
    let parent = ProcessLimits { model_calls: Some(10), model_tokens: Some(1000), ..ProcessLimits::default() };
    let used = ModelUsage { calls: 4, tokens: 900 };
    let child = parent.for_child(0, None).with_model_budget(&parent, used, None, None);
    assert_eq!((child.model_calls, child.model_tokens), (Some(6), Some(100)));
    let asked = parent.for_child(0, None).with_model_budget(&parent, used, Some(2), Some(5000));
    assert_eq!((asked.model_calls, asked.model_tokens), (Some(2), Some(100)), "asking for more gets what is left");
    let unlimited = ProcessLimits::default();
    let child = unlimited.for_child(0, None).with_model_budget(&unlimited, used, Some(3), None);
    assert_eq!((child.model_calls, child.model_tokens), (Some(3), None));
    let spent = parent.with_model_budget(&parent, ModelUsage { calls: 12, tokens: 0 }, None, None);
    assert_eq!(spent.model_calls, Some(0), "nothing left: nothing, not an underflow");
  }

  #[test]
  fn a_child_starts_in_its_parents_cwd_with_the_lineage_extended() {
    let mut parent = process();
    parent.cwd = WsPath::resolve(&WsPath::root(), "work/dir").unwrap();
    let child = Process::new("p2".into(), Some(&parent), "b.ts".into(), vec![]);
    assert_eq!(child.cwd.as_str(), "work/dir");
    assert_eq!(child.lineage, ["p1", "p2"]);
    assert_eq!(child.parent.as_deref(), Some("p1"));
  }
}
