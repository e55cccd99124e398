//! Hibernation and resumption. A process that waits for a human, a long sleep or an
//! event holds no isolate: its wait is in the journal, its isolate is stopped, and the
//! host wakes it (by replay) when the answer, the time or the event comes. The same
//! path resumes processes whose host died (`alos resume`, `alos serve` at start).

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use serde::Serialize;
use serde_json::json;
use serde_json::Value;

use super::grant::Grant;
use super::lifecycle::host_alive;
use super::lifecycle::Launch;
use super::lock;
use super::policy::Policy;
use super::policy::Rule;
use super::process::ExitStatus;
use super::process::ForkMode;
use super::process::Process;
use super::process::ProcessLimits;
use super::process::State;
use super::process::WaitReason;
use super::Kernel;
use crate::provider::fs::WsPath;

/// A wait shorter than this keeps its isolate: a replay would cost more than it saves.
pub const HIBERNATE_AFTER_MS: u64 = 2_000;

/// What wakes a hibernated process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "on")]
pub enum Wake {
  /// A human request leaving `pending`.
  Request { id: String },
  /// A time (ms since the epoch).
  At { ms: u64 },
  /// An event on `topic` after `after`.
  Event { topic: String, after: u64 },
  /// The next host (its own host stopped).
  Host,
}

impl Wake {
  fn reason(&self) -> WaitReason {
    match self {
      Wake::Request { .. } => WaitReason::Human,
      Wake::At { .. } => WaitReason::Sleep,
      Wake::Event { .. } => WaitReason::Event,
      Wake::Host => WaitReason::Host,
    }
  }
}

/// What a process needs to be started again by another host; written once, at spawn.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Spec {
  pub entry: PathBuf,
  pub script_root: PathBuf,
  pub args: Vec<String>,
  pub rules: Vec<Rule>,
  pub limits: ProcessLimits,
  pub mode: ForkMode,
  #[serde(default)]
  pub goal: Option<String>,
  /// The policy it was started under (a resuming host has none of its own for it).
  #[serde(default)]
  pub policy: Policy,
  /// The workspace it ran in; a resume must use the same.
  #[serde(default)]
  pub workspace: PathBuf,
  /// Where its `shell.exec` looks programs up.
  #[serde(default)]
  pub shell_path: Vec<PathBuf>,
  /// Its image's tool table; `None`: every built-in tool.
  #[serde(default)]
  pub tools: Option<Vec<super::tools::ImageTool>>,
  /// The host's `--model` when it started (`openai:MODEL`, `scripted:/abs/file.json`):
  /// a resume without `--model` uses it again.
  #[serde(default)]
  pub model: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Runtime {
  cwd: String,
  grants: Vec<Grant>,
  children_spawned: u32,
  /// Absent in rows written before model budgets existed.
  #[serde(default)]
  model_used: super::process::ModelUsage,
  cursors: std::collections::BTreeMap<String, u64>,
  wake: Option<Wake>,
}

pub fn spec_of(
  p: &Process,
  policy: &Policy,
  workspace: &std::path::Path,
  shell_path: &[PathBuf],
  host_model: Option<&str>,
) -> Value {
  serde_json::to_value(Spec {
    entry: p.entry.clone(),
    script_root: p.script_root.clone(),
    args: p.args.clone(),
    rules: p.rules.clone(),
    limits: p.limits,
    mode: p.mode,
    goal: p.goal.clone(),
    policy: p.policy.clone().unwrap_or_else(|| policy.clone()),
    workspace: workspace.to_path_buf(),
    shell_path: p.shell_path.clone().unwrap_or_else(|| shell_path.to_vec()),
    tools: p.tools.clone(),
    model: host_model.map(str::to_string),
  })
  .unwrap_or(Value::Null)
}

impl Kernel {
  /// Hibernates `pid` if this wait is its only syscall in progress (nothing else would
  /// be lost with the isolate) and this host hibernates at all. Returns whether it did;
  /// if so, the caller's future is about to be dropped with the isolate.
  pub(super) fn try_hibernate(&self, pid: &str, wake: Wake) -> bool {
    if !self.0.hibernate {
      return false;
    }
    let stop = {
      let mut processes = lock(&self.0.processes);
      let Some(p) = processes.get_mut(pid) else { return false };
      if p.in_flight > 1 || p.tools_running > 0 || p.stop.is_none() {
        return false;
      }
      let reason = wake.reason();
      // A paused process stays paused; it hibernates when resumed and still waiting.
      if p.transition(State::Hibernated(reason)).is_err() {
        return false;
      }
      p.wake = Some(wake.clone());
      p.human_waits = 0;
      p.stop.take()
    };
    self.persist_runtime(pid);
    self.record_state(pid);
    let _ = self.record_lifecycle(pid, "hibernate", &json!({ "wake": wake }), "hibernated");
    if let Some(stop) = stop {
      stop();
    }
    true
  }

  /// Where the isolate of `pid` ended: a hibernated process lives on without it.
  pub fn isolate_ended(&self, pid: &str, status: ExitStatus) {
    let hibernated = lock(&self.0.processes).get(pid).is_some_and(|p| matches!(p.state(), State::Hibernated(_)));
    if !hibernated {
      self.finish(pid, status);
    }
  }

  fn persist_runtime(&self, pid: &str) {
    let runtime = lock(&self.0.processes).get(pid).map(super::journal::runtime_of);
    if let Some(runtime) = runtime {
      let commit = crate::store::journal::Commit { runtime: Some((pid.to_string(), runtime)), ..Default::default() };
      if let Err(e) = self.0.db.commit(commit) {
        tracing::warn!("cannot record the state of {pid}: {e}");
      }
    }
  }

  /// Wakes every hibernated process whose wait is over; called by the host loop.
  pub(super) fn wake_ready(&self) {
    let now = self.0.clock.now_ms();
    let sleeping: Vec<(String, Wake, String)> = lock(&self.0.processes)
      .values()
      .filter(|p| matches!(p.state(), State::Hibernated(_)))
      .filter_map(|p| Some((p.pid.clone(), p.wake.clone()?, p.lineage[0].clone())))
      .collect();
    if sleeping.is_empty() {
      return;
    }
    // One read for every process waiting on a human, however many there are.
    let pending: std::collections::HashMap<String, Option<u64>> = match self.0.db.pending_requests() {
      Ok(requests) => requests.into_iter().map(|r| (r.id, r.deadline_ms)).collect(),
      Err(e) => return tracing::warn!("cannot read the human queue: {e}"),
    };
    for (pid, wake, root) in sleeping {
      let ready = match &wake {
        Wake::Request { id } => pending.get(id).is_none_or(|deadline| deadline.is_some_and(|d| now >= d)),
        Wake::At { ms } => now >= *ms,
        Wake::Event { topic, after } => self.0.db.event_after(&root, topic, *after).ok().flatten().is_some(),
        Wake::Host => false,
      };
      if ready {
        self.relaunch(&pid, "wake");
      }
    }
  }

  /// Starts the isolate of a process again, to resume it by replaying its journal.
  fn relaunch(&self, pid: &str, why: &str) {
    let launch = {
      let mut processes = lock(&self.0.processes);
      let Some(p) = processes.get_mut(pid) else { return };
      if matches!(p.state(), State::Hibernated(_)) && p.transition(State::Running).is_err() {
        return;
      }
      p.next_seq = 0;
      p.replaying = true;
      p.in_flight = 0;
      p.human_waits = 0;
      p.wake = None;
      Launch { pid: pid.to_string(), entry: p.entry.clone(), script_root: p.script_root.clone() }
    };
    self.record_state(pid);
    let _ = self.record_lifecycle(pid, why, &json!({}), "running (replaying its journal)");
    let launcher = self.0.launcher.get().cloned();
    let started = match launcher {
      Some(launcher) => launcher.launch(self, launch),
      None => Err("this kernel has no launcher".to_string()),
    };
    if let Err(why) = started {
      self.finish(pid, ExitStatus::Error { class: None, error: format!("could not resume: {why}") });
    }
  }

  /// Takes over the unfinished processes of the trees rooted at `roots` (every
  /// unfinished tree when `None`) from hosts that are gone, and resumes them: a process
  /// that was hibernated stays so until its wake-up; the others replay at once.
  /// Returns the root pids taken over.
  pub fn adopt(&self, roots: Option<&[String]>) -> Result<Vec<String>, String> {
    let rows = self.0.db.processes().map_err(|e| e.to_string())?;
    let me = std::process::id();
    let in_tree = |lineage: &[String]| roots.is_none_or(|roots| roots.iter().any(|r| lineage.first() == Some(r)));
    let mut taken: Vec<(String, bool)> = vec![];
    let mut adopted_roots = vec![];
    {
      let mut processes = lock(&self.0.processes);
      // Parents before children, so lineage checks find them.
      let mut rows: Vec<_> = rows.into_iter().filter(|r| in_tree(&r.lineage)).collect();
      rows.sort_by_key(|r| r.lineage.len());
      // The trees with something unfinished, minus those another live alos hosts.
      let mut unfinished_roots: Vec<String> =
        rows.iter().filter(|r| r.state != "exited").filter_map(|r| r.lineage.first().cloned()).collect();
      for row in rows.iter().filter(|r| r.state != "exited" && !processes.contains_key(&r.pid)) {
        if row.host_pid != me && host_alive(row.host_pid) {
          if roots.is_some() {
            return Err(format!(
              "{} is still hosted by a running alos (OS pid {}); stop that one first (or `alos kill {}`)",
              row.pid, row.host_pid, row.pid
            ));
          }
          unfinished_roots.retain(|r| r != &row.lineage[0]);
        }
      }
      for row in rows {
        if !unfinished_roots.contains(&row.lineage[0]) || processes.contains_key(&row.pid) {
          continue;
        }
        let spec: Spec = serde_json::from_value(row.spec.clone().unwrap_or(Value::Null))
          .map_err(|e| format!("{} cannot be resumed: its stored spec is unreadable ({e})", row.pid))?;
        if row.state != "exited" && spec.workspace != self.0.workspace_root {
          return Err(format!(
            "{} ran in the workspace {}; resume it there (--workspace {})",
            row.pid,
            spec.workspace.display(),
            spec.workspace.display()
          ));
        }
        let runtime: Runtime = row.runtime.clone().and_then(|r| serde_json::from_value(r).ok()).unwrap_or_default();
        let mut p = Process::new(row.pid.clone(), None, row.image.clone(), spec.args);
        p.parent = row.parent.clone();
        p.lineage = row.lineage.clone();
        p.entry = spec.entry;
        p.script_root = spec.script_root;
        p.rules = spec.rules;
        p.limits = spec.limits;
        p.mode = spec.mode;
        p.goal = spec.goal;
        p.tools = spec.tools;
        p.policy = Some(spec.policy);
        p.shell_path = Some(spec.shell_path);
        p.cwd = WsPath::resolve(&WsPath::root(), &runtime.cwd).unwrap_or_else(|_| WsPath::root());
        p.grants = runtime.grants;
        p.children_spawned = runtime.children_spawned;
        p.model_used = runtime.model_used;
        p.cursors = runtime.cursors;
        p.started_ms = row.started_ms;
        let next_grant = p.grants.iter().map(|g| g.id.0 + 1).max().unwrap_or(1);
        self.0.next_grant.fetch_max(next_grant, std::sync::atomic::Ordering::Relaxed);
        if row.state == "exited" {
          p.transition(State::Running).expect("new");
          p.end(serde_json::from_value(row.exit.clone().unwrap_or(Value::Null)).unwrap_or(ExitStatus::Ok { result: Value::Null }));
          p.exit_recorded = true;
        } else {
          p.transition(State::Running).expect("new");
          let wake = runtime.wake.filter(|w| *w != Wake::Host);
          if let Some(wake) = wake {
            p.transition(State::Hibernated(wake.reason())).expect("running can hibernate");
            p.wake = Some(wake);
            taken.push((row.pid.clone(), false));
          } else {
            taken.push((row.pid.clone(), true));
          }
          if row.parent.is_none() {
            adopted_roots.push(row.pid.clone());
          }
        }
        processes.insert(row.pid.clone(), p);
      }
    }
    for (pid, run_now) in taken {
      self.record_state(&pid);
      if run_now {
        self.relaunch(&pid, "resume");
      } else {
        let _ = self.record_lifecycle(&pid, "resume", &json!({}), "hibernated until its wake-up");
      }
    }
    self.watch_signals();
    Ok(adopted_roots)
  }

  /// Stops every isolate of this host without ending its processes, for `alos serve`
  /// shutting down: waits (up to `grace`) for side effects in progress to finish, so
  /// the next host finds nothing in doubt, then hibernates everything until then.
  pub fn suspend_all(&self, grace: Duration) {
    self.0.draining.store(true, std::sync::atomic::Ordering::SeqCst);
    let deadline = std::time::Instant::now() + grace;
    while std::time::Instant::now() < deadline && self.0.effects.load(std::sync::atomic::Ordering::SeqCst) > 0 {
      std::thread::sleep(Duration::from_millis(20));
    }
    let live: Vec<String> = lock(&self.0.processes).values().filter(|p| p.is_live()).map(|p| p.pid.clone()).collect();
    for pid in live {
      let stop = {
        let mut processes = lock(&self.0.processes);
        let Some(p) = processes.get_mut(&pid) else { continue };
        if !matches!(p.state(), State::Hibernated(_)) {
          // Whatever it waited for is in its journal; the next host replays it.
          let _ = p.transition(State::Hibernated(WaitReason::Host));
          p.wake = Some(Wake::Host);
        }
        p.stop.take()
      };
      self.persist_runtime(&pid);
      self.record_state(&pid);
      if let Some(stop) = stop {
        stop();
      }
    }
  }
}

/// `alos rollback PID CHECKPOINT`, from the command line: returns `pid` to the
/// checkpoint (its own Object Memory namespace, its journal up to there, its cwd and
/// event positions) so a host resumes it from there. What is not rolled back: the audit
/// log, grants (spent stay spent, revoked stay revoked) and the world — the side
/// effects journaled after the checkpoint are returned, to be shown.
pub fn rollback(state_dir: &std::path::Path, pid: &str, id: i64, by: &str, now_ms: u64) -> Result<Vec<String>, String> {
  let db = crate::store::Db::open(state_dir).map_err(|e| e.to_string())?;
  let checkpoint = db.checkpoint(id).map_err(|e| e.to_string())?.filter(|c| c.pid == pid).ok_or_else(|| {
    format!("{pid} has no checkpoint {id} (its checkpoints are the ids libos.checkpoint() returned)")
  })?;
  let row = db.process(pid).map_err(|e| e.to_string())?.ok_or_else(|| format!("there is no process {pid}"))?;
  if row.state != "exited" && !row.state.starts_with("hibernated") && host_alive(row.host_pid) && row.host_pid != std::process::id() {
    return Err(format!("{pid} is running in alos (OS pid {}); stop it first (`alos kill {pid}`)", row.host_pid));
  }
  let effects: Vec<String> = db
    .journal(pid, checkpoint.journal_seq + 1)
    .map_err(|e| e.to_string())?
    .into_iter()
    .filter(|r| super::journal::SIDE_EFFECTS.contains(&r.syscall.as_str()) && r.status != crate::store::journal::JournalStatus::Waiting)
    .map(|r| format!("#{} {} ({:?})", r.seq, r.syscall, r.status).to_lowercase())
    .collect();
  // Grants stay as they are now; where it was and what it had read come back.
  let mut runtime = row.runtime.clone().unwrap_or_else(|| json!({}));
  for field in ["cwd", "cursors", "childrenSpawned"] {
    runtime[field] = checkpoint.runtime.get(field).cloned().unwrap_or(Value::Null);
  }
  runtime["wake"] = Value::Null;
  let entry = super::audit::Entry {
    time: crate::provider::clock::rfc3339(now_ms),
    pid: pid.to_string(),
    lineage: row.lineage.clone(),
    actor: super::audit::Actor::Human,
    syscall: "human.rollback".into(),
    capability: None,
    resource: None,
    decision: super::audit::Verdict::None,
    decided_by: Some(by.to_string()),
    args_digest: super::audit::digest(format!("{pid} {id}").as_bytes()),
    outcome: format!("rolled back to checkpoint {id}; {} side effect(s) after it cannot be undone", effects.len()),
    tool: None,
  };
  let ns = super::memory::own_namespace(pid);
  db.rollback(id, &ns, &runtime, super::audit::next_record(entry)).map_err(|e| e.to_string())?;
  Ok(effects)
}
