//! Process management primitives: spawn (with attenuation), wait, signal, list, and the
//! capability calls a process makes about itself (list, drop with revocation).

use std::collections::HashSet;
use std::path::Component;
use std::path::Path;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use serde_json::json;
use serde_json::Value;

use super::capability::Capability;
use super::capability::Kind;
use super::error::SyscallError;
use super::grant::Grant;
use super::grant::GrantId;
use super::grant::GrantSource;
use super::lock;
use super::policy::Effect;
use super::policy::Rule;
use super::policy::RuleSource;
use super::process::ExitStatus;
use super::process::ForkMode;
use super::process::Process;
use super::process::State;
use super::Kernel;
use crate::provider::fs::WsPath;

/// Starts processes' scripts; the engine implements it and the CLI hands it to the
/// kernel, which knows nothing of isolates.
pub trait Launcher: Send + Sync {
  /// Starts the script of `launch.pid`. Before the script runs, the launcher must
  /// `attach` a stop callback; when the script ends, it must call `finish`.
  fn launch(&self, kernel: &Kernel, launch: Launch) -> Result<(), String>;
}

pub struct Launch {
  pub pid: String,
  /// Absolute path of the entry module.
  pub entry: PathBuf,
  /// The directory the script may import from (inherited from the root process).
  pub script_root: PathBuf,
}

/// Arguments of `proc.spawn`.
#[derive(Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SpawnArgs {
  /// The child's entry module, relative to the parent's script directory.
  pub entry: String,
  #[serde(default)]
  pub args: Vec<String>,
  /// Capabilities for the child; each must be covered by one the parent holds.
  #[serde(default)]
  pub caps: Vec<String>,
  #[serde(default)]
  pub mode: ForkMode,
  /// The child's cwd (default: the parent's), relative to the parent's cwd.
  pub cwd: Option<String>,
  pub max_syscalls: Option<u64>,
  /// The child's model budget; it gets at most what the parent has left anyway.
  pub model_calls: Option<u64>,
  pub model_tokens: Option<u64>,
}

/// The signals a process can send to its descendants.
#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Signal {
  Pause,
  Resume,
  Cancel,
}

/// The rules a fork mode adds to a child (and so to all its descendants).
fn mode_rules(mode: ForkMode, parent: &str) -> Vec<Rule> {
  let source = RuleSource::ForkMode { mode: format!("{mode:?}").to_lowercase(), parent: parent.to_string() };
  let deny = |kind: Kind| Rule::new(Effect::Deny, Capability::any(kind), source.clone());
  match mode {
    ForkMode::Restricted | ForkMode::Copy => vec![],
    // A worker's own namespace (proc/<pid>) is always available, beside capabilities;
    // this rule closes every other one.
    ForkMode::Worker => vec![deny(Kind::MemWrite), deny(Kind::ToolRegister)],
    ForkMode::Speculative => vec![deny(Kind::FsWrite), deny(Kind::FsDelete), deny(Kind::Shell), deny(Kind::Net)],
  }
}

/// `entry` joined onto `root`, refusing anything that leaves it.
fn child_entry(root: &Path, entry: &str) -> Result<PathBuf, SyscallError> {
  let relative = Path::new(entry);
  let mut path = root.to_path_buf();
  for component in relative.components() {
    match component {
      Component::Normal(part) => path.push(part),
      Component::CurDir => {}
      Component::ParentDir if path != root => {
        path.pop();
      }
      _ => {
        return Err(SyscallError::InvalidArgument(format!(
          "proc.spawn: entry \"{entry}\" must be a module inside the script directory {}",
          root.display()
        )))
      }
    }
  }
  if path == root {
    return Err(SyscallError::InvalidArgument(format!("proc.spawn: entry \"{entry}\" names no module")));
  }
  Ok(path)
}

/// A summary of a process for `proc.list` and `proc.wait`.
fn describe(p: &Process) -> Value {
  let mut out = json!({
    "pid": p.pid,
    "parent": p.parent,
    "image": p.image,
    "state": p.state().name(),
    "mode": p.mode,
  });
  if let Some(exit) = &p.exit {
    out["exit"] = serde_json::to_value(exit).unwrap_or(Value::Null);
  }
  out
}

impl Kernel {
  pub(super) fn spawn_child(&self, parent_pid: &str, spec: SpawnArgs) -> Result<Value, SyscallError> {
    let asked: Vec<Capability> = spec
      .caps
      .iter()
      .map(|text| text.parse().map_err(|e| SyscallError::InvalidArgument(format!("proc.spawn: {e}"))))
      .collect::<Result<_, _>>()?;
    let now = self.0.clock.now_ms();
    let pid = format!("p{:08x}", rand::random::<u32>());
    let launch = {
      let mut processes = lock(&self.0.processes);
      let parent = processes
        .get(parent_pid)
        .ok_or_else(|| SyscallError::NotFound(format!("no such process {parent_pid}")))?;
      if parent.limits.max_depth == 0 {
        return Err(SyscallError::LimitExceeded(format!(
          "proc.spawn: {parent_pid} is at the deepest generation its budget allows and cannot spawn"
        )));
      }
      if parent.children_spawned >= parent.limits.max_children {
        return Err(SyscallError::LimitExceeded(format!(
          "proc.spawn: {parent_pid} has spawned all {} children its budget allows",
          parent.limits.max_children
        )));
      }
      let entry = child_entry(&parent.script_root, &spec.entry)?;
      let cwd = match &spec.cwd {
        None => parent.cwd.clone(),
        Some(cwd) => WsPath::resolve(&parent.cwd, cwd)
          .map_err(|e| SyscallError::InvalidArgument(format!("proc.spawn: cwd \"{cwd}\": {e}")))?,
      };
      let grants = self.derive_grants(parent, &asked, spec.mode, now)?;

      let mut child = Process::new(pid.clone(), Some(parent), spec.entry.clone(), spec.args);
      child.entry = entry.clone();
      child.script_root = parent.script_root.clone();
      child.cwd = cwd;
      child.grants = grants;
      child.rules = parent.rules.iter().cloned().chain(mode_rules(spec.mode, parent_pid)).collect();
      child.mode = spec.mode;
      // A resumed parent's own policy and search path hold for its new children too.
      child.policy = parent.policy.clone();
      child.shell_path = parent.shell_path.clone();
      child.limits = parent.limits.for_child(parent.syscalls, spec.max_syscalls).with_model_budget(
        &parent.limits,
        parent.model_used,
        spec.model_calls,
        spec.model_tokens,
      );
      child.started_ms = now;
      child.transition(State::Running).expect("a new process can start");
      let script_root = child.script_root.clone();
      processes.get_mut(parent_pid).expect("looked up above").children_spawned += 1;
      processes.insert(pid.clone(), child);
      super::lifecycle::Launch { pid: pid.clone(), entry, script_root }
    };
    self.record_state(&pid);
    let held = self.grant_names(&pid);
    self
      .record_lifecycle(&pid, "spawn", &json!({ "image": spec.entry, "mode": spec.mode, "grants": held }), "running")
      .map_err(|e| SyscallError::OperationFailed(format!("cannot write the audit log: {e}")))?;
    let launcher = self.0.launcher.get().cloned();
    let started = match launcher {
      Some(launcher) => launcher.launch(self, launch),
      None => Err("this kernel has no launcher".to_string()),
    };
    if let Err(why) = started {
      self.finish(&pid, ExitStatus::Error { class: None, error: format!("could not start: {why}") });
      return Err(SyscallError::OperationFailed(format!("proc.spawn: cannot start {}: {why}", spec.entry)));
    }
    Ok(json!(pid))
  }

  /// The grants a child gets: at most what it asks for, each covered by a live grant of
  /// the parent. Asking for more is an error, never a silent widening. Use-limited
  /// grants are not delegated (a copy would multiply the uses).
  fn derive_grants(&self, parent: &Process, asked: &[Capability], mode: ForkMode, now: u64) -> Result<Vec<Grant>, SyscallError> {
    let delegable: Vec<&Grant> =
      parent.grants.iter().filter(|g| g.is_live(now) && g.uses_left.is_none() && g.bound_digest.is_none()).collect();
    let derive = |capability: Capability, from: &Grant| Grant {
      parent: Some(from.id),
      ..self.new_grant(capability, GrantSource::Parent { pid: parent.pid.clone() })
    };
    if mode == ForkMode::Copy {
      if !asked.is_empty() {
        return Err(SyscallError::InvalidArgument(
          "proc.spawn: a copy child gets exactly what its parent holds; leave `caps` empty".into(),
        ));
      }
      return Ok(delegable.iter().map(|g| derive(g.capability.clone(), g)).collect());
    }
    asked
      .iter()
      .map(|cap| match delegable.iter().find(|g| g.capability.includes(cap)) {
        Some(from) => Ok(derive(cap.clone(), from)),
        None => {
          let held: Vec<String> = delegable.iter().map(|g| g.capability.to_string()).collect();
          Err(SyscallError::PermissionDenied {
            syscall: "proc.spawn".into(),
            capability: cap.to_string(),
            reason: "not held by the parent".into(),
            message: format!(
              "proc.spawn asks for {cap} for the child, but {} holds no capability that includes it \
               (it holds: {}); a child can only get what its parent has",
              parent.pid,
              if held.is_empty() { "nothing".to_string() } else { held.join(", ") }
            ),
          })
        }
      })
      .collect()
  }

  fn grant_names(&self, pid: &str) -> Vec<String> {
    lock(&self.0.processes)
      .get(pid)
      .map(|p| p.grants.iter().map(|g| g.capability.to_string()).collect())
      .unwrap_or_default()
  }

  /// Whether `pid` is a strict descendant of `ancestor`.
  fn is_descendant(processes: &std::collections::HashMap<String, Process>, pid: &str, ancestor: &str) -> bool {
    processes.get(pid).is_some_and(|p| p.pid != ancestor && p.lineage.iter().any(|a| a == ancestor))
  }

  fn descendant_of<'a>(
    processes: &'a std::collections::HashMap<String, Process>,
    caller: &str,
    target: &str,
    syscall: &str,
  ) -> Result<&'a Process, SyscallError> {
    if !Self::is_descendant(processes, target, caller) {
      return Err(SyscallError::NotFound(format!(
        "{syscall}: {target} is not a descendant of {caller} (a process can only reach its own children and their children)"
      )));
    }
    Ok(&processes[target])
  }

  /// Waits until `target` (a descendant of `caller`) exits, or `timeout` passes.
  pub(super) async fn wait_child(&self, caller: &str, target: &str, timeout: Option<Duration>) -> Result<Value, SyscallError> {
    let wait = async {
      loop {
        // Register interest before looking, so an exit in between is not missed.
        let exited = self.0.changes.notified();
        tokio::pin!(exited);
        exited.as_mut().enable();
        {
          let processes = lock(&self.0.processes);
          let child = Self::descendant_of(&processes, caller, target, "proc.wait")?;
          if child.exit_recorded {
            return Ok(describe(child));
          }
        }
        exited.await;
      }
    };
    match timeout {
      None => wait.await,
      Some(limit) => tokio::time::timeout(limit, wait).await.unwrap_or_else(|_| {
        Err(SyscallError::Timeout(format!("proc.wait: {target} did not exit within {}", humantime::format_duration(limit))))
      }),
    }
  }

  pub(super) fn signal(&self, caller: &str, target: &str, signal: Signal) -> Result<Value, SyscallError> {
    let subtree: Vec<String> = {
      let mut processes = lock(&self.0.processes);
      Self::descendant_of(&processes, caller, target, "proc.signal")?;
      match signal {
        Signal::Pause | Signal::Resume => {
          let process = processes.get_mut(target).expect("checked above");
          let moved = if signal == Signal::Pause { process.pause() } else { process.resume() };
          moved.map_err(|e| SyscallError::InvalidArgument(format!("proc.signal {signal:?}: {e}").to_lowercase()))?;
          vec![]
        }
        Signal::Cancel => {
          processes.values().filter(|p| p.lineage.iter().any(|a| a == target)).map(|p| p.pid.clone()).collect()
        }
      }
    };
    if subtree.is_empty() {
      // Paused or resumed: show it, and wake paused syscalls so they see the change.
      self.record_state(target);
      self.0.resumed.notify_all();
      self.0.changes.notify_waiters();
    } else {
      self.cancel_subtree(target, &format!("cancelled by {caller}"));
    }
    Ok(Value::Null)
  }

  /// Ends `target` and all its descendants.
  pub(super) fn cancel_subtree(&self, target: &str, reason: &str) {
    let subtree: Vec<String> = lock(&self.0.processes)
      .values()
      .filter(|p| p.lineage.iter().any(|a| a == target))
      .map(|p| p.pid.clone())
      .collect();
    for pid in subtree {
      self.finish(&pid, ExitStatus::Killed { reason: reason.to_string() });
    }
    self.0.resumed.notify_all();
  }

  /// Writes the process's current state where other terminals (`alos ps`) see it.
  pub(super) fn record_state(&self, pid: &str) {
    let row = {
      let processes = lock(&self.0.processes);
      let Some(p) = processes.get(pid) else { return };
      crate::store::processes::ProcessRow {
        pid: p.pid.clone(),
        parent: p.parent.clone(),
        lineage: p.lineage.clone(),
        image: p.image.clone(),
        mode: format!("{:?}", p.mode).to_lowercase(),
        state: p.state().name(),
        exit: p.exit.as_ref().and_then(|e| serde_json::to_value(e).ok()),
        host_pid: std::process::id(),
        started_ms: p.started_ms,
        ended_ms: p.exit.as_ref().map(|_| self.0.clock.now_ms()),
        spec: Some(super::hibernate::spec_of(
          p,
          &self.0.policy.read().unwrap_or_else(|e| e.into_inner()),
          &self.0.workspace_root,
          &self.0.shell_path,
          self.0.host_model.get().map(String::as_str),
        )),
        runtime: Some(super::journal::runtime_of(p)),
      }
    };
    if let Err(e) = self.0.db.upsert_process(&row) {
      tracing::warn!("cannot record the state of {pid}: {e}");
    }
  }

  /// The host loop: applies signals other terminals send (`alos kill`) to the processes
  /// this kernel hosts and wakes hibernated ones whose wait is over, from a thread of
  /// its own, until none of them is alive.
  pub(super) fn watch_signals(&self) {
    if self.0.host_loop.swap(true, std::sync::atomic::Ordering::SeqCst) {
      return;
    }
    let kernel = self.clone();
    let spawned = std::thread::Builder::new().name("alos-signals".into()).spawn(move || loop {
      std::thread::sleep(Duration::from_millis(150));
      let (ours, live): (Vec<String>, bool) = {
        let processes = lock(&kernel.0.processes);
        (processes.keys().cloned().collect(), processes.values().any(|p| p.is_live()))
      };
      match kernel.0.db.pending_signals(&ours) {
        Ok(signals) => {
          for signal in signals {
            let now = kernel.0.clock.now_ms();
            if kernel.0.db.signal_handled(signal.id, now).unwrap_or(false) {
              let reason = format!("killed by {} (alos kill)", signal.sent_by);
              let _ = kernel.record_lifecycle(&signal.pid, "human.kill", &json!({ "by": signal.sent_by }), &reason);
              kernel.cancel_subtree(&signal.pid, &reason);
            }
          }
        }
        Err(e) => tracing::warn!("cannot read signals: {e}"),
      }
      kernel.wake_ready();
      if !live {
        kernel.0.host_loop.store(false, std::sync::atomic::Ordering::SeqCst);
        return;
      }
    });
    if let Err(e) = spawned {
      tracing::warn!("cannot watch for signals from other terminals: {e}");
    }
  }

  pub(super) fn list(&self, caller: &str) -> Value {
    let processes = lock(&self.0.processes);
    let mut subtree: Vec<&Process> = processes.values().filter(|p| p.lineage.iter().any(|a| a == caller)).collect();
    subtree.sort_by(|a, b| a.lineage.len().cmp(&b.lineage.len()).then(a.pid.cmp(&b.pid)));
    Value::Array(subtree.into_iter().map(describe).collect())
  }

  pub(super) fn caps_list(&self, pid: &str) -> Value {
    let now = self.0.clock.now_ms();
    let processes = lock(&self.0.processes);
    let grants = processes.get(pid).map(|p| p.grants.as_slice()).unwrap_or(&[]);
    Value::Array(
      grants
        .iter()
        .filter(|g| g.is_live(now))
        .map(|g| {
          json!({
            "id": g.id.to_string(),
            "capability": g.capability.to_string(),
            "source": g.source.to_string(),
            "usesLeft": g.uses_left,
            "expiresAtMs": g.expires_at_ms,
          })
        })
        .collect(),
    )
  }

  /// Drops the caller's grants of exactly `capability`, and revokes everything its
  /// descendants derived from them.
  pub(super) fn caps_drop(&self, pid: &str, capability: &str) -> Result<Value, SyscallError> {
    let capability: Capability =
      capability.parse().map_err(|e| SyscallError::InvalidArgument(format!("caps.drop: {e}")))?;
    let mut processes = lock(&self.0.processes);
    let process = processes.get_mut(pid).ok_or_else(|| SyscallError::NotFound(format!("no such process {pid}")))?;
    let mut revoked: HashSet<GrantId> = HashSet::new();
    process.grants.retain(|g| {
      let drop = g.capability == capability;
      if drop {
        revoked.insert(g.id);
      }
      !drop
    });
    if revoked.is_empty() {
      return Err(SyscallError::NotFound(format!("caps.drop: {pid} holds no grant of {capability}")));
    }
    let dropped = revoked.len();
    // Parents before children, so revocation flows down whole chains.
    let mut order: Vec<String> =
      processes.values().filter(|p| Self::is_descendant(&processes, &p.pid, pid)).map(|p| p.pid.clone()).collect();
    order.sort_by_key(|p| processes[p].lineage.len());
    for descendant in order {
      let process = processes.get_mut(&descendant).expect("listed above");
      process.grants.retain(|g| match g.parent {
        Some(parent) if revoked.contains(&parent) => {
          revoked.insert(g.id);
          false
        }
        _ => true,
      });
    }
    Ok(json!({ "dropped": dropped, "revoked": revoked.len() - dropped }))
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn child_entries_stay_inside_the_script_directory() {
    let root = Path::new("/srv/agent");
    assert_eq!(child_entry(root, "worker.ts").unwrap(), Path::new("/srv/agent/worker.ts"));
    assert_eq!(child_entry(root, "./sub/../w.ts").unwrap(), Path::new("/srv/agent/w.ts"));
    for bad in ["../x.ts", "/etc/x.ts", "sub/../../x.ts", "", "."] {
      assert!(child_entry(root, bad).is_err(), "{bad}");
    }
  }

  #[test]
  fn modes_add_their_restrictions() {
    let kinds = |mode| mode_rules(mode, "p1").iter().map(|r| r.capability.kind()).collect::<Vec<_>>();
    assert_eq!(kinds(ForkMode::Restricted), []);
    assert_eq!(kinds(ForkMode::Worker), [Kind::MemWrite, Kind::ToolRegister]);
    assert_eq!(kinds(ForkMode::Speculative), [Kind::FsWrite, Kind::FsDelete, Kind::Shell, Kind::Net]);
  }
}

/// Whether the `alos` with this OS process id is still running.
pub fn host_alive(host_pid: u32) -> bool {
  rustix::process::Pid::from_raw(host_pid as i32).is_some_and(|pid| rustix::process::test_kill_process(pid).is_ok())
}

/// What `alos kill` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Killed {
  /// The hosting `alos` was asked to end it; this signal id says when it has.
  Signalled(i64),
  /// Its host was gone, so its end was recorded here.
  Orphan,
}

/// `alos kill` from any terminal: asks the `alos` hosting `pid` to end it and its
/// descendants (see `watch_signals`). If that host is gone, it records the end itself,
/// with the human's act in the audit log. Reached from the command line only.
pub fn kill(state_dir: &Path, pid: &str, by: &str, now_ms: u64) -> Result<Killed, String> {
  let db = crate::store::Db::open(state_dir).map_err(|e| e.to_string())?;
  let row = db.process(pid).map_err(|e| e.to_string())?.ok_or_else(|| format!("there is no process {pid} in this state directory"))?;
  if row.state == "exited" {
    return Err(format!("{pid} has already exited"));
  }
  if host_alive(row.host_pid) {
    return db.send_signal(pid, "cancel", by, now_ms).map(Killed::Signalled).map_err(|e| e.to_string());
  }
  let reason = format!("killed by {by} (its alos host was gone)");
  let mut ended = row.clone();
  ended.state = "exited".into();
  ended.exit = Some(json!({ "status": "killed", "reason": reason }));
  ended.ended_ms = Some(now_ms);
  db.upsert_process(&ended).map_err(|e| e.to_string())?;
  super::audit::append_to(
    state_dir,
    super::audit::Entry {
      time: crate::provider::clock::rfc3339(now_ms),
      pid: pid.to_string(),
      lineage: row.lineage,
      actor: super::audit::Actor::Human,
      syscall: "human.kill".into(),
      capability: None,
      resource: None,
      decision: super::audit::Verdict::None,
      decided_by: Some(by.to_string()),
      args_digest: super::audit::digest(pid.as_bytes()),
      outcome: reason,
      tool: None,
    },
  )?;
  Ok(Killed::Orphan)
}
