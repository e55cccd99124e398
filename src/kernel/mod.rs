//! The kernel: every authority decision, in one place, and its record.
//!
//! A syscall enters through [`Kernel`]'s `Broker` implementation and goes through
//! `dispatch::Kernel::dispatch`, the one dispatch point: decode → resolve the resource →
//! policy/capability check → perform via a provider → audit record. The kernel knows
//! nothing of JavaScript or engines.

pub mod audit;
pub mod capability;
mod dispatch;
pub mod lifecycle;
pub mod error;
pub mod events;
pub mod fetch;
pub mod grant;
pub mod hibernate;
pub mod human;
pub mod journal;
pub mod image;
pub mod memory;
pub mod model;
pub mod policy;
pub mod process;
pub mod shell;
pub mod syscall;
pub mod tools;
#[cfg(test)]
mod provider_tests;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::sync::Condvar;
use std::sync::Mutex;
use std::sync::MutexGuard;
use std::sync::OnceLock;
use std::sync::RwLock;

use alos_ops::Broker;
use alos_ops::PendingReply;
use alos_ops::Reply;
use serde_json::Value;

use audit::AuditLog;
use dispatch::Dispatched;
use error::SyscallError;
use capability::Capability;
use grant::Grant;
use grant::GrantId;
use grant::GrantSource;
use human::HumanMode;
use lifecycle::Launch;
use lifecycle::Launcher;
use policy::Effect;
use policy::Policy;
use policy::Rule;
use policy::RuleSource;
use process::ExitStatus;
use process::Process;
use process::ProcessLimits;
use process::State;
use process::Stop;
use crate::provider::clock::Clock;
use crate::provider::fs::FileSystem;
use crate::provider::fs::Workspace;
use crate::provider::net::HostNetwork;
use crate::provider::net::Network;
use crate::provider::shell::HostShell;
use crate::provider::shell::Shell;
use crate::provider::human::HumanChannel;
use crate::provider::human::QueueNotice;
use crate::provider::human::Terminal;
use crate::store::Db;

pub struct KernelConfig {
  /// The workspace root (absolute).
  pub workspace: PathBuf,
  /// The state directory (absolute); reserved: no capability reaches it.
  pub state_dir: PathBuf,
  pub policy: Policy,
  pub clock: Arc<dyn Clock>,
  /// How `ask` decisions reach a human.
  pub human: HumanMode,
  /// Where `shell.exec` looks programs up (absolute directories).
  pub shell_path: Vec<PathBuf>,
  /// Largest file `fs.read*` returns.
  pub max_read_bytes: u64,
  /// Who answers `model.complete` (`--model`); `None`: no model on this host.
  pub model: Option<Arc<dyn crate::provider::model::ModelProvider>>,
  /// The model a call without `model` uses, as `PROVIDER:MODEL`.
  pub default_model: Option<String>,
}

#[cfg(test)]
impl KernelConfig {
  /// For kernel unit tests: the workspace `dir/ws` (created), the state `dir/state`, an
  /// empty policy, the host clock, no human, no model.
  pub(crate) fn for_tests(dir: &std::path::Path) -> KernelConfig {
    std::fs::create_dir_all(dir.join("ws")).expect("test workspace");
    KernelConfig {
      workspace: dir.join("ws"),
      state_dir: dir.join("state"),
      policy: Policy::new(),
      clock: Arc::new(crate::provider::clock::SystemClock),
      human: HumanMode::Deny,
      shell_path: Vec::new(),
      max_read_bytes: 1 << 20,
      model: None,
      default_model: None,
    }
  }
}

/// What a new root process starts with.
pub struct ProcessSpec {
  pub image: String,
  /// Absolute path of the entry module; its directory is where the process tree's
  /// scripts may be loaded from.
  pub entry: PathBuf,
  pub args: Vec<String>,
  /// What the process is asked to do (`alos spawn --goal`), shown to it as `libos.goal`.
  pub goal: Option<String>,
  pub grants: Vec<(Capability, GrantSource)>,
  pub limits: ProcessLimits,
  /// The image's tool table; `None`: every built-in tool.
  pub tools: Option<Vec<tools::ImageTool>>,
}

#[derive(Clone)]
pub struct Kernel(Arc<Inner>);

/// The providers the kernel performs through, besides the clock and the human channel
/// (see `KernelConfig`): the host's by default; tests swap in fakes. Swapping one
/// changes no syscall, op or capability check.
pub struct Providers {
  /// `None`: the host's workspace at `KernelConfig::workspace`.
  pub fs: Option<Arc<dyn FileSystem>>,
  pub shell: Arc<dyn Shell>,
  pub net: Arc<dyn Network>,
}

impl Default for Providers {
  fn default() -> Providers {
    Providers { fs: None, shell: Arc::new(HostShell), net: Arc::new(HostNetwork) }
  }
}

/// When a tool-table answer was looked up: (registrations changed here, SQLite's
/// data_version for changes by other hosts).
type ToolsGeneration = (u64, i64);
/// A tool-table answer for one (pid, name), and when it was looked up.
type ToolLookup = (ToolsGeneration, Option<tools::Tool>);

struct Inner {
  workspace: Arc<dyn FileSystem>,
  shell: Arc<dyn Shell>,
  net: Arc<dyn Network>,
  workspace_root: PathBuf,
  /// Grows at run time when a human answers "always".
  policy: RwLock<Policy>,
  db: Arc<Db>,
  human: HumanMode,
  channel: Arc<dyn HumanChannel>,
  shell_path: Vec<PathBuf>,
  clock: Arc<dyn Clock>,
  max_read_bytes: u64,
  model: Option<Arc<dyn crate::provider::model::ModelProvider>>,
  default_model: Option<String>,
  audit: AuditLog,
  processes: Mutex<HashMap<String, Process>>,
  /// Signalled on every exit and resume, for `proc.wait` and `wait_exit`.
  changes: tokio::sync::Notify,
  /// Wakes syscalls of paused processes (they block on the `processes` lock).
  resumed: Condvar,
  next_grant: AtomicU64,
  /// Whether waiting processes give up their isolate (not while a terminal prompts).
  hibernate: bool,
  /// Set when the host is shutting down: no new syscall starts.
  draining: std::sync::atomic::AtomicBool,
  /// Side effects started and not yet recorded as done.
  effects: std::sync::atomic::AtomicI64,
  /// The test hook of `journal::crash_point`.
  crash_at: Option<u64>,
  crash_points: AtomicU64,
  /// Whether the host loop (`lifecycle::watch_signals`) runs.
  host_loop: std::sync::atomic::AtomicBool,
  launcher: OnceLock<Arc<dyn Launcher>>,
  tool_host: OnceLock<Arc<dyn tools::ToolHost>>,
  builtin_tools: OnceLock<Vec<tools::Tool>>,
  /// Tool modules images list, read once per content (`tools::module_tool`).
  module_tools: Mutex<HashMap<String, Option<tools::Tool>>>,
  /// Tools' input schemas, compiled once (by the schema's hash).
  input_validators: Mutex<HashMap<String, Arc<jsonschema::Validator>>>,
  /// `tools::tool_in_table` answers by (pid, name), valid while `tools_generation` holds.
  tool_lookups: Mutex<HashMap<(String, String), ToolLookup>>,
  tools_generation: AtomicU64,
  /// The host's `--model` as given (recorded in each process's spec for resumes).
  host_model: OnceLock<String>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
  // A panic elsewhere must not wedge the kernel: the data under these locks is only
  // ever mutated in small, complete steps.
  mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl Kernel {
  pub fn open(config: KernelConfig) -> Result<Kernel, String> {
    Kernel::open_with(config, Providers::default())
  }

  /// [`Kernel::open`] with the given providers.
  pub fn open_with(config: KernelConfig, providers: Providers) -> Result<Kernel, String> {
    std::fs::create_dir_all(&config.state_dir)
      .map_err(|e| format!("cannot create state directory {}: {e}", config.state_dir.display()))?;
    let workspace: Arc<dyn FileSystem> = match providers.fs {
      Some(fs) => fs,
      None => Arc::new(
        Workspace::open(&config.workspace, std::slice::from_ref(&config.state_dir))
          .map_err(|e| format!("cannot open workspace {}: {e}", config.workspace.display()))?,
      ),
    };
    let db = Arc::new(Db::open(&config.state_dir).map_err(|e| e.to_string())?);
    let mut policy = config.policy;
    // "Allow always" answers given before, in any run on this state directory.
    for (capability, request) in db.human_rules().map_err(|e| e.to_string())? {
      let capability = capability.parse().map_err(|e| format!("a stored human rule is invalid: {e}"))?;
      policy.push(Rule::new(Effect::Allow, capability, RuleSource::Human { request }));
    }
    let channel: Arc<dyn HumanChannel> = match config.human {
      HumanMode::Tty => Arc::new(Terminal { db: db.clone(), user: human_name(), clock: config.clock.clone() }),
      HumanMode::Queue | HumanMode::Deny => Arc::new(QueueNotice),
    };
    Ok(Kernel(Arc::new(Inner {
      workspace,
      shell: providers.shell,
      net: providers.net,
      workspace_root: config.workspace.clone(),
      policy: RwLock::new(policy),
      audit: AuditLog::open(db.clone()),
      db,
      human: config.human,
      channel,
      shell_path: config.shell_path,
      clock: config.clock,
      max_read_bytes: config.max_read_bytes,
      model: config.model,
      default_model: config.default_model,
      processes: Mutex::default(),
      changes: tokio::sync::Notify::new(),
      resumed: Condvar::new(),
      next_grant: AtomicU64::new(1),
      hibernate: config.human != HumanMode::Tty,
      draining: Default::default(),
      effects: Default::default(),
      crash_at: std::env::var("ALOS_TEST_CRASH_AT").ok().and_then(|n| n.parse().ok()),
      crash_points: AtomicU64::new(0),
      host_loop: Default::default(),
      launcher: OnceLock::new(),
      tool_host: OnceLock::new(),
      builtin_tools: OnceLock::new(),
      module_tools: Mutex::default(),
      input_validators: Mutex::default(),
      tool_lookups: Mutex::default(),
      tools_generation: AtomicU64::new(0),
      host_model: OnceLock::new(),
    })))
  }

  fn new_grant(&self, capability: Capability, source: GrantSource) -> Grant {
    Grant {
      id: GrantId(self.0.next_grant.fetch_add(1, Ordering::Relaxed)),
      capability,
      source,
      uses_left: None,
      expires_at_ms: None,
      bound_digest: None,
      parent: None,
    }
  }

  /// Records the host's `--model` (once), so a process started here can be resumed with
  /// the same model by a host given none.
  pub fn set_host_model(&self, spec: String) {
    let _ = self.0.host_model.set(spec);
  }

  /// Sets how processes' scripts are started (once; the engine provides it).
  pub fn set_launcher(&self, launcher: Arc<dyn Launcher>) {
    let _ = self.0.launcher.set(launcher);
  }

  /// Creates a root process and starts its script.
  pub fn start_root(&self, spec: ProcessSpec) -> Result<String, String> {
    let entry = spec.entry.clone();
    let pid = self.spawn_root(spec)?;
    let launch = Launch {
      pid: pid.clone(),
      script_root: entry.parent().map(PathBuf::from).unwrap_or_default(),
      entry,
    };
    let launcher = self.0.launcher.get().cloned().ok_or("this kernel has no launcher")?;
    if let Err(why) = launcher.launch(self, launch) {
      self.finish(&pid, ExitStatus::Error { class: None, error: format!("could not start: {why}") });
      return Err(why);
    }
    self.watch_signals();
    Ok(pid)
  }

  /// Blocks until `pid` has exited; returns how.
  pub fn wait_exit(&self, pid: &str) -> Option<ExitStatus> {
    let mut processes = lock(&self.0.processes);
    loop {
      match processes.get(pid) {
        None => return None,
        Some(p) if p.exit_recorded => return p.exit.clone(),
        Some(_) => processes = self.0.resumed.wait(processes).unwrap_or_else(|e| e.into_inner()),
      }
    }
  }

  /// Creates a root process (no parent) and records its start.
  fn spawn_root(&self, spec: ProcessSpec) -> Result<String, String> {
    let pid = format!("p{:08x}", rand::random::<u32>());
    let grants: Vec<Grant> = spec.grants.into_iter().map(|(cap, source)| self.new_grant(cap, source)).collect();
    let held: Vec<String> = grants.iter().map(|g| g.capability.to_string()).collect();
    let mut process = Process::new(pid.clone(), None, spec.image.clone(), spec.args);
    process.script_root = spec.entry.parent().map(PathBuf::from).unwrap_or_default();
    process.entry = spec.entry;
    process.grants = grants;
    process.limits = spec.limits;
    process.goal = spec.goal;
    process.tools = spec.tools;
    process.started_ms = self.0.clock.now_ms();
    process.transition(State::Running).expect("a new process can start");
    lock(&self.0.processes).insert(pid.clone(), process);
    self.record_state(&pid);
    self
      .record_lifecycle(&pid, "spawn", &serde_json::json!({ "image": spec.image, "grants": held }), "running")
      .map_err(|e| format!("cannot write the audit log: {e}"))?;
    Ok(pid)
  }

  /// Installs how to stop the process's isolate (exit, kill, exhausted budget). A
  /// process that already ended (cancelled before its isolate was up) is stopped now.
  pub fn attach(&self, pid: &str, stop: Stop) {
    let mut processes = lock(&self.0.processes);
    match processes.get_mut(pid) {
      Some(process) if process.is_live() => process.stop = Some(stop),
      _ => {
        drop(processes);
        stop();
      }
    }
  }

  /// The one way a process ends (its isolate finishing, `exit`, a cancel, a kill, an
  /// exhausted budget): the first end wins; it is recorded in the audit log *before*
  /// anyone waiting on it is woken (so `alos run` never exits ahead of the record), and
  /// its isolate, if still running, is stopped. Returns the final status.
  pub fn finish(&self, pid: &str, status: ExitStatus) -> Option<ExitStatus> {
    let (changed, final_status, stop) = {
      let mut processes = lock(&self.0.processes);
      let process = processes.get_mut(pid)?;
      let changed = process.end(status);
      (changed, process.exit.clone()?, process.stop.take())
    };
    if changed {
      let outcome = serde_json::to_value(&final_status).unwrap_or(Value::Null);
      let label = outcome.get("status").and_then(Value::as_str).unwrap_or("exited").to_string();
      // The process is over either way; a failed audit write is reported, not fatal.
      if let Err(e) = self.record_lifecycle(pid, "exit", &outcome, &label) {
        tracing::error!("cannot write the audit log: {e}");
      }
      self.record_state(pid);
      // Nobody will act on its questions any more.
      let now = self.0.clock.now_ms();
      for request in self.0.db.pending_requests().unwrap_or_default().into_iter().filter(|r| r.pid == pid) {
        let _ = self.0.db.close_request(&request.id, "cancelled", now);
      }
      if let Some(process) = lock(&self.0.processes).get_mut(pid) {
        process.exit_recorded = true;
      }
    }
    self.0.changes.notify_waiters();
    self.0.resumed.notify_all();
    if let Some(stop) = stop {
      stop();
    }
    if let Some(host) = self.0.tool_host.get() {
      host.release(pid);
    }
    Some(final_status)
  }

}

/// Who is answering, for the record: the login name, or the uid.
pub fn human_name() -> String {
  std::env::var("USER").or_else(|_| std::env::var("LOGNAME")).unwrap_or_else(|_| format!("uid {}", rustix::process::getuid().as_raw()))
}

impl Broker for Kernel {
  fn syscall(&self, pid: &str, name: &str, args: Value) -> Reply {
    match self.dispatch(pid, name, args) {
      Dispatched::Ready(result) => result.map_err(|e| e.into_fault()),
      Dispatched::Waiting(_) => Err(SyscallError::InvalidArgument(format!("{name} waits, so it must be called asynchronously")).into_fault()),
    }
  }

  fn syscall_async(&self, pid: &str, name: &str, args: Value) -> PendingReply {
    match self.dispatch(pid, name, args) {
      Dispatched::Ready(result) => Box::pin(std::future::ready(result.map_err(|e| e.into_fault()))),
      Dispatched::Waiting(future) => Box::pin(async move { future.await.map_err(|e| e.into_fault()) }),
    }
  }
}
