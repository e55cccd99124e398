//! `alos-ops`: the deno_core extension that is the *only* authority a script has.
//!
//! The op surface is small and fixed, like a syscall instruction: a sync and an async
//! `syscall(name, args)`, a way to cancel an in-flight async one, and nothing else of
//! our own. Each op decodes its arguments and forwards them, with the calling process's
//! id, to the [`Broker`] held in this runtime's `OpState`. No op touches the host: no
//! files, processes, network, environment or clock (a test scans this crate for that).
//! New tools never need new ops; they are just more syscall names the broker knows.

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;

use deno_core::op2;
use deno_core::CancelFuture;
use deno_core::CancelHandle;
use deno_core::OpState;
use serde::Deserialize;
use serde::Serialize;
use serde_json::Map;
use serde_json::Value;

/// The error classes a syscall can fail with; the bootstrap maps each one onto a class
/// of `libos.errors` (DESIGN §5).
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
  PermissionDenied,
  InvalidArgument,
  NotFound,
  AlreadyExists,
  Conflict,
  LimitExceeded,
  Cancelled,
  Timeout,
  /// The host failed to carry out an allowed operation (disk full, I/O error, ...).
  OperationFailed,
}

/// A failed syscall as JS sees it: a class, a message that says what was attempted and
/// what would allow it, and structured details (e.g. `capability`, `syscall`, `reason`).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Fault {
  pub class: ErrorClass,
  pub message: String,
  #[serde(default, skip_serializing_if = "Map::is_empty")]
  pub details: Map<String, Value>,
}

impl Fault {
  pub fn new(class: ErrorClass, message: impl Into<String>) -> Self {
    Fault { class, message: message.into(), details: Map::new() }
  }

  pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
    self.details.insert(key.to_string(), value.into());
    self
  }
}

impl std::fmt::Display for Fault {
  fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
    write!(f, "{:?}: {}", self.class, self.message)
  }
}

pub type Reply = Result<Value, Fault>;
pub type PendingReply = Pin<Box<dyn Future<Output = Reply>>>;

/// The syscall broker: where every op ends up. The kernel implements it for real; a
/// `MockBroker` implements it for tool tests.
pub trait Broker {
  /// A syscall that completes without waiting (`now`, `random`, `cwd`, `exit`, ...).
  fn syscall(&self, pid: &str, name: &str, args: Value) -> Reply;
  /// A syscall that may wait (files, humans, children, timers). The future runs on the
  /// calling isolate's thread.
  fn syscall_async(&self, pid: &str, name: &str, args: Value) -> PendingReply;
}

/// Who is calling, held per runtime in `OpState` (never a static), so every runtime can
/// have its own process identity and broker.
pub struct Caller {
  pub pid: String,
  pub broker: Arc<dyn Broker>,
}

/// Cancel handles of this runtime's in-flight async syscalls, by the ticket JS chose.
#[derive(Default)]
struct InFlight(HashMap<u32, Rc<CancelHandle>>);

/// Replies cross into JS as `{ok: value}` or `{err: fault}`; the bootstrap turns the
/// latter into an instance of the matching `libos.errors` class.
fn envelope(reply: Reply) -> serde_json::Value {
  let mut out = Map::new();
  match reply {
    Ok(value) => out.insert("ok".into(), value),
    Err(fault) => out.insert(
      "err".into(),
      serde_json::to_value(fault).unwrap_or_else(|e| Value::String(e.to_string())),
    ),
  };
  Value::Object(out)
}

fn caller(state: &OpState) -> (String, Arc<dyn Broker>) {
  let caller = state.borrow::<Caller>();
  (caller.pid.clone(), caller.broker.clone())
}

/// JavaScript has one number type, and serde_v8 hands every number above 2^31 over as a
/// float; a whole number (within 2^53, where floats are exact) is made an integer again,
/// so `1795486166255` does not come back as `1795486166255.0`.
pub fn whole_numbers(value: Value) -> Value {
  const EXACT: f64 = 9_007_199_254_740_992.0;
  match value {
    Value::Number(n) if !n.is_i64() && !n.is_u64() => match n.as_f64() {
      Some(f) if f.fract() == 0.0 && f.abs() <= EXACT => Value::from(f as i64),
      _ => Value::Number(n),
    },
    Value::Array(items) => Value::Array(items.into_iter().map(whole_numbers).collect()),
    Value::Object(map) => Value::Object(map.into_iter().map(|(k, v)| (k, whole_numbers(v))).collect()),
    other => other,
  }
}

#[op2]
#[serde]
fn op_syscall(state: &mut OpState, #[string] name: String, #[serde] args: serde_json::Value) -> serde_json::Value {
  let (pid, broker) = caller(state);
  envelope(broker.syscall(&pid, &name, whole_numbers(args)))
}

#[op2]
#[serde]
async fn op_syscall_async(
  state: Rc<RefCell<OpState>>,
  #[string] name: String,
  #[serde] args: serde_json::Value,
  #[smi] ticket: u32,
) -> serde_json::Value {
  let (pending, cancel) = {
    let mut state = state.borrow_mut();
    let (pid, broker) = caller(&state);
    let cancel = Rc::new(CancelHandle::new());
    state.borrow_mut::<InFlight>().0.insert(ticket, cancel.clone());
    (broker.syscall_async(&pid, &name, whole_numbers(args)), cancel)
  };
  let reply = match pending.or_cancel(cancel).await {
    Ok(reply) => reply,
    Err(_) => Err(Fault::new(ErrorClass::Cancelled, format!("{name} was cancelled"))),
  };
  state.borrow_mut().borrow_mut::<InFlight>().0.remove(&ticket);
  envelope(reply)
}

/// Cancels the in-flight async syscall with this ticket; its promise rejects with
/// `Cancelled`. Unknown tickets (already settled) are ignored.
#[op2(fast)]
fn op_syscall_cancel(state: &mut OpState, #[smi] ticket: u32) {
  if let Some(cancel) = state.borrow_mut::<InFlight>().0.remove(&ticket) {
    cancel.cancel();
  }
}

/// The names of the ops this extension adds, in the order they are declared.
pub const OP_NAMES: [&str; 3] = ["op_syscall", "op_syscall_async", "op_syscall_cancel"];

deno_core::extension!(
  alos_ops,
  ops = [op_syscall, op_syscall_async, op_syscall_cancel],
  options = { caller: Caller },
  state = |state, options| {
    state.put(options.caller);
    state.put(InFlight::default());
  },
);

/// The bootstrap module: builds the `libos` global from the ops and then removes every
/// path back to them (`Deno`, `Deno.core`, `__bootstrap`).
pub const BOOTSTRAP_SPECIFIER: &str = "ext:alos_ops/bootstrap.js";

/// The extension, with the bootstrap embedded in the binary (deno_core's `esm = [...]`
/// would read it from disk at run time when there is no snapshot).
pub fn extension(caller: Caller) -> deno_core::Extension {
  const ESM: &[deno_core::ExtensionFileSource] = &[deno_core::ExtensionFileSource::new(
    BOOTSTRAP_SPECIFIER,
    deno_core::ascii_str_include!("../../js/bootstrap.js"),
  )];
  let mut ext = alos_ops::init(caller);
  ext.esm_files = std::borrow::Cow::Borrowed(ESM);
  ext.esm_entry_point = Some(BOOTSTRAP_SPECIFIER);
  ext
}
