//! Topic events: `events.emit(topic, payload)` appends to the topic's stream, and
//! `events.next(topic)` waits for the next event that process has not yet taken from
//! it. Each process reads every topic from the beginning of the run, so an event
//! emitted before anyone waits for it is not lost.

use std::collections::HashMap;
use std::time::Duration;

use serde::Deserialize;
use serde_json::json;
use serde_json::Value;

use super::error::SyscallError;
use super::lock;
use super::process::State;
use super::process::WaitReason;
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

/// The streams of every topic, and each process's position in them.
#[derive(Default)]
pub struct Topics {
  streams: HashMap<String, Vec<Value>>,
  cursors: HashMap<(String, String), usize>,
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
    let event = json!({ "topic": args.topic, "from": pid, "atMs": self.0.clock.now_ms(), "payload": args.payload });
    let seq = {
      let mut topics = lock(&self.0.topics);
      let stream = topics.streams.entry(args.topic).or_default();
      stream.push(event);
      stream.len()
    };
    self.0.changes.notify_waiters();
    Ok(json!({ "seq": seq }))
  }

  pub(super) async fn next_event(&self, pid: &str, args: NextArgs) -> Result<Value, SyscallError> {
    let key = (pid.to_string(), args.topic.clone());
    let wait = async {
      loop {
        let changed = self.0.changes.notified();
        tokio::pin!(changed);
        changed.as_mut().enable();
        {
          let mut topics = lock(&self.0.topics);
          let cursor = topics.cursors.get(&key).copied().unwrap_or(0);
          let event = topics.streams.get(&args.topic).and_then(|s| s.get(cursor)).cloned();
          if let Some(event) = event {
            topics.cursors.insert(key.clone(), cursor + 1);
            return Ok(event);
          }
        }
        changed.await;
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

  pub(super) async fn sleep(&self, pid: &str, ms: u64) -> Result<Value, SyscallError> {
    self
      .while_waiting(pid, WaitReason::Sleep, async {
        tokio::time::sleep(Duration::from_millis(ms)).await;
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
