//! The model provider: where `model.complete` is answered. The kernel decides whether a
//! process may call `model:PROVIDER/MODEL` and counts its budget; a provider only turns a
//! [`ModelRequest`] into a [`ModelReply`].
//!
//! - [`OpenAi`]: OpenAI-compatible Chat Completions over HTTP(S), through
//!   [`crate::provider::net`] (DNS, TLS, one deadline per attempt, a bounded body). The
//!   endpoint is the host's configuration, not the agent's, so no `net:` capability is
//!   involved. Retries 429, 5xx and connection failures with exponential backoff,
//!   honouring `Retry-After`, a bounded number of times. The API key is sent in the
//!   `Authorization` header only; every error text and reply is scrubbed of it.
//! - [`Scripted`]: a JSON file of answers, for tests and demos. The answer to a request
//!   depends only on the request (see [`Scripted`]), so a resumed or replayed process
//!   and parallel children get the same answers every run.
//!
//! Tool calls keep the model's `arguments` text as sent, with `args` the parsed JSON or
//! null when it is not JSON; an empty or unknown tool name is kept as is, for the agent
//! loop to answer.

use std::fmt;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde::Serialize;
use serde_json::json;
use serde_json::Value;

use super::net;
use super::net::FetchRequest;
use super::net::NetError;

/// Where `OPENAI_BASE_URL` points when it is not set.
pub const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";
/// Largest request body sent; a bigger conversation is refused before anything is sent.
pub const MAX_REQUEST_BYTES: usize = 32 << 20;
/// Largest response body read; past it the reply is refused as malformed.
pub const MAX_RESPONSE_BYTES: usize = 16 << 20;

/// A model answering requests. Futures are not `Send`: they run on the calling
/// isolate's thread, like every waiting syscall (and `provider::net` is not `Send`).
pub trait ModelProvider: Send + Sync {
  /// The provider's name in a model spec and capability: `openai`, `scripted`.
  fn name(&self) -> &str;
  fn complete(&self, request: ModelRequest) -> Pin<Box<dyn Future<Output = Result<ModelReply, ModelError>>>>;
}

#[derive(Deserialize, Serialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Role {
  System,
  User,
  Assistant,
  Tool,
}

/// One message of a conversation, as scripts write it (camelCase).
#[derive(Deserialize, Serialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Message {
  pub role: Role,
  #[serde(default)]
  pub content: Option<String>,
  /// An assistant message's tool calls.
  #[serde(default, skip_serializing_if = "Vec::is_empty")]
  pub tool_calls: Vec<ToolCall>,
  /// A tool message: the call it answers.
  #[serde(default, skip_serializing_if = "Option::is_none")]
  pub tool_call_id: Option<String>,
  /// A tool message: the tool's name (informative; not sent on the wire).
  #[serde(default, skip_serializing_if = "Option::is_none")]
  pub name: Option<String>,
}

impl Message {
  /// Why this message cannot be sent, if it cannot.
  pub fn problem(&self) -> Option<String> {
    match self.role {
      Role::System | Role::User | Role::Tool if self.content.is_none() => Some("needs a string `content`".into()),
      Role::Tool if self.tool_call_id.is_none() => Some("a tool message needs `toolCallId`".into()),
      Role::System | Role::User | Role::Tool if !self.tool_calls.is_empty() => Some("only an assistant message has `toolCalls`".into()),
      Role::System | Role::User | Role::Assistant if self.tool_call_id.is_some() => Some("only a tool message has `toolCallId`".into()),
      _ => None,
    }
  }
}

/// A tool call the model made.
#[derive(Deserialize, Serialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ToolCall {
  pub id: String,
  /// As the model sent it: possibly empty or not in the tool table.
  pub name: String,
  /// The arguments' JSON text as the model sent it (possibly not JSON at all).
  #[serde(default)]
  pub arguments: String,
  /// `arguments` parsed, or null when it is not valid JSON.
  #[serde(default)]
  pub args: Value,
}

impl ToolCall {
  pub fn new(id: String, name: String, arguments: String) -> ToolCall {
    let args = serde_json::from_str(&arguments).unwrap_or(Value::Null);
    ToolCall { id, name, arguments, args }
  }
}

/// A tool as offered to the model: what `libos.tools.list()` returns (other fields are
/// ignored).
#[derive(Deserialize, Serialize, Debug, Clone, PartialEq)]
pub struct ToolSpec {
  pub name: String,
  #[serde(default)]
  pub description: String,
  /// The input JSON Schema.
  #[serde(default)]
  pub parameters: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ModelRequest {
  /// The model's name at its provider (`gpt-4o-mini`), without the provider.
  pub model: String,
  pub messages: Vec<Message>,
  pub tools: Vec<ToolSpec>,
  pub max_tokens: Option<u64>,
}

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Usage {
  pub input_tokens: u64,
  pub output_tokens: u64,
}

impl Usage {
  pub fn total(&self) -> u64 {
    self.input_tokens.saturating_add(self.output_tokens)
  }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ModelReply {
  pub content: Option<String>,
  pub tool_calls: Vec<ToolCall>,
  pub usage: Usage,
  /// `stop`, `tool_calls`, `length`, or whatever the endpoint said.
  pub finish_reason: String,
  /// The model that answered, as its provider names it.
  pub model: String,
}

/// Why a completion failed. Messages name the endpoint and what to do; none holds a key.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ModelError {
  /// The request cannot be sent as it is (too big, an invalid message).
  #[error("{0}")]
  InvalidRequest(String),
  /// 401 or 403: the key (or its permissions) was refused.
  #[error("{0}")]
  KeyRefused(String),
  /// No connection could be made.
  #[error("{0}")]
  Unreachable(String),
  /// An attempt took longer than its timeout.
  #[error("{0}")]
  Timeout(String),
  /// The endpoint refused the request (a 4xx other than 401, 403, 429).
  #[error("{message}")]
  Rejected { status: u16, message: String },
  /// Still rate limited or failing (429, 5xx) after every attempt.
  #[error("{0}")]
  Unavailable(String),
  /// The response is not a Chat Completions response.
  #[error("{0}")]
  Malformed(String),
  /// The scripted model has no answer for this request.
  #[error("{0}")]
  Script(String),
}

type Reply = Pin<Box<dyn Future<Output = Result<ModelReply, ModelError>>>>;

// ---- OpenAI-compatible Chat Completions ---------------------------------------------

/// How to reach an OpenAI-compatible endpoint, and how hard to try.
#[derive(Clone)]
pub struct OpenAiConfig {
  /// E.g. `https://api.openai.com/v1`; `/chat/completions` is appended.
  pub base_url: String,
  pub api_key: Option<String>,
  /// The deadline of one attempt (connect, send, the whole response).
  pub timeout: Duration,
  /// Attempts in all, the first included.
  pub max_attempts: u32,
  /// The wait before the first retry; doubled for each further one.
  pub backoff: Duration,
  pub max_backoff: Duration,
  /// A longer `Retry-After` is not waited for: the call fails saying so.
  pub max_retry_after: Duration,
  pub max_response_bytes: usize,
}

impl OpenAiConfig {
  /// `OPENAI_BASE_URL` (default [`DEFAULT_BASE_URL`]) and `OPENAI_API_KEY`.
  pub fn from_env(timeout: Duration) -> OpenAiConfig {
    let var = |name: &str| std::env::var(name).ok().map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
    OpenAiConfig {
      base_url: var("OPENAI_BASE_URL").unwrap_or_else(|| DEFAULT_BASE_URL.to_string()),
      api_key: var("OPENAI_API_KEY"),
      timeout,
      max_attempts: 4,
      backoff: Duration::from_millis(500),
      max_backoff: Duration::from_secs(8),
      max_retry_after: Duration::from_secs(60),
      max_response_bytes: MAX_RESPONSE_BYTES,
    }
  }

  fn endpoint(&self) -> String {
    format!("{}/chat/completions", self.base_url.trim_end_matches('/'))
  }

  /// `text` without the API key.
  fn scrub(&self, text: &str) -> String {
    redact(text, self.api_key.as_deref())
  }
}

impl fmt::Debug for OpenAiConfig {
  fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    f.debug_struct("OpenAiConfig")
      .field("base_url", &self.base_url)
      .field("api_key", &self.api_key.as_ref().map(|_| "[redacted]"))
      .field("timeout", &self.timeout)
      .field("max_attempts", &self.max_attempts)
      .finish_non_exhaustive()
  }
}

/// Replaces every occurrence of `secret` in `text`.
pub fn redact(text: &str, secret: Option<&str>) -> String {
  match secret {
    Some(secret) if !secret.is_empty() => text.replace(secret, "[redacted]"),
    _ => text.to_string(),
  }
}

#[derive(Debug)]
pub struct OpenAi {
  config: Arc<OpenAiConfig>,
}

impl OpenAi {
  pub fn new(config: OpenAiConfig) -> OpenAi {
    OpenAi { config: Arc::new(config) }
  }
}

impl ModelProvider for OpenAi {
  fn name(&self) -> &str {
    "openai"
  }

  fn complete(&self, request: ModelRequest) -> Reply {
    let config = self.config.clone();
    Box::pin(async move {
      complete_openai(&config, request).await.map_err(|e| scrub_error(&config, e)).map(|reply| scrub_reply(&config, reply))
    })
  }
}

fn scrub_error(config: &OpenAiConfig, error: ModelError) -> ModelError {
  let s = |text: String| config.scrub(&text);
  match error {
    ModelError::InvalidRequest(m) => ModelError::InvalidRequest(s(m)),
    ModelError::KeyRefused(m) => ModelError::KeyRefused(s(m)),
    ModelError::Unreachable(m) => ModelError::Unreachable(s(m)),
    ModelError::Timeout(m) => ModelError::Timeout(s(m)),
    ModelError::Rejected { status, message } => ModelError::Rejected { status, message: s(message) },
    ModelError::Unavailable(m) => ModelError::Unavailable(s(m)),
    ModelError::Malformed(m) => ModelError::Malformed(s(m)),
    ModelError::Script(m) => ModelError::Script(s(m)),
  }
}

/// An endpoint echoing the key back must not get it into the journal.
fn scrub_reply(config: &OpenAiConfig, mut reply: ModelReply) -> ModelReply {
  let key = config.api_key.as_deref();
  reply.content = reply.content.map(|c| redact(&c, key));
  for call in &mut reply.tool_calls {
    call.name = redact(&call.name, key);
    if key.is_some_and(|k| !k.is_empty() && call.arguments.contains(k)) {
      *call = ToolCall::new(call.id.clone(), call.name.clone(), redact(&call.arguments, key));
    }
    call.id = redact(&call.id, key);
  }
  reply
}

async fn complete_openai(config: &OpenAiConfig, request: ModelRequest) -> Result<ModelReply, ModelError> {
  if let Some((index, problem)) = request.messages.iter().enumerate().find_map(|(i, m)| m.problem().map(|p| (i, p))) {
    let role = request.messages[index].role;
    return Err(ModelError::InvalidRequest(format!("messages[{index}] ({role:?}): {problem}")));
  }
  let body = serde_json::to_vec(&request_body(&request)).map_err(|e| ModelError::InvalidRequest(e.to_string()))?;
  if body.len() > MAX_REQUEST_BYTES {
    return Err(ModelError::InvalidRequest(format!(
      "the request is {} bytes of JSON; at most {MAX_REQUEST_BYTES} are sent to a model endpoint (shorten the messages)",
      body.len()
    )));
  }
  let url = config.endpoint();
  if config.api_key.is_none() && config.base_url.trim_end_matches('/') == DEFAULT_BASE_URL {
    return Err(ModelError::KeyRefused(format!("{url} needs an API key: set OPENAI_API_KEY (or OPENAI_BASE_URL for another endpoint)")));
  }
  let mut headers = vec![("content-type".to_string(), "application/json".to_string()), ("accept".to_string(), "application/json".to_string())];
  if let Some(key) = &config.api_key {
    headers.push(("authorization".to_string(), format!("Bearer {key}")));
  }
  let attempts = config.max_attempts.max(1);
  let mut attempt = 0;
  loop {
    attempt += 1;
    let fetch = FetchRequest {
      url: url.clone(),
      method: "POST".to_string(),
      headers: headers.clone(),
      body: Some(body.clone()),
      timeout: config.timeout,
      max_body_bytes: config.max_response_bytes,
      max_redirects: 0,
    };
    // The endpoint is the host's configuration: every address it resolves to is fine.
    let outcome = net::fetch(fetch, &|_| Ok(())).await;
    // Either the call's result, or why to try again and after how long.
    let (reason, wait) = match outcome {
      Ok(response) if (200..300).contains(&response.status) => {
        if response.truncated {
          return Err(ModelError::Malformed(format!(
            "{url} sent a response larger than {} bytes; it was not read",
            config.max_response_bytes
          )));
        }
        return parse_reply(&response.body, &request.model).map_err(|why| ModelError::Malformed(format!("{url}: {why}")));
      }
      Ok(response) => {
        let status = response.status;
        let detail = error_detail(&response.body);
        match status {
          401 | 403 => {
            return Err(ModelError::KeyRefused(format!(
              "{url} refused the API key (HTTP {status}: {detail}); check OPENAI_API_KEY"
            )))
          }
          429 | 500..=599 => {
            let retry_after = response.header("retry-after").and_then(parse_retry_after);
            if let Some(after) = retry_after.filter(|after| *after > config.max_retry_after) {
              return Err(ModelError::Unavailable(format!(
                "{url} answered HTTP {status} ({detail}) and asks to retry after {}, longer than alos waits ({})",
                humantime::format_duration(after),
                humantime::format_duration(config.max_retry_after)
              )));
            }
            (format!("HTTP {status} ({detail})"), retry_after)
          }
          _ => {
            return Err(ModelError::Rejected { status, message: format!("{url} refused the request (HTTP {status}: {detail})") })
          }
        }
      }
      Err(error @ (NetError::Connect { .. } | NetError::Http { .. })) => (error.to_string(), None),
      Err(error @ NetError::Timeout { .. }) => {
        return Err(ModelError::Timeout(format!(
          "{url} did not answer within {} ({error}); raise --model-timeout if the model is slow",
          humantime::format_duration(config.timeout)
        )))
      }
      Err(error @ (NetError::InvalidUrl { .. } | NetError::InvalidRequest { .. })) => {
        return Err(ModelError::InvalidRequest(format!("cannot call the model endpoint (check OPENAI_BASE_URL): {error}")))
      }
      Err(error) => return Err(ModelError::Unreachable(format!("cannot reach the model endpoint {url}: {error}"))),
    };
    if attempt >= attempts {
      return Err(match reason.starts_with("HTTP ") {
        true => ModelError::Unavailable(format!("{url} still failed after {attempts} attempts: {reason}")),
        false => ModelError::Unreachable(format!("cannot reach the model endpoint {url} after {attempts} attempts: {reason}")),
      });
    }
    let delay = wait.unwrap_or_else(|| backoff(config, attempt));
    tracing::warn!("model endpoint {url}: {}; retrying in {} (attempt {attempt} of {attempts})", config.scrub(&reason), humantime::format_duration(delay));
    tokio::time::sleep(delay).await;
  }
}

/// The wait before retry number `attempt` (1-based): backoff × 2^(attempt-1), capped.
fn backoff(config: &OpenAiConfig, attempt: u32) -> Duration {
  let factor = 1u32.checked_shl(attempt.saturating_sub(1)).unwrap_or(u32::MAX);
  config.backoff.saturating_mul(factor).min(config.max_backoff)
}

/// `Retry-After` as seconds, or as an HTTP date.
fn parse_retry_after(value: &str) -> Option<Duration> {
  let value = value.trim();
  if let Ok(seconds) = value.parse::<f64>() {
    return (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds.min(86_400.0)));
  }
  let at = humantime::parse_rfc3339_weak(value).ok().or_else(|| httpdate(value))?;
  Some(at.duration_since(std::time::SystemTime::now()).unwrap_or_default())
}

/// An IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), the form `Retry-After` dates take.
fn httpdate(value: &str) -> Option<std::time::SystemTime> {
  let parts: Vec<&str> = value.split_whitespace().collect();
  let [_, day, month, year, time, "GMT"] = parts.as_slice() else { return None };
  const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
  let month = MONTHS.iter().position(|m| m == month)? + 1;
  humantime::parse_rfc3339(&format!("{year}-{month:02}-{day:0>2}T{time}Z")).ok()
}

/// The endpoint's own error message, or the start of its body.
fn error_detail(body: &[u8]) -> String {
  let parsed: Option<Value> = serde_json::from_slice(body).ok();
  let message = parsed.as_ref().and_then(|v| v.pointer("/error/message").or_else(|| v.get("error")).or_else(|| v.get("message")));
  let text = match message {
    Some(Value::String(s)) => s.clone(),
    Some(other) => other.to_string(),
    None if body.is_empty() => "empty body".to_string(),
    None => String::from_utf8_lossy(body).into_owned(),
  };
  let short: String = text.chars().filter(|c| !c.is_control()).take(300).collect();
  if short.len() < text.len() {
    format!("{short}...")
  } else {
    short
  }
}

/// The Chat Completions request body.
pub fn request_body(request: &ModelRequest) -> Value {
  let messages: Vec<Value> = request
    .messages
    .iter()
    .map(|m| match m.role {
      Role::System | Role::User => json!({ "role": m.role, "content": m.content }),
      Role::Tool => json!({ "role": "tool", "tool_call_id": m.tool_call_id, "content": m.content }),
      Role::Assistant => {
        let mut out = json!({ "role": "assistant", "content": m.content });
        if !m.tool_calls.is_empty() {
          out["tool_calls"] = m
            .tool_calls
            .iter()
            .map(|c| {
              let arguments = if c.arguments.is_empty() && !c.args.is_null() { c.args.to_string() } else { c.arguments.clone() };
              json!({ "id": c.id, "type": "function", "function": { "name": c.name, "arguments": arguments } })
            })
            .collect();
        }
        out
      }
    })
    .collect();
  let mut body = json!({ "model": request.model, "messages": messages });
  if !request.tools.is_empty() {
    body["tools"] = request
      .tools
      .iter()
      .map(|t| {
        let parameters = if t.parameters.is_object() { t.parameters.clone() } else { json!({ "type": "object", "properties": {} }) };
        json!({ "type": "function", "function": { "name": t.name, "description": t.description, "parameters": parameters } })
      })
      .collect();
  }
  if let Some(max) = request.max_tokens {
    body["max_tokens"] = json!(max);
  }
  body
}

/// A Chat Completions response body → a reply; `Err` says what is wrong with it.
pub fn parse_reply(body: &[u8], requested_model: &str) -> Result<ModelReply, String> {
  let value: Value = serde_json::from_slice(body).map_err(|e| {
    let start: String = String::from_utf8_lossy(&body[..body.len().min(120)]).chars().filter(|c| !c.is_control()).collect();
    format!("the response is not JSON ({e}); it starts with {start:?}")
  })?;
  if value.get("error").is_some_and(|e| !e.is_null()) {
    return Err(format!("the response is an error: {}", error_detail(body)));
  }
  let choice = value.pointer("/choices/0").ok_or("the response has no choices[0]")?;
  let message = choice.get("message").filter(|m| m.is_object()).ok_or("choices[0] has no message object")?;
  let content = match message.get("content") {
    None | Some(Value::Null) => None,
    Some(Value::String(text)) => Some(text.clone()),
    // Some endpoints send content parts; their text is what a script wants.
    Some(Value::Array(parts)) => Some(parts.iter().filter_map(|p| p.get("text").and_then(Value::as_str)).collect()),
    Some(other) => return Err(format!("choices[0].message.content is {other}, not a string")),
  };
  let mut tool_calls = vec![];
  match message.get("tool_calls") {
    None | Some(Value::Null) => {}
    Some(Value::Array(calls)) => {
      for (index, call) in calls.iter().enumerate() {
        let function = call.get("function").ok_or_else(|| format!("tool_calls[{index}] has no function"))?;
        let id = call.get("id").and_then(Value::as_str).map(str::to_string).unwrap_or_else(|| format!("call_{}", index + 1));
        let name = function.get("name").and_then(Value::as_str).unwrap_or_default().to_string();
        let arguments = match function.get("arguments") {
          None | Some(Value::Null) => String::new(),
          Some(Value::String(text)) => text.clone(),
          Some(other) => other.to_string(),
        };
        tool_calls.push(ToolCall::new(id, name, arguments));
      }
    }
    Some(other) => return Err(format!("choices[0].message.tool_calls is {other}, not a list")),
  }
  let finish_reason = choice
    .get("finish_reason")
    .and_then(Value::as_str)
    .map(str::to_string)
    .unwrap_or_else(|| if tool_calls.is_empty() { "stop" } else { "tool_calls" }.to_string());
  let tokens = |name: &str| value.pointer(&format!("/usage/{name}")).and_then(Value::as_u64);
  let usage = match (tokens("prompt_tokens"), tokens("completion_tokens")) {
    (None, None) => estimate(body.len() as u64, &content, &tool_calls),
    (input, output) => Usage { input_tokens: input.unwrap_or(0), output_tokens: output.unwrap_or(0) },
  };
  let model = value.get("model").and_then(Value::as_str).filter(|m| !m.is_empty()).unwrap_or(requested_model).to_string();
  Ok(ModelReply { content, tool_calls, usage, finish_reason, model })
}

/// A rough count (4 bytes a token) for endpoints that report no usage, so token budgets
/// still bind.
fn estimate(input_bytes: u64, content: &Option<String>, calls: &[ToolCall]) -> Usage {
  let output = content.as_ref().map_or(0, |c| c.len()) + calls.iter().map(|c| c.name.len() + c.arguments.len()).sum::<usize>();
  Usage { input_tokens: input_bytes.div_ceil(4), output_tokens: (output as u64).div_ceil(4) }
}

// ---- the scripted model -------------------------------------------------------------

/// Answers from a JSON file:
///
/// ```json
/// {"responses": [
///   {"match": {"lastUser": "regex", "lastTool": "regex", "system": "regex"},
///    "content": "...", "toolCalls": [{"name": "read_file", "arguments": {"path": "a"}}],
///    "usage": {"inputTokens": 10, "outputTokens": 5}, "finishReason": "stop"}
/// ]}
/// ```
///
/// Each entry answers at most once per conversation. For a request, the first unused
/// entry with a `match` whose patterns all match is served; otherwise the first unused
/// entry without one (so those are served in order). "Used" is worked out from the
/// request itself: each earlier assistant turn in `messages` used the entry that its
/// prefix of the conversation selects. The answer therefore depends only on the request:
/// a resumed process, a replay and parallel children get the same answers every run.
/// Patterns: `system` any system message; `lastUser` the last user message; `lastTool`
/// a tool result given since the model's last turn. Tool call ids are `call_1`,
/// `call_2`, ... numbered through the conversation.
pub struct Scripted {
  source: String,
  entries: Vec<ScriptEntry>,
  calls: AtomicU64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScriptFile {
  responses: Vec<RawEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawEntry {
  #[serde(default, rename = "match")]
  matcher: Option<RawMatch>,
  #[serde(default)]
  content: Option<String>,
  #[serde(default)]
  tool_calls: Vec<RawCall>,
  #[serde(default)]
  usage: Option<Usage>,
  #[serde(default)]
  finish_reason: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawMatch {
  last_user: Option<String>,
  last_tool: Option<String>,
  system: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCall {
  name: String,
  /// An object (sent as its JSON text) or raw text (sent as is, JSON or not).
  #[serde(default)]
  arguments: Value,
}

struct ScriptEntry {
  matcher: Option<Match>,
  content: Option<String>,
  tool_calls: Vec<(String, String)>,
  usage: Option<Usage>,
  finish_reason: Option<String>,
}

struct Match {
  last_user: Option<regex::Regex>,
  last_tool: Option<regex::Regex>,
  system: Option<regex::Regex>,
}

impl Match {
  fn matches(&self, messages: &[Message]) -> bool {
    let text = |m: &Message| m.content.clone().unwrap_or_default();
    let system = || messages.iter().filter(|m| m.role == Role::System).map(text).collect::<Vec<_>>();
    let last_user = || messages.iter().rev().find(|m| m.role == Role::User).map(text);
    let since_model: Vec<String> =
      messages.iter().rev().take_while(|m| m.role != Role::Assistant).filter(|m| m.role == Role::Tool).map(text).collect();
    self.system.as_ref().is_none_or(|re| system().iter().any(|s| re.is_match(s)))
      && self.last_user.as_ref().is_none_or(|re| last_user().is_some_and(|s| re.is_match(&s)))
      && self.last_tool.as_ref().is_none_or(|re| since_model.iter().any(|s| re.is_match(s)))
  }
}

impl Scripted {
  pub fn load(path: &Path) -> Result<Scripted, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read the model script {}: {e}", path.display()))?;
    Scripted::parse(&text, &path.display().to_string())
  }

  /// Parses a script; `source` names it in errors.
  pub fn parse(text: &str, source: &str) -> Result<Scripted, String> {
    let file: ScriptFile =
      serde_json::from_str(text).map_err(|e| format!("the model script {source} is invalid: {e} (expected {{\"responses\": [...]}})"))?;
    let regex = |at: usize, field: &str, pattern: Option<String>| -> Result<Option<regex::Regex>, String> {
      pattern
        .map(|p| regex::Regex::new(&p).map_err(|e| format!("the model script {source}: responses[{at}].match.{field}: {e}")))
        .transpose()
    };
    let mut entries = vec![];
    for (at, raw) in file.responses.into_iter().enumerate() {
      let matcher = match raw.matcher {
        None => None,
        Some(m) => Some(Match {
          last_user: regex(at, "lastUser", m.last_user)?,
          last_tool: regex(at, "lastTool", m.last_tool)?,
          system: regex(at, "system", m.system)?,
        }),
      };
      let tool_calls = raw
        .tool_calls
        .into_iter()
        .map(|c| {
          let arguments = match c.arguments {
            Value::String(text) => text,
            Value::Null => "{}".to_string(),
            other => other.to_string(),
          };
          (c.name, arguments)
        })
        .collect();
      entries.push(ScriptEntry { matcher, content: raw.content, tool_calls, usage: raw.usage, finish_reason: raw.finish_reason });
    }
    Ok(Scripted { source: source.to_string(), entries, calls: AtomicU64::new(0) })
  }

  /// Requests answered (or refused) so far.
  pub fn calls(&self) -> u64 {
    self.calls.load(Ordering::SeqCst)
  }

  /// The entry a conversation selects, given the entries its earlier turns used.
  fn select(&self, messages: &[Message], used: &[bool]) -> Option<usize> {
    let unused = |i: &usize| !used[*i];
    (0..self.entries.len())
      .filter(unused)
      .find(|i| self.entries[*i].matcher.as_ref().is_some_and(|m| m.matches(messages)))
      .or_else(|| (0..self.entries.len()).filter(unused).find(|i| self.entries[*i].matcher.is_none()))
  }

  fn answer(&self, request: &ModelRequest) -> Result<ModelReply, ModelError> {
    let mut used = vec![false; self.entries.len()];
    let mut turns = 0;
    for (at, message) in request.messages.iter().enumerate() {
      if message.role == Role::Assistant {
        turns += 1;
        if let Some(i) = self.select(&request.messages[..at], &used) {
          used[i] = true;
        }
      }
    }
    let Some(chosen) = self.select(&request.messages, &used) else {
      let last_user = request.messages.iter().rev().find(|m| m.role == Role::User).and_then(|m| m.content.as_deref()).unwrap_or("");
      let shown: String = last_user.chars().take(200).collect();
      return Err(ModelError::Script(format!(
        "the scripted model {} has no response left for this request (turn {} of a conversation of {} messages; \
         {} of {} responses used by it; no unused `match` entry fits); last user message: {shown:?}",
        self.source,
        turns + 1,
        request.messages.len(),
        used.iter().filter(|u| **u).count(),
        self.entries.len()
      )));
    };
    let entry = &self.entries[chosen];
    let earlier_calls: usize = request.messages.iter().map(|m| m.tool_calls.len()).sum();
    let tool_calls: Vec<ToolCall> = entry
      .tool_calls
      .iter()
      .enumerate()
      .map(|(i, (name, arguments))| ToolCall::new(format!("call_{}", earlier_calls + i + 1), name.clone(), arguments.clone()))
      .collect();
    let input_bytes: usize = request.messages.iter().map(|m| m.content.as_ref().map_or(0, |c| c.len())).sum();
    let usage = entry.usage.unwrap_or_else(|| estimate(input_bytes as u64, &entry.content, &tool_calls));
    let finish_reason =
      entry.finish_reason.clone().unwrap_or_else(|| if tool_calls.is_empty() { "stop" } else { "tool_calls" }.to_string());
    Ok(ModelReply { content: entry.content.clone(), tool_calls, usage, finish_reason, model: request.model.clone() })
  }
}

impl ModelProvider for Scripted {
  fn name(&self) -> &str {
    "scripted"
  }

  fn complete(&self, request: ModelRequest) -> Reply {
    self.calls.fetch_add(1, Ordering::SeqCst);
    Box::pin(std::future::ready(self.answer(&request)))
  }
}

/// A `--model` spec: `openai:MODEL` or `scripted:FILE`.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelSpec {
  OpenAi { model: String },
  Scripted { file: std::path::PathBuf },
}

impl std::str::FromStr for ModelSpec {
  type Err = String;

  fn from_str(text: &str) -> Result<ModelSpec, String> {
    let usage = || format!("invalid model \"{text}\": expected openai:MODEL (e.g. openai:gpt-4o-mini) or scripted:FILE.json");
    let (provider, rest) = text.split_once(':').ok_or_else(usage)?;
    if rest.is_empty() {
      return Err(usage());
    }
    match provider {
      "openai" if !rest.contains(char::is_whitespace) => Ok(ModelSpec::OpenAi { model: rest.to_string() }),
      "scripted" => Ok(ModelSpec::Scripted { file: rest.into() }),
      _ => Err(usage()),
    }
  }
}

/// The model name a scripted provider answers as by default (`scripted:default`).
pub const SCRIPTED_DEFAULT_MODEL: &str = "default";

#[cfg(test)]
mod tests {
  use super::*;

  fn message(value: Value) -> Message {
    serde_json::from_value(value).unwrap()
  }

  fn request(messages: Vec<Value>) -> ModelRequest {
    ModelRequest { model: "m".into(), messages: messages.into_iter().map(message).collect(), tools: vec![], max_tokens: None }
  }

  #[test]
  fn the_request_body_is_the_chat_completions_wire_format() {
    let mut req = request(vec![
      json!({"role": "system", "content": "be brief"}),
      json!({"role": "user", "content": "list files"}),
      json!({"role": "assistant", "content": null, "toolCalls": [{"id": "c1", "name": "ls", "arguments": "{\"p\":1}", "args": {"p": 1}}]}),
      json!({"role": "tool", "toolCallId": "c1", "name": "ls", "content": "a.txt"}),
    ]);
    req.tools = vec![ToolSpec { name: "ls".into(), description: "lists".into(), parameters: json!({"type": "object"}) }];
    req.max_tokens = Some(50);
    let body = request_body(&req);
    assert_eq!(body["model"], "m");
    assert_eq!(body["max_tokens"], 50);
    assert_eq!(body["messages"][0], json!({"role": "system", "content": "be brief"}));
    assert_eq!(
      body["messages"][2],
      json!({"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "ls", "arguments": "{\"p\":1}"}}]})
    );
    assert_eq!(body["messages"][3], json!({"role": "tool", "tool_call_id": "c1", "content": "a.txt"}));
    assert_eq!(body["tools"], json!([{"type": "function", "function": {"name": "ls", "description": "lists", "parameters": {"type": "object"}}}]));
    // No tools, no max: neither key is sent (some endpoints reject an empty tools list).
    let plain = request_body(&request(vec![json!({"role": "user", "content": "hi"})]));
    assert!(plain.get("tools").is_none() && plain.get("max_tokens").is_none(), "{plain}");
  }

  #[test]
  fn tools_list_entries_are_accepted_as_they_are() {
    let tool: ToolSpec = serde_json::from_value(json!({
      "name": "read_file", "description": "d", "parameters": {"type": "object"}, "output": null,
      "capabilities": ["fs.read"], "origin": "builtin"
    }))
    .unwrap();
    assert_eq!(tool.name, "read_file");
    let body = request_body(&ModelRequest { tools: vec![ToolSpec { parameters: Value::Null, ..tool }], ..request(vec![]) });
    assert_eq!(body["tools"][0]["function"]["parameters"], json!({"type": "object", "properties": {}}));
  }

  #[test]
  fn messages_are_checked() {
    assert!(serde_json::from_value::<Message>(json!({"role": "user", "content": "x", "tool_call_id": "a"})).is_err());
    assert!(serde_json::from_value::<Message>(json!({"role": "robot", "content": "x"})).is_err());
    assert!(message(json!({"role": "user"})).problem().is_some());
    assert!(message(json!({"role": "tool", "content": "x"})).problem().unwrap().contains("toolCallId"));
    assert!(message(json!({"role": "assistant", "content": null})).problem().is_none());
  }

  #[test]
  fn a_reply_with_content_and_usage_is_parsed() {
    let body = json!({
      "id": "x", "model": "gpt-4o-mini-2024", "choices": [{"index": 0, "message": {"role": "assistant", "content": "hello"}, "finish_reason": "stop"}],
      "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15}
    });
    let reply = parse_reply(body.to_string().as_bytes(), "gpt-4o-mini").unwrap();
    assert_eq!(reply.content.as_deref(), Some("hello"));
    assert_eq!(reply.usage, Usage { input_tokens: 12, output_tokens: 3 });
    assert_eq!(reply.finish_reason, "stop");
    assert_eq!(reply.model, "gpt-4o-mini-2024");
    assert!(reply.tool_calls.is_empty());
  }

  #[test]
  fn tool_calls_keep_raw_arguments_and_odd_names() {
    let body = json!({"choices": [{"message": {"role": "assistant", "content": null, "tool_calls": [
      {"id": "a", "type": "function", "function": {"name": "read_file", "arguments": "{\"path\": \"x\"}"}},
      {"id": "b", "type": "function", "function": {"name": "write_file", "arguments": "{\"path\": \"x\", "}},
      {"id": "c", "type": "function", "function": {"name": "", "arguments": "{}"}},
      {"type": "function", "function": {"name": "obj", "arguments": {"k": 1}}}
    ]}, "finish_reason": "tool_calls"}]});
    let reply = parse_reply(body.to_string().as_bytes(), "m").unwrap();
    let calls = &reply.tool_calls;
    assert_eq!(calls[0], ToolCall { id: "a".into(), name: "read_file".into(), arguments: "{\"path\": \"x\"}".into(), args: json!({"path": "x"}) });
    assert_eq!(calls[1].args, Value::Null, "malformed JSON arguments: args is null");
    assert_eq!(calls[1].arguments, "{\"path\": \"x\", ", "and the raw text is kept");
    assert_eq!(calls[2].name, "", "an empty name is kept for the agent loop to repair");
    assert_eq!((calls[3].id.as_str(), &calls[3].args), ("call_4", &json!({"k": 1})));
    assert_eq!(reply.finish_reason, "tool_calls");
    assert_eq!(reply.model, "m");
    assert!(reply.usage.total() > 0, "no usage reported: estimated");
  }

  #[test]
  fn malformed_responses_are_explained() {
    let cases: [(&[u8], &str); 5] = [
      (b"<html>oops</html>", "not JSON"),
      (b"{\"choices\": []}", "no choices[0]"),
      (b"{\"choices\": [{\"text\": \"x\"}]}", "no message"),
      (b"{\"error\": {\"message\": \"overloaded\"}}", "overloaded"),
      (b"{\"choices\": [{\"message\": {\"content\": 5}}]}", "not a string"),
    ];
    for (body, why) in cases {
      let error = parse_reply(body, "m").unwrap_err();
      assert!(error.contains(why), "{error}");
    }
  }

  #[test]
  fn retry_after_and_backoff() {
    assert_eq!(parse_retry_after("2"), Some(Duration::from_secs(2)));
    assert_eq!(parse_retry_after("0.5"), Some(Duration::from_millis(500)));
    assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT"), Some(Duration::ZERO), "a past date: at once");
    assert_eq!(parse_retry_after("soon"), None);
    let config = OpenAiConfig::from_env(Duration::from_secs(1));
    let waits: Vec<Duration> = (1..=6).map(|a| backoff(&config, a)).collect();
    assert_eq!(waits.iter().map(|d| d.as_millis()).collect::<Vec<_>>(), [500, 1000, 2000, 4000, 8000, 8000]);
  }

  #[test]
  fn secrets_are_redacted_and_not_debug_printed() {
    assert_eq!(redact("Bearer sk-abc and sk-abc", Some("sk-abc")), "Bearer [redacted] and [redacted]");
    assert_eq!(redact("x", Some("")), "x");
    let config = OpenAiConfig { api_key: Some("sk-very-secret".into()), ..OpenAiConfig::from_env(Duration::from_secs(1)) };
    assert!(!format!("{config:?}").contains("sk-very-secret"));
    let reply = ModelReply {
      content: Some("your key is sk-very-secret".into()),
      tool_calls: vec![ToolCall::new("i".into(), "t".into(), "{\"k\": \"sk-very-secret\"}".into())],
      usage: Usage::default(),
      finish_reason: "stop".into(),
      model: "m".into(),
    };
    let scrubbed = scrub_reply(&config, reply);
    assert_eq!(scrubbed.content.as_deref(), Some("your key is [redacted]"));
    assert_eq!(scrubbed.tool_calls[0].args, json!({"k": "[redacted]"}));
  }

  #[test]
  fn model_specs() {
    assert!(matches!("openai:gpt-4o-mini".parse(), Ok(ModelSpec::OpenAi { model }) if model == "gpt-4o-mini"));
    assert!(matches!("openai:llama3:8b".parse(), Ok(ModelSpec::OpenAi { model }) if model == "llama3:8b"));
    assert!(matches!("scripted:a/b.json".parse(), Ok(ModelSpec::Scripted { file }) if file == Path::new("a/b.json")));
    for bad in ["gpt-4o", "openai:", "anthropic:claude", "openai:a b"] {
      assert!(bad.parse::<ModelSpec>().is_err(), "{bad}");
    }
  }

  const SCRIPT: &str = r#"{"responses": [
    {"toolCalls": [{"name": "read_file", "arguments": {"path": "a.txt"}}, {"name": "bad", "arguments": "{not json"}]},
    {"match": {"lastTool": "^DENIED"}, "content": "I was denied"},
    {"content": "done", "usage": {"inputTokens": 7, "outputTokens": 2}},
    {"match": {"system": "worker"}, "content": "worker answer"}
  ]}"#;

  fn answer(script: &Scripted, messages: Vec<Value>) -> Result<ModelReply, ModelError> {
    script.answer(&request(messages))
  }

  #[test]
  fn the_script_serves_in_order_within_a_conversation() {
    let script = Scripted::parse(SCRIPT, "s.json").unwrap();
    let first = answer(&script, vec![json!({"role": "user", "content": "go"})]).unwrap();
    assert_eq!(first.tool_calls.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(), ["call_1", "call_2"]);
    assert_eq!(first.tool_calls[0].arguments, "{\"path\":\"a.txt\"}");
    assert_eq!(first.tool_calls[1].args, Value::Null);
    assert_eq!(first.finish_reason, "tool_calls");
    let turn = |tool_output: &str| {
      vec![
        json!({"role": "user", "content": "go"}),
        json!({"role": "assistant", "content": null, "toolCalls": first.tool_calls}),
        json!({"role": "tool", "toolCallId": "call_1", "content": tool_output}),
      ]
    };
    let second = answer(&script, turn("file text")).unwrap();
    assert_eq!(second.content.as_deref(), Some("done"));
    assert_eq!(second.usage, Usage { input_tokens: 7, output_tokens: 2 });
    // A matching entry comes first.
    assert_eq!(answer(&script, turn("DENIED: no")).unwrap().content.as_deref(), Some("I was denied"));
    // The same request gets the same answer: it depends on nothing else.
    assert_eq!(answer(&script, turn("file text")).unwrap(), second);
    // Another conversation starts from the beginning, and a pattern routes it.
    let worker = answer(&script, vec![json!({"role": "system", "content": "you are a worker"}), json!({"role": "user", "content": "x"})]);
    assert_eq!(worker.unwrap().content.as_deref(), Some("worker answer"));
  }

  #[test]
  fn running_out_names_the_request() {
    let script = Scripted::parse(r#"{"responses": [{"content": "only"}]}"#, "s.json").unwrap();
    let messages = vec![
      json!({"role": "user", "content": "first question"}),
      json!({"role": "assistant", "content": "only"}),
      json!({"role": "user", "content": "and another"}),
    ];
    let error = answer(&script, messages).unwrap_err().to_string();
    assert!(error.contains("s.json") && error.contains("no response left") && error.contains("and another"), "{error}");
    assert!(error.contains("turn 2"), "{error}");
  }

  #[test]
  fn bad_scripts_are_refused_with_the_reason() {
    let typo = Scripted::parse(r#"{"responses": [{"contnet": "x"}]}"#, "s.json").err().unwrap();
    assert!(typo.contains("contnet"), "{typo}");
    let regex = Scripted::parse(r#"{"responses": [{"match": {"lastUser": "("}}]}"#, "s.json").err().unwrap();
    assert!(regex.contains("responses[0].match.lastUser"), "{regex}");
  }
}
