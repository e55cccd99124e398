//! The journal: every syscall's intent and result, per process, so a process can be
//! resumed by re-executing its script (deterministic replay, as in Temporal).
//!
//! Each syscall gets the next sequence number of its process. A new syscall is written
//! once it is done; one with a side effect is first written as `started` (atomically
//! with the grant use that allowed it), and one that waits as `waiting` (with what it
//! waits on). On resume, the script runs again from the start and its syscalls are
//! served from the journal in order without being performed:
//! - a `done` record returns its recorded result (also `now()` and `random()`);
//! - a `waiting` record picks its wait up again (the same human request, the same
//!   wake-up time);
//! - a `started` record of a side effect is *in doubt* — it may or may not have
//!   happened — and a human decides: retry, skip or abort. Never silently re-run.
//! - a call that differs from the record (another syscall or other arguments) means the
//!   script is not the one that was journaled: the process fails, showing both.

use std::sync::Arc;
use std::sync::Mutex;

use serde_json::json;
use serde_json::Value;

use super::audit::next_record;
use super::audit::Actor;
use super::audit::Entry;
use super::audit::Verdict;
use super::dispatch::Dispatched;
use super::dispatch::Trace;
use super::error::SyscallError;
use super::lock;
use super::process::ExitStatus;
use super::process::Process;
use super::syscall::Syscall;
use super::Kernel;
use crate::store::journal::Commit;
use crate::store::journal::JournalRecord;
use crate::store::journal::JournalStatus;
use crate::store::journal::MemOutcome;
use crate::store::memory::MemWrite;
use crate::store::human::RequestKind;

/// A journaled syscall in flight; shared by the clones of its `Trace`.
#[derive(Clone)]
pub(super) struct Step {
  pub seq: u64,
  state: Arc<Mutex<StepState>>,
}

#[derive(Default)]
struct StepState {
  /// Audit records of this syscall, written with its next journal record.
  audit: Vec<Entry>,
  /// What the journal said it waited on, for picking the wait up again.
  resumed_wait: Option<Value>,
  started: bool,
  /// Counted in the kernel's effects in progress (which `suspend_all` waits for).
  counted: bool,
  settled: bool,
}

impl Step {
  fn new(seq: u64, resumed_wait: Option<Value>) -> Step {
    Step { seq, state: Arc::new(Mutex::new(StepState { resumed_wait, ..Default::default() })) }
  }

  pub fn defer_audit(&self, entry: Entry) {
    lock(&self.state).audit.push(entry);
  }

  /// The human request this syscall was waiting on before a resume, if any.
  pub fn resumed_request(&self) -> Option<String> {
    lock(&self.state).resumed_wait.as_ref()?.get("request")?.as_str().map(str::to_string)
  }

  /// Marks the step as recorded done by its caller.
  pub fn mark_settled(&self) {
    lock(&self.state).settled = true;
  }

  /// The wake-up time a sleep had before a resume.
  pub fn resumed_wake_at(&self) -> Option<u64> {
    lock(&self.state).resumed_wait.as_ref()?.get("wakeAtMs")?.as_u64()
  }
}

/// The syscalls that change the world outside the state database, so that a record of
/// one `started` without a result means it may have happened, and a rollback cannot
/// undo it.
pub const SIDE_EFFECTS: &[&str] = &[
  "fs.writeText", "fs.writeBytes", "fs.mkdir", "fs.remove", "shell.exec", "net.fetch", "events.emit", "proc.spawn",
  "proc.signal",
  // A tool's own syscalls are not journaled one by one: the call is, as a whole, and a
  // crash inside it leaves it in doubt.
  "tools.call",
];

pub(super) fn has_side_effect(call: &Syscall) -> bool {
  SIDE_EFFECTS.contains(&call.name())
}

/// Whether a side effect returns only "done", so that skipping it loses no result.
fn returns_nothing(call: &Syscall) -> bool {
  matches!(call, Syscall::WriteText { .. } | Syscall::WriteBytes { .. } | Syscall::Mkdir { .. } | Syscall::Remove { .. })
}

/// What the journal says about the syscall a (possibly resumed) process makes.
pub(super) enum Replay {
  /// Perform it.
  Live(Step),
  /// Already done: this is its result.
  Served(Result<Value, SyscallError>),
  /// Its side effect may or may not have happened.
  InDoubt(Step, JournalRecord),
}

fn encode(result: &Result<Value, SyscallError>) -> Value {
  match result {
    Ok(value) => json!({ "ok": value }),
    Err(e) => json!({ "error": e.clone().into_fault() }),
  }
}

fn decode(recorded: Option<&Value>) -> Result<Value, SyscallError> {
  let recorded = recorded.ok_or_else(|| SyscallError::OperationFailed("the journal holds no result".into()))?;
  if let Some(value) = recorded.get("ok") {
    return Ok(value.clone());
  }
  if let Some(conflict) = recorded.get("conflict").and_then(Value::as_str) {
    return Err(SyscallError::Conflict(format!("compare-and-set failed: {conflict}; nothing was changed")));
  }
  match recorded.get("error").map(|e| serde_json::from_value(e.clone())) {
    Some(Ok(fault)) => Err(SyscallError::Recorded(fault)),
    _ => Err(SyscallError::OperationFailed(format!("the journal holds an unreadable result: {recorded}"))),
  }
}

/// The runtime state of a process a resume needs beside its spec: what its syscalls
/// changed (cwd, grants held and spent, children counted, event positions).
pub(super) fn runtime_of(p: &Process) -> Value {
  json!({
    "cwd": p.cwd.as_str(),
    "grants": p.grants,
    "childrenSpawned": p.children_spawned,
    "modelUsed": p.model_used,
    "cursors": p.cursors,
    "wake": p.wake,
  })
}

impl Kernel {
  /// The journal's view of `call`, the next syscall of `trace.pid`.
  pub(super) fn replay(&self, trace: &Trace, call: &Syscall) -> Result<Replay, SyscallError> {
    let (seq, replaying) = {
      let mut processes = lock(&self.0.processes);
      let p = processes.get_mut(&trace.pid).ok_or_else(|| SyscallError::NotFound(format!("no such process {}", trace.pid)))?;
      p.next_seq += 1;
      (p.next_seq - 1, p.replaying)
    };
    if !replaying {
      return Ok(Replay::Live(Step::new(seq, None)));
    }
    let record = self.0.db.journal_entry(&trace.pid, seq).map_err(|e| SyscallError::OperationFailed(e.to_string()))?;
    let Some(record) = record else {
      // The end of the journal: from here on the process runs live.
      if let Some(p) = lock(&self.0.processes).get_mut(&trace.pid) {
        p.replaying = false;
      }
      return Ok(Replay::Live(Step::new(seq, None)));
    };
    if record.syscall != trace.syscall || record.args_digest != trace.args_digest {
      let message = format!(
        "resume of {} diverged from its journal at syscall #{seq}: the journal holds {} ({}), but the script now \
         calls {} ({}). The script or what it reads changed since it was journaled; it cannot be resumed \
         (roll it back to an earlier checkpoint with `alos rollback`, or start it again)",
        trace.pid, record.syscall, record.args_digest, trace.syscall, trace.args_digest
      );
      self.finish(&trace.pid, ExitStatus::Error { class: Some("Diverged".into()), error: message.clone() });
      return Err(SyscallError::InvalidArgument(message));
    }
    Ok(match record.status {
      JournalStatus::Done => {
        let result = decode(record.result.as_ref());
        if let Syscall::Exit { result: value } = call {
          self.finish(&trace.pid, ExitStatus::Ok { result: value.clone() });
        }
        Replay::Served(result)
      }
      JournalStatus::Waiting => Replay::Live(Step::new(seq, record.wait.clone())),
      JournalStatus::Started if has_side_effect(call) => Replay::InDoubt(Step::new(seq, record.wait.clone()), record),
      // Started, but with no effect outside the database: doing it again is safe.
      JournalStatus::Started => Replay::Live(Step::new(seq, record.wait.clone())),
    })
  }

  /// Writes the step's journal record (with its pending audit records, the process's
  /// runtime state and an Object Memory write) in one transaction.
  pub(super) fn journal_commit(
    &self,
    trace: &Trace,
    status: JournalStatus,
    wait: Option<Value>,
    result: Option<&Result<Value, SyscallError>>,
    memory: Option<MemWrite>,
  ) -> Result<MemOutcome, SyscallError> {
    let step = trace.step.as_ref().expect("only journaled syscalls are committed");
    let audit = std::mem::take(&mut lock(&step.state).audit);
    let runtime = lock(&self.0.processes).get(&trace.pid).map(|p| (trace.pid.clone(), runtime_of(p)));
    let commit = Commit {
      journal: Some(JournalRecord {
        pid: trace.pid.clone(),
        seq: step.seq,
        syscall: trace.syscall.clone(),
        args_digest: trace.args_digest.clone(),
        status,
        wait,
        result: result.map(encode),
        at_ms: self.0.clock.now_ms(),
      }),
      audit: audit.into_iter().map(next_record).collect(),
      runtime,
      memory,
    };
    let outcome = self
      .0
      .db
      .commit(commit)
      .map_err(|e| SyscallError::OperationFailed(format!("cannot write the journal and audit log: {e}")))?;
    self.crash_point();
    Ok(outcome)
  }

  /// Records, before a side effect begins, that it has: a crash from here until its
  /// result is recorded leaves it in doubt.
  pub(super) fn mark_started(&self, trace: &Trace) -> Result<(), SyscallError> {
    let Some(step) = &trace.step else { return Ok(()) };
    {
      let mut state = lock(&step.state);
      if std::mem::replace(&mut state.started, true) {
        return Ok(());
      }
      state.counted = true;
    }
    self.0.effects.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    self.journal_commit(trace, JournalStatus::Started, None, None, None)?;
    Ok(())
  }

  /// Records what a waiting syscall waits on, so a resumed process waits on the same.
  pub(super) fn note_wait(&self, trace: &Trace, wait: Value) -> Result<(), SyscallError> {
    let Some(step) = &trace.step else { return Ok(()) };
    let status = if lock(&step.state).started { JournalStatus::Started } else { JournalStatus::Waiting };
    self.journal_commit(trace, status, Some(wait), None, None)?;
    Ok(())
  }

  /// Records a syscall's result (and its audit records) once it is done.
  pub(super) fn complete(&self, trace: &Trace, result: Result<Value, SyscallError>) -> Result<Value, SyscallError> {
    let Some(step) = &trace.step else { return result };
    {
      let mut state = lock(&step.state);
      if std::mem::replace(&mut state.settled, true) {
        return result;
      }
      if std::mem::take(&mut state.counted) {
        self.0.effects.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
      }
    }
    self.journal_commit(trace, JournalStatus::Done, None, Some(&result), None).and(result)
  }

  /// Journals what `run_call` made of a syscall: a result now, or, for one that waits,
  /// its waiting record now and its result when it completes.
  pub(super) fn settle(&self, trace: Trace, dispatched: Result<Dispatched, SyscallError>) -> Dispatched {
    let step = trace.step.clone().expect("settle is for journaled syscalls");
    match dispatched {
      Err(e) => Dispatched::Ready(self.complete(&trace, Err(e))),
      Ok(Dispatched::Ready(result)) => Dispatched::Ready(self.complete(&trace, result)),
      Ok(Dispatched::Waiting(future)) => {
        let (started, settled) = {
          let state = lock(&step.state);
          (state.started, state.settled)
        };
        if !started && !settled {
          if let Err(e) = self.journal_commit(&trace, JournalStatus::Waiting, None, None, None) {
            return Dispatched::Ready(Err(e));
          }
        }
        self.in_flight(&trace.pid, 1);
        let kernel = self.clone();
        Dispatched::Waiting(Box::pin(async move {
          let result = future.await;
          kernel.in_flight(&trace.pid, -1);
          kernel.complete(&trace, result)
        }))
      }
    }
  }

  fn in_flight(&self, pid: &str, delta: i32) {
    if let Some(p) = lock(&self.0.processes).get_mut(pid) {
      p.in_flight = p.in_flight.saturating_add_signed(delta);
    }
  }

  /// Settles a side effect found in doubt on resume: a human chooses to retry it, skip
  /// it (go on as if it happened) or abort the process.
  pub(super) fn in_doubt(&self, trace: Trace, call: Syscall, record: JournalRecord) -> Dispatched {
    let kernel = self.clone();
    lock(&trace.step.as_ref().expect("journaled").state).started = true;
    Dispatched::Waiting(Box::pin(async move {
      let what = format!("{} (syscall #{} of {})", call.name(), record.seq, trace.pid);
      let question = format!(
        "alos stopped while {what} was being done, so it may or may not have happened ({}). \
         retry: do it again; skip: go on as if it happened; abort: end the process",
        super::human::describe_call(&call)
      );
      let answer = kernel.ask_choice(&trace, question, &["retry", "skip", "abort"]).await;
      let (choice, by) = match answer {
        Ok((choice, by)) => (choice, by),
        Err(e) => (String::from("abort"), e.to_string()),
      };
      // The human's decision is theirs; the syscall's own record follows as usual.
      let decision = Trace { syscall: "human.resolve".into(), ..trace.clone() };
      let note = format!("{choice} {what}, in doubt after a crash");
      kernel.audit_as(Actor::Human, &decision, None, Verdict::None, Some(by), note)?;
      match choice.as_str() {
        "retry" => {
          // Decided: from here it is a new attempt, not yet begun (its own `started`
          // record comes right before the effect, as for any call).
          lock(&trace.step.as_ref().expect("journaled").state).started = false;
          kernel.journal_commit(&trace, JournalStatus::Waiting, Some(json!({ "retried": true })), None, None)?;
          match kernel.run_call(trace, call)? {
          Dispatched::Ready(result) => result,
          Dispatched::Waiting(future) => future.await,
          }
        }
        "skip" if returns_nothing(&call) => {
          kernel.audit_as(Actor::Process, &trace, None, Verdict::None, None, "skipped: done before the crash, as a human saw".into())?;
          Ok(Value::Null)
        }
        "skip" => Err(SyscallError::Cancelled(format!(
          "{what} was in doubt after a crash and a human chose to skip it; its result is unknown"
        ))),
        _ => {
          let reason = format!("aborted: {what} was in doubt after a crash");
          kernel.finish(&trace.pid, ExitStatus::Killed { reason: reason.clone() });
          Err(SyscallError::Cancelled(reason))
        }
      }
    }))
  }

  /// A question with fixed choices for a human, answered through the queue; returns the
  /// choice and who made it.
  async fn ask_choice(&self, trace: &Trace, question: String, choices: &[&str]) -> Result<(String, String), SyscallError> {
    let choices: Vec<String> = choices.iter().map(|c| c.to_string()).collect();
    let digest = super::audit::digest(question.as_bytes());
    let pending = self.open_request(trace, RequestKind::Question, None, question, digest, Some(choices), None, None)?;
    self.note_wait(trace, json!({ "request": pending.id }))?;
    let answered = self.await_answer(trace, &pending).await?;
    let by = answered.answered_by.clone().unwrap_or_else(|| "nobody".into());
    match (answered.status.as_str(), answered.answer) {
      ("answered", Some(choice)) => Ok((choice, format!("human {by}, request {}", answered.id))),
      (status, _) => Ok(("abort".into(), format!("request {} {status}", answered.id))),
    }
  }

  /// `libos.checkpoint(label)`: the journal up to this syscall, the process's own
  /// namespace of Object Memory and its runtime state, for `alos rollback`.
  pub(super) fn checkpoint(&self, pid: &str, label: Option<&str>, seq: u64) -> Result<Value, SyscallError> {
    if label.is_some_and(|l| l.len() > 200 || l.chars().any(char::is_control)) {
      return Err(SyscallError::InvalidArgument("checkpoint: a label is at most 200 printable characters".into()));
    }
    let runtime = lock(&self.0.processes).get(pid).map(runtime_of).unwrap_or(Value::Null);
    let ns = super::memory::own_namespace(pid);
    let id = self
      .0
      .db
      .checkpoint_create(pid, label, seq, &ns, &runtime, self.0.clock.now_ms())
      .map_err(|e| SyscallError::OperationFailed(format!("checkpoint: {e}")))?;
    Ok(json!(id))
  }

  /// A test hook: with `ALOS_TEST_CRASH_AT=N` (debug builds only), the host kills itself
  /// with SIGKILL at the N-th journal point, as a crash would.
  pub(super) fn crash_point(&self) {
    if !cfg!(debug_assertions) {
      return;
    }
    let Some(at) = self.0.crash_at else { return };
    let n = self.0.crash_points.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
    if n == at {
      eprintln!("alos: test hook: crashing at journal point {n}");
      let _ = rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
      std::process::abort();
    }
  }
}
