//! Object Memory syscalls (`libos.mem.*`, DESIGN §4): typed JSON objects in namespaces,
//! with versions for compare-and-set.
//!
//! A process's own namespace, `proc/<pid>`, needs no capability; any other needs
//! `mem.read:NS` (get, list) or `mem.write:NS` (put, delete). Every argument is checked
//! when the call is resolved, before it is decided, so an operation that cannot succeed
//! is never put to a human. The rows live in `store::memory`.

use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use super::audit::Actor;
use super::audit::Entry;
use super::audit::Verdict;
use super::capability::Kind;
use super::capability::Request;
use super::error::SyscallError;
use super::Kernel;
use crate::store::memory::MemConflict;
use crate::store::memory::MemWrite;
use crate::store::Db;
use crate::store::StoreError;

/// Largest value, as JSON text.
const MAX_VALUE_BYTES: usize = 1 << 20;
const MAX_KEY_BYTES: usize = 512;
const MAX_NS_BYTES: usize = 200;
const MAX_TYPE_CHARS: usize = 128;
/// Most objects one `mem.list` returns; narrow with a prefix for more.
const LIST_LIMIT: usize = 1000;
/// A listed object carries its value only up to this size (JSON text); `get` gives any.
pub const LIST_VALUE_BYTES: usize = 16 << 10;

/// Arguments of `mem.put`.
#[derive(Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PutArgs {
  pub key: String,
  pub value: Value,
  /// The object's type name; `"json"` if not given.
  #[serde(default, rename = "type")]
  pub type_name: Option<String>,
  #[serde(default)]
  pub ns: Option<String>,
  #[serde(default)]
  pub if_version: Option<u64>,
}

/// Arguments of `mem.get`.
#[derive(Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GetArgs {
  pub key: String,
  #[serde(default)]
  pub ns: Option<String>,
}

/// Arguments of `mem.list`.
#[derive(Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ListArgs {
  #[serde(default)]
  pub prefix: Option<String>,
  #[serde(default)]
  pub ns: Option<String>,
}

/// Arguments of `mem.delete`.
#[derive(Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DeleteArgs {
  pub key: String,
  #[serde(default)]
  pub ns: Option<String>,
  #[serde(default)]
  pub if_version: Option<u64>,
}

/// The namespace every process may use without a capability.
pub(super) fn own_namespace(pid: &str) -> String {
  format!("proc/{pid}")
}

/// Shows at most the start of a (possibly huge, possibly hostile) string in a message,
/// escaped.
fn shown(text: &str) -> String {
  let mut start: String = text.chars().take(40).collect();
  if start.len() < text.len() {
    start.push_str("...");
  }
  format!("{start:?}")
}

/// A namespace: `/`-separated segments of `a-z 0-9 . _ -` (no `.` or `..` segment), at
/// most 200 bytes. Capability globs name namespaces segment by segment, so nothing
/// else may appear in one.
fn validate_ns(syscall: &str, ns: &str) -> Result<(), SyscallError> {
  let segment_ok = |s: &str| {
    !s.is_empty() && s != "." && s != ".." && s.bytes().all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'-'))
  };
  if ns.len() > MAX_NS_BYTES || !ns.split('/').all(segment_ok) {
    return Err(SyscallError::InvalidArgument(format!(
      "{syscall}: invalid ns {}: a namespace is up to {MAX_NS_BYTES} bytes of segments made of a-z, 0-9, '.', '_' \
       and '-', joined by '/' (such as \"team/notes\")",
      shown(ns)
    )));
  }
  Ok(())
}

/// A key: 1 to 512 bytes, no control characters.
fn validate_key(syscall: &str, key: &str) -> Result<(), SyscallError> {
  if key.is_empty() || key.len() > MAX_KEY_BYTES || key.chars().any(char::is_control) {
    return Err(SyscallError::InvalidArgument(format!(
      "{syscall}: invalid key {} ({} bytes): a key is 1 to {MAX_KEY_BYTES} bytes without control characters",
      shown(key),
      key.len()
    )));
  }
  Ok(())
}

fn validate_prefix(syscall: &str, prefix: &str) -> Result<(), SyscallError> {
  if prefix.len() > MAX_KEY_BYTES || prefix.chars().any(char::is_control) {
    return Err(SyscallError::InvalidArgument(format!(
      "{syscall}: invalid prefix {}: a prefix is at most {MAX_KEY_BYTES} bytes without control characters",
      shown(prefix)
    )));
  }
  Ok(())
}

/// The type name as stored: the given one, checked, or `"json"`.
fn type_name(syscall: &str, type_name: Option<&str>) -> Result<String, SyscallError> {
  let name = type_name.unwrap_or("json");
  if name.is_empty() || name.chars().count() > MAX_TYPE_CHARS || name.chars().any(char::is_control) {
    return Err(SyscallError::InvalidArgument(format!(
      "{syscall}: invalid type {}: a type name is 1 to {MAX_TYPE_CHARS} characters without control characters",
      shown(name)
    )));
  }
  Ok(name.to_string())
}

fn validate_value(syscall: &str, value: &Value) -> Result<(), SyscallError> {
  let size = value.to_string().len();
  if size > MAX_VALUE_BYTES {
    return Err(SyscallError::LimitExceeded(format!(
      "{syscall}: the value is {size} bytes of JSON, over the limit of {MAX_VALUE_BYTES} bytes; store large data in files"
    )));
  }
  Ok(())
}

/// The namespace a call addresses (the caller's own if none is given), checked.
fn namespace(syscall: &str, pid: &str, ns: Option<&str>) -> Result<String, SyscallError> {
  match ns {
    None => Ok(own_namespace(pid)),
    Some(ns) => validate_ns(syscall, ns).map(|()| ns.to_string()),
  }
}

/// The capability needed to use `ns`: none for the caller's own namespace. (That is also
/// why a worker child's `mem.write` deny rule leaves its own namespace usable.)
fn request(pid: &str, kind: Kind, ns: &str) -> Option<Request> {
  (ns != own_namespace(pid)).then(|| Request::new(kind, ns))
}

impl PutArgs {
  /// Checks every argument; returns the namespace written.
  fn checked(&self, pid: &str) -> Result<String, SyscallError> {
    let ns = namespace("mem.put", pid, self.ns.as_deref())?;
    validate_key("mem.put", &self.key)?;
    type_name("mem.put", self.type_name.as_deref())?;
    validate_value("mem.put", &self.value)?;
    Ok(ns)
  }

  /// What `dispatch` must decide before this call runs.
  pub(super) fn access(&self, pid: &str) -> Result<Option<Request>, SyscallError> {
    Ok(request(pid, Kind::MemWrite, &self.checked(pid)?))
  }

  /// The store write this call of process `pid` makes at `now_ms`, made by `creator`
  /// (the process, or a human): what a journal commit carries. See [`conflict_error`].
  pub(super) fn write(&self, pid: &str, creator: &str, now_ms: u64) -> Result<MemWrite, SyscallError> {
    Ok(MemWrite::Put {
      ns: self.checked(pid)?,
      key: self.key.clone(),
      type_name: type_name("mem.put", self.type_name.as_deref())?,
      value: self.value.clone(),
      if_version: self.if_version,
      creator: creator.to_string(),
      now_ms,
    })
  }
}

impl GetArgs {
  fn checked(&self, pid: &str) -> Result<String, SyscallError> {
    let ns = namespace("mem.get", pid, self.ns.as_deref())?;
    validate_key("mem.get", &self.key)?;
    Ok(ns)
  }

  pub(super) fn access(&self, pid: &str) -> Result<Option<Request>, SyscallError> {
    Ok(request(pid, Kind::MemRead, &self.checked(pid)?))
  }
}

impl ListArgs {
  fn checked(&self, pid: &str) -> Result<String, SyscallError> {
    let ns = namespace("mem.list", pid, self.ns.as_deref())?;
    validate_prefix("mem.list", self.prefix.as_deref().unwrap_or(""))?;
    Ok(ns)
  }

  pub(super) fn access(&self, pid: &str) -> Result<Option<Request>, SyscallError> {
    Ok(request(pid, Kind::MemRead, &self.checked(pid)?))
  }
}

impl DeleteArgs {
  fn checked(&self, pid: &str) -> Result<String, SyscallError> {
    let ns = namespace("mem.delete", pid, self.ns.as_deref())?;
    validate_key("mem.delete", &self.key)?;
    Ok(ns)
  }

  pub(super) fn access(&self, pid: &str) -> Result<Option<Request>, SyscallError> {
    Ok(request(pid, Kind::MemWrite, &self.checked(pid)?))
  }

  /// The store write this call makes for process `pid`.
  pub(super) fn write(&self, pid: &str) -> Result<MemWrite, SyscallError> {
    Ok(MemWrite::Delete { ns: self.checked(pid)?, key: self.key.clone(), if_version: self.if_version })
  }
}

fn store_error(syscall: &str, e: StoreError) -> SyscallError {
  SyscallError::OperationFailed(format!("{syscall}: {e}"))
}

/// A compare-and-set of `write` that did not match, as the caller sees it.
pub(super) fn conflict_error(write: &MemWrite, c: MemConflict) -> SyscallError {
  let (syscall, ns, key) = match write {
    MemWrite::Put { ns, key, .. } => ("mem.put", ns, key),
    MemWrite::Delete { ns, key, .. } => ("mem.delete", ns, key),
  };
  SyscallError::Conflict(format!("{syscall} {} in {ns}: {c}; nothing was changed", shown(key)))
}

impl Kernel {
  /// The object, or `null` if there is none.
  pub(super) fn mem_get(&self, pid: &str, args: &GetArgs) -> Result<Value, SyscallError> {
    let ns = args.checked(pid)?;
    let object = self.0.db.mem_get(&ns, &args.key).map_err(|e| store_error("mem.get", e))?;
    Ok(serde_json::to_value(object).unwrap_or(Value::Null))
  }

  pub(super) fn mem_list(&self, pid: &str, args: &ListArgs) -> Result<Value, SyscallError> {
    let ns = args.checked(pid)?;
    let prefix = args.prefix.as_deref().unwrap_or("");
    let entries = self.0.db.mem_list(Some(&ns), prefix, LIST_LIMIT, LIST_VALUE_BYTES).map_err(|e| store_error("mem.list", e))?;
    Ok(serde_json::to_value(entries).unwrap_or(Value::Null))
  }
}

/// `alos mem put`: a human's write from a terminal, outside any running kernel. It is
/// checked like a process's (`ns` is required), made by `human:<by>`, and recorded in
/// the audit log as the human's act. Returns `{version}`.
pub fn put_as_human(state_dir: &Path, ns: &str, args: &PutArgs, by: &str, now_ms: u64) -> Result<Value, SyscallError> {
  // Checked as a process's put into `ns` would be (`ns` given, so no pid is needed).
  let args = PutArgs { ns: Some(ns.to_string()), ..args.clone() };
  let write = args.write("", &format!("human:{by}"), now_ms)?;
  let db = Db::open(state_dir).map_err(|e| store_error("mem.put", e))?;
  let written = db.mem_write(&write).map_err(|e| store_error("mem.put", e))?.map_err(|c| conflict_error(&write, c))?;
  let version = written.get("version").cloned().unwrap_or(Value::Null);
  let entry = Entry {
    time: crate::provider::clock::rfc3339(now_ms),
    // No process made this write.
    pid: "-".into(),
    lineage: Vec::new(),
    actor: Actor::Human,
    syscall: "mem.put".into(),
    capability: Some(format!("{}:{ns}", Kind::MemWrite)),
    resource: Some(ns.to_string()),
    decision: Verdict::Allow,
    decided_by: Some(by.to_string()),
    args_digest: super::audit::digest(serde_json::json!({ "ns": ns, "key": args.key, "value": args.value }).to_string().as_bytes()),
    outcome: format!("ok: {} is at version {version}", shown(&args.key)),
    tool: None,
  };
  super::audit::append_to(state_dir, entry)
    .map_err(|e| SyscallError::OperationFailed(format!("the value was written, but {e}")))?;
  Ok(written)
}

#[cfg(test)]
mod tests {

  use serde_json::json;

  use super::*;
  use crate::kernel::capability::Capability;
  use crate::kernel::dispatch::Dispatched;
  use crate::kernel::grant::GrantSource;
  use crate::kernel::policy::Effect;
  use crate::kernel::policy::Policy;
  use crate::kernel::policy::Rule;
  use crate::kernel::policy::RuleSource;
  use crate::kernel::process::ProcessLimits;
  use crate::kernel::KernelConfig;
  use crate::kernel::ProcessSpec;

  #[test]
  fn namespaces_keys_and_types_are_checked() {
    for ok in ["proc/p1a2b3c4d", "team", "team/notes", "a.b_c-d/0", &"a".repeat(200)] {
      validate_ns("mem.put", ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
    }
    for bad in ["", "/team", "team/", "team//x", "Team", "team/../x", "./x", "a b", "team/*", "x\u{1b}", &"a".repeat(201)] {
      let e = validate_ns("mem.put", bad).unwrap_err().to_string();
      assert!(e.starts_with("mem.put: invalid ns"), "{bad:?}: {e}");
    }
    for ok in ["k", "a/b c:d", "ключ", &"k".repeat(512)] {
      validate_key("mem.get", ok).unwrap();
    }
    for bad in ["", "a\nb", "\u{7f}", "\u{9b}x", &"k".repeat(513)] {
      let e = validate_key("mem.get", bad).unwrap_err().to_string();
      assert!(e.starts_with("mem.get: invalid key"), "{bad:?}: {e}");
    }
    assert!(validate_key("mem.get", &"k".repeat(100_000)).unwrap_err().to_string().len() < 300, "long keys are not echoed");
    assert_eq!(type_name("mem.put", None).unwrap(), "json");
    assert_eq!(type_name("mem.put", Some("note/v2")).unwrap(), "note/v2");
    assert!(type_name("mem.put", Some("")).is_err());
    assert!(type_name("mem.put", Some(&"t".repeat(129))).is_err());
  }

  #[test]
  fn values_over_the_limit_are_refused_with_their_size() {
    validate_value("mem.put", &json!("x".repeat(MAX_VALUE_BYTES - 2))).unwrap();
    let e = validate_value("mem.put", &json!("x".repeat(MAX_VALUE_BYTES))).unwrap_err();
    assert!(matches!(e, SyscallError::LimitExceeded(_)));
    assert!(e.to_string().contains(&format!("{} bytes", MAX_VALUE_BYTES + 2)), "{e}");
    assert!(e.to_string().contains(&format!("limit of {MAX_VALUE_BYTES}")), "{e}");
  }

  #[test]
  fn only_other_namespaces_need_a_capability() {
    let put = |ns: Option<&str>| PutArgs { key: "k".into(), value: json!(1), type_name: None, ns: ns.map(String::from), if_version: None };
    assert_eq!(put(None).access("p1").unwrap(), None);
    assert_eq!(put(Some("proc/p1")).access("p1").unwrap(), None);
    assert_eq!(put(Some("proc/p2")).access("p1").unwrap(), Some(Request::new(Kind::MemWrite, "proc/p2")));
    assert_eq!(put(Some("team/x")).access("p1").unwrap(), Some(Request::new(Kind::MemWrite, "team/x")));
    let get = GetArgs { key: "k".into(), ns: Some("team/x".into()) };
    assert_eq!(get.access("p1").unwrap(), Some(Request::new(Kind::MemRead, "team/x")));
    let list = ListArgs { prefix: None, ns: Some("team".into()) };
    assert_eq!(list.access("p1").unwrap(), Some(Request::new(Kind::MemRead, "team")));
    let delete = DeleteArgs { key: "k".into(), ns: Some("team".into()), if_version: None };
    assert_eq!(delete.access("p1").unwrap(), Some(Request::new(Kind::MemWrite, "team")));
    // A namespace a capability could not name is refused before anything is decided.
    assert!(matches!(put(Some("team/**")).access("p1"), Err(SyscallError::InvalidArgument(_))));
    let bad_key = GetArgs { key: String::new(), ns: None };
    assert!(bad_key.access("p1").unwrap_err().to_string().contains("invalid key"));
  }

  /// A kernel with one root process holding `caps`, under `rules`.
  fn kernel_with(dir: &Path, caps: &[&str], rules: &[(Effect, &str)]) -> (Kernel, String) {
    let mut policy = Policy::new();
    for (effect, cap) in rules {
      policy.push(Rule::new(*effect, cap.parse().unwrap(), RuleSource::Cli));
    }
    let kernel = Kernel::open(KernelConfig { policy, ..KernelConfig::for_tests(dir) }).unwrap();
    let grants = caps.iter().map(|c| (c.parse::<Capability>().unwrap(), GrantSource::Cli)).collect();
    let pid = kernel
      .spawn_root(ProcessSpec {
        image: "test".into(),
        entry: dir.join("ws/main.ts"),
        args: Vec::new(),
        goal: None,
        grants,
        limits: ProcessLimits::default(),
        tools: None,
      })
      .unwrap();
    (kernel, pid)
  }

  fn call(kernel: &Kernel, pid: &str, name: &str, args: Value) -> Result<Value, SyscallError> {
    match kernel.dispatch(pid, name, args) {
      Dispatched::Ready(result) => result,
      Dispatched::Waiting(_) => panic!("{name} should not wait"),
    }
  }

  #[test]
  fn the_kernel_decides_by_namespace() {
    let dir = tempfile::tempdir().unwrap();
    let (kernel, pid) = kernel_with(dir.path(), &["mem.write:team/*", "mem.read:shared/**"], &[(Effect::Deny, "mem.write:team/secret")]);
    // Its own namespace: no capability needed.
    assert_eq!(call(&kernel, &pid, "mem.put", json!({"key": "k", "value": {"a": 1}})).unwrap(), json!({"version": 1}));
    let own = call(&kernel, &pid, "mem.get", json!({"key": "k"})).unwrap();
    assert_eq!((own["ns"].clone(), own["value"].clone(), own["creator"].clone()), (json!(format!("proc/{pid}")), json!({"a": 1}), json!(pid)));
    assert_eq!(call(&kernel, &pid, "mem.get", json!({"key": "none"})).unwrap(), Value::Null);
    // Granted write, but no read, on team/x.
    assert_eq!(call(&kernel, &pid, "mem.put", json!({"key": "k", "value": 1, "ns": "team/x"})).unwrap(), json!({"version": 1}));
    let denied = call(&kernel, &pid, "mem.get", json!({"key": "k", "ns": "team/x"})).unwrap_err();
    assert!(denied.to_string().contains("--allow mem.read:team/x"), "{denied}");
    // A deny rule wins over the grant.
    let denied = call(&kernel, &pid, "mem.put", json!({"key": "k", "value": 1, "ns": "team/secret"})).unwrap_err();
    assert!(matches!(denied, SyscallError::PermissionDenied { .. }), "{denied}");
    // Another process's namespace is not this one's.
    let denied = call(&kernel, &pid, "mem.list", json!({"ns": "proc/p00000000"})).unwrap_err();
    assert!(denied.to_string().contains("mem.read:proc/p00000000"), "{denied}");
    // Compare-and-set.
    let stale = call(&kernel, &pid, "mem.put", json!({"key": "k", "value": 2, "ifVersion": 0})).unwrap_err();
    assert_eq!(stale.class(), alos_ops::ErrorClass::Conflict);
    assert!(stale.to_string().contains("expected no object, found version 1"), "{stale}");
    assert_eq!(call(&kernel, &pid, "mem.delete", json!({"key": "k", "ifVersion": 1})).unwrap(), json!({"deleted": true}));
    // Bad arguments.
    let unknown = call(&kernel, &pid, "mem.put", json!({"key": "k", "value": 1, "version": 3})).unwrap_err();
    assert!(unknown.to_string().contains("version"), "{unknown}");
    let wrong = call(&kernel, &pid, "mem.get", json!({"key": 5})).unwrap_err();
    assert!(matches!(wrong, SyscallError::InvalidArgument(_)), "{wrong}");
  }

  #[test]
  fn a_human_put_is_checked_and_attributed() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path();
    let args = |key: &str, if_version| PutArgs { key: key.into(), value: json!("v"), type_name: None, ns: None, if_version };
    assert_eq!(put_as_human(state, "team/x", &args("k", None), "alice", 5).unwrap(), json!({"version": 1}));
    let e = put_as_human(state, "team/x", &args("k", Some(0)), "alice", 6).unwrap_err();
    assert!(matches!(e, SyscallError::Conflict(_)), "{e}");
    assert!(matches!(put_as_human(state, "Team", &args("k", None), "alice", 6), Err(SyscallError::InvalidArgument(_))));
    let db = Db::open(state).unwrap();
    assert_eq!(db.mem_get("team/x", "k").unwrap().unwrap().creator, "human:alice");
  }
}
