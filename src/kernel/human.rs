//! The human queue, kernel side. When a syscall's decision is "ask", the kernel writes a
//! durable request and the syscall waits for its answer. An approval becomes a grant,
//! and the syscall is then decided again: "once" grants are bound to the digest of
//! exactly this operation and spent with it, "process" grants last for the process,
//! and "always" adds a rule. `libos.human.ask` questions use the same queue.
//!
//! Only a human channel answers (the CLI's `alos approve`/`deny`, or the terminal
//! prompt); no syscall can.

use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use super::audit::Verdict;
use super::capability::Capability;
use super::capability::Request;
use super::dispatch::Trace;
use super::error::SyscallError;
use super::grant::Grant;
use super::grant::GrantSource;
use super::lock;
use super::policy::Effect;
use super::policy::Rule;
use super::policy::RuleSource;
use super::process::State;
use super::process::WaitReason;
use super::syscall::Syscall;
use super::Kernel;
use crate::store::human::HumanRequest;
use crate::store::human::NewRequest;
use crate::store::human::RequestKind;

/// How `ask` decisions reach a human.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum HumanMode {
  /// Prompt on this terminal (and accept answers from any other).
  Tty,
  /// Wait for `alos approve`/`alos deny` from another terminal.
  #[default]
  Queue,
  /// Deny everything that would need a human.
  Deny,
}

/// How often a waiting syscall looks for its answer in the shared database.
const POLL: Duration = Duration::from_millis(150);

/// Arguments of `human.ask`.
#[derive(Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AskArgs {
  pub question: String,
  #[serde(default)]
  pub choices: Option<Vec<String>>,
  #[serde(default)]
  pub timeout_ms: Option<u64>,
  /// The answer if the deadline passes.
  #[serde(default)]
  pub default: Option<String>,
}

/// What the human is shown for an operation: the syscall, the resolved resource, and
/// for writes the size, digest and a short preview of the content.
pub(super) fn describe(call: &Syscall, request: &Request) -> String {
  let target = if request.resource.is_empty() { "." } else { &request.resource };
  let content = match call {
    Syscall::WriteText { text, append, .. } => Some((text.as_bytes(), *append, Some(text.as_str()))),
    Syscall::WriteBytes { data, append, .. } => Some((data.as_bytes(), *append, None)),
    _ => None,
  };
  match content {
    Some((bytes, append, text)) => {
      let preview: String = text.map(|t| t.chars().take(120).collect()).unwrap_or_else(|| "(binary)".into());
      format!(
        "{} \"{target}\" ({}{} bytes, {}): {preview:?}",
        call.name(),
        if append { "append " } else { "" },
        bytes.len(),
        super::audit::digest(bytes)
      )
    }
    None => format!("{} \"{target}\" (needs {})", call.name(), request.suggestion().map(|c| c.to_string()).unwrap_or_default()),
  }
}

/// A short description of an operation, for a human (no capability needed to say it).
pub(super) fn describe_call(call: &Syscall) -> String {
  match call {
    Syscall::WriteText { path, text, append } => {
      format!("{} \"{path}\" ({}{} bytes)", call.name(), if *append { "append " } else { "" }, text.len())
    }
    Syscall::WriteBytes { path, .. } | Syscall::Mkdir { path, .. } | Syscall::Remove { path, .. } => {
      format!("{} \"{path}\"", call.name())
    }
    Syscall::ShellExec(args) => format!("shell.exec {} {:?}", args.program, args.args),
    Syscall::NetFetch(fetch) => format!("net.fetch {}", fetch.url),
    Syscall::Emit(args) => format!("events.emit \"{}\"", args.topic),
    Syscall::ProcSpawn(spec) => format!("proc.spawn {}", spec.entry),
    Syscall::ProcSignal { pid, signal } => format!("proc.signal {pid} {signal:?}"),
    other => other.name().to_string(),
  }
}

impl Kernel {
  /// Parks `call` on a human request; the returned future completes with the
  /// syscall's result once a human has answered.
  pub(super) fn ask_for_approval(
    &self,
    trace: Trace,
    call: Syscall,
    request: Request,
    rule: Rule,
    op_digest: String,
    detail: String,
  ) -> Result<super::dispatch::Dispatched, SyscallError> {
    let attempt = format!("{} \"{}\"", call.name(), request.resource);
    if self.0.human == HumanMode::Deny {
      let error = SyscallError::PermissionDenied {
        syscall: call.name().to_string(),
        capability: request.suggestion().map(|c| c.to_string()).unwrap_or_default(),
        reason: format!("rule \"{rule}\" asks a human, and humans are not asked (--human deny)"),
        message: format!("{attempt} needs a human's approval (rule \"{rule}\" from {}), and this run has --human deny", rule.source),
      };
      self.audit_call(&trace, Some(&request), Verdict::Deny, Some(format!("rule \"{rule}\"")), outcome_error(&error))?;
      return Err(error);
    }
    let pending = self.open_request(&trace, RequestKind::Approval, Some(&request), detail, op_digest, None, None, None)?;
    if trace.step.as_ref().and_then(|s| s.resumed_request()).is_none() {
      self.audit_call(
        &trace,
        Some(&request),
        Verdict::Ask,
        Some(format!("rule \"{rule}\" from {}", rule.source)),
        format!("waiting for human request {}", pending.id),
      )?;
    }
    self.note_request(&trace, &pending.id)?;
    let kernel = self.clone();
    Ok(super::dispatch::Dispatched::Waiting(Box::pin(async move {
      let answered = kernel.await_answer(&trace, &pending).await?;
      match answered.status.as_str() {
        "approved" => {
          let capability = request
            .suggestion()
            .ok_or_else(|| SyscallError::InvalidArgument(format!("no capability can allow {}", request.resource)))?;
          kernel.grant_approval(&trace.pid, &answered, capability, Some(answered.op_digest.clone()));
        }
        "timed_out" => {
          return Err(SyscallError::Timeout(format!("{attempt}: approval request {} timed out; the default is deny", answered.id)))
        }
        "cancelled" => return Err(SyscallError::OperationFailed(format!("{attempt}: request {} was cancelled", answered.id))),
        _ => {
          let why = answered.reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default();
          return Err(SyscallError::PermissionDenied {
            syscall: call.name().to_string(),
            capability: request.suggestion().map(|c| c.to_string()).unwrap_or_default(),
            reason: format!("denied by a human (request {})", answered.id),
            message: format!("{attempt} was denied by a human (request {}){why}", answered.id),
          });
        }
      }
      // Decided again: the new grant (or rule) now allows exactly this operation.
      match kernel.run_call(trace, call)? {
        super::dispatch::Dispatched::Ready(result) => result,
        super::dispatch::Dispatched::Waiting(future) => future.await,
      }
    })))
  }

  /// `libos.human.ask`: a question, answered with a value.
  pub(super) async fn ask_question(&self, trace: Trace, args: AskArgs) -> Result<Value, SyscallError> {
    let deadline = args.timeout_ms.map(|ms| self.0.clock.now_ms() + ms);
    let op_digest = super::audit::digest(args.question.as_bytes());
    let pending = self.open_request(
      &trace,
      RequestKind::Question,
      None,
      args.question.clone(),
      op_digest,
      args.choices.clone(),
      args.default.clone(),
      deadline,
    )?;
    self.note_request(&trace, &pending.id)?;
    let answered = self.await_answer(&trace, &pending).await?;
    match answered.status.as_str() {
      "answered" => Ok(Value::String(answered.answer.unwrap_or_default())),
      "timed_out" => match args.default {
        Some(default) => Ok(Value::String(default)),
        None => Err(SyscallError::Timeout(format!("human.ask: question {} was not answered in time", answered.id))),
      },
      _ => Err(SyscallError::PermissionDenied {
        syscall: "human.ask".into(),
        capability: "human.ask".into(),
        reason: format!("declined by a human (request {})", answered.id),
        message: format!(
          "human.ask: the human declined to answer question {}{}",
          answered.id,
          answered.reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default()
        ),
      }),
    }
  }

  /// Journals that `trace` waits on human request `id`: on its own journal record, or
  /// for a tool's syscall on the caller's `tools.call`.
  fn note_request(&self, trace: &Trace, id: &str) -> Result<(), SyscallError> {
    let wait = serde_json::json!({ "request": id });
    match (&trace.step, &trace.within) {
      (None, Some(call)) => self.note_wait(call, wait),
      _ => self.note_wait(trace, wait),
    }
  }

  /// Opens a human request, or, for a resumed syscall that was already waiting on one,
  /// picks that one up again (answered or not).
  #[allow(clippy::too_many_arguments)]
  pub(super) fn open_request(
    &self,
    trace: &Trace,
    kind: RequestKind,
    request: Option<&Request>,
    detail: String,
    op_digest: String,
    choices: Option<Vec<String>>,
    default_answer: Option<String>,
    deadline_ms: Option<u64>,
  ) -> Result<HumanRequest, SyscallError> {
    // A tool's request is noted on the caller's `tools.call` (see `Trace::within`).
    let step = trace.step.as_ref().or(trace.within.as_ref().and_then(|call| call.step.as_ref()));
    if let Some(id) = step.and_then(|s| s.resumed_request()) {
      if let Ok(Some(existing)) = self.0.db.request(&id) {
        if existing.pid == trace.pid && existing.op_digest == op_digest {
          return Ok(existing);
        }
      }
    }
    let created = self
      .0
      .db
      .create_request(NewRequest {
        kind,
        pid: trace.pid.clone(),
        lineage: trace.lineage.clone(),
        syscall: trace.syscall.clone(),
        capability: request.and_then(Request::suggestion).map(|c| c.to_string()),
        resource: request.map(|r| r.resource.clone()),
        op_digest,
        detail,
        choices,
        default_answer,
        created_ms: self.0.clock.now_ms(),
        deadline_ms,
      })
      .map_err(|e| SyscallError::OperationFailed(format!("cannot record the human request: {e}")))?;
    self.0.channel.request(&created);
    Ok(created)
  }

  /// Waits, with the process marked as waiting for a human, until the request is no
  /// longer pending; closes it as timed out at its deadline, or as cancelled if the
  /// process ended meanwhile.
  pub(super) async fn await_answer(&self, trace: &Trace, pending: &HumanRequest) -> Result<HumanRequest, SyscallError> {
    let pid = trace.pid.as_str();
    // A tool waiting for a human is not running: its wall-time clock stops meanwhile.
    let tool_frame = trace.tool.as_ref().map(|tool| super::tools::frame_id(pid, &tool.name));
    let host = self.0.tool_host.get().cloned();
    let human_wait = |waiting: bool| {
      if let (Some(frame), Some(host)) = (&tool_frame, &host) {
        host.human_wait(frame, waiting);
      }
    };
    human_wait(true);
    self.set_waiting(pid, true);
    self.record_state(pid);
    let result = async {
      loop {
        let current = self
          .0
          .db
          .request(&pending.id)
          .map_err(|e| SyscallError::OperationFailed(e.to_string()))?
          .ok_or_else(|| SyscallError::OperationFailed(format!("request {} vanished", pending.id)))?;
        if current.status != "pending" {
          return Ok(current);
        }
        let now = self.0.clock.now_ms();
        let live = lock(&self.0.processes).get(pid).is_some_and(|p| p.is_live());
        let closing = if !live {
          Some("cancelled")
        } else if current.deadline_ms.is_some_and(|deadline| now >= deadline) {
          Some("timed_out")
        } else {
          None
        };
        if let Some(status) = closing {
          self.0.db.close_request(&pending.id, status, now).map_err(|e| SyscallError::OperationFailed(e.to_string()))?;
          continue;
        }
        // On a virtual clock a deadline passes at once (an answer already given wins).
        if let (true, Some(deadline)) = (self.0.clock.is_virtual(), current.deadline_ms) {
          self.0.clock.sleep_until(deadline).await;
          continue;
        }
        // Waiting for a human may take days: give the isolate up meanwhile.
        if self.try_hibernate(pid, super::hibernate::Wake::Request { id: pending.id.clone() }) {
          return std::future::pending().await;
        }
        tokio::time::sleep(POLL).await;
      }
    }
    .await;
    human_wait(false);
    self.set_waiting(pid, false);
    self.record_state(pid);
    result
  }

  /// Marks the process as waiting for a human while at least one of its syscalls does.
  fn set_waiting(&self, pid: &str, waiting: bool) {
    let mut processes = lock(&self.0.processes);
    let Some(process) = processes.get_mut(pid) else { return };
    if waiting {
      process.human_waits += 1;
      if process.human_waits == 1 {
        let _ = process.transition(State::Waiting(WaitReason::Human));
      }
    } else {
      process.human_waits = process.human_waits.saturating_sub(1);
      if process.human_waits == 0 && process.state() == State::Waiting(WaitReason::Human) {
        let _ = process.transition(State::Running);
      }
    }
  }

  /// Turns an approval into authority: a one-use grant (bound to the operation's digest
  /// when there is one), a grant for the process, or a rule for good.
  fn grant_approval(&self, pid: &str, answered: &HumanRequest, capability: Capability, bound: Option<String>) {
    let source = GrantSource::Human { request: answered.id.clone() };
    match answered.scope.as_deref() {
      Some("always") => {
        let rule = Rule::new(Effect::Allow, capability, RuleSource::Human { request: answered.id.clone() });
        self.0.policy.write().unwrap_or_else(|e| e.into_inner()).push(rule);
      }
      scope => {
        let once = scope != Some("process");
        let grant = Grant {
          uses_left: once.then_some(1),
          bound_digest: bound.filter(|_| once),
          ..self.new_grant(capability, source)
        };
        if let Some(process) = lock(&self.0.processes).get_mut(pid) {
          process.grants.push(grant);
        }
      }
    }
  }
}

fn outcome_error(error: &SyscallError) -> String {
  format!("error {:?}: {error}", error.class())
}

/// Records a human's answer to request `id` in the state directory, with its audit
/// record (actor: human). This is the only way a request is answered; it is reached from
/// the command line, never from a syscall.
pub fn answer(
  state_dir: &std::path::Path,
  id: &str,
  answer: crate::store::human::Answer,
  by: &str,
  now_ms: u64,
) -> Result<HumanRequest, String> {
  use crate::store::human::Answer;
  let db = crate::store::Db::open(state_dir).map_err(|e| e.to_string())?;
  let request = db.request(id).map_err(|e| e.to_string())?.ok_or_else(|| format!("there is no request {id}"))?;
  match (&request.kind, &answer) {
    (RequestKind::Question, Answer::Approve { .. }) => {
      return Err(format!("{id} is a question: answer it with --answer VALUE (or deny it)"))
    }
    (RequestKind::Approval, Answer::Value(_)) => {
      return Err(format!("{id} is an approval: approve it with --once, --process or --always (not --answer)"))
    }
    (RequestKind::Question, Answer::Value(value)) => {
      if let Some(choices) = request.choices.as_ref().filter(|c| !c.contains(value)) {
        return Err(format!("{id} accepts one of: {}", choices.join(", ")));
      }
    }
    _ => {}
  }
  let answered = db.answer_request(id, &answer, by, now_ms).map_err(|e| e.to_string())?;
  let (decision, outcome) = match &answer {
    Answer::Approve { scope } => (Verdict::Allow, format!("approved ({scope}) {id}")),
    Answer::Deny { reason } => (Verdict::Deny, format!("denied {id}{}", reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default())),
    Answer::Value(_) => (Verdict::None, format!("answered {id}")),
  };
  super::audit::append_to(
    state_dir,
    super::audit::Entry {
      time: crate::provider::clock::rfc3339(now_ms),
      pid: answered.pid.clone(),
      lineage: answered.lineage.clone(),
      actor: super::audit::Actor::Human,
      syscall: "human.answer".into(),
      capability: answered.capability.clone(),
      resource: answered.resource.clone(),
      decision,
      decided_by: Some(by.to_string()),
      // The answer's value may be private; the record keeps its digest.
      args_digest: super::audit::digest(format!("{}:{:?}", answered.op_digest, answered.answer).as_bytes()),
      outcome,
      tool: None,
    },
  )
  .map_err(|e| format!("the answer was recorded, but {e}"))?;
  Ok(answered)
}

/// Arguments of `caps.request`.
#[derive(Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CapsRequestArgs {
  pub capability: String,
  #[serde(default)]
  pub reason: String,
}

impl Kernel {
  /// `libos.caps.request`: asks a human for a capability. Approved "once" it is a
  /// one-use grant, "process" a grant for the process, "always" a rule.
  pub(super) async fn request_capability(&self, trace: Trace, args: CapsRequestArgs) -> Result<Value, SyscallError> {
    let capability: Capability =
      args.capability.parse().map_err(|e| SyscallError::InvalidArgument(format!("caps.request: {e}")))?;
    if self.0.human == HumanMode::Deny {
      return Err(SyscallError::PermissionDenied {
        syscall: "caps.request".into(),
        capability: capability.to_string(),
        reason: "humans are not asked (--human deny)".into(),
        message: format!("caps.request {capability}: this run has --human deny"),
      });
    }
    let detail = format!("{} requests capability {capability}: {}", trace.pid, args.reason);
    let op_digest = super::audit::digest(format!("caps.request {capability}").as_bytes());
    let pending = self.open_request(&trace, RequestKind::Approval, None, detail, op_digest, None, None, None)?;
    self.note_request(&trace, &pending.id)?;
    let answered = self.await_answer(&trace, &pending).await?;
    if answered.status != "approved" {
      return Err(SyscallError::PermissionDenied {
        syscall: "caps.request".into(),
        capability: capability.to_string(),
        reason: format!("{} by a human (request {})", answered.status, answered.id),
        message: format!(
          "caps.request {capability} was {} (request {}){}",
          answered.status,
          answered.id,
          answered.reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default()
        ),
      });
    }
    self.grant_approval(&trace.pid, &answered, capability.clone(), None);
    Ok(serde_json::json!({ "capability": capability.to_string(), "scope": answered.scope, "request": answered.id }))
  }
}
