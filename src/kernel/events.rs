//! Topic events: `events.emit(topic, payload)` appends to the topic's stream (durable,
//! per process tree), and `events.next(topic)` waits for the next event that process has
//! not yet taken from it. Each process reads every topic from the beginning of its
//! tree's run, so an event emitted before anyone waits for it is not lost. A process
//! waiting for an event with no deadline hibernates until one comes; so does a long sleep.

use std::time::Duration;

use serde::Deserialize;
use serde_json::json;
use serde_json::Value;

use super::error::SyscallError;
use super::lock;
use super::process::State;
use super::process::WaitReason;
use super::dispatch::Trace;
use super::hibernate::Wake;
use super::hibernate::HIBERNATE_AFTER_MS;
use super::Kernel;

/// Largest payload an event may carry (serialized).
const MAX_PAYLOAD_BYTES: usize = 256 << 10;

#[derive(Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EmitArgs {
  pub topic: String,
  #[serde(default)]
  pub payload: Value,
}

#[derive(Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NextArgs {
  pub topic: String,
  #[serde(default)]
  pub timeout_ms: Option<u64>,
}

/// A topic name: non-empty, printable, no spaces.
pub fn validate_topic(topic: &str) -> Result<(), SyscallError> {
  if topic.is_empty() || topic.len() > 200 || topic.chars().any(|c| c.is_control() || c.is_whitespace()) {
    return Err(SyscallError::InvalidArgument(format!(
      "invalid topic {topic:?}: topics are 1-200 printable characters without spaces"
    )));
  }
  Ok(())
}

impl Kernel {
  pub(super) fn emit(&self, pid: &str, args: EmitArgs) -> Result<Value, SyscallError> {
    let size = args.payload.to_string().len();
    if size > MAX_PAYLOAD_BYTES {
      return Err(SyscallError::LimitExceeded(format!(
        "events.emit: the payload is {size} bytes, over the limit of {MAX_PAYLOAD_BYTES}"
      )));
    }
    let root = self.root_of(pid);
    let seq = self
      .0
      .db
      .event_append(&root, &args.topic, pid, &args.payload, self.0.clock.now_ms())
      .map_err(|e| SyscallError::OperationFailed(format!("events.emit: {e}")))?;
    self.0.changes.notify_waiters();
    Ok(json!({ "seq": seq }))
  }

  fn root_of(&self, pid: &str) -> String {
    lock(&self.0.processes).get(pid).and_then(|p| p.lineage.first().cloned()).unwrap_or_else(|| pid.to_string())
  }

  pub(super) async fn next_event(&self, pid: &str, args: NextArgs) -> Result<Value, SyscallError> {
    let root = self.root_of(pid);
    let wait = async {
      loop {
        let changed = self.0.changes.notified();
        tokio::pin!(changed);
        changed.as_mut().enable();
        let cursor = lock(&self.0.processes).get(pid).and_then(|p| p.cursors.get(&args.topic).copied()).unwrap_or(0);
        let found = self
          .0
          .db
          .event_after(&root, &args.topic, cursor)
          .map_err(|e| SyscallError::OperationFailed(format!("events.next: {e}")))?;
        if let Some((seq, from, payload, at_ms)) = found {
          if let Some(p) = lock(&self.0.processes).get_mut(pid) {
            p.cursors.insert(args.topic.clone(), seq);
          }
          return Ok(json!({ "topic": args.topic, "seq": seq, "from": from, "atMs": at_ms, "payload": payload }));
        }
        // Nothing yet: with no deadline, wait without an isolate.
        if args.timeout_ms.is_none() && self.try_hibernate(pid, Wake::Event { topic: args.topic.clone(), after: cursor }) {
          return std::future::pending().await;
        }
        // Another host may emit into this tree too, so look again now and then.
        let _ = tokio::time::timeout(Duration::from_millis(150), changed).await;
      }
    };
    self.while_waiting(pid, WaitReason::Event, async {
      match args.timeout_ms {
        None => wait.await,
        Some(ms) => tokio::time::timeout(Duration::from_millis(ms), wait).await.unwrap_or_else(|_| {
          Err(SyscallError::Timeout(format!("events.next: no event on \"{}\" within {ms} ms", args.topic)))
        }),
      }
    })
    .await
  }

  /// `sleep(ms)`: a resumed sleep ends when it would have; a long one hibernates.
  pub(super) async fn sleep(&self, trace: &Trace, ms: u64) -> Result<Value, SyscallError> {
    let now = self.0.clock.now_ms();
    let wake_at = trace.step.as_ref().and_then(|s| s.resumed_wake_at()).unwrap_or(now.saturating_add(ms));
    self.note_wait(trace, json!({ "wakeAtMs": wake_at }))?;
    let left = wake_at.saturating_sub(now);
    // On a virtual clock a sleep passes at once: nothing to hibernate for.
    let virtual_time = self.0.clock.is_virtual();
    if !virtual_time && left >= HIBERNATE_AFTER_MS && self.try_hibernate(&trace.pid, Wake::At { ms: wake_at }) {
      return std::future::pending().await;
    }
    self
      .while_waiting(&trace.pid, WaitReason::Sleep, async {
        self.0.clock.sleep_until(wake_at).await;
        Ok(Value::Null)
      })
      .await
  }

  /// Runs `work` with the process shown as waiting for `reason` (when it was running).
  async fn while_waiting<T>(&self, pid: &str, reason: WaitReason, work: impl std::future::Future<Output = T>) -> T {
    let moved = {
      let mut processes = lock(&self.0.processes);
      processes.get_mut(pid).is_some_and(|p| p.state() == State::Running && p.transition(State::Waiting(reason)).is_ok())
    };
    let result = work.await;
    if moved {
      if let Some(process) = lock(&self.0.processes).get_mut(pid) {
        if process.state() == State::Waiting(reason) {
          let _ = process.transition(State::Running);
        }
      }
    }
    result
  }
}
