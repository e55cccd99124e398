//! The `Syscall` enum: every operation a process can ask of the kernel, decoded from the
//! op's `(name, args)` pair. Syscall names are the JS API's names (`fs.readText`, ...),
//! so the audit log reads like the script. Unknown names, unknown fields and wrong
//! types are `InvalidArgument` errors that name the syscall and the field.

use serde::Deserialize;
use serde_json::Value;

use super::error::SyscallError;
use super::events::EmitArgs;
use super::events::NextArgs;
use super::fetch::FetchArgs;
use super::human::AskArgs;
use super::human::CapsRequestArgs;
use super::shell::ShellArgs;
use super::lifecycle::Signal;
use super::lifecycle::SpawnArgs;
use super::memory::DeleteArgs as MemDeleteArgs;
use super::memory::GetArgs as MemGetArgs;
use super::memory::ListArgs as MemListArgs;
use super::memory::PutArgs as MemPutArgs;
use super::model::CompleteArgs;
use super::tools::ProposeArgs;
use super::tools::Scope;

#[derive(Deserialize, Debug, Clone, PartialEq)]
#[serde(tag = "call", content = "args", deny_unknown_fields)]
pub enum Syscall {
  #[serde(rename = "proc.self")]
  ProcSelf,
  #[serde(rename = "exit")]
  Exit {
    #[serde(default)]
    result: Value,
  },
  #[serde(rename = "now")]
  Now,
  #[serde(rename = "random")]
  Random,
  #[serde(rename = "fs.readText")]
  ReadText { path: String },
  #[serde(rename = "fs.readBytes")]
  ReadBytes { path: String },
  #[serde(rename = "fs.writeText")]
  WriteText {
    path: String,
    text: String,
    #[serde(default)]
    append: bool,
  },
  #[serde(rename = "fs.writeBytes")]
  WriteBytes {
    path: String,
    /// Base64, as the bootstrap sends bytes.
    data: String,
    #[serde(default)]
    append: bool,
  },
  #[serde(rename = "fs.list")]
  List { path: String },
  #[serde(rename = "fs.stat")]
  Stat { path: String },
  #[serde(rename = "fs.mkdir")]
  Mkdir {
    path: String,
    #[serde(default)]
    recursive: bool,
  },
  #[serde(rename = "fs.remove")]
  Remove {
    path: String,
    #[serde(default)]
    recursive: bool,
  },
  #[serde(rename = "fs.cwd")]
  Cwd,
  #[serde(rename = "fs.chdir")]
  Chdir { path: String },
  #[serde(rename = "proc.spawn")]
  ProcSpawn(SpawnArgs),
  #[serde(rename = "proc.wait")]
  ProcWait {
    pid: String,
    #[serde(rename = "timeoutMs")]
    timeout_ms: Option<u64>,
  },
  #[serde(rename = "proc.signal")]
  ProcSignal { pid: String, signal: Signal },
  #[serde(rename = "proc.list")]
  ProcList,
  #[serde(rename = "caps.list")]
  CapsList,
  #[serde(rename = "caps.drop")]
  CapsDrop { capability: String },
  #[serde(rename = "caps.request")]
  CapsRequest(CapsRequestArgs),
  #[serde(rename = "net.fetch")]
  NetFetch(FetchArgs),
  #[serde(rename = "human.ask")]
  HumanAsk(AskArgs),
  #[serde(rename = "shell.exec")]
  ShellExec(ShellArgs),
  #[serde(rename = "sleep")]
  Sleep { ms: u64 },
  #[serde(rename = "events.emit")]
  Emit(EmitArgs),
  #[serde(rename = "events.next")]
  Next(NextArgs),
  #[serde(rename = "mem.put")]
  MemPut(MemPutArgs),
  #[serde(rename = "mem.get")]
  MemGet(MemGetArgs),
  #[serde(rename = "mem.list")]
  MemList(MemListArgs),
  #[serde(rename = "mem.delete")]
  MemDelete(MemDeleteArgs),
  #[serde(rename = "checkpoint")]
  Checkpoint {
    #[serde(default)]
    label: Option<String>,
  },
  #[serde(rename = "tools.list")]
  ToolsList,
  #[serde(rename = "tools.call")]
  ToolsCall {
    name: String,
    #[serde(default)]
    args: Value,
  },
  #[serde(rename = "tools.propose")]
  ToolsPropose(ProposeArgs),
  #[serde(rename = "tools.register")]
  ToolsRegister {
    #[serde(rename = "candidateId")]
    candidate: String,
    #[serde(default)]
    scope: Scope,
  },
  #[serde(rename = "tools.revoke")]
  ToolsRevoke { name: String },
  #[serde(rename = "model.complete")]
  ModelComplete(CompleteArgs),
}

/// Every syscall name, for error messages.
pub const NAMES: &[&str] = &[
  "proc.self", "exit", "now", "random", "fs.readText", "fs.readBytes", "fs.writeText", "fs.writeBytes",
  "fs.list", "fs.stat", "fs.mkdir", "fs.remove", "fs.cwd", "fs.chdir", "proc.spawn", "proc.wait", "proc.signal",
  "proc.list", "caps.list", "caps.drop", "net.fetch", "human.ask", "shell.exec", "sleep",
  "events.emit", "events.next", "caps.request", "mem.put", "mem.get", "mem.list", "mem.delete", "checkpoint",
  "tools.list", "tools.call", "tools.propose", "tools.register", "tools.revoke", "model.complete",
];

impl Syscall {
  pub fn decode(name: &str, args: Value) -> Result<Syscall, SyscallError> {
    if !NAMES.contains(&name) {
      return Err(SyscallError::InvalidArgument(format!(
        "unknown syscall \"{name}\" (known: {})",
        NAMES.join(", ")
      )));
    }
    // Syscalls without arguments accept `null` or `{}`, and so do those whose arguments
    // are all optional (`mem.list`).
    let args = match args {
      Value::Object(map) if map.is_empty() => Value::Null,
      other => other,
    };
    let decoded = match args {
      Value::Null => serde_json::from_value(serde_json::json!({ "call": name }))
        .or_else(|_| serde_json::from_value(serde_json::json!({ "call": name, "args": {} }))),
      args => serde_json::from_value(serde_json::json!({ "call": name, "args": args })),
    };
    decoded.map_err(|e| SyscallError::InvalidArgument(format!("{name}: invalid arguments: {e}")))
  }

  /// Whether the audit log records this syscall. Audit is for decisions and side
  /// effects; reading the clock, the cwd or one's own identity is neither.
  pub fn is_audited(&self) -> bool {
    !matches!(
      self,
      Syscall::ProcSelf
        | Syscall::Now
        | Syscall::Random
        | Syscall::Cwd
        | Syscall::ProcList
        | Syscall::CapsList
        | Syscall::Sleep { .. }
        | Syscall::ToolsList
    )
  }

  pub fn name(&self) -> &'static str {
    match self {
      Syscall::ProcSelf => "proc.self",
      Syscall::Exit { .. } => "exit",
      Syscall::Now => "now",
      Syscall::Random => "random",
      Syscall::ReadText { .. } => "fs.readText",
      Syscall::ReadBytes { .. } => "fs.readBytes",
      Syscall::WriteText { .. } => "fs.writeText",
      Syscall::WriteBytes { .. } => "fs.writeBytes",
      Syscall::List { .. } => "fs.list",
      Syscall::Stat { .. } => "fs.stat",
      Syscall::Mkdir { .. } => "fs.mkdir",
      Syscall::Remove { .. } => "fs.remove",
      Syscall::Cwd => "fs.cwd",
      Syscall::Chdir { .. } => "fs.chdir",
      Syscall::ProcSpawn(_) => "proc.spawn",
      Syscall::ProcWait { .. } => "proc.wait",
      Syscall::ProcSignal { .. } => "proc.signal",
      Syscall::ProcList => "proc.list",
      Syscall::CapsList => "caps.list",
      Syscall::CapsDrop { .. } => "caps.drop",
      Syscall::NetFetch(_) => "net.fetch",
      Syscall::HumanAsk(_) => "human.ask",
      Syscall::ShellExec(_) => "shell.exec",
      Syscall::Sleep { .. } => "sleep",
      Syscall::Emit(_) => "events.emit",
      Syscall::Next(_) => "events.next",
      Syscall::CapsRequest(_) => "caps.request",
      Syscall::MemPut(_) => "mem.put",
      Syscall::MemGet(_) => "mem.get",
      Syscall::MemList(_) => "mem.list",
      Syscall::MemDelete(_) => "mem.delete",
      Syscall::Checkpoint { .. } => "checkpoint",
      Syscall::ToolsList => "tools.list",
      Syscall::ToolsCall { .. } => "tools.call",
      Syscall::ToolsPropose(_) => "tools.propose",
      Syscall::ToolsRegister { .. } => "tools.register",
      Syscall::ToolsRevoke { .. } => "tools.revoke",
      Syscall::ModelComplete(_) => "model.complete",
    }
  }
}

#[cfg(test)]
mod tests {
  use super::*;
  use serde_json::json;

  #[test]
  fn decodes_known_calls() {
    assert_eq!(Syscall::decode("now", Value::Null).unwrap(), Syscall::Now);
    assert_eq!(Syscall::decode("fs.cwd", json!({})).unwrap(), Syscall::Cwd);
    assert_eq!(
      Syscall::decode("fs.writeText", json!({"path": "a", "text": "b"})).unwrap(),
      Syscall::WriteText { path: "a".into(), text: "b".into(), append: false }
    );
  }

  #[test]
  fn unknown_names_fields_and_types_are_invalid_arguments() {
    let unknown = Syscall::decode("fs.format", Value::Null).unwrap_err().to_string();
    assert!(unknown.contains("unknown syscall \"fs.format\""), "{unknown}");
    let typo = Syscall::decode("fs.writeText", json!({"path": "a", "text": "b", "apend": true})).unwrap_err();
    assert!(typo.to_string().contains("apend"), "{typo}");
    let wrong = Syscall::decode("fs.readText", json!({"path": 5})).unwrap_err();
    assert!(wrong.to_string().contains("fs.readText: invalid arguments"), "{wrong}");
    let missing = Syscall::decode("fs.readText", Value::Null).unwrap_err();
    assert!(matches!(missing, SyscallError::InvalidArgument(_)));
  }

  #[test]
  fn every_name_decodes_to_itself() {
    let examples = [
      ("proc.self", Value::Null),
      ("exit", json!({"result": 1})),
      ("now", Value::Null),
      ("random", Value::Null),
      ("fs.readText", json!({"path": "a"})),
      ("fs.readBytes", json!({"path": "a"})),
      ("fs.writeText", json!({"path": "a", "text": ""})),
      ("fs.writeBytes", json!({"path": "a", "data": ""})),
      ("fs.list", json!({"path": "."})),
      ("fs.stat", json!({"path": "a"})),
      ("fs.mkdir", json!({"path": "a"})),
      ("fs.remove", json!({"path": "a"})),
      ("fs.cwd", Value::Null),
      ("fs.chdir", json!({"path": "a"})),
      ("proc.spawn", json!({"entry": "w.ts"})),
      ("proc.wait", json!({"pid": "p1"})),
      ("proc.signal", json!({"pid": "p1", "signal": "cancel"})),
      ("proc.list", Value::Null),
      ("caps.list", Value::Null),
      ("caps.drop", json!({"capability": "fs.read"})),
      ("net.fetch", json!({"url": "http://example.com/"})),
      ("human.ask", json!({"question": "ok?"})),
      ("shell.exec", json!({"program": "echo", "args": ["hi"]})),
      ("sleep", json!({"ms": 1})),
      ("events.emit", json!({"topic": "t", "payload": 1})),
      ("events.next", json!({"topic": "t"})),
      ("caps.request", json!({"capability": "fs.read", "reason": "why"})),
      ("mem.put", json!({"key": "k", "value": 1})),
      ("mem.get", json!({"key": "k"})),
      ("mem.list", Value::Null),
      ("mem.delete", json!({"key": "k", "ns": "team"})),
      ("checkpoint", json!({"label": "before"})),
      ("tools.list", Value::Null),
      ("tools.call", json!({"name": "read_file", "args": {"path": "a"}})),
      ("tools.propose", json!({"name": "t", "description": "d", "input": {}, "source": ""})),
      ("tools.register", json!({"candidateId": "c-1", "scope": "task"})),
      ("tools.revoke", json!({"name": "t"})),
      ("model.complete", json!({"messages": [{"role": "user", "content": "hi"}]})),
    ];
    assert_eq!(examples.len(), NAMES.len());
    for (name, args) in examples {
      assert_eq!(Syscall::decode(name, args).unwrap().name(), name);
    }
  }
}
