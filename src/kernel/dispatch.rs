//! The one dispatch point. Every syscall of every process passes through
//! [`Kernel::dispatch`], in this order: decode → account → resolve the resource →
//! policy/capability check → perform via a provider → audit record.
//! A definite denial happens before anything about the target is looked at.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use base64::Engine as _;
use serde_json::json;
use serde_json::Value;

use super::audit::digest;
use super::audit::Actor;
use super::audit::Entry;
use super::audit::Verdict;
use super::capability::Capability;
use super::capability::Kind;
use super::capability::Request;
use super::error::SyscallError;
use super::journal::has_side_effect;
use super::journal::Replay;
use crate::store::journal::JournalStatus;
use super::lock;
use super::policy::AllowedBy;
use super::policy::Decision;
use super::policy::DeniedBy;
use super::policy::Effect;
use super::policy::RuleSource;
use super::process::ExitStatus;
use super::process::State;
use super::syscall::Syscall;
use super::Kernel;
use crate::provider::clock::rfc3339;
use crate::provider::fs::FsError;
use crate::provider::fs::Kind as EntryKind;
use crate::provider::fs::WriteMode;
use crate::provider::fs::WsPath;

/// A tool's authority is its caller's grants ∩ its declaration: a request the tool does
/// not declare is refused before the caller's grants are looked at.
pub(super) fn tool_bound(trace: &Trace, syscall: &str, request: &Request) -> Result<(), SyscallError> {
  let Some(tool) = &trace.tool else { return Ok(()) };
  if tool.declares(request) {
    return Ok(());
  }
  let needed = request.suggestion().map(|c| c.to_string()).unwrap_or_default();
  let declared: Vec<String> = tool.capabilities.iter().map(|c| c.to_string()).collect();
  Err(SyscallError::PermissionDenied {
    syscall: syscall.to_string(),
    capability: needed.clone(),
    reason: format!("not declared by tool {}", tool.name),
    message: format!(
      "{syscall} \"{}\" denied: tool {} does not declare {needed} (it declares: {}); a tool may use only what it declares, even when its caller holds more",
      display_resource(request),
      tool.name,
      if declared.is_empty() { "nothing".to_string() } else { declared.join(", ") }
    ),
  })
}

/// What a syscall needs, once its resource is resolved.
struct Access {
  /// The authority it needs, if any.
  request: Option<Request>,
  /// The workspace path it touches, if any.
  path: Option<WsPath>,
}

/// The caller, as the audit record names it.
struct Who {
  lineage: Vec<String>,
  cwd: WsPath,
}

/// One syscall in flight, as its audit records name it; owned, so a waiting syscall can
/// record its outcome when it completes.
#[derive(Clone)]
pub(super) struct Trace {
  pub pid: String,
  pub lineage: Vec<String>,
  pub syscall: String,
  pub args_digest: String,
  /// The caller's cwd when the syscall was made (an approved call resolves the same).
  pub cwd: WsPath,
  /// Its place in the journal; `None` for records that are not a syscall of the process.
  pub step: Option<super::journal::Step>,
  /// The tool the call comes from, when a tool made it on the process's behalf: its
  /// declaration bounds the process's authority.
  pub tool: Option<std::sync::Arc<super::tools::Tool>>,
  /// For a tool's syscall, the caller's `tools.call` it is made within (journaled):
  /// a human request the tool waits on is noted there, so a resumed call picks the
  /// same request up again instead of asking anew.
  pub within: Option<Box<Trace>>,
}

/// What the policy says about one request.
pub(super) enum Judgement {
  /// Allowed; the text names what allowed it.
  Allowed(String),
  /// A human must approve it first.
  Ask(super::policy::Rule),
}

/// A syscall's result now, or a future of it for the syscalls that wait (on a child, a
/// timer, a human). The future runs on the calling isolate's thread.
pub(super) enum Dispatched {
  Ready(Result<Value, SyscallError>),
  Waiting(Pending),
}

/// A syscall still in progress.
pub(super) type Pending = Pin<Box<dyn Future<Output = Result<Value, SyscallError>>>>;

impl Kernel {
  pub(super) fn dispatch(&self, pid: &str, name: &str, args: Value) -> Dispatched {
    let dispatched = match super::tools::split_frame(pid) {
      Some((caller, tool)) => self.dispatch_for_tool(caller, tool, name, args),
      None => self.dispatch_checked(pid, name, args),
    };
    dispatched.unwrap_or_else(|e| Dispatched::Ready(Err(e)))
  }

  /// Whether `call` may change something outside the journal, so that it is journaled
  /// as started before it runs (and is in doubt after a crash). A tool call is, when
  /// its tool declares any capability that writes, runs or sends; a read-only tool's
  /// call is simply run again.
  fn effectful(&self, pid: &str, call: &Syscall) -> bool {
    match call {
      Syscall::ToolsCall { name, .. } => match self.tool_in_table(pid, name) {
        Ok(Some(tool)) => tool.capabilities.iter().any(|c| {
          !matches!(c.kind(), Kind::FsRead | Kind::MemRead | Kind::HumanAsk | Kind::EventWait | Kind::ToolCall | Kind::Model)
        }),
        _ => true,
      },
      _ => has_side_effect(call),
    }
  }

  /// Who a process is, as `proc.self` (every isolate's first syscall) tells it.
  fn proc_self(&self, pid: &str) -> Result<Value, SyscallError> {
    let processes = lock(&self.0.processes);
    let p = processes.get(pid).ok_or_else(|| SyscallError::NotFound(format!("no such process {pid}")))?;
    Ok(json!({ "pid": p.pid, "args": p.args, "goal": p.goal, "cwd": p.cwd.to_string() }))
  }

  /// A syscall a tool makes while `caller` calls it: decided as the caller's, within the
  /// tool's declared capabilities, audited with the tool's name, and not journaled on
  /// its own (the caller's `tools.call` is, as a whole).
  fn dispatch_for_tool(&self, caller: &str, tool: &str, name: &str, args: Value) -> Result<Dispatched, SyscallError> {
    let args_digest = digest(args.to_string().as_bytes());
    // A tool isolate's bootstrap learns who it runs for, whatever happened since it was
    // started (a pre-warm racing a revoke or its caller's exit): it needs no authority.
    if name == "proc.self" {
      return Ok(Dispatched::Ready(self.proc_self(caller)));
    }
    let entry = self.tool_in_table(caller, tool)?;
    if entry.is_none() {
      return Err(SyscallError::PermissionDenied {
        syscall: name.to_string(),
        capability: String::new(),
        reason: "tool revoked".into(),
        message: format!("{name}: tool {tool} is no longer in the tool table of {caller} (revoked)"),
      });
    }
    let who = self.account(caller, name, &args_digest)?;
    let trace = Trace {
      pid: caller.to_string(),
      lineage: who.lineage,
      syscall: name.to_string(),
      args_digest,
      cwd: who.cwd,
      step: None,
      tool: entry.map(std::sync::Arc::new),
      within: lock(&self.0.processes).get(caller).and_then(|p| p.tool_calls.get(tool)).cloned().map(Box::new),
    };
    let call = match Syscall::decode(name, args) {
      Ok(Syscall::Exit { .. } | Syscall::Checkpoint { .. })
      | Ok(Syscall::ToolsCall { .. } | Syscall::ToolsPropose(_) | Syscall::ToolsRegister { .. } | Syscall::ToolsRevoke { .. }) => {
        Err(SyscallError::InvalidArgument(format!(
          "{name} is not available inside a tool (tool {tool}); a tool returns its result to its caller"
        )))
      }
      other => other,
    };
    let call = match call {
      Ok(call) => call,
      Err(e) => {
        self.audit_call(&trace, None, Verdict::None, None, outcome_of(&Err::<Value, _>(e.clone())))?;
        return Err(e);
      }
    };
    self.run_call(trace, call)
  }

  fn dispatch_checked(&self, pid: &str, name: &str, args: Value) -> Result<Dispatched, SyscallError> {
    let args_digest = digest(args.to_string().as_bytes());
    let who = self.account(pid, name, &args_digest)?;
    let mut trace =
      Trace {
        pid: pid.to_string(),
        lineage: who.lineage,
        syscall: name.to_string(),
        args_digest,
        cwd: who.cwd,
        step: None,
        tool: None,
        within: None,
      };
    let call = match Syscall::decode(name, args) {
      Ok(call) => call,
      Err(e) => {
        self.audit_call(&trace, None, Verdict::None, None, outcome_of(&Err::<Value, _>(e.clone())))?;
        return Err(e);
      }
    };
    Ok(match self.replay(&trace, &call)? {
      Replay::Served(result) => Dispatched::Ready(result),
      Replay::Live(step) => {
        trace.step = Some(step);
        let dispatched = self.run_call(trace.clone(), call);
        self.settle(trace, dispatched)
      }
      Replay::InDoubt(step, record) => {
        trace.step = Some(step);
        let dispatched = self.in_doubt(trace.clone(), call, record);
        self.settle(trace, Ok(dispatched))
      }
    })
  }

  /// Resolves, decides, performs and audits one decoded syscall. An approved call comes
  /// back here to be decided again.
  pub(super) fn run_call(&self, trace: Trace, call: Syscall) -> Result<Dispatched, SyscallError> {
    let (pid, name) = (trace.pid.clone(), trace.syscall.clone());
    let (pid, name) = (pid.as_str(), name.as_str());
    let audit = |request: Option<&Request>, decision: Verdict, decided_by: Option<String>, outcome: String| {
      self.audit_call(&trace, request, decision, decided_by, outcome)
    };
    let access = match resolve(&call, pid, &trace.cwd, self.0.default_model.as_deref()) {
      Ok(access) => access,
      Err(e) => {
        audit(None, Verdict::Deny, Some("path resolution".into()), outcome_of(&Err::<Value, _>(e.clone())))?;
        return Err(e);
      }
    };

    // Invocation: only a name in the process's tool table can be called.
    if let Syscall::ToolsCall { name: tool, .. } = &call {
      if self.tool_in_table(pid, tool)?.is_none() {
        let e = super::tools::not_in_table(pid, tool);
        audit(access.request.as_ref(), Verdict::Deny, Some("not in the tool table".into()), outcome_of(&Err::<Value, _>(e.clone())))?;
        return Err(e);
      }
    }

    // A shell call is resolved to the exact program (and files) that would run before
    // it is decided, so an approval binds to exactly that.
    let prepared = match &call {
      Syscall::ShellExec(args) => match self.prepare_shell(pid, args, &trace.cwd) {
        Ok(prepared) => Some(prepared),
        Err(e) => {
          audit(access.request.as_ref(), Verdict::None, None, outcome_of(&Err::<Value, _>(e.clone())))?;
          return Err(e);
        }
      },
      _ => None,
    };
    let op_digest = match &prepared {
      Some(prepared) => prepared.op_digest.clone(),
      None => digest(call_digest_input(&call).as_bytes()),
    };
    let decided_by = match &access.request {
      None => None,
      Some(request) => match tool_bound(&trace, name, request).and_then(|()| self.decide(pid, name, request, &op_digest)) {
        Ok(Judgement::Allowed(by)) => Some(by),
        Ok(Judgement::Ask(rule)) => {
          // An impossible operation fails before a human is asked about it.
          if let Some(path) = &access.path {
            self.precheck(&call, path)?;
          }
          let request = request.clone();
          let detail = match (&prepared, &call) {
            (Some(prepared), _) => prepared.detail.clone(),
            (None, Syscall::ToolsRegister { candidate, scope }) => self.register_detail(candidate, *scope),
            (None, _) => super::human::describe(&call, &request),
          };
          return self.ask_for_approval(trace.clone(), call, request, rule, op_digest, detail);
        }
        Err(denial) => {
          let by = match &denial {
            SyscallError::PermissionDenied { reason, .. } => Some(reason.clone()),
            _ => None,
          };
          audit(Some(request), Verdict::Deny, by, outcome_of(&Err::<Value, _>(denial.clone())))?;
          return Err(denial);
        }
      },
    };

    let verdict = if access.request.is_some() { Verdict::Allow } else { Verdict::None };
    if let Some(waiting) = self.waiting(&trace, &call, prepared) {
      let (kernel, audited, request) = (self.clone(), call.is_audited(), access.request.clone());
      if self.effectful(pid, &call) {
        self.mark_started(&trace)?;
      }
      return Ok(Dispatched::Waiting(Box::pin(async move {
        let result = waiting.await;
        if audited {
          kernel.audit_call(&trace, request.as_ref(), verdict, decided_by, outcome_of(&result))?;
        }
        result
      })));
    }
    // An Object Memory write is made in the transaction that journals and audits it.
    let write = memory_write(&call, pid, self.0.clock.now_ms())?;
    if let (Some(write), None) = (&write, &trace.step) {
      // A tool's write: audited with it, in one transaction; journaled with its caller's call.
      let entry = self.audit_entry(Actor::Process, &trace, access.request.as_ref(), verdict, decided_by, "ok".into());
      let commit =
        crate::store::journal::Commit { audit: vec![super::audit::next_record(entry)], memory: Some(write.clone()), ..Default::default() };
      let outcome = self.0.db.commit(commit).map_err(|e| SyscallError::OperationFailed(format!("{name}: {e}")))?;
      return Ok(Dispatched::Ready(match outcome {
        Some(Ok(value)) => Ok(value),
        Some(Err(conflict)) => Err(super::memory::conflict_error(write, conflict)),
        None => Err(SyscallError::OperationFailed(format!("{name}: the write was not made"))),
      }));
    }
    if let (Some(write), Some(step)) = (write, &trace.step) {
      audit(access.request.as_ref(), verdict, decided_by, "ok".into())?;
      let outcome = self.journal_commit(&trace, JournalStatus::Done, None, None, Some(write.clone()))?;
      step.mark_settled();
      let result = match outcome {
        Some(Ok(value)) => Ok(value),
        Some(Err(conflict)) => Err(super::memory::conflict_error(&write, conflict)),
        None => Err(SyscallError::OperationFailed(format!("{name}: the write was not made"))),
      };
      return Ok(Dispatched::Ready(result));
    }
    if has_side_effect(&call) {
      self.mark_started(&trace)?;
    }
    let result = match &call {
      Syscall::ToolsRegister { candidate, scope } => {
        self.tools_register(pid, candidate, *scope, decided_by.as_deref().unwrap_or("no capability needed"))
      }
      _ => self.perform(pid, &trace, &call, access.path.as_ref()),
    };
    if has_side_effect(&call) {
      self.crash_point();
    }
    if call.is_audited() {
      audit(access.request.as_ref(), verdict, decided_by, outcome_of(&result))?;
    }
    if let Syscall::Exit { result: value } = &call {
      // Journaled before the process ends, so a resume never runs past an exit.
      self.complete(&trace, Ok(Value::Null))?;
      self.finish(pid, ExitStatus::Ok { result: value.clone() });
      // `exit` does not return: the isolate is being stopped, and this never-settling
      // call keeps its event loop from mistaking the stop for a stalled script.
      return Ok(Dispatched::Waiting(Box::pin(std::future::pending())));
    }
    Ok(Dispatched::Ready(result))
  }

  /// Records a decision or effect of a process's syscall.
  pub(super) fn audit_call(
    &self,
    trace: &Trace,
    request: Option<&Request>,
    decision: Verdict,
    decided_by: Option<String>,
    outcome: String,
  ) -> Result<(), SyscallError> {
    self.audit_as(Actor::Process, trace, request, decision, decided_by, outcome)
  }

  /// The one place an audit entry is assembled from the kernel's view of a call.
  pub(super) fn audit_as(
    &self,
    actor: Actor,
    trace: &Trace,
    request: Option<&Request>,
    decision: Verdict,
    decided_by: Option<String>,
    outcome: String,
  ) -> Result<(), SyscallError> {
    let entry = self.audit_entry(actor, trace, request, decision, decided_by, outcome);
    // A syscall's records are written with its journal record, in one transaction.
    match &trace.step {
      Some(step) => {
        step.defer_audit(entry);
        Ok(())
      }
      None => self.record(entry),
    }
  }

  fn audit_entry(
    &self,
    actor: Actor,
    trace: &Trace,
    request: Option<&Request>,
    decision: Verdict,
    decided_by: Option<String>,
    outcome: String,
  ) -> Entry {
    Entry {
      time: rfc3339(self.0.clock.now_ms()),
      pid: trace.pid.clone(),
      lineage: trace.lineage.clone(),
      actor,
      syscall: trace.syscall.clone(),
      capability: request.and_then(Request::suggestion).map(|c| c.to_string()),
      resource: request.map(|r| r.resource.clone()),
      decision,
      decided_by,
      args_digest: trace.args_digest.clone(),
      outcome,
      tool: trace.tool.as_ref().map(|t| t.name.clone()),
    }
  }

  /// The syscalls that wait, as futures; their capability was checked before.
  fn waiting(
    &self,
    trace: &Trace,
    call: &Syscall,
    prepared: Option<super::shell::Prepared>,
  ) -> Option<Pending> {
    let pid = trace.pid.as_str();
    match call {
      Syscall::CapsRequest(args) => {
        let (kernel, trace, args) = (self.clone(), trace.clone(), args.clone());
        Some(Box::pin(async move { kernel.request_capability(trace, args).await }))
      }
      Syscall::Sleep { ms } => {
        let (kernel, trace, ms) = (self.clone(), trace.clone(), *ms);
        Some(Box::pin(async move { kernel.sleep(&trace, ms).await }))
      }
      Syscall::Next(args) => {
        let (kernel, me, args) = (self.clone(), pid.to_string(), args.clone());
        Some(Box::pin(async move { kernel.next_event(&me, args).await }))
      }
      Syscall::ShellExec(args) => {
        let (kernel, me, args, prepared) = (self.clone(), pid.to_string(), args.clone(), prepared?);
        Some(Box::pin(async move { kernel.exec_shell(&me, args, prepared).await }))
      }
      Syscall::HumanAsk(ask) => {
        let (kernel, trace, ask) = (self.clone(), trace.clone(), ask.clone());
        Some(Box::pin(async move { kernel.ask_question(trace, ask).await }))
      }
      Syscall::NetFetch(fetch) => {
        let (kernel, trace, fetch) = (self.clone(), trace.clone(), fetch.clone());
        Some(Box::pin(async move { kernel.fetch(&trace, fetch).await }))
      }
      Syscall::ToolsCall { name, args } => {
        let (kernel, trace, name, args) = (self.clone(), trace.clone(), name.clone(), args.clone());
        Some(Box::pin(async move { kernel.tools_call(&trace, &name, args).await }))
      }
      Syscall::ToolsPropose(args) => {
        let (kernel, me, args) = (self.clone(), pid.to_string(), args.clone());
        Some(Box::pin(async move { kernel.tools_propose(&me, args).await }))
      }
      Syscall::ModelComplete(args) => {
        let (kernel, trace, args) = (self.clone(), trace.clone(), args.clone());
        Some(Box::pin(async move { kernel.model_complete(&trace, args).await }))
      }
      Syscall::ProcWait { pid: target, timeout_ms } => {
        let (kernel, me, target) = (self.clone(), pid.to_string(), target.clone());
        let timeout = timeout_ms.map(Duration::from_millis);
        Some(Box::pin(async move { kernel.wait_child(&me, &target, timeout).await }))
      }
      _ => None,
    }
  }

  /// A trace for a record about `pid` that is not one of its syscalls as such (a
  /// lifecycle event, a connection a fetch makes).
  pub(super) fn trace_of(&self, pid: &str, syscall: &str, args_digest: String) -> Trace {
    let processes = lock(&self.0.processes);
    let process = processes.get(pid);
    Trace {
      pid: pid.to_string(),
      lineage: process.map(|p| p.lineage.clone()).unwrap_or_default(),
      syscall: syscall.to_string(),
      args_digest,
      cwd: process.map(|p| p.cwd.clone()).unwrap_or_else(WsPath::root),
      step: None,
      tool: None,
      within: None,
    }
  }

  /// Counts the syscall against the process's budget; a process over budget is stopped.
  fn account(&self, pid: &str, name: &str, args_digest: &str) -> Result<Who, SyscallError> {
    let mut processes = lock(&self.0.processes);
    // A paused process makes no progress past its next syscall until it is resumed
    // (or cancelled). Each isolate has its own thread, so blocking it blocks only it.
    // A host shutting down starts no new syscall; its isolates are about to stop.
    while processes.get(pid).is_some_and(|p| matches!(p.state(), State::Paused { .. }))
      || self.0.draining.load(std::sync::atomic::Ordering::SeqCst)
    {
      processes = self.0.resumed.wait(processes).unwrap_or_else(|e| e.into_inner());
    }
    let process = processes
      .get_mut(pid)
      .ok_or_else(|| SyscallError::InvalidArgument(format!("{name}: no such process {pid}")))?;
    if !matches!(process.state(), State::Running | State::Waiting(_)) {
      return Err(SyscallError::InvalidArgument(format!("{name}: process {pid} is {}", process.state().name())));
    }
    process.syscalls += 1;
    let who = Who { lineage: process.lineage.clone(), cwd: process.cwd.clone() };
    let over = process.limits.max_syscalls.filter(|max| process.syscalls > *max);
    drop(processes);
    if let Some(max) = over {
      let error = SyscallError::LimitExceeded(format!(
        "{name}: process {pid} has used its budget of {max} syscalls; raise it with --max-syscalls"
      ));
      let trace = Trace {
        pid: pid.to_string(),
        lineage: who.lineage.clone(),
        syscall: name.to_string(),
        args_digest: args_digest.to_string(),
        cwd: who.cwd.clone(),
        step: None,
        tool: None,
        within: None,
      };
      let by = Some(format!("limit max_syscalls={max}"));
      self.audit_as(Actor::System, &trace, None, Verdict::Deny, by, outcome_of(&Err::<Value, _>(error.clone())))?;
      self.finish(pid, ExitStatus::LimitExceeded { limit: format!("max_syscalls={max}") });
      return Err(error);
    }
    Ok(who)
  }

  /// The policy's decision on one request, without side effects: the process's own
  /// rules (its fork mode's denials) first, like every deny, then the kernel's policy.
  fn judge(&self, pid: &str, request: &Request, op_digest: &str) -> Decision {
    let decision = self.judge_by_policy(pid, request, op_digest);
    // Calling a tool in the process's table needs no grant; deny and ask rules still hold.
    if request.kind == Kind::ToolCall && matches!(decision, Decision::Denied { by: DeniedBy::NoGrant { .. } }) {
      if let Ok(Some(_)) = self.tool_in_table(pid, &request.resource) {
        let capability = Capability::new(Kind::ToolCall, Some(&request.resource)).unwrap_or_else(|_| Capability::any(Kind::ToolCall));
        return Decision::Allowed { by: AllowedBy::Rule(super::policy::Rule::new(Effect::Allow, capability, RuleSource::ToolTable)) };
      }
    }
    decision
  }

  fn judge_by_policy(&self, pid: &str, request: &Request, op_digest: &str) -> Decision {
    let now = self.0.clock.now_ms();
    let processes = lock(&self.0.processes);
    let process = processes.get(pid);
    let own_denial = process
      .and_then(|p| p.rules.iter().find(|r| r.effect == Effect::Deny && r.matches(request)))
      .map(|rule| Decision::Denied { by: DeniedBy::Rule(rule.clone()) });
    let grants = process.map(|p| p.grants.as_slice()).unwrap_or(&[]);
    own_denial.unwrap_or_else(|| {
      let host = self.0.policy.read().unwrap_or_else(|e| e.into_inner());
      // A resumed process keeps the policy it was started under, plus the rules humans
      // added on this host ("always" answers).
      match process.and_then(|p| p.policy.as_ref()) {
        Some(own) => {
          let mut combined = own.clone();
          host.rules().iter().filter(|r| matches!(r.source, RuleSource::Human { .. })).for_each(|r| combined.push(r.clone()));
          combined.decide(grants, request, op_digest, now)
        }
        None => host.decide(grants, request, op_digest, now),
      }
    })
  }

  /// Decides one request: allowed (spending a use of a counted grant, atomically with
  /// the decision), to be asked, or denied with what would allow it.
  pub(super) fn decide(&self, pid: &str, syscall: &str, request: &Request, op_digest: &str) -> Result<Judgement, SyscallError> {
    let needed = request.suggestion().map(|c| c.to_string()).unwrap_or_default();
    let attempt = format!("{syscall} \"{}\"", display_resource(request));
    let (reason, message) = match self.judge(pid, request, op_digest) {
      Decision::Allowed { by: AllowedBy::Grant(id) } => {
        let mut processes = lock(&self.0.processes);
        let grant = processes.get_mut(pid).and_then(|p| p.grants.iter_mut().find(|g| g.id == id));
        // Name the grant's capability and origin: "grant g2" alone means nothing in a log.
        return Ok(Judgement::Allowed(match grant {
          Some(grant) => {
            let spent = grant.uses_left.is_some() && grant.spend();
            let uses = if spent { ", one use spent" } else { "" };
            format!("grant {id} ({} from {}{uses})", grant.capability, grant.source)
          }
          None => format!("grant {id}"),
        }));
      }
      Decision::Allowed { by } => return Ok(Judgement::Allowed(by.to_string())),
      Decision::Ask { rule } => return Ok(Judgement::Ask(rule)),
      Decision::Denied { by: DeniedBy::Rule(rule) } => (
        format!("rule \"{rule}\" from {}", rule.source),
        format!("{attempt} denied by rule \"{rule}\" from {}", rule.source),
      ),
      Decision::Denied { by: DeniedBy::NoGrant { .. } } => (
        "no grant".to_string(),
        format!(
          "{attempt} denied: it needs {needed} and no grant of this process covers it. \
           To allow it, run with --allow {needed}{}",
          glob_hint(request)
        ),
      ),
    };
    Err(SyscallError::PermissionDenied { syscall: syscall.to_string(), capability: needed, reason, message })
  }

  /// Fails an operation that cannot succeed, before a human is asked to approve it:
  /// reading, removing or entering what does not exist, or writing into a directory
  /// that does not exist.
  fn precheck(&self, call: &Syscall, path: &WsPath) -> Result<(), SyscallError> {
    let needs_parent = matches!(call, Syscall::WriteText { .. } | Syscall::WriteBytes { .. })
      || matches!(call, Syscall::Mkdir { recursive: false, .. });
    let target = match call {
      Syscall::Mkdir { recursive: true, .. } => return Ok(()),
      _ if needs_parent => match path.parent() {
        Some(parent) => parent,
        None => return Ok(()),
      },
      Syscall::ReadText { .. } | Syscall::ReadBytes { .. } | Syscall::List { .. } | Syscall::Stat { .. }
      | Syscall::Chdir { .. } | Syscall::Remove { .. } => path.clone(),
      _ => return Ok(()),
    };
    // Looking is allowed here: the definite-denial check has passed.
    let exists = self.0.workspace.stat(&target, &|_| Ok(())).map_err(|e| fs_error(call.name(), e))?;
    if needs_parent && exists.kind != EntryKind::Dir {
      return Err(SyscallError::InvalidArgument(format!("{}: \"{target}\" is not a directory", call.name())));
    }
    Ok(())
  }

  fn perform(&self, pid: &str, trace: &Trace, call: &Syscall, path: Option<&WsPath>) -> Result<Value, SyscallError> {
    let seq = trace.step.as_ref().map_or(0, |s| s.seq);
    let ws = &self.0.workspace;
    let path = || path.expect("resolve() gives every fs syscall a path");
    // Each fs operation re-checks the capability it needs on where the path physically
    // leads, from the handle it then uses (see FsGuard).
    let guard = |kind: Kind| FsGuard::new(self, trace, call, kind, path());
    match call {
      Syscall::ProcSelf => self.proc_self(pid),
      Syscall::Exit { .. } => Ok(Value::Null),
      Syscall::ProcSpawn(spec) => self.spawn_child(pid, spec.clone()),
      Syscall::ProcSignal { pid: target, signal } => self.signal(pid, target, *signal),
      Syscall::ProcList => Ok(self.list(pid)),
      Syscall::CapsList => Ok(self.caps_list(pid)),
      Syscall::CapsDrop { capability } => self.caps_drop(pid, capability),
      Syscall::Checkpoint { label } => self.checkpoint(pid, label.as_deref(), seq),
      Syscall::ToolsList => self.tools_list(pid),
      Syscall::ToolsRevoke { name } => self.tools_revoke(pid, name),
      // Made by `run_call` with what decided it.
      Syscall::ToolsRegister { .. } => Err(SyscallError::InvalidArgument("tools.register is made by run_call".into())),
      Syscall::MemGet(args) => self.mem_get(pid, args),
      Syscall::MemList(args) => self.mem_list(pid, args),
      // Made by `run_call` in the transaction that journals it.
      Syscall::MemPut(_) | Syscall::MemDelete(_) => {
        Err(SyscallError::InvalidArgument(format!("{} is made with its journal record", call.name())))
      }
      // Dispatched by `waiting()` before it gets here.
      Syscall::Emit(args) => self.emit(pid, args.clone()),
      Syscall::ProcWait { .. }
      | Syscall::NetFetch(_)
      | Syscall::HumanAsk(_)
      | Syscall::ShellExec(_)
      | Syscall::Sleep { .. }
      | Syscall::CapsRequest(_)
      | Syscall::Next(_)
      | Syscall::ToolsCall { .. }
      | Syscall::ToolsPropose(_)
      | Syscall::ModelComplete(_) => {
        Err(SyscallError::InvalidArgument(format!("{} must be awaited", call.name())))
      }
      Syscall::Now => Ok(json!(self.0.clock.now_ms())),
      Syscall::Random => Ok(json!(rand::random::<f64>())),
      Syscall::Cwd => {
        let processes = lock(&self.0.processes);
        Ok(json!(processes.get(pid).map(|p| p.cwd.to_string()).unwrap_or_default()))
      }
      Syscall::ReadText { .. } => {
        let guard = guard(Kind::FsRead);
        let bytes = ws.read(path(), self.0.max_read_bytes, &|real| guard.check(real)).map_err(|e| guard.fail(e))?;
        String::from_utf8(bytes).map(Value::String).map_err(|e| {
          SyscallError::InvalidArgument(format!(
            "fs.readText: \"{}\" is not UTF-8 text (invalid byte at offset {}); read it with libos.fs.readBytes",
            path(),
            e.utf8_error().valid_up_to()
          ))
        })
      }
      Syscall::ReadBytes { .. } => {
        let guard = guard(Kind::FsRead);
        let bytes = ws.read(path(), self.0.max_read_bytes, &|real| guard.check(real)).map_err(|e| guard.fail(e))?;
        Ok(json!(base64::engine::general_purpose::STANDARD.encode(bytes)))
      }
      Syscall::WriteText { text, append, .. } => {
        let guard = guard(Kind::FsWrite);
        ws.write(path(), text.as_bytes(), write_mode(*append), &|real| guard.check(real)).map_err(|e| guard.fail(e))?;
        Ok(Value::Null)
      }
      Syscall::WriteBytes { data, append, .. } => {
        let bytes = base64::engine::general_purpose::STANDARD
          .decode(data)
          .map_err(|e| SyscallError::InvalidArgument(format!("fs.writeBytes: data is not base64: {e}")))?;
        let guard = guard(Kind::FsWrite);
        ws.write(path(), &bytes, write_mode(*append), &|real| guard.check(real)).map_err(|e| guard.fail(e))?;
        Ok(Value::Null)
      }
      Syscall::List { .. } => {
        let guard = guard(Kind::FsRead);
        let entries = ws.list(path(), &|real| guard.check(real)).map_err(|e| guard.fail(e))?;
        Ok(Value::Array(
          entries
            .into_iter()
            .map(|e| json!({ "name": e.name, "kind": kind_name(e.kind), "size": e.size }))
            .collect(),
        ))
      }
      Syscall::Stat { .. } => {
        let guard = guard(Kind::FsRead);
        let stat = ws.stat(path(), &|real| guard.check(real)).map_err(|e| guard.fail(e))?;
        Ok(json!({
          "kind": kind_name(stat.kind),
          "size": stat.size,
          "modifiedMs": stat.modified_ms,
          "readonly": stat.readonly,
        }))
      }
      Syscall::Mkdir { recursive, .. } => {
        let guard = guard(Kind::FsWrite);
        ws.mkdir(path(), *recursive, &|real| guard.check(real)).map_err(|e| guard.fail(e))?;
        Ok(Value::Null)
      }
      Syscall::Remove { recursive, .. } => {
        let guard = guard(Kind::FsDelete);
        ws.remove(path(), *recursive, &|real| guard.check(real)).map_err(|e| guard.fail(e))?;
        Ok(Value::Null)
      }
      Syscall::Chdir { .. } => {
        let guard = guard(Kind::FsRead);
        let stat = ws.stat(path(), &|real| guard.check(real)).map_err(|e| guard.fail(e))?;
        if stat.kind != EntryKind::Dir {
          return Err(SyscallError::InvalidArgument(format!("fs.chdir: \"{}\" is not a directory", path())));
        }
        let mut processes = lock(&self.0.processes);
        if let Some(p) = processes.get_mut(pid) {
          p.cwd = path().clone();
        }
        Ok(Value::Null)
      }
    }
  }

  pub(super) fn record_lifecycle(&self, pid: &str, syscall: &str, detail: &Value, outcome: &str) -> std::io::Result<()> {
    let trace = self.trace_of(pid, syscall, digest(detail.to_string().as_bytes()));
    self
      .audit_as(Actor::System, &trace, None, Verdict::None, None, outcome.to_string())
      .map_err(|e| std::io::Error::other(e.to_string()))
  }

  fn record(&self, entry: Entry) -> Result<(), SyscallError> {
    self
      .0
      .audit
      .append(entry)
      .map_err(|e| SyscallError::OperationFailed(format!("cannot write the audit log, so nothing was done: {e}")))
  }
}

/// Resolves the resource a syscall touches against the caller (`pid`, its cwd, the
/// host's default model), and names the capability it needs.
fn resolve(call: &Syscall, pid: &str, cwd: &WsPath, default_model: Option<&str>) -> Result<Access, SyscallError> {
  let (kind, raw) = match call {
    Syscall::ReadText { path } | Syscall::ReadBytes { path } | Syscall::List { path } | Syscall::Stat { path }
    | Syscall::Chdir { path } => (Kind::FsRead, path),
    Syscall::WriteText { path, .. } | Syscall::WriteBytes { path, .. } | Syscall::Mkdir { path, .. } => {
      (Kind::FsWrite, path)
    }
    Syscall::Remove { path, .. } => (Kind::FsDelete, path),
    Syscall::NetFetch(fetch) => return Ok(Access { request: Some(Request::new(Kind::Net, fetch.target()?)), path: None }),
    Syscall::ProcSpawn(_) => return Ok(Access { request: Some(Request::new(Kind::ProcSpawn, "")), path: None }),
    Syscall::HumanAsk(_) => return Ok(Access { request: Some(Request::new(Kind::HumanAsk, "")), path: None }),
    Syscall::Emit(args) => {
      super::events::validate_topic(&args.topic)?;
      return Ok(Access { request: Some(Request::new(Kind::EventEmit, args.topic.clone())), path: None });
    }
    Syscall::Next(args) => {
      super::events::validate_topic(&args.topic)?;
      return Ok(Access { request: Some(Request::new(Kind::EventWait, args.topic.clone())), path: None });
    }
    Syscall::ShellExec(args) => {
      super::shell::validate_name(&args.program)?;
      return Ok(Access { request: Some(Request::new(Kind::Shell, args.program.clone())), path: None });
    }
    Syscall::ProcSignal { .. } => return Ok(Access { request: Some(Request::new(Kind::ProcSignal, "")), path: None }),
    Syscall::ModelComplete(args) => {
      return Ok(Access { request: Some(Request::new(Kind::Model, args.target(default_model)?.resource())), path: None })
    }
    Syscall::ToolsCall { name, .. } => return Ok(Access { request: Some(super::tools::call_request(name)), path: None }),
    Syscall::ToolsRegister { .. } => return Ok(Access { request: Some(Request::new(Kind::ToolRegister, "")), path: None }),
    Syscall::ToolsList | Syscall::ToolsPropose(_) | Syscall::ToolsRevoke { .. } => return Ok(Access { request: None, path: None }),
    // The caller's own namespace needs no capability (DESIGN §4); see kernel::memory.
    Syscall::Checkpoint { .. } => return Ok(Access { request: None, path: None }),
    Syscall::MemPut(args) => return Ok(Access { request: args.access(pid)?, path: None }),
    Syscall::MemGet(args) => return Ok(Access { request: args.access(pid)?, path: None }),
    Syscall::MemList(args) => return Ok(Access { request: args.access(pid)?, path: None }),
    Syscall::MemDelete(args) => return Ok(Access { request: args.access(pid)?, path: None }),
    Syscall::ProcSelf
    | Syscall::Exit { .. }
    | Syscall::Now
    | Syscall::Random
    | Syscall::Cwd
    | Syscall::ProcWait { .. }
    | Syscall::ProcList
    | Syscall::CapsList
    | Syscall::CapsDrop { .. }
    | Syscall::CapsRequest(_)
    | Syscall::Sleep { .. } => return Ok(Access { request: None, path: None }),
  };
  let path = WsPath::resolve(cwd, raw).map_err(|e| {
    let message = format!("{} \"{raw}\": {e}", call.name());
    if e.is_escape() {
      SyscallError::PermissionDenied {
        syscall: call.name().to_string(),
        capability: String::new(),
        reason: "outside the workspace".to_string(),
        message: format!("{message}; nothing outside the workspace can be granted"),
      }
    } else {
      SyscallError::InvalidArgument(message)
    }
  })?;
  let request = Request { kind, resource: path.as_str().to_string() };
  Ok(Access { request: Some(request), path: Some(path) })
}

/// The Object Memory write a syscall makes, validated, for `run_call` to make in the same
/// transaction as its journal and audit records.
fn memory_write(call: &Syscall, pid: &str, now_ms: u64) -> Result<Option<crate::store::memory::MemWrite>, SyscallError> {
  Ok(match call {
    Syscall::MemPut(args) => Some(args.write(pid, pid, now_ms)?),
    Syscall::MemDelete(args) => Some(args.write(pid)?),
    _ => None,
  })
}

/// What an approval or one-shot grant is bound to: the syscall and its full operands.
fn call_digest_input(call: &Syscall) -> String {
  format!("{call:?}")
}

fn display_resource(request: &Request) -> &str {
  if request.resource.is_empty() {
    "."
  } else {
    &request.resource
  }
}

/// For a path, suggests the directory glob too: granting one file at a time is rarely
/// what a user wants.
fn glob_hint(request: &Request) -> String {
  match request.kind {
    Kind::FsRead | Kind::FsWrite | Kind::FsDelete => match request.resource.rsplit_once('/') {
      Some((dir, _)) => format!(" (or a glob such as --allow '{}:{dir}/**')", request.kind.name()),
      None => String::new(),
    },
    _ => String::new(),
  }
}

fn write_mode(append: bool) -> WriteMode {
  if append {
    WriteMode::Append
  } else {
    WriteMode::Replace
  }
}

fn kind_name(kind: EntryKind) -> &'static str {
  match kind {
    EntryKind::File => "file",
    EntryKind::Dir => "dir",
    EntryKind::Symlink => "symlink",
    EntryKind::Other => "other",
  }
}

/// The policy decision again, on the physical workspace path a filesystem operation is
/// about to touch, called by the provider from the handle it then uses (§7: the check is
/// the open). `dispatch` decided on the path as written; through a symlink, `docs/x`
/// may really be `secrets/key`, and a deny rule on that must hold — also for a link
/// swapped in after that first check. Same process, same grants, same operation digest;
/// no grant is spent here. A refusal is kept so `perform` can return it whole.
struct FsGuard<'a> {
  kernel: &'a Kernel,
  trace: &'a Trace,
  call: &'a Syscall,
  kind: Kind,
  path: &'a WsPath,
  op_digest: String,
  refusal: std::cell::RefCell<Option<SyscallError>>,
}

impl<'a> FsGuard<'a> {
  fn new(kernel: &'a Kernel, trace: &'a Trace, call: &'a Syscall, kind: Kind, path: &'a WsPath) -> FsGuard<'a> {
    let op_digest = digest(call_digest_input(call).as_bytes());
    FsGuard { kernel, trace, call, kind, path, op_digest, refusal: Default::default() }
  }

  fn check(&self, real: &WsPath) -> Result<(), String> {
    // The path as written was decided already (and a one-shot grant spent on it).
    if real == self.path {
      return Ok(());
    }
    let request = Request::new(self.kind, real.as_str());
    if let Err(SyscallError::PermissionDenied { message, .. }) = tool_bound(self.trace, self.call.name(), &request) {
      return Err(message);
    }
    let decision = self.kernel.judge(&self.trace.pid, &request, &self.op_digest);
    let needed = request.suggestion().map(|c| c.to_string()).unwrap_or_default();
    // `reason` as `decide` names it for the audit log; `verdict` completes a sentence.
    let (reason, verdict) = match decision {
      Decision::Allowed { .. } => return Ok(()),
      Decision::Denied { by: DeniedBy::Rule(rule) } => {
        (format!("rule \"{rule}\""), format!("is denied by rule \"{rule}\""))
      }
      Decision::Denied { by: DeniedBy::NoGrant { .. } } => (
        "no grant".to_string(),
        format!(
          "needs {needed}, which no grant of this process covers. To allow it, run with --allow {needed}{}",
          glob_hint(&request)
        ),
      ),
      Decision::Ask { rule } => (
        format!("rule \"{rule}\" for the real path"),
        format!("needs a human's approval of its own (rule \"{rule}\"); approve the real path, not the link"),
      ),
    };
    let syscall = self.call.name();
    let path = self.path;
    let subject = if real == path {
      // Decided differently a moment after `dispatch` (a grant expired or was revoked).
      format!("{syscall} \"{path}\"")
    } else if matches!(self.call, Syscall::Mkdir { .. }) && path.starts_with(real) {
      format!("{syscall} \"{path}\" would create \"{real}\", and that")
    } else {
      format!("{syscall} \"{path}\" resolves to \"{real}\" through a symlink, and that")
    };
    self.refusal.replace(Some(SyscallError::PermissionDenied {
      syscall: syscall.to_string(),
      capability: needed,
      reason,
      message: format!("{subject} {verdict}"),
    }));
    Err(format!("that {verdict}"))
  }

  fn fail(&self, error: FsError) -> SyscallError {
    match (error, self.refusal.take()) {
      (FsError::Denied { .. }, Some(refusal)) => refusal,
      (error, _) => fs_error(self.call.name(), error),
    }
  }
}

pub(super) fn fs_error(syscall: &str, error: FsError) -> SyscallError {
  let message = format!("{syscall}: {error}");
  match error {
    FsError::NotFound { .. } => SyscallError::NotFound(message),
    FsError::AlreadyExists { .. } => SyscallError::AlreadyExists(message),
    FsError::TooLarge { .. } => SyscallError::LimitExceeded(message),
    FsError::Escapes { .. } | FsError::Reserved { .. } => SyscallError::PermissionDenied {
      syscall: syscall.to_string(),
      capability: String::new(),
      reason: "outside the workspace".to_string(),
      message,
    },
    FsError::Invalid(_) | FsError::Refused { .. } | FsError::NotADirectory { .. } | FsError::IsADirectory { .. } | FsError::NotEmpty { .. } => {
      SyscallError::InvalidArgument(message)
    }
    FsError::Denied { reason, .. } => {
      SyscallError::PermissionDenied { syscall: syscall.to_string(), capability: String::new(), reason, message }
    }
    FsError::Io { .. } => SyscallError::OperationFailed(message),
  }
}

fn outcome_of<T>(result: &Result<T, SyscallError>) -> String {
  match result {
    Ok(_) => "ok".to_string(),
    Err(e) => format!("error {:?}: {e}", e.class()),
  }
}
