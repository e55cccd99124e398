//! The `model.complete` primitive: needs `model:PROVIDER/MODEL`, counts against the
//! per-process model budgets (calls, tokens), and is answered by the host's
//! [`ModelProvider`]. Not a side effect: its result is journaled like any syscall's, so a
//! resumed process is served the recorded answer and never pays for it twice.
//!
//! Budgets: a call counts against the caller *and every ancestor*, so `--model-calls`
//! and `--model-tokens` bound the whole tree; a child starts with at most what its
//! parent has left (`ProcessLimits::model_for_child`). A call starts only while each of
//! them has a call and a token left; its whole usage is counted once it is done.

use serde::Deserialize;
use serde_json::json;
use serde_json::Value;

use super::capability::Kind;
use super::capability::Request;
use super::dispatch::Trace;
use super::error::SyscallError;
use super::lock;
use super::Kernel;
use crate::provider::model::Message;
use crate::provider::model::ModelError;
use crate::provider::model::ModelReply;
use crate::provider::model::ModelRequest;
use crate::provider::model::ToolSpec;

/// Arguments of `model.complete`.
#[derive(Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CompleteArgs {
  /// `PROVIDER:MODEL`; the host's `--model` when absent.
  #[serde(default)]
  pub model: Option<String>,
  pub messages: Vec<Message>,
  /// As `tools.list` returns them.
  #[serde(default)]
  pub tools: Vec<ToolSpec>,
  #[serde(default)]
  pub max_tokens: Option<u64>,
}

/// The model a call is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
  pub provider: String,
  pub model: String,
}

impl Target {
  /// The resource of its `model:` capability: `PROVIDER/MODEL`.
  pub fn resource(&self) -> String {
    format!("{}/{}", self.provider, self.model)
  }

  /// `PROVIDER:MODEL` (or `PROVIDER/MODEL`).
  pub fn parse(text: &str) -> Result<Target, String> {
    let (provider, model) = text.split_once(':').or_else(|| text.split_once('/')).ok_or("expected PROVIDER:MODEL")?;
    let provider_ok = !provider.is_empty() && provider.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c));
    if !provider_ok {
      return Err(format!("invalid provider \"{provider}\""));
    }
    let target = Target { provider: provider.to_string(), model: model.to_string() };
    let malformed = model.chars().any(|c| c.is_whitespace() || c.is_control() || c == '*');
    if malformed || !Request::new(Kind::Model, target.resource()).is_well_formed() {
      return Err(format!("invalid model name \"{model}\""));
    }
    Ok(target)
  }
}

impl CompleteArgs {
  /// The model asked for, or the host's default.
  pub fn target(&self, default: Option<&str>) -> Result<Target, SyscallError> {
    let spec = self.model.as_deref().or(default).ok_or_else(|| {
      SyscallError::InvalidArgument(
        "model.complete: no model given and this host has no default; pass { model: \"openai:MODEL\" } or run alos with --model"
          .into(),
      )
    })?;
    Target::parse(spec).map_err(|why| {
      SyscallError::InvalidArgument(format!("model.complete: model \"{spec}\": {why} (e.g. openai:gpt-4o-mini, scripted:default)"))
    })
  }
}

impl Kernel {
  pub(super) async fn model_complete(&self, trace: &Trace, args: CompleteArgs) -> Result<Value, SyscallError> {
    let target = args.target(self.0.default_model.as_deref())?;
    if let Some((at, problem)) = args.messages.iter().enumerate().find_map(|(i, m)| m.problem().map(|p| (i, p))) {
      return Err(SyscallError::InvalidArgument(format!("model.complete: messages[{at}]: {problem}")));
    }
    if args.messages.is_empty() {
      return Err(SyscallError::InvalidArgument("model.complete: `messages` is empty".into()));
    }
    let provider = match &self.0.model {
      Some(provider) if provider.name() == target.provider => provider.clone(),
      Some(provider) => {
        return Err(SyscallError::OperationFailed(format!(
          "model.complete: {} needs provider \"{}\", and this host's models come from \"{}\" (its default is {})",
          target.resource(),
          target.provider,
          provider.name(),
          self.0.default_model.as_deref().unwrap_or("none")
        )))
      }
      None => {
        return Err(SyscallError::OperationFailed(format!(
          "model.complete: this host has no model provider for {}; run alos with --model openai:MODEL or --model scripted:FILE",
          target.resource()
        )))
      }
    };
    self.reserve_model_call(&trace.pid)?;
    let request = ModelRequest { model: target.model.clone(), messages: args.messages, tools: args.tools, max_tokens: args.max_tokens };
    let reply = provider.complete(request).await.map_err(|e| model_error(&target, e))?;
    self.charge_model_tokens(&trace.pid, reply.usage.total());
    Ok(reply_value(&target.provider, reply))
  }

  /// Counts one call against the caller and its ancestors, or refuses it naming the
  /// budget that is spent.
  fn reserve_model_call(&self, pid: &str) -> Result<(), SyscallError> {
    let mut processes = lock(&self.0.processes);
    let lineage = processes.get(pid).map(|p| p.lineage.clone()).unwrap_or_default();
    for holder in lineage.iter().rev() {
      let Some(p) = processes.get(holder) else { continue };
      let whose = if holder == pid { format!("process {pid}") } else { format!("its ancestor {holder}") };
      let (limits, used) = (p.limits, p.model_used);
      if let Some(max) = limits.model_calls.filter(|max| used.calls >= *max) {
        return Err(SyscallError::LimitExceeded(format!(
          "model.complete: {whose} has used its budget of {max} model calls (model_calls={max}; raise it with --model-calls)"
        )));
      }
      if let Some(max) = limits.model_tokens.filter(|max| used.tokens >= *max) {
        return Err(SyscallError::LimitExceeded(format!(
          "model.complete: {whose} has used its budget of {max} model tokens ({} used; model_tokens={max}; raise it with --model-tokens)",
          used.tokens
        )));
      }
    }
    for holder in &lineage {
      if let Some(p) = processes.get_mut(holder) {
        p.model_used.calls += 1;
      }
    }
    Ok(())
  }

  fn charge_model_tokens(&self, pid: &str, tokens: u64) {
    let ancestors = {
      let mut processes = lock(&self.0.processes);
      let lineage = processes.get(pid).map(|p| p.lineage.clone()).unwrap_or_default();
      for holder in &lineage {
        if let Some(p) = processes.get_mut(holder) {
          p.model_used.tokens = p.model_used.tokens.saturating_add(tokens);
        }
      }
      lineage.into_iter().filter(|p| p != pid).collect::<Vec<_>>()
    };
    // The caller's count is stored with this call's journal record; its ancestors' now,
    // so a resumed tree keeps what it spent.
    for ancestor in ancestors {
      self.record_state(&ancestor);
    }
  }
}

/// The result a script sees.
fn reply_value(provider: &str, reply: ModelReply) -> Value {
  let calls = serde_json::to_value(&reply.tool_calls).unwrap_or(Value::Array(vec![]));
  json!({
    "message": { "role": "assistant", "content": reply.content, "toolCalls": calls },
    "toolCalls": calls,
    "usage": reply.usage,
    "finishReason": reply.finish_reason,
    "model": format!("{provider}/{}", reply.model),
  })
}

fn model_error(target: &Target, error: ModelError) -> SyscallError {
  let message = format!("model.complete ({}): {error}", target.resource());
  match error {
    ModelError::InvalidRequest(_) | ModelError::Rejected { status: 400 | 413 | 422, .. } => SyscallError::InvalidArgument(message),
    ModelError::Rejected { status: 404, .. } => SyscallError::NotFound(message),
    ModelError::Timeout(_) => SyscallError::Timeout(message),
    ModelError::KeyRefused(_)
    | ModelError::Unreachable(_)
    | ModelError::Rejected { .. }
    | ModelError::Unavailable(_)
    | ModelError::Malformed(_)
    | ModelError::Script(_) => SyscallError::OperationFailed(message),
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn targets_name_a_provider_and_a_model() {
    let t = Target::parse("openai:gpt-4o-mini").unwrap();
    assert_eq!(t.resource(), "openai/gpt-4o-mini");
    assert_eq!(Target::parse("ollama:llama3:8b").unwrap().resource(), "ollama/llama3:8b");
    assert_eq!(Target::parse("scripted/default").unwrap().resource(), "scripted/default");
    for bad in ["gpt", "openai:", "Open AI:x", "openai:a b", "openai:../x", "openai:*", ":x"] {
      assert!(Target::parse(bad).is_err(), "{bad}");
    }
  }

  #[test]
  fn the_default_applies_when_no_model_is_given() {
    let args: CompleteArgs = serde_json::from_value(json!({"messages": [{"role": "user", "content": "hi"}]})).unwrap();
    assert_eq!(args.target(Some("scripted:default")).unwrap().resource(), "scripted/default");
    assert!(matches!(args.target(None), Err(SyscallError::InvalidArgument(m)) if m.contains("--model")));
    let typo = serde_json::from_value::<CompleteArgs>(json!({"messages": [], "max_tokens": 5}));
    assert!(typo.is_err(), "unknown fields are refused");
  }

  #[test]
  fn errors_keep_their_class() {
    let t = Target::parse("openai:m").unwrap();
    assert!(matches!(model_error(&t, ModelError::Timeout("slow".into())), SyscallError::Timeout(_)));
    assert!(matches!(model_error(&t, ModelError::KeyRefused("401".into())), SyscallError::OperationFailed(m) if m.contains("openai/m")));
    assert!(matches!(model_error(&t, ModelError::Rejected { status: 400, message: "x".into() }), SyscallError::InvalidArgument(_)));
  }
}
