//! `MockBroker`: the broker tool tests run against. Scripted replies chosen by ordered
//! rules, every call recorded, and clear explanations when a call matches no rule or
//! the calls made differ from the expected sequence.
//!
//! A rule (the one JSON shape for tool tests, mock files and Rust):
//! `{"call": NAME, "args"?: PATTERN, "reply": {"ok": V} | {"err": {"class", "message"}}, "times"?: N}`.
//! A pattern object matches when each listed key matches (unlisted keys are ignored), an
//! array element-wise with the same length, a scalar by equality; `{"$glob": G}` and
//! `{"$regex": R}` match strings, `{"$any": true}` any present value. Rules are tried in
//! order; the first that matches and has uses left answers. Rules are numbered from 1 in
//! messages.

use std::sync::Mutex;

use alos_ops::Broker;
use alos_ops::ErrorClass;
use alos_ops::Fault;
use alos_ops::PendingReply;
use alos_ops::Reply;
use serde_json::json;
use serde_json::Map;
use serde_json::Value;

/// A rule, or an `expectCalls` entry, that is not well formed: which one, which field,
/// and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MockError {
  /// 1-based position in its list, when known.
  pub rule: Option<usize>,
  /// The path of the offending field, e.g. `args.path`; empty for the rule as a whole.
  pub field: String,
  pub message: String,
}

impl std::fmt::Display for MockError {
  fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
    match self.rule {
      Some(n) => write!(f, "mock rule #{n}: ")?,
      None => write!(f, "mock rules: ")?,
    }
    if !self.field.is_empty() {
      write!(f, "{}: ", self.field)?;
    }
    f.write_str(&self.message)
  }
}

impl std::error::Error for MockError {}

fn bad(field: &str, message: impl Into<String>) -> MockError {
  MockError { rule: None, field: field.to_string(), message: message.into() }
}

/// An argument pattern (§2 of the tools contract), compiled.
#[derive(Debug, Clone)]
enum Pattern {
  Any,
  Glob { source: String, matcher: globset::GlobMatcher },
  Regex(regex::Regex),
  Object(Vec<(String, Pattern)>),
  Array(Vec<Pattern>),
  Equal(Value),
}

impl Pattern {
  fn compile(value: &Value, field: &str) -> Result<Pattern, MockError> {
    match value {
      Value::Object(map) if map.keys().any(|k| k.starts_with('$')) => {
        let (key, operand) = map
          .iter()
          .next()
          .filter(|_| map.len() == 1)
          .ok_or_else(|| bad(field, "a $glob, $regex or $any pattern must be the only key of its object"))?;
        match key.as_str() {
          "$glob" => {
            let source =
              operand.as_str().ok_or_else(|| bad(field, format!("$glob must be a string, got {operand}")))?;
            // `*` stays inside one path segment, `**` crosses them, as in capabilities.
            let glob = globset::GlobBuilder::new(source)
              .literal_separator(true)
              .build()
              .map_err(|e| bad(field, format!("invalid $glob {}: {}", json!(source), e.kind())))?;
            Ok(Pattern::Glob { source: source.to_string(), matcher: glob.compile_matcher() })
          }
          "$regex" => {
            let source =
              operand.as_str().ok_or_else(|| bad(field, format!("$regex must be a string, got {operand}")))?;
            let regex = regex::Regex::new(source)
              .map_err(|e| bad(field, format!("invalid $regex {}: {}", json!(source), one_line(&e.to_string()))))?;
            Ok(Pattern::Regex(regex))
          }
          "$any" if operand == &Value::Bool(true) => Ok(Pattern::Any),
          "$any" => Err(bad(field, format!("$any must be true, got {operand}"))),
          other => Err(bad(field, format!("unknown pattern key {other:?} (expected $glob, $regex or $any)"))),
        }
      }
      Value::Object(map) => map
        .iter()
        .map(|(key, value)| Ok((key.clone(), Pattern::compile(value, &format!("{field}.{key}"))?)))
        .collect::<Result<_, _>>()
        .map(Pattern::Object),
      Value::Array(items) => items
        .iter()
        .enumerate()
        .map(|(i, item)| Pattern::compile(item, &format!("{field}[{i}]")))
        .collect::<Result<_, _>>()
        .map(Pattern::Array),
      scalar => Ok(Pattern::Equal(scalar.clone())),
    }
  }

  /// Every place `value` (at `field`; `None` = absent) differs from the pattern, as
  /// "expects FIELD to ..." phrases.
  fn mismatches(&self, value: Option<&Value>, field: &str, out: &mut Vec<String>) {
    let Some(value) = value else {
      out.push(format!("expects {field} to be present"));
      return;
    };
    match self {
      Pattern::Any => {}
      Pattern::Glob { source, matcher } => {
        if !value.as_str().is_some_and(|s| matcher.is_match(s)) {
          out.push(format!("expects {field} to match $glob {}", json!(source)));
        }
      }
      Pattern::Regex(regex) => {
        if !value.as_str().is_some_and(|s| regex.is_match(s)) {
          out.push(format!("expects {field} to match $regex {}", json!(regex.as_str())));
        }
      }
      Pattern::Object(keys) => match value.as_object() {
        Some(map) => {
          for (key, pattern) in keys {
            pattern.mismatches(map.get(key), &format!("{field}.{key}"), out);
          }
        }
        None => out.push(format!("expects {field} to be an object")),
      },
      Pattern::Array(items) => match value.as_array() {
        Some(values) if values.len() == items.len() => {
          for (i, (pattern, value)) in items.iter().zip(values).enumerate() {
            pattern.mismatches(Some(value), &format!("{field}[{i}]"), out);
          }
        }
        _ => out.push(format!("expects {field} to be an array of {}", items.len())),
      },
      Pattern::Equal(expected) => {
        if !json_equal(expected, value) {
          out.push(format!("expects {field} to equal {}", shorten(&expected.to_string(), 80)));
        }
      }
    }
  }

  fn matches(&self, value: &Value) -> bool {
    let mut out = Vec::new();
    self.mismatches(Some(value), "args", &mut out);
    out.is_empty()
  }
}

/// JSON equality where numbers compare by value (`1` equals `1.0`): results come back
/// from the engine as floats or integers depending on how they were produced.
pub(crate) fn json_equal(a: &Value, b: &Value) -> bool {
  match (a, b) {
    (Value::Number(x), Value::Number(y)) => x == y || x.as_f64().zip(y.as_f64()).is_some_and(|(x, y)| x == y),
    (Value::Array(xs), Value::Array(ys)) => xs.len() == ys.len() && xs.iter().zip(ys).all(|(x, y)| json_equal(x, y)),
    (Value::Object(xs), Value::Object(ys)) => {
      xs.len() == ys.len() && xs.iter().all(|(k, x)| ys.get(k).is_some_and(|y| json_equal(x, y)))
    }
    _ => a == b,
  }
}

/// A call a rule (or an `expectCalls` entry) describes: the syscall name and, optionally,
/// an argument pattern.
#[derive(Debug, Clone)]
struct CallPattern {
  call: String,
  args: Option<Pattern>,
  /// As written, for diffs.
  source: Value,
}

impl CallPattern {
  fn matches(&self, call: &RecordedCall) -> bool {
    self.call == call.call && self.args.as_ref().is_none_or(|pattern| pattern.matches(&call.args))
  }

  /// Reads `call` and `args` from `map`, leaving other fields to the caller.
  fn parse(map: &Map<String, Value>) -> Result<CallPattern, MockError> {
    let call = match map.get("call") {
      Some(Value::String(name)) if !name.is_empty() => name.clone(),
      Some(other) => return Err(bad("call", format!("must be a syscall name such as \"fs.readText\", got {other}"))),
      None => return Err(bad("call", "is missing (the syscall name, e.g. \"fs.readText\")")),
    };
    let args = map.get("args").map(|args| Pattern::compile(args, "args")).transpose()?;
    let mut source = Map::new();
    source.insert("call".into(), Value::String(call.clone()));
    if let Some(args) = map.get("args") {
      source.insert("args".into(), args.clone());
    }
    Ok(CallPattern { call, args, source: Value::Object(source) })
  }
}

/// One scripted reply.
#[derive(Debug, Clone)]
pub struct MockRule {
  pattern: CallPattern,
  reply: Reply,
  times: Option<u64>,
  /// How messages name this rule; by default its position in the broker ("rule #3").
  origin: Option<String>,
}

const RULE_FIELDS: [&str; 4] = ["call", "args", "reply", "times"];

impl MockRule {
  /// A rule from its JSON form. Errors name the field; `MockBroker::from_json` adds the
  /// rule's position.
  pub fn parse(rule: &Value) -> Result<MockRule, MockError> {
    let map =
      rule.as_object().ok_or_else(|| bad("", format!("must be an object, got {}", shorten(&rule.to_string(), 60))))?;
    if let Some(unknown) = map.keys().find(|k| !RULE_FIELDS.contains(&k.as_str())) {
      return Err(bad(unknown, format!("unknown field (a rule has {})", RULE_FIELDS.join(", "))));
    }
    let pattern = CallPattern::parse(map)?;
    let reply = match map.get("reply") {
      None => {
        return Err(bad(
          "reply",
          "is missing: give {\"ok\": VALUE} or {\"err\": {\"class\": CLASS, \"message\": TEXT}}",
        ))
      }
      Some(reply) => parse_reply(reply)?,
    };
    let times = match map.get("times") {
      None => None,
      Some(n) => {
        Some(n.as_u64().filter(|n| *n > 0).ok_or_else(|| bad("times", format!("must be a positive integer, got {n}")))?)
      }
    };
    Ok(MockRule { pattern, reply, times, origin: None })
  }

  /// Names this rule in messages, e.g. "mock file rule #2".
  pub fn with_origin(mut self, origin: impl Into<String>) -> MockRule {
    self.origin = Some(origin.into());
    self
  }

  pub fn call(&self) -> &str {
    &self.pattern.call
  }
}

impl<'de> serde::Deserialize<'de> for MockRule {
  fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<MockRule, D::Error> {
    let value = Value::deserialize(deserializer)?;
    MockRule::parse(&value).map_err(serde::de::Error::custom)
  }
}

fn parse_reply(reply: &Value) -> Result<Reply, MockError> {
  let map = match reply.as_object() {
    Some(map) if map.len() == 1 => map,
    _ => {
      return Err(bad(
        "reply",
        format!("must be {{\"ok\": VALUE}} or {{\"err\": {{...}}}}, got {}", shorten(&reply.to_string(), 60)),
      ))
    }
  };
  if let Some(value) = map.get("ok") {
    return Ok(Ok(value.clone()));
  }
  let Some(err) = map.get("err") else {
    let key = map.keys().next().map(String::as_str).unwrap_or_default();
    return Err(bad(&format!("reply.{key}"), "unknown field (a reply is {\"ok\": VALUE} or {\"err\": {...}})"));
  };
  let err =
    err.as_object().ok_or_else(|| bad("reply.err", "must be an object {\"class\": CLASS, \"message\": TEXT}"))?;
  if let Some(unknown) = err.keys().find(|k| !["class", "message", "details"].contains(&k.as_str())) {
    return Err(bad(&format!("reply.err.{unknown}"), "unknown field (an error has class, message, details)"));
  }
  let class_name =
    err.get("class").and_then(Value::as_str).ok_or_else(|| bad("reply.err.class", "is missing (e.g. \"NotFound\")"))?;
  let class: ErrorClass = serde_json::from_value(Value::String(class_name.to_string())).map_err(|_| {
    bad(
      "reply.err.class",
      format!(
        "unknown error class {class_name:?} (expected one of PermissionDenied, InvalidArgument, NotFound, \
         AlreadyExists, Conflict, LimitExceeded, Cancelled, Timeout, OperationFailed)"
      ),
    )
  })?;
  let message = match err.get("message") {
    None => String::new(),
    Some(Value::String(text)) => text.clone(),
    Some(other) => return Err(bad("reply.err.message", format!("must be a string, got {other}"))),
  };
  let details = match err.get("details") {
    None => Map::new(),
    Some(Value::Object(details)) => details.clone(),
    Some(other) => return Err(bad("reply.err.details", format!("must be an object, got {other}"))),
  };
  Ok(Err(Fault { class, message, details }))
}

/// A syscall as the tool made it.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedCall {
  pub call: String,
  pub args: Value,
}

impl std::fmt::Display for RecordedCall {
  fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
    write!(f, "{} {}", self.call, shorten(&self.args.to_string(), 200))
  }
}

#[derive(Default)]
struct State {
  /// Uses of each rule so far.
  used: Vec<u64>,
  calls: Vec<RecordedCall>,
  /// Calls no rule answered, with the explanation the tool was given.
  unexpected: Vec<(RecordedCall, String)>,
  /// Calls refused because the budget was spent (not recorded).
  over_budget: u64,
}

/// A broker that answers from rules and records every call.
pub struct MockBroker {
  rules: Vec<MockRule>,
  /// At most this many calls are answered; the rest fail with `LimitExceeded`, so a
  /// runaway tool cannot grow the record without bound.
  max_calls: Option<usize>,
  state: Mutex<State>,
}

impl MockBroker {
  pub fn new(rules: Vec<MockRule>) -> MockBroker {
    let used = vec![0; rules.len()];
    MockBroker { rules, max_calls: None, state: Mutex::new(State { used, ..State::default() }) }
  }

  /// Rules from a JSON array; an error names the rule (from 1) and the field.
  pub fn from_json(rules: &Value) -> Result<MockBroker, MockError> {
    Ok(MockBroker::new(parse_rules(rules)?))
  }

  /// Answers at most `max` calls (see `over_budget`).
  pub fn with_max_calls(mut self, max: usize) -> MockBroker {
    self.max_calls = Some(max);
    self
  }

  fn state(&self) -> std::sync::MutexGuard<'_, State> {
    self.state.lock().unwrap_or_else(|e| e.into_inner())
  }

  /// Every call, in order (within the call budget).
  pub fn calls(&self) -> Vec<RecordedCall> {
    self.state().calls.clone()
  }

  /// The calls no rule answered.
  pub fn unexpected(&self) -> Vec<RecordedCall> {
    self.state().unexpected.iter().map(|(call, _)| call.clone()).collect()
  }

  /// The error message each unexpected call was answered with, naming the nearest rule.
  pub fn unexpected_messages(&self) -> Vec<String> {
    self.state().unexpected.iter().map(|(_, message)| message.clone()).collect()
  }

  /// How many calls were refused because `with_max_calls` was reached.
  pub fn over_budget(&self) -> u64 {
    self.state().over_budget
  }

  /// Checks the recorded calls against `expected`, an array of `{"call", "args"?}`
  /// patterns, one per call in order. `Err` is a readable diff (or what is wrong with
  /// `expected`).
  pub fn assert_sequence(&self, expected: &Value) -> Result<(), String> {
    let patterns =
      parse_expected_calls(expected).map_err(|e| e.to_string().replacen("mock rule", "expectCalls entry", 1))?;
    let calls = self.calls();
    let edits = diff_by(&patterns, &calls, |pattern, call| pattern.matches(call));
    if edits.iter().all(|edit| matches!(edit, Edit::Same(..))) {
      return Ok(());
    }
    let mut out = String::from("- expected, + made:\n");
    for edit in edits {
      let line = match edit {
        Edit::Same(_, j) => format!("  {}", calls[j]),
        Edit::Removed(i) => format!("- {}", describe_pattern(&patterns[i])),
        Edit::Added(j) => format!("+ {}", calls[j]),
      };
      out.push_str(&line);
      out.push('\n');
    }
    Err(out.trim_end().to_string())
  }

  fn rule_name(&self, index: usize) -> String {
    self.rules[index].origin.clone().unwrap_or_else(|| format!("rule #{}", index + 1))
  }

  /// Why no rule answered `call`: the nearest rule for the same syscall and how it
  /// differs, or which syscalls the rules cover.
  fn explain(&self, call: &RecordedCall, used: &[u64]) -> String {
    let mut nearest: Option<(usize, Vec<String>)> = None;
    for (i, rule) in self.rules.iter().enumerate().filter(|(_, rule)| rule.pattern.call == call.call) {
      let mut differences = Vec::new();
      if let Some(pattern) = &rule.pattern.args {
        pattern.mismatches(Some(&call.args), "args", &mut differences);
      }
      if nearest.as_ref().is_none_or(|(_, best)| differences.len() < best.len()) {
        nearest = Some((i, differences));
      }
    }
    match nearest {
      Some((i, differences)) if differences.is_empty() => {
        format!("nearest: {} matches but was used up after {} call(s)", self.rule_name(i), used[i])
      }
      Some((i, differences)) => format!("nearest: {} {}", self.rule_name(i), differences.join(", ")),
      None if self.rules.is_empty() => "there are no mock rules".to_string(),
      None => {
        let mut covered: Vec<&str> = self.rules.iter().map(|rule| rule.pattern.call.as_str()).collect();
        covered.dedup();
        format!("no rule is for {}; rules cover {}", call.call, covered.join(", "))
      }
    }
  }

  fn answer(&self, pid: &str, name: &str, args: Value) -> Reply {
    // The bootstrap asks who it is before any tool code runs; that is not the tool's call.
    if name == "proc.self" && !self.rules.iter().any(|rule| rule.pattern.call == "proc.self") {
      return Ok(json!({ "pid": pid, "args": [], "cwd": "." }));
    }
    let mut state = self.state();
    if self.max_calls.is_some_and(|max| state.calls.len() >= max) {
      state.over_budget += 1;
      let max = self.max_calls.unwrap_or_default();
      return Err(Fault::new(ErrorClass::LimitExceeded, format!("mock: the tool made more than {max} syscalls")));
    }
    let call = RecordedCall { call: name.to_string(), args };
    state.calls.push(call.clone());
    let answering = self
      .rules
      .iter()
      .enumerate()
      .position(|(i, rule)| rule.times.is_none_or(|times| state.used[i] < times) && rule.pattern.matches(&call));
    match answering {
      Some(i) => {
        state.used[i] += 1;
        self.rules[i].reply.clone()
      }
      None => {
        let message =
          format!("mock: unexpected syscall {call}; no rule matches ({})", self.explain(&call, &state.used));
        state.unexpected.push((call, message.clone()));
        Err(Fault::new(ErrorClass::InvalidArgument, message))
      }
    }
  }
}

impl Broker for MockBroker {
  fn syscall(&self, pid: &str, name: &str, args: Value) -> Reply {
    self.answer(pid, name, args)
  }

  fn syscall_async(&self, pid: &str, name: &str, args: Value) -> PendingReply {
    Box::pin(std::future::ready(self.answer(pid, name, args)))
  }
}

/// Rules from a JSON array, each error naming its rule.
pub fn parse_rules(rules: &Value) -> Result<Vec<MockRule>, MockError> {
  let list = rules
    .as_array()
    .ok_or_else(|| bad("", format!("must be an array of rules, got {}", shorten(&rules.to_string(), 60))))?;
  list
    .iter()
    .enumerate()
    .map(|(i, rule)| MockRule::parse(rule).map_err(|e| MockError { rule: Some(i + 1), ..e }))
    .collect()
}

fn parse_expected_calls(expected: &Value) -> Result<Vec<CallPattern>, MockError> {
  let list = expected.as_array().ok_or_else(|| bad("", format!("expectCalls must be an array, got {expected}")))?;
  list
    .iter()
    .enumerate()
    .map(|(i, entry)| {
      let numbered = |e: MockError| MockError { rule: Some(i + 1), ..e };
      let map = entry.as_object().ok_or_else(|| numbered(bad("", format!("must be an object, got {entry}"))))?;
      if let Some(unknown) = map.keys().find(|k| !["call", "args"].contains(&k.as_str())) {
        return Err(numbered(bad(unknown, "unknown field (an expected call has call, args)")));
      }
      CallPattern::parse(map).map_err(numbered)
    })
    .collect()
}

fn describe_pattern(pattern: &CallPattern) -> String {
  match pattern.source.get("args") {
    Some(args) => format!("{} {}", pattern.call, shorten(&args.to_string(), 200)),
    None => format!("{} (any args)", pattern.call),
  }
}

fn one_line(text: &str) -> String {
  text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `text` cut to about `max` bytes (on a character boundary), marked when cut.
pub(crate) fn shorten(text: &str, max: usize) -> String {
  if text.len() <= max {
    return text.to_string();
  }
  let mut end = max;
  while !text.is_char_boundary(end) {
    end -= 1;
  }
  format!("{}... ({} bytes)", &text[..end], text.len())
}

/// One step of a diff of `a` (expected) against `b` (actual), by index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Edit {
  Same(usize, usize),
  Removed(usize),
  Added(usize),
}

/// A shortest edit script (longest common subsequence) from `a` to `b`. Common prefix
/// and suffix are matched first; a middle too large for the quadratic table is shown as
/// removed then added.
pub(crate) fn diff_by<A, B>(a: &[A], b: &[B], same: impl Fn(&A, &B) -> bool) -> Vec<Edit> {
  const MAX_CELLS: usize = 4_000_000;
  let prefix = a.iter().zip(b).take_while(|(x, y)| same(x, y)).count();
  let suffix = a[prefix..].iter().rev().zip(b[prefix..].iter().rev()).take_while(|(x, y)| same(x, y)).count();
  let (a_mid, b_mid) = (prefix..a.len() - suffix, prefix..b.len() - suffix);
  let mut edits: Vec<Edit> = (0..prefix).map(|i| Edit::Same(i, i)).collect();
  let (n, m) = (a_mid.len(), b_mid.len());
  if n * m > MAX_CELLS {
    edits.extend(a_mid.clone().map(Edit::Removed));
    edits.extend(b_mid.clone().map(Edit::Added));
  } else {
    // lcs[i][j]: the LCS length of a_mid[i..] and b_mid[j..].
    let mut lcs = vec![0u32; (n + 1) * (m + 1)];
    let at = |i: usize, j: usize| i * (m + 1) + j;
    for i in (0..n).rev() {
      for j in (0..m).rev() {
        lcs[at(i, j)] = if same(&a[a_mid.start + i], &b[b_mid.start + j]) {
          lcs[at(i + 1, j + 1)] + 1
        } else {
          lcs[at(i + 1, j)].max(lcs[at(i, j + 1)])
        };
      }
    }
    let (mut i, mut j) = (0, 0);
    while i < n || j < m {
      if i < n && j < m && same(&a[a_mid.start + i], &b[b_mid.start + j]) {
        edits.push(Edit::Same(a_mid.start + i, b_mid.start + j));
        i += 1;
        j += 1;
      } else if i < n && (j == m || lcs[at(i + 1, j)] >= lcs[at(i, j + 1)]) {
        // On a tie, what was expected comes before what replaced it.
        edits.push(Edit::Removed(a_mid.start + i));
        i += 1;
      } else {
        edits.push(Edit::Added(b_mid.start + j));
        j += 1;
      }
    }
  }
  edits.extend((0..suffix).map(|k| Edit::Same(a.len() - suffix + k, b.len() - suffix + k)));
  edits
}

/// A line diff of two texts: `  ` same, `- ` only in `expected`, `+ ` only in `actual`.
pub(crate) fn line_diff(expected: &str, actual: &str) -> String {
  let (a, b): (Vec<&str>, Vec<&str>) = (expected.lines().collect(), actual.lines().collect());
  let edits = diff_by(&a, &b, |x, y| x == y);
  let mut out = String::new();
  for edit in edits {
    let line = match edit {
      Edit::Same(i, _) => format!("  {}", a[i]),
      Edit::Removed(i) => format!("- {}", a[i]),
      Edit::Added(j) => format!("+ {}", b[j]),
    };
    out.push_str(&line);
    out.push('\n');
  }
  out.trim_end().to_string()
}

#[cfg(test)]
mod tests {
  use super::*;

  fn broker(rules: Value) -> MockBroker {
    MockBroker::from_json(&rules).unwrap()
  }

  fn call(broker: &MockBroker, name: &str, args: Value) -> Reply {
    broker.syscall("p1", name, args)
  }

  fn error_of(rules: Value) -> String {
    match MockBroker::from_json(&rules) {
      Ok(_) => panic!("rules were accepted: {rules}"),
      Err(e) => e.to_string(),
    }
  }

  #[test]
  fn a_rule_without_args_matches_any_arguments_of_its_call() {
    let b = broker(json!([{ "call": "fs.readText", "reply": { "ok": "hi" } }]));
    assert_eq!(call(&b, "fs.readText", json!({ "path": "a" })), Ok(json!("hi")));
    assert_eq!(call(&b, "fs.readText", json!({ "path": "b", "extra": 1 })), Ok(json!("hi")));
    assert!(call(&b, "fs.writeText", json!({ "path": "a" })).is_err());
  }

  #[test]
  fn object_patterns_check_listed_keys_and_ignore_others() {
    let b = broker(json!([{ "call": "fs.writeText", "args": { "path": "a.txt" }, "reply": { "ok": null } }]));
    assert_eq!(call(&b, "fs.writeText", json!({ "path": "a.txt", "text": "x" })), Ok(Value::Null));
    assert!(call(&b, "fs.writeText", json!({ "path": "b.txt", "text": "x" })).is_err());
    assert!(call(&b, "fs.writeText", json!({ "text": "x" })).is_err(), "a listed key must be present");
    assert!(call(&b, "fs.writeText", json!("a.txt")).is_err(), "an object pattern needs an object");
  }

  #[test]
  fn nested_objects_match_recursively() {
    let b =
      broker(json!([{ "call": "net.fetch", "args": { "headers": { "accept": "text/html" } }, "reply": { "ok": 1 } }]));
    assert!(call(&b, "net.fetch", json!({ "url": "u", "headers": { "accept": "text/html", "x": "y" } })).is_ok());
    assert!(call(&b, "net.fetch", json!({ "url": "u", "headers": { "accept": "text/plain" } })).is_err());
  }

  #[test]
  fn array_patterns_match_element_wise_with_the_same_length() {
    let b =
      broker(json!([{ "call": "shell.exec", "args": { "args": ["-l", { "$any": true }] }, "reply": { "ok": 0 } }]));
    assert!(call(&b, "shell.exec", json!({ "args": ["-l", "x"] })).is_ok());
    assert!(call(&b, "shell.exec", json!({ "args": ["-l"] })).is_err());
    assert!(call(&b, "shell.exec", json!({ "args": ["-l", "x", "y"] })).is_err());
    assert!(call(&b, "shell.exec", json!({ "args": ["-a", "x"] })).is_err());
  }

  #[test]
  fn scalars_match_by_equality_and_numbers_by_value() {
    let b = broker(json!([
      { "call": "sleep", "args": { "ms": 5 }, "reply": { "ok": "five" } },
      { "call": "mem.put", "args": { "value": true }, "reply": { "ok": "t" } },
      { "call": "mem.put", "args": { "value": null }, "reply": { "ok": "null" } },
    ]));
    assert_eq!(call(&b, "sleep", json!({ "ms": 5.0 })), Ok(json!("five")));
    assert!(call(&b, "sleep", json!({ "ms": 6 })).is_err());
    assert!(call(&b, "sleep", json!({ "ms": "5" })).is_err());
    assert_eq!(call(&b, "mem.put", json!({ "value": true })), Ok(json!("t")));
    assert_eq!(call(&b, "mem.put", json!({ "value": null })), Ok(json!("null")));
  }

  #[test]
  fn glob_patterns_keep_star_within_a_segment() {
    let b =
      broker(json!([{ "call": "fs.readText", "args": { "path": { "$glob": "notes/*.md" } }, "reply": { "ok": 1 } }]));
    assert!(call(&b, "fs.readText", json!({ "path": "notes/a.md" })).is_ok());
    assert!(call(&b, "fs.readText", json!({ "path": "notes/sub/a.md" })).is_err());
    assert!(call(&b, "fs.readText", json!({ "path": "other/a.md" })).is_err());
    assert!(call(&b, "fs.readText", json!({ "path": 7 })).is_err(), "a glob matches strings only");
    let deep =
      broker(json!([{ "call": "fs.readText", "args": { "path": { "$glob": "notes/**" } }, "reply": { "ok": 1 } }]));
    assert!(call(&deep, "fs.readText", json!({ "path": "notes/sub/a.md" })).is_ok());
  }

  #[test]
  fn regex_patterns_search_strings() {
    let b = broker(
      json!([{ "call": "net.fetch", "args": { "url": { "$regex": "^https://example\\.com/" } }, "reply": { "ok": 1 } }]),
    );
    assert!(call(&b, "net.fetch", json!({ "url": "https://example.com/a" })).is_ok());
    assert!(call(&b, "net.fetch", json!({ "url": "http://example.com/a" })).is_err());
    assert!(call(&b, "net.fetch", json!({ "url": ["https://example.com/"] })).is_err());
  }

  #[test]
  fn any_matches_every_present_value_but_not_a_missing_one() {
    let b = broker(json!([{ "call": "mem.put", "args": { "value": { "$any": true } }, "reply": { "ok": 1 } }]));
    assert!(call(&b, "mem.put", json!({ "key": "k", "value": null })).is_ok());
    assert!(call(&b, "mem.put", json!({ "key": "k", "value": [1, 2] })).is_ok());
    assert!(call(&b, "mem.put", json!({ "key": "k" })).is_err());
  }

  #[test]
  fn rules_are_tried_in_order_and_times_limits_uses() {
    let b = broker(json!([
      { "call": "now", "reply": { "ok": 1 }, "times": 2 },
      { "call": "now", "reply": { "ok": 2 }, "times": 1 },
      { "call": "now", "reply": { "ok": 3 } },
    ]));
    let answers: Vec<Reply> = (0..5).map(|_| call(&b, "now", Value::Null)).collect();
    assert_eq!(answers, vec![Ok(json!(1)), Ok(json!(1)), Ok(json!(2)), Ok(json!(3)), Ok(json!(3))]);
  }

  #[test]
  fn an_error_reply_becomes_the_fault_of_its_class() {
    let b = broker(
      json!([{ "call": "fs.readText", "reply": { "err": { "class": "NotFound", "message": "no such file" } } }]),
    );
    let fault = call(&b, "fs.readText", json!({ "path": "x" })).unwrap_err();
    assert_eq!(fault.class, ErrorClass::NotFound);
    assert_eq!(fault.message, "no such file");
  }

  #[test]
  fn every_call_is_recorded_and_unexpected_ones_separately() {
    let b = broker(json!([{ "call": "fs.readText", "args": { "path": "a" }, "reply": { "ok": "" } }]));
    call(&b, "fs.readText", json!({ "path": "a" })).unwrap();
    call(&b, "fs.readText", json!({ "path": "b" })).unwrap_err();
    let names: Vec<String> = b.calls().iter().map(|c| c.to_string()).collect();
    assert_eq!(names, ["fs.readText {\"path\":\"a\"}", "fs.readText {\"path\":\"b\"}"]);
    assert_eq!(b.unexpected(), vec![RecordedCall { call: "fs.readText".into(), args: json!({ "path": "b" }) }]);
  }

  #[test]
  fn the_bootstrap_identity_call_is_answered_and_not_recorded() {
    let b = broker(json!([]));
    assert_eq!(call(&b, "proc.self", Value::Null), Ok(json!({ "pid": "p1", "args": [], "cwd": "." })));
    assert!(b.calls().is_empty());
  }

  #[test]
  fn an_unexpected_call_names_the_nearest_rule_and_how_it_differs() {
    let b = broker(json!([
      { "call": "fs.writeText", "reply": { "ok": null } },
      { "call": "fs.readText", "args": { "path": { "$glob": "notes/*.md" } }, "reply": { "ok": "hi" } },
    ]));
    let fault = call(&b, "fs.readText", json!({ "path": "x.md" })).unwrap_err();
    assert_eq!(fault.class, ErrorClass::InvalidArgument);
    assert_eq!(
      fault.message,
      "mock: unexpected syscall fs.readText {\"path\":\"x.md\"}; no rule matches \
       (nearest: rule #2 expects args.path to match $glob \"notes/*.md\")"
    );
    assert_eq!(b.unexpected_messages(), vec![fault.message]);
  }

  #[test]
  fn the_nearest_rule_is_the_one_with_fewest_differences() {
    let b = broker(json!([
      { "call": "mem.put", "args": { "key": "a", "value": 1 }, "reply": { "ok": null } },
      { "call": "mem.put", "args": { "key": "b", "value": 2 }, "reply": { "ok": null } },
    ]));
    let fault = call(&b, "mem.put", json!({ "key": "b", "value": 3 })).unwrap_err();
    assert!(fault.message.ends_with("(nearest: rule #2 expects args.value to equal 2)"), "{}", fault.message);
  }

  #[test]
  fn a_used_up_rule_is_named_as_used_up() {
    let b = broker(json!([{ "call": "now", "reply": { "ok": 1 }, "times": 1 }]));
    call(&b, "now", Value::Null).unwrap();
    let fault = call(&b, "now", Value::Null).unwrap_err();
    assert!(fault.message.contains("nearest: rule #1 matches but was used up after 1 call(s)"), "{}", fault.message);
  }

  #[test]
  fn a_call_with_no_rule_for_its_syscall_lists_what_the_rules_cover() {
    let b = broker(
      json!([{ "call": "fs.writeText", "reply": { "ok": null } }, { "call": "mem.get", "reply": { "ok": null } }]),
    );
    let fault = call(&b, "fs.remove", json!({ "path": "a" })).unwrap_err();
    assert!(
      fault.message.contains("(no rule is for fs.remove; rules cover fs.writeText, mem.get)"),
      "{}",
      fault.message
    );
    let empty = broker(json!([]));
    assert!(call(&empty, "now", Value::Null).unwrap_err().message.contains("(there are no mock rules)"));
  }

  #[test]
  fn an_origin_renames_the_rule_in_explanations() {
    let rule = MockRule::parse(&json!({ "call": "now", "args": 5, "reply": { "ok": 1 } }))
      .unwrap()
      .with_origin("mock file rule #4");
    let b = MockBroker::new(vec![rule]);
    let fault = call(&b, "now", json!(6)).unwrap_err();
    assert!(fault.message.contains("nearest: mock file rule #4 expects args to equal 5"), "{}", fault.message);
  }

  #[test]
  fn the_call_budget_refuses_calls_beyond_it_without_recording_them() {
    let b = broker(json!([{ "call": "now", "reply": { "ok": 1 } }])).with_max_calls(3);
    for _ in 0..3 {
      call(&b, "now", Value::Null).unwrap();
    }
    let fault = call(&b, "now", Value::Null).unwrap_err();
    assert_eq!(fault.class, ErrorClass::LimitExceeded);
    assert_eq!((b.calls().len(), b.over_budget()), (3, 1));
  }

  #[test]
  fn the_async_syscall_answers_like_the_sync_one() {
    let b = broker(json!([{ "call": "sleep", "reply": { "ok": "slept" } }]));
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    assert_eq!(rt.block_on(b.syscall_async("p1", "sleep", json!({ "ms": 1 }))), Ok(json!("slept")));
    assert_eq!(b.calls().len(), 1);
  }

  #[test]
  fn rules_deserialize_with_serde() {
    let rules: Vec<MockRule> = serde_json::from_value(json!([{ "call": "now", "reply": { "ok": 1 } }])).unwrap();
    assert_eq!(rules[0].call(), "now");
    let bad: Result<Vec<MockRule>, _> = serde_json::from_value(json!([{ "call": "now" }]));
    assert!(bad.unwrap_err().to_string().contains("reply: is missing"));
  }

  #[test]
  fn a_bad_regex_is_named_with_its_rule_and_field() {
    let message = error_of(json!([
      { "call": "now", "reply": { "ok": 1 } },
      { "call": "fs.readText", "args": { "path": { "$regex": "(" } }, "reply": { "ok": 1 } },
    ]));
    assert!(message.starts_with("mock rule #2: args.path: invalid $regex \"(\": "), "{message}");
  }

  #[test]
  fn a_bad_glob_is_named_with_its_rule_and_field() {
    let message =
      error_of(json!([{ "call": "fs.list", "args": { "path": { "$glob": "a[" } }, "reply": { "ok": [] } }]));
    assert!(message.starts_with("mock rule #1: args.path: invalid $glob \"a[\": "), "{message}");
  }

  #[test]
  fn pattern_operands_of_the_wrong_type_are_errors() {
    let glob = error_of(json!([{ "call": "x", "args": { "p": { "$glob": 1 } }, "reply": { "ok": 1 } }]));
    assert_eq!(glob, "mock rule #1: args.p: $glob must be a string, got 1");
    let regex = error_of(json!([{ "call": "x", "args": [{ "$regex": null }], "reply": { "ok": 1 } }]));
    assert_eq!(regex, "mock rule #1: args[0]: $regex must be a string, got null");
    let any = error_of(json!([{ "call": "x", "args": { "p": { "$any": false } }, "reply": { "ok": 1 } }]));
    assert_eq!(any, "mock rule #1: args.p: $any must be true, got false");
  }

  #[test]
  fn an_unknown_dollar_key_is_an_error() {
    let message = error_of(json!([{ "call": "x", "args": { "p": { "$glb": "*" } }, "reply": { "ok": 1 } }]));
    assert_eq!(message, "mock rule #1: args.p: unknown pattern key \"$glb\" (expected $glob, $regex or $any)");
  }

  #[test]
  fn a_dollar_key_must_be_alone_in_its_object() {
    let message = error_of(json!([{ "call": "x", "args": { "p": { "$glob": "*", "x": 1 } }, "reply": { "ok": 1 } }]));
    assert_eq!(message, "mock rule #1: args.p: a $glob, $regex or $any pattern must be the only key of its object");
  }

  #[test]
  fn an_unknown_error_class_is_an_error() {
    let message = error_of(json!([{ "call": "x", "reply": { "err": { "class": "Nope", "message": "m" } } }]));
    assert!(
      message
        .starts_with("mock rule #1: reply.err.class: unknown error class \"Nope\" (expected one of PermissionDenied,"),
      "{message}"
    );
  }

  #[test]
  fn a_missing_or_malformed_reply_is_an_error() {
    assert!(error_of(json!([{ "call": "x" }])).starts_with("mock rule #1: reply: is missing"));
    assert!(
      error_of(json!([{ "call": "x", "reply": { "ok": 1, "err": {} } }])).starts_with("mock rule #1: reply: must be")
    );
    assert!(error_of(json!([{ "call": "x", "reply": { "value": 1 } }]))
      .starts_with("mock rule #1: reply.value: unknown field"));
    assert!(error_of(json!([{ "call": "x", "reply": { "err": "boom" } }]))
      .starts_with("mock rule #1: reply.err: must be an object"));
    assert!(error_of(json!([{ "call": "x", "reply": { "err": { "message": "m" } } }]))
      .starts_with("mock rule #1: reply.err.class: is missing"));
    assert!(error_of(json!([{ "call": "x", "reply": { "err": { "class": "NotFound", "message": 3 } } }]))
      .starts_with("mock rule #1: reply.err.message: must be a string"));
    assert!(error_of(json!([{ "call": "x", "reply": { "err": { "class": "NotFound", "why": "" } } }]))
      .starts_with("mock rule #1: reply.err.why: unknown field"));
  }

  #[test]
  fn an_unknown_field_is_an_error() {
    let message = error_of(json!([{ "call": "x", "reply": { "ok": 1 }, "time": 2 }]));
    assert_eq!(message, "mock rule #1: time: unknown field (a rule has call, args, reply, times)");
  }

  #[test]
  fn a_missing_or_empty_call_is_an_error() {
    assert!(error_of(json!([{ "reply": { "ok": 1 } }])).starts_with("mock rule #1: call: is missing"));
    assert!(
      error_of(json!([{ "call": "", "reply": { "ok": 1 } }])).starts_with("mock rule #1: call: must be a syscall name")
    );
    assert!(
      error_of(json!([{ "call": 3, "reply": { "ok": 1 } }])).starts_with("mock rule #1: call: must be a syscall name")
    );
  }

  #[test]
  fn times_must_be_a_positive_integer() {
    for times in [json!(0), json!(-1), json!(1.5), json!("2")] {
      let message = error_of(json!([{ "call": "x", "reply": { "ok": 1 }, "times": times }]));
      assert_eq!(message, format!("mock rule #1: times: must be a positive integer, got {times}"));
    }
  }

  #[test]
  fn rules_must_be_an_array_of_objects() {
    assert!(error_of(json!({ "call": "x" })).starts_with("mock rules: must be an array"));
    assert!(error_of(json!([1])).starts_with("mock rule #1: must be an object"));
  }

  #[test]
  fn assert_sequence_accepts_the_exact_sequence_of_patterns() {
    let b = broker(
      json!([{ "call": "fs.readText", "reply": { "ok": "" } }, { "call": "fs.writeText", "reply": { "ok": null } }]),
    );
    call(&b, "fs.readText", json!({ "path": "a.txt" })).unwrap();
    call(&b, "fs.writeText", json!({ "path": "b.txt", "text": "x" })).unwrap();
    let expected = json!([
      { "call": "fs.readText", "args": { "path": "a.txt" } },
      { "call": "fs.writeText", "args": { "path": { "$glob": "*.txt" } } },
    ]);
    assert_eq!(b.assert_sequence(&expected), Ok(()));
    assert_eq!(b.assert_sequence(&json!([{ "call": "fs.readText" }, { "call": "fs.writeText" }])), Ok(()));
  }

  #[test]
  fn assert_sequence_shows_a_diff_of_missing_and_extra_calls() {
    let b = broker(
      json!([{ "call": "fs.readText", "reply": { "ok": "" } }, { "call": "fs.writeText", "reply": { "ok": null } }]),
    );
    call(&b, "fs.readText", json!({ "path": "a.txt" })).unwrap();
    call(&b, "fs.writeText", json!({ "path": "c.txt" })).unwrap();
    let diff = b
      .assert_sequence(&json!([
        { "call": "fs.readText", "args": { "path": "a.txt" } },
        { "call": "fs.writeText", "args": { "path": "b.txt" } },
        { "call": "fs.remove" },
      ]))
      .unwrap_err();
    assert_eq!(
      diff,
      "- expected, + made:\n  fs.readText {\"path\":\"a.txt\"}\n- fs.writeText {\"path\":\"b.txt\"}\n- fs.remove (any args)\n\
       + fs.writeText {\"path\":\"c.txt\"}"
    );
  }

  #[test]
  fn assert_sequence_reports_malformed_expectations() {
    let b = broker(json!([]));
    let error = b.assert_sequence(&json!([{ "call": "now", "reply": 1 }])).unwrap_err();
    assert_eq!(error, "expectCalls entry #1: reply: unknown field (an expected call has call, args)");
    let error = b.assert_sequence(&json!([{ "call": "x", "args": { "p": { "$regex": "[" } } }])).unwrap_err();
    assert!(error.starts_with("expectCalls entry #1: args.p: invalid $regex"), "{error}");
  }

  #[test]
  fn line_diff_marks_changed_lines() {
    let diff = line_diff("{\n  \"a\": 1,\n  \"b\": 2\n}", "{\n  \"a\": 1,\n  \"b\": 3\n}");
    assert_eq!(diff, "  {\n    \"a\": 1,\n-   \"b\": 2\n+   \"b\": 3\n  }");
  }

  #[test]
  fn diff_by_finds_a_longest_common_subsequence() {
    let edits = diff_by(&["a", "b", "c", "d"], &["a", "c", "x", "d"], |x, y| x == y);
    assert_eq!(edits, vec![Edit::Same(0, 0), Edit::Removed(1), Edit::Same(2, 1), Edit::Added(2), Edit::Same(3, 3)]);
  }
}
