//! The tool table and JIT tools (DESIGN §4, §6).
//!
//! Three separate decisions, as in the paper:
//! - *visibility*: a process's table is its image's tools (every built-in when it has no
//!   image) plus the JIT tools registered in a scope it is in; `tools.list` shows it;
//! - *invocation*: `tools.call` refuses a name not in the table and arguments that do not
//!   match the tool's input schema; policy rules on `tool.call:NAME` still apply;
//! - *authority*: the tool runs in its own isolate, and each of its syscalls is decided
//!   at the primitive against the caller's grants ∩ the capabilities the tool declares.
//!
//! The kernel knows no JavaScript: the engine implements [`ToolHost`] (static analysis,
//! tests against the mock broker, running tool isolates).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde::Deserialize;
use serde::Serialize;
use serde_json::json;
use serde_json::Value;

use super::capability::Capability;
use super::capability::Kind;
use super::capability::Request;
use super::dispatch::Trace;
use super::error::SyscallError;
use super::lock;
use super::Kernel;
use crate::store::tools::CandidateRow;

/// A tool module's code, as the engine loads it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCode {
  /// `libos:tools/NAME`, `jit:<sha256>` or `file:///…`.
  pub url: String,
  pub source: String,
}

/// What static analysis found in a tool module.
#[derive(Debug, Clone, Default)]
pub struct Analyzed {
  /// `{line, col, rule, message}` each.
  pub findings: Vec<Value>,
  /// The literal spec (name, description, input, output, capabilities, tests).
  pub spec: Option<Value>,
}

/// The result of running a candidate's tests against the mock broker.
#[derive(Debug, Clone)]
pub struct Tested {
  pub passed: usize,
  pub failed: usize,
  /// Per test: `{name, ok, message?}`.
  pub results: Value,
}

pub type ToolFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// What the kernel needs from the engine to run tools.
pub trait ToolHost: Send + Sync {
  /// The built-in tools' code.
  fn builtins(&self) -> Vec<ToolCode>;
  fn analyze(&self, code: &ToolCode) -> Analyzed;
  /// Runs `tests` of `code` in fresh isolates against the mock broker, under tight limits.
  fn test(&self, code: ToolCode, tests: Value) -> ToolFuture<Tested>;
  /// Runs `tool` with `args` as `frame` (the identity its syscalls reach the kernel
  /// with), reusing the frame's warm isolate when it runs the same code.
  fn call(&self, kernel: Kernel, frame: String, code: Arc<ToolCode>, args: Value) -> ToolFuture<Result<Value, SyscallError>>;
  /// Starts `frame`'s isolate for `code` in the background, so its first call is warm.
  fn prewarm(&self, kernel: Kernel, frame: String, code: Arc<ToolCode>);
  /// `frame` waits for a human (`true`) or stopped waiting: its call's wall-time limit
  /// counts only the time it runs.
  fn human_wait(&self, frame: &str, waiting: bool);
  /// Drops the warm isolates of `pid`'s tool frames.
  fn release(&self, pid: &str);
}

/// Where a tool in a table comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum Origin {
  Builtin,
  /// A module listed by the process's image.
  Image,
  Jit { registration: i64, scope: Scope, owner: String, candidate: String },
}

/// Who sees a registered JIT tool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
  /// The registering process only.
  #[default]
  Process,
  /// Every process of the registering process's tree.
  Task,
  /// Every process of the same image.
  Image,
}

impl Scope {
  fn as_str(self) -> &'static str {
    match self {
      Scope::Process => "process",
      Scope::Task => "task",
      Scope::Image => "image",
    }
  }
}

/// One entry of a tool table.
#[derive(Debug, Clone)]
pub struct Tool {
  pub name: String,
  pub description: String,
  pub input: Value,
  pub output: Option<Value>,
  pub capabilities: Vec<Capability>,
  pub origin: Origin,
  pub code: Arc<ToolCode>,
}

impl Tool {
  fn from_spec(spec: &Value, origin: Origin, code: ToolCode) -> Result<Tool, String> {
    let text = |key: &str| spec.get(key).and_then(Value::as_str).map(str::to_string);
    let name = text("name").ok_or("the spec has no name")?;
    let capabilities = spec
      .get("capabilities")
      .and_then(Value::as_array)
      .map(|caps| caps.iter().map(|c| c.as_str().unwrap_or_default().parse::<Capability>()).collect::<Result<Vec<_>, _>>())
      .transpose()
      .map_err(|e| format!("tool {name}: {e}"))?
      .unwrap_or_default();
    Ok(Tool {
      description: text("description").unwrap_or_default(),
      input: spec.get("input").cloned().unwrap_or_else(|| json!({ "type": "object" })),
      output: spec.get("output").cloned(),
      capabilities,
      origin,
      code: Arc::new(code),
      name,
    })
  }

  /// The model-ready description `tools.list` returns.
  fn describe(&self) -> Value {
    let origin = match &self.origin {
      Origin::Builtin => json!("builtin"),
      Origin::Image => json!("image"),
      Origin::Jit { scope, owner, .. } => json!({ "jit": { "scope": scope, "owner": owner } }),
    };
    json!({
      "name": self.name,
      "description": self.description,
      "parameters": self.input,
      "output": self.output,
      "capabilities": self.capabilities.iter().map(|c| c.to_string()).collect::<Vec<_>>(),
      "origin": origin,
    })
  }

  /// Whether the tool's declaration covers `request`; its authority is the caller's
  /// grants ∩ this.
  pub fn declares(&self, request: &Request) -> bool {
    self.capabilities.iter().any(|c| c.covers(request))
  }
}

/// The identity a tool's syscalls reach the kernel with: the calling process and the tool.
pub fn frame_id(pid: &str, tool: &str) -> String {
  format!("{pid}/{tool}")
}

/// The calling process and the tool of a frame id, if `id` is one.
pub fn split_frame(id: &str) -> Option<(&str, &str)> {
  id.split_once('/')
}

/// Arguments of `tools.propose`.
#[derive(Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ProposeArgs {
  pub name: String,
  pub description: String,
  pub input: Value,
  #[serde(default)]
  pub output: Option<Value>,
  pub source: String,
  #[serde(default)]
  pub tests: Vec<Value>,
  #[serde(default)]
  pub capabilities: Vec<String>,
}

/// Largest JIT tool source accepted.
const MAX_SOURCE_BYTES: usize = 256 * 1024;

impl Kernel {
  /// Sets how tools are analysed, tested and run (once; the engine provides it).
  pub fn set_tool_host(&self, host: Arc<dyn ToolHost>) {
    let _ = self.0.tool_host.set(host);
  }

  fn tool_host(&self) -> Result<&Arc<dyn ToolHost>, SyscallError> {
    self.0.tool_host.get().ok_or_else(|| SyscallError::OperationFailed("this host runs no tools".into()))
  }

  /// The built-in tools, read from their modules once.
  fn builtin_tools(&self) -> Result<&[Tool], SyscallError> {
    let host = self.tool_host()?;
    let tools = self.0.builtin_tools.get_or_init(|| {
      host
        .builtins()
        .into_iter()
        .filter_map(|code| {
          let spec = host.analyze(&code).spec;
          match spec.map(|spec| Tool::from_spec(&spec, Origin::Builtin, code.clone())) {
            Some(Ok(tool)) => Some(tool),
            other => {
              tracing::error!("built-in tool {} cannot be read: {other:?}", code.url);
              None
            }
          }
        })
        .collect()
    });
    Ok(tools)
  }

  /// Who `pid` is, as far as its tool table goes: its image's list, its image, its root.
  fn table_context(&self, pid: &str) -> Result<(Option<Vec<ImageTool>>, String, String), SyscallError> {
    let processes = lock(&self.0.processes);
    let p = processes.get(pid).ok_or_else(|| SyscallError::NotFound(format!("no such process {pid}")))?;
    Ok((p.tools.clone(), p.image.clone(), p.lineage.first().cloned().unwrap_or_else(|| pid.to_string())))
  }

  /// The tools `listed` by an image (every built-in when `None`), those named `name` only
  /// when given.
  fn listed_tools(&self, listed: &Option<Vec<ImageTool>>, name: Option<&str>) -> Result<Vec<Tool>, SyscallError> {
    let builtins = self.builtin_tools()?;
    let wanted = |tool: &Tool| name.is_none_or(|name| tool.name == name);
    Ok(match listed {
      None => builtins.iter().filter(|t| wanted(t)).cloned().collect(),
      Some(listed) => listed
        .iter()
        .filter_map(|entry| match entry {
          ImageTool::Builtin(builtin) => builtins.iter().find(|t| &t.name == builtin).cloned(),
          ImageTool::Module(code) => self.module_tool(code),
        })
        .filter(wanted)
        .collect(),
    })
  }

  /// A tool module an image lists, read once per content.
  fn module_tool(&self, code: &ToolCode) -> Option<Tool> {
    let key = format!("{}\n{}", code.url, crate::store::blob_hash(code.source.as_bytes()));
    let mut cache = lock(&self.0.module_tools);
    if let Some(tool) = cache.get(&key) {
      return tool.clone();
    }
    let spec = self.tool_host().ok()?.analyze(code).spec;
    let tool = spec.and_then(|spec| Tool::from_spec(&spec, Origin::Image, code.clone()).ok());
    cache.insert(key, tool.clone());
    tool
  }

  /// The JIT tools registered in a scope `pid` is in (named `name` only, when given)
  /// that no earlier tool of the table already names.
  fn registered_tools(&self, pid: &str, image: &str, root: &str, name: Option<&str>) -> Result<Vec<Tool>, SyscallError> {
    let rows = self.0.db.active_tools_named(name).map_err(|e| SyscallError::OperationFailed(e.to_string()))?;
    let mut tools: Vec<Tool> = Vec::new();
    for row in rows {
      let scope = match row.scope.as_str() {
        "task" => Scope::Task,
        "image" => Scope::Image,
        _ => Scope::Process,
      };
      let visible = match scope {
        Scope::Process => row.owner == pid,
        Scope::Task => row.root == root,
        Scope::Image => row.image.as_deref() == Some(image),
      };
      if !visible || tools.iter().any(|t| t.name == row.name) {
        continue;
      }
      let origin = Origin::Jit { registration: row.id, scope, owner: row.owner.clone(), candidate: row.candidate.id.clone() };
      let code = ToolCode { url: jit_url(&row.candidate.source_hash), source: row.candidate.source.clone() };
      if let Ok(tool) = Tool::from_spec(&row.candidate.spec, origin, code) {
        tools.push(tool);
      }
    }
    Ok(tools)
  }

  /// The tool table of `pid`: what it may see and call.
  pub fn tool_table(&self, pid: &str) -> Result<Vec<Tool>, SyscallError> {
    let (listed, image, root) = self.table_context(pid)?;
    let mut table = self.listed_tools(&listed, None)?;
    for tool in self.registered_tools(pid, &image, &root, None)? {
      // A registration never shadows a tool of the table.
      if !table.iter().any(|t| t.name == tool.name) {
        table.push(tool);
      }
    }
    Ok(table)
  }

  /// `pid`'s tool named `name`, if it is in its table (without building the whole table:
  /// this is asked on every syscall a tool makes).
  pub(super) fn tool_in_table(&self, pid: &str, name: &str) -> Result<Option<Tool>, SyscallError> {
    // One `tools.call` asks several times (invocation, policy, journal, the call itself,
    // then each of the tool's syscalls): answers hold until a registration changes here
    // (the local count) or another `alos` commits anything (SQLite's data_version).
    let key = (pid.to_string(), name.to_string());
    let local = self.0.tools_generation.load(std::sync::atomic::Ordering::SeqCst);
    let others = self.0.db.data_version().map_err(|e| SyscallError::OperationFailed(e.to_string()))?;
    let generation = (local, others);
    if let Some((seen, tool)) = lock(&self.0.tool_lookups).get(&key) {
      if *seen == generation {
        return Ok(tool.clone());
      }
    }
    let (listed, image, root) = self.table_context(pid)?;
    let tool = match self.listed_tools(&listed, Some(name))?.into_iter().next() {
      Some(tool) => Some(tool),
      None => self.registered_tools(pid, &image, &root, Some(name))?.into_iter().next(),
    };
    lock(&self.0.tool_lookups).insert(key, (generation, tool.clone()));
    Ok(tool)
  }

  /// Forgets every table lookup: a registration was added or revoked.
  fn tables_changed(&self) {
    self.0.tools_generation.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    lock(&self.0.tool_lookups).clear();
  }

  pub(super) fn tools_list(&self, pid: &str) -> Result<Value, SyscallError> {
    Ok(Value::Array(self.tool_table(pid)?.iter().map(Tool::describe).collect()))
  }

  /// `tools.call`: the table and the arguments were checked (see `dispatch`); runs the
  /// tool in its isolate.
  pub(super) async fn tools_call(&self, call: &Trace, name: &str, args: Value) -> Result<Value, SyscallError> {
    let pid = call.pid.as_str();
    let tool = self.tool_in_table(pid, name)?.ok_or_else(|| not_in_table(pid, name))?;
    self.check_input(&tool, &args)?;
    let host = self.tool_host()?.clone();
    // Calls of one tool by one process run one at a time (one frame), so one entry each.
    let running = |call: Option<&Trace>| {
      if let Some(p) = lock(&self.0.processes).get_mut(pid) {
        match call {
          Some(call) => {
            p.tools_running += 1;
            p.tool_calls.insert(name.to_string(), call.clone());
          }
          None => {
            p.tools_running = p.tools_running.saturating_sub(1);
            p.tool_calls.remove(name);
          }
        }
      }
    };
    running(Some(call));
    let result = host.call(self.clone(), frame_id(pid, name), tool.code.clone(), args).await;
    running(None);
    result
  }

  /// `tools.propose`: checks a candidate (parse, static analysis, spec, capabilities ⊆
  /// the proposer's, its own tests against the mock broker) and stores it with the
  /// report. Proposing the same candidate twice gives the same id.
  pub(super) async fn tools_propose(&self, pid: &str, args: ProposeArgs) -> Result<Value, SyscallError> {
    if args.source.len() > MAX_SOURCE_BYTES {
      return Err(SyscallError::LimitExceeded(format!(
        "tools.propose: the source is {} bytes; at most {MAX_SOURCE_BYTES} are accepted",
        args.source.len()
      )));
    }
    let source_hash = crate::store::blob_hash(args.source.as_bytes());
    let code = ToolCode { url: jit_url(&source_hash), source: args.source.clone() };
    let host = self.tool_host()?.clone();
    let mut problems: Vec<Value> = Vec::new();
    let mut problem = |rule: &str, message: String| problems.push(json!({ "rule": rule, "message": message }));

    let analyzed = host.analyze(&code);
    let findings = analyzed.findings.clone();
    let spec = json!({
      "name": args.name,
      "description": args.description,
      "input": args.input,
      "output": args.output,
      "capabilities": args.capabilities,
      "tests": args.tests,
    });
    // The module's own literal spec must say what the proposal says.
    if let Some(literal) = &analyzed.spec {
      // Absent, null and [] all mean "none".
      let given = |spec: &Value, key: &str| spec.get(key).filter(|v| !v.is_null() && *v != &json!([])).cloned();
      for key in ["name", "description", "input", "output", "capabilities"] {
        if given(literal, key) != given(&spec, key) {
          problem("spec-mismatch", format!("the module's `{key}` differs from the proposal's"));
        }
      }
    }
    if !valid_tool_name(&args.name) {
      problem("spec", format!("name {:?}: expected /^[a-z][a-z0-9_]{{0,63}}$/", args.name));
    }
    if self.builtin_tools()?.iter().any(|t| t.name == args.name) || self.tool_in_table(pid, &args.name)?.is_some() {
      problem("shadowing", format!("a tool named {} already exists; JIT tools cannot shadow a tool", args.name));
    }
    if let Err(e) = jsonschema::validator_for(&args.input) {
      problem("spec", format!("input is not a valid JSON Schema: {e}"));
    }
    // A tool never gets authority its proposer does not have.
    let held: Vec<Capability> = lock(&self.0.processes)
      .get(pid)
      .map(|p| p.grants.iter().filter(|g| g.is_live(self.0.clock.now_ms())).map(|g| g.capability.clone()).collect())
      .unwrap_or_default();
    for text in &args.capabilities {
      match text.parse::<Capability>() {
        Err(e) => problem("capabilities", e.to_string()),
        Ok(cap) if !held.iter().any(|h| h.includes(&cap)) => problem(
          "capabilities",
          format!(
            "declares {cap}, which {pid} does not hold (it holds: {}); a tool gets at most its proposer's authority",
            if held.is_empty() { "nothing".to_string() } else { held.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(", ") }
          ),
        ),
        Ok(_) => {}
      }
    }
    let tested = if findings.is_empty() && problems.is_empty() {
      Some(host.test(code, Value::Array(args.tests.clone())).await)
    } else {
      None
    };
    let passed = findings.is_empty() && problems.is_empty() && tested.as_ref().is_some_and(|t| t.failed == 0);
    let report = json!({
      "findings": findings,
      "problems": problems,
      "tests": tested.as_ref().map(|t| json!({ "passed": t.passed, "failed": t.failed, "results": t.results })),
    });
    let id = format!("c-{}", &crate::store::blob_hash(format!("{pid}\n{spec}\n{source_hash}").as_bytes())[7..19]);
    let candidate = CandidateRow {
      id: id.clone(),
      proposer: pid.to_string(),
      spec,
      source: args.source,
      source_hash,
      report: report.clone(),
      passed,
      created_ms: self.0.clock.now_ms(),
    };
    self.0.db.put_candidate(&candidate).map_err(|e| SyscallError::OperationFailed(e.to_string()))?;
    let mut out = json!({ "candidateId": id, "ok": passed });
    out.as_object_mut().expect("an object").extend(report.as_object().cloned().unwrap_or_default());
    Ok(out)
  }

  /// The human-readable request text of a registration: what a human approves.
  pub(super) fn register_detail(&self, candidate: &str, scope: Scope) -> String {
    match self.0.db.candidate(candidate) {
      Ok(Some(c)) => {
        let caps = c.spec.get("capabilities").cloned().unwrap_or(json!([]));
        let tests = c.report.get("tests").cloned().unwrap_or(Value::Null);
        format!(
          "register JIT tool {} (scope {}) proposed by {}\ncapabilities: {caps}\ntests: {}\ndescription: {}\n--- source ---\n{}",
          c.spec.get("name").and_then(Value::as_str).unwrap_or("?"),
          scope.as_str(),
          c.proposer,
          match tests.get("failed") {
            Some(failed) => format!("{} passed, {failed} failed", tests.get("passed").cloned().unwrap_or(json!(0))),
            None => "not run".to_string(),
          },
          c.spec.get("description").and_then(Value::as_str).unwrap_or(""),
          c.source
        )
      }
      _ => format!("register JIT tool candidate {candidate} (unknown candidate)"),
    }
  }

  /// `tools.register`: the capability was decided (see `dispatch`); puts a candidate that
  /// passed its checks into the table of the scope.
  pub(super) fn tools_register(&self, pid: &str, candidate: &str, scope: Scope, decided_by: &str) -> Result<Value, SyscallError> {
    let row = self
      .0
      .db
      .candidate(candidate)
      .map_err(|e| SyscallError::OperationFailed(e.to_string()))?
      .ok_or_else(|| SyscallError::NotFound(format!("tools.register: no candidate {candidate}; propose the tool first")))?;
    if row.proposer != pid {
      return Err(SyscallError::PermissionDenied {
        syscall: "tools.register".into(),
        capability: String::new(),
        reason: "not the proposer".into(),
        message: format!("tools.register: candidate {candidate} was proposed by {}, not {pid}", row.proposer),
      });
    }
    if !row.passed {
      return Err(SyscallError::InvalidArgument(format!(
        "tools.register: candidate {candidate} did not pass its checks: {}",
        row.report
      )));
    }
    let name = row.spec.get("name").and_then(Value::as_str).unwrap_or_default().to_string();
    // Registering the same candidate again (a resumed process) changes nothing.
    if let Some(existing) = self.tool_in_table(pid, &name)? {
      if matches!(&existing.origin, Origin::Jit { candidate: c, .. } if c == candidate) {
        return Ok(json!({ "name": name, "scope": scope }));
      }
      return Err(SyscallError::AlreadyExists(format!(
        "tools.register: a tool named {name} already exists; JIT tools cannot shadow a tool"
      )));
    }
    let (root, image) = {
      let processes = lock(&self.0.processes);
      let p = processes.get(pid).ok_or_else(|| SyscallError::NotFound(format!("no such process {pid}")))?;
      (p.lineage.first().cloned().unwrap_or_else(|| pid.to_string()), p.image.clone())
    };
    self
      .0
      .db
      .register_tool(&name, scope.as_str(), pid, &root, Some(&image), candidate, decided_by, self.0.clock.now_ms())
      .map_err(|e| SyscallError::OperationFailed(e.to_string()))?;
    self.tables_changed();
    self.announce_tools(pid, json!({ "registered": name, "scope": scope }));
    if let (Ok(Some(tool)), Ok(host)) = (self.tool_in_table(pid, &name), self.tool_host()) {
      host.prewarm(self.clone(), frame_id(pid, &name), tool.code.clone());
    }
    Ok(json!({ "name": name, "scope": scope }))
  }

  /// `tools.revoke`: a process can revoke the JIT tools it registered.
  pub(super) fn tools_revoke(&self, pid: &str, name: &str) -> Result<Value, SyscallError> {
    let tool = self.tool_in_table(pid, name)?.ok_or_else(|| not_in_table(pid, name))?;
    let Origin::Jit { registration, owner, .. } = &tool.origin else {
      return Err(SyscallError::InvalidArgument(format!("tools.revoke: {name} is not a JIT tool; only those can be revoked")));
    };
    if owner != pid {
      return Err(SyscallError::PermissionDenied {
        syscall: "tools.revoke".into(),
        capability: String::new(),
        reason: "not the registrant".into(),
        message: format!("tools.revoke: {name} was registered by {owner}; only it can revoke the tool"),
      });
    }
    self.0.db.revoke_tool(*registration, self.0.clock.now_ms()).map_err(|e| SyscallError::OperationFailed(e.to_string()))?;
    self.tables_changed();
    if let Some(host) = self.0.tool_host.get() {
      host.release(pid);
    }
    self.announce_tools(pid, json!({ "revoked": name }));
    Ok(json!({ "name": name }))
  }

  /// A change of tool tables, on the tree's `tools` topic.
  fn announce_tools(&self, pid: &str, payload: Value) {
    let args = super::events::EmitArgs { topic: "tools".into(), payload };
    if let Err(e) = self.emit(pid, args) {
      tracing::warn!("cannot emit the tools event: {e}");
    }
  }
}

/// A tool name: lowercase letters, digits and `_`, starting with a letter, at most 64.
pub fn valid_tool_name(name: &str) -> bool {
  let mut chars = name.chars();
  chars.next().is_some_and(|c| c.is_ascii_lowercase())
    && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    && name.len() <= 64
}

/// The module url of a JIT tool's source.
fn jit_url(source_hash: &str) -> String {
  format!("jit:{}", source_hash.trim_start_matches("sha256:"))
}

pub(super) fn not_in_table(pid: &str, name: &str) -> SyscallError {
  SyscallError::NotFound(format!("tools.call: there is no tool named {name:?} in the tool table of {pid}; see libos.tools.list()"))
}

impl Kernel {
  /// Checks `args` against the tool's input schema, naming the first offending fields.
  /// Each schema is compiled once.
  fn check_input(&self, tool: &Tool, args: &Value) -> Result<(), SyscallError> {
    let key = crate::store::blob_hash(tool.input.to_string().as_bytes());
    let cached = lock(&self.0.input_validators).get(&key).cloned();
    let validator = match cached {
      Some(validator) => validator,
      None => {
        let compiled = Arc::new(jsonschema::validator_for(&tool.input).map_err(|e| {
          SyscallError::OperationFailed(format!("tool {}: its input schema is invalid: {e}", tool.name))
        })?);
        lock(&self.0.input_validators).insert(key, compiled.clone());
        compiled
      }
    };
    check_against(&validator, tool, args)
  }
}

fn check_against(validator: &jsonschema::Validator, tool: &Tool, args: &Value) -> Result<(), SyscallError> {
  let errors: Vec<String> = validator
    .iter_errors(args)
    .take(5)
    .map(|e| {
      let at = e.instance_path.to_string();
      format!("{}: {e}", if at.is_empty() { "(arguments)".to_string() } else { format!("args{}", at.replace('/', ".")) })
    })
    .collect();
  if errors.is_empty() {
    return Ok(());
  }
  Err(SyscallError::InvalidArgument(format!("tools.call {}: the arguments do not match its input schema: {}", tool.name, errors.join("; "))))
}

/// A tool an image lists: a built-in by name or a module's code.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageTool {
  Builtin(String),
  Module(ToolCode),
}

/// The request `tools.call` needs decided: `tool.call:NAME`, which the table allows
/// unless a rule says otherwise.
pub(super) fn call_request(name: &str) -> Request {
  Request::new(Kind::ToolCall, name)
}

#[cfg(test)]
mod tests {
  use std::path::Path;

  use super::*;
  use crate::kernel::grant::GrantSource;
  use crate::kernel::process::ProcessLimits;
  use crate::kernel::KernelConfig;
  use crate::kernel::ProcessSpec;
  use crate::store::tools::CandidateRow;

  /// A host with no built-in tools that never runs one: the table alone is under test.
  struct NoTools;

  impl ToolHost for NoTools {
    fn builtins(&self) -> Vec<ToolCode> {
      Vec::new()
    }
    fn analyze(&self, _: &ToolCode) -> Analyzed {
      Analyzed::default()
    }
    fn test(&self, _: ToolCode, _: Value) -> ToolFuture<Tested> {
      Box::pin(std::future::ready(Tested { passed: 0, failed: 0, results: json!([]) }))
    }
    fn call(&self, _: Kernel, _: String, _: Arc<ToolCode>, _: Value) -> ToolFuture<Result<Value, SyscallError>> {
      Box::pin(std::future::ready(Err(SyscallError::OperationFailed("no tools here".into()))))
    }
    fn prewarm(&self, _: Kernel, _: String, _: Arc<ToolCode>) {}
    fn human_wait(&self, _: &str, _: bool) {}
    fn release(&self, _: &str) {}
  }

  fn kernel(dir: &Path) -> Kernel {
    let kernel = Kernel::open(KernelConfig::for_tests(dir)).unwrap();
    kernel.set_tool_host(Arc::new(NoTools));
    kernel
  }

  /// Two `alos` hosts on one state directory: a registration (or a revocation) committed
  /// by one is seen by the other's next lookup, even after that one answered from cache.
  #[test]
  fn a_lookup_sees_registrations_committed_by_another_host() {
    let dir = tempfile::tempdir().unwrap();
    let (here, there) = (kernel(dir.path()), kernel(dir.path()));
    let spec = ProcessSpec {
      image: "team@1.0.0".into(),
      entry: dir.path().join("ws/main.ts"),
      args: Vec::new(),
      goal: None,
      grants: vec![("fs.read".parse().unwrap(), GrantSource::Cli)],
      limits: ProcessLimits::default(),
      tools: None,
    };
    let pid = here.spawn_root(spec).unwrap();
    assert!(here.tool_in_table(&pid, "shared_tool").unwrap().is_none());

    // Another host registers an image-scoped tool for the same image.
    let source = "export default 1;";
    let db = &there.0.db;
    db.put_candidate(&CandidateRow {
      id: "c-1".into(),
      proposer: "pother".into(),
      spec: json!({ "name": "shared_tool", "description": "d", "input": { "type": "object" } }),
      source: source.into(),
      source_hash: crate::store::blob_hash(source.as_bytes()),
      report: json!({}),
      passed: true,
      created_ms: 1,
    })
    .unwrap();
    let id = db.register_tool("shared_tool", "image", "pother", "pother", Some("team@1.0.0"), "c-1", "test", 2).unwrap();
    assert_eq!(here.tool_in_table(&pid, "shared_tool").unwrap().map(|t| t.name), Some("shared_tool".to_string()));

    // ... and revokes it: the next lookup here no longer finds it.
    assert!(db.revoke_tool(id, 3).unwrap());
    assert!(here.tool_in_table(&pid, "shared_tool").unwrap().is_none());
  }
}
