//! Policy rules (`allow|ask|deny CAP`) and the decision for one operation (DESIGN §4).
//!
//! The order is strictest first, whatever the specificity of the rules: a matching
//! `deny` always wins; then a matching `ask` can be satisfied only by a human's
//! approval; only then do `allow` rules and the process's grants count. A `deny` on
//! `fs.read:secrets/**` therefore beats an `allow` on `fs.read:secrets/key.txt`.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::capability::{Capability, CapabilityError, Request};
use super::grant::{Grant, GrantId, GrantSource};

/// What a rule does to the operations its capability covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Effect {
  Allow,
  Ask,
  Deny,
}

impl fmt::Display for Effect {
  fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    f.write_str(match self {
      Effect::Allow => "allow",
      Effect::Ask => "ask",
      Effect::Deny => "deny",
    })
  }
}

/// Where a rule came from, for the audit log.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleSource {
  /// `--allow/--ask/--deny` on the command line.
  Cli,
  /// The named policy file.
  PolicyFile(String),
  /// The policy of the named image.
  Image(String),
  /// A human's "allow always" answer to the named request.
  Human { request: String },
  /// The fork mode a process was spawned with (e.g. a speculative child's denials).
  ForkMode { mode: String, parent: String },
  /// The process's tool table (calling a tool in it needs no grant).
  ToolTable,
}

impl fmt::Display for RuleSource {
  fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    match self {
      RuleSource::Cli => f.write_str("cli"),
      RuleSource::PolicyFile(name) => write!(f, "policy file {name:?}"),
      RuleSource::Image(name) => write!(f, "image {name:?}"),
      RuleSource::Human { request } => write!(f, "human request {request:?}"),
      RuleSource::ForkMode { mode, parent } => write!(f, "its fork mode ({mode} child of {parent})"),
      RuleSource::ToolTable => f.write_str("its tool table"),
    }
  }
}

/// `allow|ask|deny CAP`, with where it came from.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Rule {
  pub effect: Effect,
  pub capability: Capability,
  pub source: RuleSource,
}

impl Rule {
  pub fn new(effect: Effect, capability: Capability, source: RuleSource) -> Rule {
    Rule { effect, capability, source }
  }

  pub fn matches(&self, request: &Request) -> bool {
    self.capability.covers(request)
  }
}

/// The rule as it would be written: `deny fs.read:secrets/**` (the source is separate).
impl fmt::Display for Rule {
  fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    write!(f, "{} {}", self.effect, self.capability)
  }
}

/// A policy file that could not be loaded; the message names the file and, for a bad
/// capability, the list it was in and the offending token.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
  #[error("policy file {file:?}: {error}")]
  Toml { file: String, error: toml::de::Error },
  #[error("policy file {file:?}: in `{effect}`: {error}")]
  Capability { file: String, effect: Effect, error: CapabilityError },
}

/// The on-disk form: three lists of capability strings, nothing else.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
  #[serde(default)]
  allow: Vec<String>,
  #[serde(default)]
  ask: Vec<String>,
  #[serde(default)]
  deny: Vec<String>,
}

/// An ordered set of rules. Order never changes a decision's outcome (the strictest
/// effect wins); it only decides which of several matching rules a decision names.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
  rules: Vec<Rule>,
}

/// The outcome of [`Policy::decide`], carrying what decided it for the audit record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Decision {
  Allowed {
    by: AllowedBy,
  },
  /// A human must approve this operation; `rule` is the `ask` rule that said so.
  Ask {
    rule: Rule,
  },
  Denied {
    by: DeniedBy,
  },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AllowedBy {
  /// A grant the process holds. If it has a use limit, the caller must
  /// [`spend`](Grant::spend) it atomically with the effect.
  Grant(GrantId),
  Rule(Rule),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeniedBy {
  Rule(Rule),
  /// Nothing allows it. `suggestion` is the narrowest capability that would, or `None`
  /// if nothing could (a malformed request, e.g. a path outside the workspace).
  NoGrant {
    suggestion: Option<Capability>,
  },
}

impl Decision {
  pub fn is_allowed(&self) -> bool {
    matches!(self, Decision::Allowed { .. })
  }
}

impl fmt::Display for AllowedBy {
  fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    match self {
      AllowedBy::Grant(id) => write!(f, "grant {id}"),
      AllowedBy::Rule(rule) => write!(f, "rule \"{rule}\" from {}", rule.source),
    }
  }
}

impl fmt::Display for DeniedBy {
  fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    match self {
      DeniedBy::Rule(rule) => write!(f, "rule \"{rule}\" from {}", rule.source),
      DeniedBy::NoGrant { suggestion: Some(capability) } => {
        write!(f, "no grant (it needs {capability})")
      }
      DeniedBy::NoGrant { suggestion: None } => f.write_str("no grant (nothing can allow it)"),
    }
  }
}

/// One line for the audit log: the outcome and what decided it.
impl fmt::Display for Decision {
  fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    match self {
      Decision::Allowed { by } => write!(f, "allowed by {by}"),
      Decision::Ask { rule } => write!(f, "ask a human: rule \"{rule}\" from {}", rule.source),
      Decision::Denied { by } => write!(f, "denied by {by}"),
    }
  }
}

impl Policy {
  pub fn new() -> Policy {
    Policy::default()
  }

  pub fn push(&mut self, rule: Rule) {
    self.rules.push(rule);
  }

  pub fn rules(&self) -> &[Rule] {
    &self.rules
  }

  /// Parses a policy file:
  ///
  /// ```toml
  /// allow = ["fs.read:data/**"]
  /// ask   = ["fs.write:**"]
  /// deny  = ["fs.read:secrets/**"]
  /// ```
  ///
  /// Every key is optional; any other key is an error (a misspelt `deyn` must not
  /// silently drop the rules it was meant to hold). Rules get the source
  /// `PolicyFile(source_name)`.
  pub fn from_toml(text: &str, source_name: &str) -> Result<Policy, PolicyError> {
    let file: PolicyFile =
      toml::from_str(text).map_err(|error| PolicyError::Toml { file: source_name.to_owned(), error })?;
    let mut policy = Policy::new();
    for (effect, capabilities) in [(Effect::Allow, file.allow), (Effect::Ask, file.ask), (Effect::Deny, file.deny)] {
      for text in capabilities {
        let capability =
          text.parse().map_err(|error| PolicyError::Capability { file: source_name.to_owned(), effect, error })?;
        policy.push(Rule::new(effect, capability, RuleSource::PolicyFile(source_name.to_owned())));
      }
    }
    Ok(policy)
  }

  /// Decides one operation. `grants` are the process's, `op_digest` identifies the exact
  /// operation (syscall and operands), `now_ms` is the kernel clock.
  ///
  /// 1. A matching `deny` rule → denied by it.
  /// 2. A matching `ask` rule → allowed only by a human's approval, which is, in order
  ///    of preference: a live grant bound to `op_digest` (answer "once"); a live unbound
  ///    grant whose source is a human (answer "for this process"); an `allow` rule whose
  ///    source is a human (answer "always"). Otherwise `Ask`, naming the rule. Grants
  ///    from anywhere else and `allow` rules from the CLI, an image or a file do not
  ///    satisfy an `ask`: it exists to put a human in the loop.
  /// 3. Allowed, preferring, in order: a live covering grant with no use limit; a
  ///    matching `allow` rule; a live covering grant with a use limit. A grant is
  ///    preferred to a rule so the audit names the authority the process holds (and
  ///    that revocation tracks), but a counted use is spent only when nothing
  ///    unlimited allows the operation.
  /// 4. Otherwise denied, with the capability that would allow it.
  ///
  /// Among equals, the first in `grants` or in the rule order wins.
  pub fn decide(&self, grants: &[Grant], request: &Request, op_digest: &str, now_ms: u64) -> Decision {
    if let Some(rule) = self.first_match(Effect::Deny, request) {
      return Decision::Denied { by: DeniedBy::Rule(rule.clone()) };
    }
    let covering = || grants.iter().filter(|grant| grant.covers(request, now_ms, Some(op_digest)));

    if let Some(rule) = self.first_match(Effect::Ask, request) {
      let bound = covering().find(|grant| grant.bound_digest.is_some());
      let for_process =
        || covering().find(|grant| grant.bound_digest.is_none() && matches!(grant.source, GrantSource::Human { .. }));
      if let Some(grant) = bound.or_else(for_process) {
        return Decision::Allowed { by: AllowedBy::Grant(grant.id) };
      }
      let always = self
        .rules
        .iter()
        .find(|r| r.effect == Effect::Allow && matches!(r.source, RuleSource::Human { .. }) && r.matches(request));
      return match always {
        Some(human_rule) => Decision::Allowed { by: AllowedBy::Rule(human_rule.clone()) },
        None => Decision::Ask { rule: rule.clone() },
      };
    }

    if let Some(grant) = covering().find(|grant| grant.uses_left.is_none()) {
      return Decision::Allowed { by: AllowedBy::Grant(grant.id) };
    }
    if let Some(rule) = self.first_match(Effect::Allow, request) {
      return Decision::Allowed { by: AllowedBy::Rule(rule.clone()) };
    }
    if let Some(grant) = covering().next() {
      return Decision::Allowed { by: AllowedBy::Grant(grant.id) };
    }
    Decision::Denied { by: DeniedBy::NoGrant { suggestion: request.suggestion() } }
  }

  fn first_match(&self, effect: Effect, request: &Request) -> Option<&Rule> {
    self.rules.iter().find(|rule| rule.effect == effect && rule.matches(request))
  }
}

impl Extend<Rule> for Policy {
  fn extend<I: IntoIterator<Item = Rule>>(&mut self, rules: I) {
    self.rules.extend(rules);
  }
}

#[cfg(test)]
mod tests {
  use super::*;
  use crate::kernel::capability::Kind;

  const DIGEST: &str = "op-digest";

  fn cap(text: &str) -> Capability {
    text.parse().unwrap()
  }

  fn rule(effect: Effect, capability: &str) -> Rule {
    Rule::new(effect, cap(capability), RuleSource::Cli)
  }

  fn policy(rules: &[(Effect, &str)]) -> Policy {
    let mut policy = Policy::new();
    policy.extend(rules.iter().map(|(effect, capability)| rule(*effect, capability)));
    policy
  }

  fn grant(id: u64, capability: &str) -> Grant {
    Grant::new(GrantId(id), cap(capability), GrantSource::Cli)
  }

  fn human_grant(id: u64, capability: &str) -> Grant {
    Grant { source: GrantSource::Human { request: "r1".into() }, ..grant(id, capability) }
  }

  fn bound_grant(id: u64, capability: &str, digest: &str) -> Grant {
    Grant { uses_left: Some(1), bound_digest: Some(digest.into()), ..human_grant(id, capability) }
  }

  fn read(path: &str) -> Request {
    Request::new(Kind::FsRead, path)
  }

  fn write(path: &str) -> Request {
    Request::new(Kind::FsWrite, path)
  }

  fn by_grant(id: u64) -> Decision {
    Decision::Allowed { by: AllowedBy::Grant(GrantId(id)) }
  }

  fn by_rule(effect: Effect, capability: &str) -> Decision {
    let r = rule(effect, capability);
    match effect {
      Effect::Allow => Decision::Allowed { by: AllowedBy::Rule(r) },
      Effect::Ask => Decision::Ask { rule: r },
      Effect::Deny => Decision::Denied { by: DeniedBy::Rule(r) },
    }
  }

  fn no_grant(suggestion: &str) -> Decision {
    Decision::Denied { by: DeniedBy::NoGrant { suggestion: Some(cap(suggestion)) } }
  }

  // --- Step 4: nothing allows it ---

  #[test]
  fn nothing_means_denied_with_a_suggestion() {
    let decision = Policy::new().decide(&[], &read("data/a.txt"), DIGEST, 0);
    assert_eq!(decision, no_grant("fs.read:data/a.txt"));
    assert!(!decision.is_allowed());
    let net = Policy::new().decide(&[], &Request::new(Kind::Net, "example.com:443"), DIGEST, 0);
    assert_eq!(net, no_grant("net:example.com:443"));
  }

  #[test]
  fn malformed_requests_are_denied_whatever_is_held() {
    let p = policy(&[(Effect::Allow, "fs.read")]);
    let grants = [grant(1, "fs.read"), grant(2, "fs.read:**")];
    for path in ["../etc/passwd", "/etc/passwd", "a/../../b", "a//b"] {
      assert_eq!(
        p.decide(&grants, &read(path), DIGEST, 0),
        Decision::Denied { by: DeniedBy::NoGrant { suggestion: None } },
        "{path}"
      );
    }
  }

  #[test]
  fn a_grant_of_another_kind_or_resource_does_not_help() {
    let grants = [grant(1, "fs.write:data/**"), grant(2, "fs.read:other/**")];
    assert_eq!(Policy::new().decide(&grants, &read("data/a"), DIGEST, 0), no_grant("fs.read:data/a"));
  }

  // --- Step 3: allow rules and grants ---

  #[test]
  fn a_covering_grant_allows() {
    let grants = [grant(1, "fs.read:other"), grant(2, "fs.read:data/**")];
    let decision = Policy::new().decide(&grants, &read("data/a"), DIGEST, 0);
    assert_eq!(decision, by_grant(2));
    assert!(decision.is_allowed());
  }

  #[test]
  fn an_allow_rule_allows() {
    let p = policy(&[(Effect::Allow, "fs.read:data/**")]);
    assert_eq!(p.decide(&[], &read("data/a"), DIGEST, 0), by_rule(Effect::Allow, "fs.read:data/**"));
    assert_eq!(p.decide(&[], &read("database"), DIGEST, 0), no_grant("fs.read:database"));
  }

  #[test]
  fn an_unlimited_grant_is_preferred_to_a_rule_and_a_rule_to_a_counted_grant() {
    let p = policy(&[(Effect::Allow, "fs.read")]);
    let one_shot = Grant { uses_left: Some(1), ..grant(1, "fs.read") };
    let unlimited = grant(2, "fs.read");
    assert_eq!(p.decide(&[one_shot.clone(), unlimited], &read("a"), DIGEST, 0), by_grant(2));
    assert_eq!(p.decide(std::slice::from_ref(&one_shot), &read("a"), DIGEST, 0), by_rule(Effect::Allow, "fs.read"));
    assert_eq!(Policy::new().decide(&[one_shot], &read("a"), DIGEST, 0), by_grant(1));
  }

  #[test]
  fn expired_grants_do_not_count() {
    let grants = [Grant { expires_at_ms: Some(1_000), ..grant(1, "fs.read") }];
    assert_eq!(Policy::new().decide(&grants, &read("a"), DIGEST, 999), by_grant(1));
    assert_eq!(Policy::new().decide(&grants, &read("a"), DIGEST, 1_000), no_grant("fs.read:a"));
  }

  #[test]
  fn spent_one_shot_grants_do_not_count() {
    let mut g = Grant { uses_left: Some(1), ..grant(1, "fs.read") };
    assert_eq!(Policy::new().decide(std::slice::from_ref(&g), &read("a"), DIGEST, 0), by_grant(1));
    assert!(g.spend());
    assert_eq!(g.uses_left, Some(0));
    assert_eq!(Policy::new().decide(&[g], &read("a"), DIGEST, 0), no_grant("fs.read:a"));
  }

  #[test]
  fn a_bound_grant_allows_only_its_operation() {
    let grants = [bound_grant(1, "fs.write:notes.md", DIGEST)];
    assert_eq!(Policy::new().decide(&grants, &write("notes.md"), DIGEST, 0), by_grant(1));
    assert_eq!(Policy::new().decide(&grants, &write("notes.md"), "other-digest", 0), no_grant("fs.write:notes.md"));
  }

  // --- Step 2: ask ---

  #[test]
  fn ask_without_approval_asks() {
    let p = policy(&[(Effect::Ask, "fs.write:**")]);
    assert_eq!(p.decide(&[], &write("a"), DIGEST, 0), by_rule(Effect::Ask, "fs.write:**"));
  }

  #[test]
  fn ask_is_not_satisfied_by_ordinary_grants_or_allow_rules() {
    let p = policy(&[(Effect::Allow, "fs.write:a"), (Effect::Ask, "fs.write:**")]);
    let grants = [grant(1, "fs.write:a"), Grant { source: GrantSource::Image("img".into()), ..grant(2, "fs.write") }];
    assert_eq!(p.decide(&grants, &write("a"), DIGEST, 0), by_rule(Effect::Ask, "fs.write:**"));
  }

  #[test]
  fn ask_is_satisfied_by_a_grant_bound_to_this_operation() {
    let p = policy(&[(Effect::Ask, "fs.write:**")]);
    let grants = [grant(1, "fs.write"), bound_grant(2, "fs.write:a", DIGEST)];
    assert_eq!(p.decide(&grants, &write("a"), DIGEST, 0), by_grant(2));
  }

  #[test]
  fn ask_is_not_satisfied_by_a_grant_bound_to_another_operation() {
    let p = policy(&[(Effect::Ask, "fs.write:**")]);
    let grants = [bound_grant(2, "fs.write:a", "digest-of-other-content")];
    assert_eq!(p.decide(&grants, &write("a"), DIGEST, 0), by_rule(Effect::Ask, "fs.write:**"));
  }

  #[test]
  fn ask_is_not_satisfied_by_a_spent_or_expired_approval() {
    let p = policy(&[(Effect::Ask, "fs.write:**")]);
    let spent = Grant { uses_left: Some(0), ..bound_grant(1, "fs.write:a", DIGEST) };
    let expired = Grant { expires_at_ms: Some(10), ..bound_grant(2, "fs.write:a", DIGEST) };
    let asked = by_rule(Effect::Ask, "fs.write:**");
    assert_eq!(p.decide(&[spent, expired.clone()], &write("a"), DIGEST, 10), asked);
    assert_eq!(p.decide(&[expired], &write("a"), DIGEST, 9), by_grant(2));
  }

  #[test]
  fn ask_is_satisfied_by_a_human_grant_for_this_process() {
    let p = policy(&[(Effect::Ask, "fs.write:**")]);
    let grants = [grant(1, "fs.write"), human_grant(2, "fs.write:a")];
    assert_eq!(p.decide(&grants, &write("a"), DIGEST, 0), by_grant(2));
    assert_eq!(p.decide(&grants, &write("b"), DIGEST, 0), by_rule(Effect::Ask, "fs.write:**"));
  }

  #[test]
  fn a_bound_approval_is_preferred_to_a_standing_one() {
    let p = policy(&[(Effect::Ask, "fs.write:**")]);
    let grants = [human_grant(1, "fs.write:a"), bound_grant(2, "fs.write:a", DIGEST)];
    assert_eq!(p.decide(&grants, &write("a"), DIGEST, 0), by_grant(2));
  }

  #[test]
  fn ask_is_satisfied_by_a_human_allow_always_rule() {
    let mut p = policy(&[(Effect::Ask, "fs.write:**")]);
    let always = Rule::new(Effect::Allow, cap("fs.write:a"), RuleSource::Human { request: "r9".into() });
    p.push(always.clone());
    assert_eq!(p.decide(&[], &write("a"), DIGEST, 0), Decision::Allowed { by: AllowedBy::Rule(always) });
    assert_eq!(p.decide(&[], &write("b"), DIGEST, 0), by_rule(Effect::Ask, "fs.write:**"));
  }

  #[test]
  fn ask_on_a_resourceless_kind() {
    let p = policy(&[(Effect::Ask, "human.ask")]);
    let request = Request::new(Kind::HumanAsk, "");
    assert_eq!(p.decide(&[grant(1, "human.ask")], &request, DIGEST, 0), by_rule(Effect::Ask, "human.ask"));
  }

  // --- Step 1: deny ---

  #[test]
  fn deny_beats_a_more_specific_allow_rule_and_grant() {
    let p = policy(&[(Effect::Allow, "fs.read:secrets/key.txt"), (Effect::Deny, "fs.read:secrets/**")]);
    let grants = [grant(1, "fs.read:secrets/key.txt"), grant(2, "fs.read")];
    assert_eq!(p.decide(&grants, &read("secrets/key.txt"), DIGEST, 0), by_rule(Effect::Deny, "fs.read:secrets/**"));
    assert_eq!(p.decide(&grants, &read("data/x"), DIGEST, 0), by_grant(2));
  }

  #[test]
  fn deny_beats_ask_and_any_approval() {
    let mut p = policy(&[(Effect::Ask, "fs.write:**"), (Effect::Deny, "fs.write:.git/**")]);
    p.push(Rule::new(Effect::Allow, cap("fs.write:.git/config"), RuleSource::Human { request: "r1".into() }));
    let grants = [bound_grant(1, "fs.write:.git/config", DIGEST), human_grant(2, "fs.write")];
    assert_eq!(p.decide(&grants, &write(".git/config"), DIGEST, 0), by_rule(Effect::Deny, "fs.write:.git/**"));
  }

  #[test]
  fn a_bare_kind_deny_covers_everything_of_that_kind_only() {
    let p = policy(&[(Effect::Deny, "net"), (Effect::Allow, "fs.read")]);
    let request = Request::new(Kind::Net, "example.com:443");
    assert_eq!(p.decide(&[grant(1, "net:example.com")], &request, DIGEST, 0), by_rule(Effect::Deny, "net"));
    assert_eq!(p.decide(&[], &read("a"), DIGEST, 0), by_rule(Effect::Allow, "fs.read"));
  }

  #[test]
  fn an_ipv4_mapped_address_does_not_dodge_a_deny() {
    let p = policy(&[(Effect::Deny, "net:169.254.169.254"), (Effect::Allow, "net")]);
    let request = Request::new(Kind::Net, "[::ffff:169.254.169.254]:80");
    assert_eq!(p.decide(&[], &request, DIGEST, 0), by_rule(Effect::Deny, "net:169.254.169.254"));
  }

  #[test]
  fn the_first_matching_rule_is_named() {
    let p = policy(&[(Effect::Deny, "fs.read:a/**"), (Effect::Deny, "fs.read:a/b")]);
    assert_eq!(p.decide(&[], &read("a/b"), DIGEST, 0), by_rule(Effect::Deny, "fs.read:a/**"));
  }

  // --- Policy files ---

  #[test]
  fn from_toml_reads_the_three_lists() {
    let text = r#"
      allow = ["fs.read:data/**"]
      ask   = ["fs.write:**"]
      deny  = ["fs.read:secrets/**", "net"]
    "#;
    let p = Policy::from_toml(text, "policy.toml").unwrap();
    let source = RuleSource::PolicyFile("policy.toml".into());
    assert_eq!(
      p.rules(),
      [
        Rule::new(Effect::Allow, cap("fs.read:data/**"), source.clone()),
        Rule::new(Effect::Ask, cap("fs.write:**"), source.clone()),
        Rule::new(Effect::Deny, cap("fs.read:secrets/**"), source.clone()),
        Rule::new(Effect::Deny, cap("net"), source),
      ]
    );
    assert_eq!(
      p.decide(&[], &read("secrets/k"), DIGEST, 0).to_string(),
      "denied by rule \"deny fs.read:secrets/**\" from policy file \"policy.toml\""
    );
  }

  #[test]
  fn from_toml_keys_are_optional() {
    assert!(Policy::from_toml("", "empty.toml").unwrap().rules().is_empty());
    assert_eq!(Policy::from_toml("deny = [\"shell\"]", "p").unwrap().rules().len(), 1);
  }

  #[test]
  fn from_toml_rejects_unknown_keys() {
    let err = Policy::from_toml("deyn = [\"net\"]", "p.toml").unwrap_err();
    assert!(matches!(err, PolicyError::Toml { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.starts_with("policy file \"p.toml\": "), "{message}");
    assert!(message.contains("deyn"), "{message}");
  }

  #[test]
  fn from_toml_rejects_wrong_types() {
    assert!(matches!(Policy::from_toml("allow = \"fs.read\"", "p.toml"), Err(PolicyError::Toml { .. })));
    assert!(matches!(Policy::from_toml("allow = [1]", "p.toml"), Err(PolicyError::Toml { .. })));
    assert!(matches!(Policy::from_toml("allow = [", "p.toml"), Err(PolicyError::Toml { .. })));
  }

  #[test]
  fn from_toml_names_the_bad_capability_and_the_file() {
    let err = Policy::from_toml("allow = [\"fs.read:a\"]\ndeny = [\"fs.raed:data/**\"]", "team.toml").unwrap_err();
    let message = err.to_string();
    assert!(
      message.starts_with(
        "policy file \"team.toml\": in `deny`: invalid capability \"fs.raed:data/**\": unknown kind \"fs.raed\""
      ),
      "{message}"
    );
    let err = Policy::from_toml("ask = [\"fs.write:../x\"]", "team.toml").unwrap_err();
    assert!(
      matches!(&err, PolicyError::Capability { effect: Effect::Ask, error, .. } if error.input == "fs.write:../x"),
      "{err:?}"
    );
  }

  // --- What an audit record gets ---

  #[test]
  fn decisions_say_what_decided_them() {
    assert_eq!(by_grant(3).to_string(), "allowed by grant g3");
    assert_eq!(by_rule(Effect::Allow, "fs.read").to_string(), "allowed by rule \"allow fs.read\" from cli");
    assert_eq!(by_rule(Effect::Ask, "fs.write:**").to_string(), "ask a human: rule \"ask fs.write:**\" from cli");
    assert_eq!(no_grant("fs.read:a").to_string(), "denied by no grant (it needs fs.read:a)");
    assert_eq!(
      Decision::Denied { by: DeniedBy::NoGrant { suggestion: None } }.to_string(),
      "denied by no grant (nothing can allow it)"
    );
    assert_eq!(AllowedBy::Grant(GrantId(4)).to_string(), "grant g4");
  }

  #[test]
  fn decisions_serialize_for_the_audit_log() {
    let json = serde_json::to_value(by_rule(Effect::Deny, "fs.read:secrets/**")).unwrap();
    assert_eq!(
      json,
      serde_json::json!({
        "decision": "denied",
        "by": { "rule": { "effect": "deny", "capability": "fs.read:secrets/**", "source": "cli" } }
      })
    );
    let json = serde_json::to_value(no_grant("fs.read:a")).unwrap();
    assert_eq!(json, serde_json::json!({ "decision": "denied", "by": { "no_grant": { "suggestion": "fs.read:a" } } }));
    for decision in [by_grant(1), by_rule(Effect::Ask, "net"), no_grant("shell:git")] {
      let text = serde_json::to_string(&decision).unwrap();
      assert_eq!(serde_json::from_str::<Decision>(&text).unwrap(), decision);
    }
  }
}
