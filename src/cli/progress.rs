//! What a spawned agent is doing, while it runs: its steps (model calls), tool calls and
//! their outcomes, refusals, children, and requests waiting for a human. Read from what
//! the kernel records anyway (the audit log and the human queue, through `store::Db`),
//! so the kernel knows nothing about displays: `alos spawn` shows it compactly on a
//! terminal (stderr), or as one JSON event per line on stdout with `--json`.

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::json;
use serde_json::Value;

use crate::kernel::audit::Actor;
use crate::kernel::audit::Entry;
use crate::kernel::audit::Record;
use crate::kernel::audit::Verdict;
use crate::provider::human::answer_hint;
use crate::provider::human::printable;
use crate::store::human::HumanRequest;
use crate::store::Db;
use crate::store::StoreError;

/// How often the records are read.
const POLL: Duration = Duration::from_millis(150);
/// Longest message shown on one display line.
const SHOWN_CHARS: usize = 160;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
  /// Lines for a person, on stderr.
  Display,
  /// One JSON object per line, on stdout.
  Json,
}

/// A watcher of one process tree, on a thread of its own until `finish`.
pub struct Progress {
  stop: Arc<AtomicBool>,
  thread: Option<JoinHandle<()>>,
}

impl Progress {
  /// Starts watching the tree rooted at `root` in the state directory `state_dir`.
  pub fn start(style: Style, state_dir: PathBuf, root: String) -> Progress {
    let stop = Arc::new(AtomicBool::new(false));
    let stopping = stop.clone();
    let thread = std::thread::Builder::new()
      .name("progress".into())
      .spawn(move || {
        let db = match Db::open(&state_dir) {
          Ok(db) => db,
          Err(e) => return tracing::warn!("progress display off: {e}"),
        };
        let mut watch = Watch::new(style, root, db);
        loop {
          // Read once more after the stop, so nothing recorded before the end is missed.
          let last = stopping.load(Ordering::Acquire);
          if let Err(e) = watch.poll() {
            tracing::warn!("progress display: {e}");
          }
          if last {
            break;
          }
          std::thread::sleep(POLL);
        }
      })
      .ok();
    Progress { stop, thread }
  }

  /// Shows what is left and stops (call once the process has ended).
  pub fn finish(mut self) {
    self.stop.store(true, Ordering::Release);
    if let Some(thread) = self.thread.take() {
      let _ = thread.join();
    }
  }
}

/// What the watcher has seen so far.
struct Watch {
  style: Style,
  root: String,
  db: Db,
  /// The sequence number of the last audit record read.
  read: usize,
  /// Steps (model calls) per process.
  steps: HashMap<String, u64>,
  /// Requests shown as waiting.
  waiting: BTreeMap<String, HumanRequest>,
}

impl Watch {
  fn new(style: Style, root: String, db: Db) -> Watch {
    Watch { style, root, db, read: 0, steps: HashMap::new(), waiting: BTreeMap::new() }
  }

  fn poll(&mut self) -> Result<(), StoreError> {
    // Only the records added since the last poll (records are numbered from 1).
    let lines = self.db.audit_lines_after(self.read as u64)?;
    for line in &lines {
      let Ok(record) = serde_json::from_str::<Record>(line) else { continue };
      self.read = self.read.max(record.seq as usize);
      let entry = &record.entry;
      if !entry.lineage.contains(&self.root) {
        continue;
      }
      // A request is seen through the record of the operation that waits for it, or (a
      // question, or one answered between two reads) through the record of its answer.
      if entry.decision == Verdict::Ask {
        if let Some(id) = entry.outcome.strip_prefix("waiting for human request ") {
          self.waits_for(id)?;
        }
      }
      if entry.actor == Actor::Human && entry.syscall == "human.answer" {
        if let Some(id) = entry.outcome.rsplit(' ').next().filter(|id| id.starts_with('r')) {
          self.waits_for(id)?;
          self.answered(id)?;
        }
      }
      if let Some(event) = self.event(entry) {
        self.emit(&event);
      }
    }
    let pending = self.db.pending_requests()?;
    let root = self.root.clone();
    for request in pending.iter().filter(|r| r.lineage.contains(&root)) {
      self.waits_for(&request.id)?;
    }
    Ok(())
  }

  /// Shows request `id` as waiting, once.
  fn waits_for(&mut self, id: &str) -> Result<(), StoreError> {
    if self.waiting.contains_key(id) {
      return Ok(());
    }
    let Some(request) = self.db.request(id)? else { return Ok(()) };
    self.emit(&json!({
      "event": "human_wait",
      "pid": request.pid,
      "request": request.id,
      "kind": request.kind,
      "syscall": request.syscall,
      "detail": request.detail,
      "answer_with": answer_hint(&request),
    }));
    self.waiting.insert(id.to_string(), request);
    Ok(())
  }

  fn answered(&mut self, id: &str) -> Result<(), StoreError> {
    if let Some(request) = self.db.request(id)? {
      self.emit(&json!({
        "event": "human_answer",
        "pid": request.pid,
        "request": id,
        "status": request.status,
        "scope": request.scope,
        "answer": request.answer,
        "reason": request.reason,
      }));
    }
    Ok(())
  }

  /// The event an audit record stands for, if it is one a watcher cares about.
  fn event(&mut self, entry: &Entry) -> Option<Value> {
    let pid = &entry.pid;
    let (ok, error) = outcome(&entry.outcome);
    let step = self.steps.get(pid).copied().unwrap_or(0);
    match (entry.actor, entry.syscall.as_str()) {
      (Actor::System, "spawn") if *pid != self.root => {
        let parent = entry.lineage.iter().rev().nth(1);
        Some(json!({ "event": "child", "pid": pid, "parent": parent }))
      }
      (Actor::System, "exit") if *pid != self.root => {
        Some(json!({ "event": "child_exit", "pid": pid, "ok": ok, "error": error }))
      }
      (Actor::Process, "model.complete") if entry.decision != Verdict::Ask => {
        let step = step + 1;
        self.steps.insert(pid.clone(), step);
        Some(json!({ "event": "step", "pid": pid, "step": step, "model": entry.resource, "ok": ok, "error": error }))
      }
      (Actor::Process, "tools.call") if entry.decision != Verdict::Ask => {
        Some(json!({ "event": "tool", "pid": pid, "step": step, "tool": entry.resource, "ok": ok, "error": error }))
      }
      (Actor::Process, "checkpoint" | "tools.propose" | "tools.register" | "tools.revoke") if entry.decision != Verdict::Ask => {
        let action = entry.syscall.clone();
        Some(json!({ "event": "action", "pid": pid, "step": step, "syscall": action, "resource": entry.resource, "ok": ok, "error": error }))
      }
      // A refusal inside a tool names the capability the tool's call would have needed.
      (Actor::Process, syscall) if entry.decision == Verdict::Deny && entry.tool.is_some() => Some(json!({
        "event": "denied",
        "pid": pid,
        "step": step,
        "tool": entry.tool,
        "syscall": syscall,
        "capability": entry.capability,
        "decided_by": entry.decided_by,
      })),
      _ => None,
    }
  }

  fn emit(&self, event: &Value) {
    match self.style {
      Style::Json => {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{event}");
        let _ = out.flush();
      }
      Style::Display => {
        if let Some(line) = display(event) {
          let _ = writeln!(std::io::stderr().lock(), "{line}");
        }
      }
    }
  }
}

/// `(ok, error)` from an audit outcome: "ok", a state, or "error CLASS: message".
fn outcome(text: &str) -> (bool, Option<String>) {
  match text.strip_prefix("error ") {
    Some(error) => (false, Some(error.to_string())),
    None => (true, None),
  }
}

/// One line for a person, or none.
fn display(event: &Value) -> Option<String> {
  let s = |key: &str| event[key].as_str().map(short).unwrap_or_default();
  let result = || if event["ok"] == true { "ok".to_string() } else { format!("failed: {}", s("error")) };
  let line = match event["event"].as_str()? {
    "step" => format!("[{}] step {} ({}) {}", s("pid"), event["step"], s("model"), if event["ok"] == true { "" } else { "failed" }),
    "tool" => format!("[{}]   {} {}", s("pid"), s("tool"), result()),
    "action" => format!("[{}]   {} {}", s("pid"), [s("syscall"), s("resource")].join(" ").trim(), result()),
    "denied" => format!("[{}]     refused: {} needs {} ({})", s("pid"), s("syscall"), s("capability"), s("decided_by")),
    "child" => format!("[{}] started child {}", s("parent"), s("pid")),
    "child_exit" => format!("[{}] child ended {}", s("pid"), result()),
    "human_wait" => {
      format!("[{}] waiting for a human ({}): {}\n        answer with: {}", s("pid"), s("request"), s("detail"), s("answer_with"))
    }
    "human_answer" => format!("[{}] {} {}{}", s("pid"), s("request"), s("status"), match event["scope"].as_str() {
      Some(scope) => format!(" ({scope})"),
      None => String::new(),
    }),
    _ => return None,
  };
  Some(line.trim_end().to_string())
}

/// The first line of `text`, cut to a display line, with control characters escaped.
fn short(text: &str) -> String {
  let first = text.lines().next().unwrap_or_default();
  if first.chars().count() <= SHOWN_CHARS && first.len() == text.len() {
    return printable(first);
  }
  format!("{}...", printable(&first.chars().take(SHOWN_CHARS).collect::<String>()))
}

#[cfg(test)]
mod tests {
  use super::*;

  fn entry(pid: &str, lineage: &[&str], actor: Actor, syscall: &str, decision: Verdict, outcome: &str) -> Entry {
    Entry {
      time: String::new(),
      pid: pid.into(),
      lineage: lineage.iter().map(|s| s.to_string()).collect(),
      actor,
      syscall: syscall.into(),
      capability: Some("fs.write:src/x.py".into()),
      resource: Some("write_file".into()),
      decision,
      decided_by: Some("no grant".into()),
      args_digest: String::new(),
      outcome: outcome.into(),
      tool: None,
    }
  }

  #[test]
  fn audit_records_become_events() {
    let dir = tempfile::tempdir().unwrap();
    let mut watch = Watch::new(Style::Json, "p1".into(), Db::open(dir.path()).unwrap());
    let step = entry("p1", &["p1"], Actor::Process, "model.complete", Verdict::Allow, "ok");
    assert_eq!(watch.event(&step).unwrap()["step"], 1);
    assert_eq!(watch.event(&step).unwrap()["step"], 2);
    let call = entry("p1", &["p1"], Actor::Process, "tools.call", Verdict::Allow, "error PermissionDenied: no");
    let event = watch.event(&call).unwrap();
    assert_eq!((event["event"].as_str(), event["ok"].as_bool(), event["step"].as_u64()), (Some("tool"), Some(false), Some(2)));
    assert_eq!(event["error"], "PermissionDenied: no");
    let mut inner = entry("p1", &["p1"], Actor::Process, "fs.writeText", Verdict::Deny, "error PermissionDenied: no");
    assert!(watch.event(&inner).is_none(), "a direct refusal is the script's business");
    inner.tool = Some("write_file".into());
    assert_eq!(watch.event(&inner).unwrap()["capability"], "fs.write:src/x.py");
    let child = entry("p2", &["p1", "p2"], Actor::System, "spawn", Verdict::None, "running");
    assert_eq!(watch.event(&child).unwrap()["parent"], "p1");
    assert!(watch.event(&entry("p1", &["p1"], Actor::System, "spawn", Verdict::None, "running")).is_none());
    assert!(watch.event(&entry("p1", &["p1"], Actor::Process, "fs.readText", Verdict::Allow, "ok")).is_none());
  }

  #[test]
  fn display_lines_are_short_and_escaped() {
    let wait = json!({ "event": "human_wait", "pid": "p1", "request": "r3", "detail": "write \u{1b}[31mred\nsecond line",
                       "answer_with": "alos approve r3  or  alos deny r3" });
    let line = display(&wait).unwrap();
    assert!(line.contains("waiting for a human (r3)") && line.contains("alos approve r3"), "{line}");
    assert!(!line.contains('\u{1b}') && !line.contains("second line"), "{line}");
    let tool = json!({ "event": "tool", "pid": "p1", "tool": "write_file", "ok": false, "error": "PermissionDenied: no" });
    assert_eq!(display(&tool).unwrap(), "[p1]   write_file failed: PermissionDenied: no");
  }
}
