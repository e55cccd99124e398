//! Capabilities: the `KIND[:RESOURCE]` strings of DESIGN §7 — parsing, printing,
//! matching a concrete [`Request`], and attenuation ([`Capability::includes`]).
//!
//! Resource syntax and matching, per kind:
//!
//! | kind | resource | matching |
//! | --- | --- | --- |
//! | `fs.read` `fs.write` `fs.delete` | workspace-relative path glob | segment glob, below |
//! | `mem.read` `mem.write` | namespace glob (`proc/p1`, `shared/*`) | segment glob |
//! | `model` | `PROVIDER/MODEL` glob (`openai/*`) | segment glob |
//! | `shell` | a bare program name, or `*` | exact name, `*` = any program |
//! | `net` | `HOST[:PORT]` | host exact, `*.example.com` = strict subdomains, `*` = any host; no port or `*` = any port |
//! | `tool.call` `event.emit` `event.wait` | name / topic glob | `*` = any run of characters except `/` |
//! | `human.ask` `tool.register` `proc.spawn` `proc.signal` | none | — |
//!
//! A capability without a resource covers every resource of its kind (for `fs.*`, every
//! path inside the workspace — never one outside it).
//!
//! **Segment globs** split on `/`. Inside a segment, `*` matches any run of characters
//! (never a `/`); a segment that is exactly `**` matches zero or more whole segments. So
//! `data/**` matches `data`, `data/a` and `data/a/b`, but never `database` or `other`.
//! No other character is special (`?`, `[`, `{` are literal), and there is no escaping,
//! so a literal `*` in a name can only be matched by a wildcard.
//!
//! **Normal forms.** Path patterns are normalised when parsed: a leading `./`, repeated
//! `/`, `.` segments and a trailing `/` are dropped, and the workspace root itself is
//! written `.` (in a request it is `""`). Requests must already be in normal form (see [`Request`]); a request that
//! is not is covered by nothing, which fails closed for allow rules and grants alike and,
//! because nothing else can allow it either, never lets a request slip past a deny rule.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

// ---------------------------------------------------------------------------------------
// Kind
// ---------------------------------------------------------------------------------------

/// What a capability is about: one primitive (or family of primitives) of the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
  FsRead,
  FsWrite,
  FsDelete,
  MemRead,
  MemWrite,
  Shell,
  Net,
  Model,
  HumanAsk,
  ToolRegister,
  ToolCall,
  ProcSpawn,
  ProcSignal,
  EventEmit,
  EventWait,
}

/// How a kind's resource is written and matched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Form {
  None,
  Path,
  Segments,
  Program,
  Net,
  Name,
}

impl Kind {
  /// Every kind, in the order of DESIGN §7.
  pub const ALL: [Kind; 15] = [
    Kind::FsRead,
    Kind::FsWrite,
    Kind::FsDelete,
    Kind::MemRead,
    Kind::MemWrite,
    Kind::Shell,
    Kind::Net,
    Kind::Model,
    Kind::HumanAsk,
    Kind::ToolRegister,
    Kind::ToolCall,
    Kind::ProcSpawn,
    Kind::ProcSignal,
    Kind::EventEmit,
    Kind::EventWait,
  ];

  /// The kind as written in a capability string, e.g. `"fs.read"`.
  pub fn name(self) -> &'static str {
    match self {
      Kind::FsRead => "fs.read",
      Kind::FsWrite => "fs.write",
      Kind::FsDelete => "fs.delete",
      Kind::MemRead => "mem.read",
      Kind::MemWrite => "mem.write",
      Kind::Shell => "shell",
      Kind::Net => "net",
      Kind::Model => "model",
      Kind::HumanAsk => "human.ask",
      Kind::ToolRegister => "tool.register",
      Kind::ToolCall => "tool.call",
      Kind::ProcSpawn => "proc.spawn",
      Kind::ProcSignal => "proc.signal",
      Kind::EventEmit => "event.emit",
      Kind::EventWait => "event.wait",
    }
  }

  /// The kind named exactly `name` (case-sensitive), if any.
  pub fn parse(name: &str) -> Option<Kind> {
    Kind::ALL.into_iter().find(|kind| kind.name() == name)
  }

  /// Whether a capability of this kind may carry a `:RESOURCE` (`human.ask`,
  /// `tool.register`, `proc.spawn` and `proc.signal` take none).
  pub fn takes_resource(self) -> bool {
    self.form() != Form::None
  }

  fn form(self) -> Form {
    match self {
      Kind::FsRead | Kind::FsWrite | Kind::FsDelete => Form::Path,
      Kind::MemRead | Kind::MemWrite | Kind::Model => Form::Segments,
      Kind::Shell => Form::Program,
      Kind::Net => Form::Net,
      Kind::ToolCall | Kind::EventEmit | Kind::EventWait => Form::Name,
      Kind::HumanAsk | Kind::ToolRegister | Kind::ProcSpawn | Kind::ProcSignal => Form::None,
    }
  }
}

impl fmt::Display for Kind {
  fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    f.write_str(self.name())
  }
}

impl FromStr for Kind {
  type Err = CapabilityError;

  fn from_str(s: &str) -> Result<Kind, CapabilityError> {
    Kind::parse(s)
      .ok_or_else(|| CapabilityError { input: s.to_owned(), reason: CapabilityErrorReason::UnknownKind(s.to_owned()) })
  }
}

impl Serialize for Kind {
  fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(self.name())
  }
}

impl<'de> Deserialize<'de> for Kind {
  fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Kind, D::Error> {
    let name = String::deserialize(deserializer)?;
    name.parse().map_err(serde::de::Error::custom)
  }
}

// ---------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------

/// A malformed capability string: the whole input, and what is wrong with which token.
/// The input is printed escaped (`{:?}`), so control characters never reach a terminal.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid capability {input:?}: {reason}")]
pub struct CapabilityError {
  pub input: String,
  pub reason: CapabilityErrorReason,
}

/// Why a capability string was rejected; each variant names the offending token.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CapabilityErrorReason {
  #[error("empty capability (expected KIND[:RESOURCE])")]
  Empty,
  #[error("unknown kind {0:?} (expected one of {kinds})", kinds = kind_list())]
  UnknownKind(String),
  #[error("{0} takes no resource")]
  UnexpectedResource(Kind),
  #[error("empty resource after ':'")]
  EmptyResource,
  #[error("character {:?} (U+{:04X}) is not allowed: no whitespace or control characters", .0, u32::from(*.0))]
  ForbiddenChar(char),
  #[error("absolute path {0:?}: paths are relative to the workspace root")]
  AbsolutePath(String),
  #[error("\"..\" segments are not allowed, in {0:?}")]
  ParentSegment(String),
  #[error("empty or \".\" segment in {0:?}")]
  EmptySegment(String),
  #[error("\"**\" must be a whole segment, not part of {0:?}")]
  PartialDoubleStar(String),
  #[error("\"**\" has no meaning in {0:?}: here \"*\" matches any run of characters except '/'")]
  DoubleStarInName(String),
  #[error("invalid program {0:?}: {1}")]
  InvalidProgram(String, &'static str),
  #[error("invalid host {0:?}: {1}")]
  InvalidHost(String, &'static str),
  #[error("invalid port {0:?}: expected a number from 1 to 65535, or *")]
  InvalidPort(String),
}

fn kind_list() -> String {
  Kind::ALL.map(Kind::name).join(", ")
}

// ---------------------------------------------------------------------------------------
// Capability
// ---------------------------------------------------------------------------------------

/// One unit of authority: a kind, optionally narrowed to a resource pattern.
///
/// Built only by parsing, so every value is valid and in normal form; its [`Display`]
/// is the canonical string, which parses back to an equal value.
///
/// [`Display`]: fmt::Display
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Capability {
  kind: Kind,
  /// `None`: every resource of the kind.
  resource: Option<Pattern>,
}

/// A parsed, normalised resource pattern; which variant follows from the kind's [`Form`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Pattern {
  /// fs.*: the segments of a workspace-relative glob; empty = the root itself (`.`).
  Path(Vec<String>),
  /// mem.*, model: at least one segment.
  Segments(Vec<String>),
  /// shell: a bare program name, or `*` for any.
  Program(String),
  /// net: `port: None` means the port was not written (any port).
  Net { host: HostPattern, port: Option<PortPattern> },
  /// tool.call, event.*: a name glob.
  Name(String),
}

impl Capability {
  /// The capability covering every resource of `kind` (written as the bare kind).
  pub fn any(kind: Kind) -> Capability {
    Capability { kind, resource: None }
  }

  /// `kind` narrowed to `resource` (the text after `:`), validated and normalised.
  pub fn new(kind: Kind, resource: Option<&str>) -> Result<Capability, CapabilityError> {
    let Some(resource) = resource else {
      return Ok(Capability::any(kind));
    };
    let pattern = parse_resource(kind, resource)
      .map_err(|reason| CapabilityError { input: format!("{kind}:{resource}"), reason })?;
    Ok(Capability { kind, resource: Some(pattern) })
  }

  pub fn kind(&self) -> Kind {
    self.kind
  }

  /// The normalised resource pattern, or `None` for "every resource of the kind".
  pub fn resource(&self) -> Option<String> {
    self.resource.as_ref().map(Pattern::to_string)
  }

  /// Whether this capability authorises `request`. A request that is not in normal form
  /// (see [`Request`]) is covered by nothing.
  pub fn covers(&self, request: &Request) -> bool {
    if request.kind != self.kind {
      return false;
    }
    let Some(target) = request.target() else {
      return false;
    };
    let Some(pattern) = &self.resource else {
      return true;
    };
    match (pattern, &target) {
      (Pattern::Path(glob), Target::Path(path)) => segment_glob_matches(glob, path),
      (Pattern::Segments(glob), Target::Segments(segments)) => segment_glob_matches(glob, segments),
      (Pattern::Program(program), Target::Program(name)) => program == "*" || program == name,
      (Pattern::Net { host, port }, Target::Net(target_host, target_port)) => {
        host.matches(target_host) && port.as_ref().is_none_or(|port| port.matches(*target_port))
      }
      (Pattern::Name(glob), Target::Name(name)) => name_glob_matches(glob, name),
      // Unreachable: a pattern's variant and a target's both follow from the same kind.
      _ => false,
    }
  }

  /// Whether every request `other` covers is also covered by `self` — the attenuation
  /// check ("a child gets at most what its parent holds"). Sound but conservative: it
  /// may answer `false` for an inclusion it cannot prove, never `true` for a widening.
  pub fn includes(&self, other: &Capability) -> bool {
    if self.kind != other.kind {
      return false;
    }
    match (&self.resource, &other.resource) {
      (None, _) => true,
      (Some(mine), None) => mine.is_universal(),
      (Some(mine), Some(theirs)) => mine.includes(theirs),
    }
  }
}

impl FromStr for Capability {
  type Err = CapabilityError;

  fn from_str(input: &str) -> Result<Capability, CapabilityError> {
    parse_capability(input).map_err(|reason| CapabilityError { input: input.to_owned(), reason })
  }
}

impl fmt::Display for Capability {
  fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    match &self.resource {
      None => write!(f, "{}", self.kind),
      Some(resource) => write!(f, "{}:{resource}", self.kind),
    }
  }
}

impl Serialize for Capability {
  fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(self)
  }
}

impl<'de> Deserialize<'de> for Capability {
  fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Capability, D::Error> {
    let text = String::deserialize(deserializer)?;
    text.parse().map_err(serde::de::Error::custom)
  }
}

fn parse_capability(input: &str) -> Result<Capability, CapabilityErrorReason> {
  if input.is_empty() {
    return Err(CapabilityErrorReason::Empty);
  }
  check_chars(input)?;
  // Only the first ':' separates kind from resource: a net resource has its own.
  let (kind_token, resource) = match input.split_once(':') {
    Some((kind, resource)) => (kind, Some(resource)),
    None => (input, None),
  };
  let kind = Kind::parse(kind_token).ok_or_else(|| CapabilityErrorReason::UnknownKind(kind_token.to_owned()))?;
  let resource = resource.map(|resource| parse_resource(kind, resource)).transpose()?;
  Ok(Capability { kind, resource })
}

/// Whitespace and control characters are never part of a capability: they only serve to
/// hide what a string really says (and the kind/resource syntax never needs them).
fn check_chars(text: &str) -> Result<(), CapabilityErrorReason> {
  match text.chars().find(|c| c.is_whitespace() || c.is_control()) {
    Some(c) => Err(CapabilityErrorReason::ForbiddenChar(c)),
    None => Ok(()),
  }
}

fn parse_resource(kind: Kind, resource: &str) -> Result<Pattern, CapabilityErrorReason> {
  if resource.is_empty() {
    return Err(CapabilityErrorReason::EmptyResource);
  }
  check_chars(resource)?;
  match kind.form() {
    Form::None => Err(CapabilityErrorReason::UnexpectedResource(kind)),
    Form::Path => parse_path_glob(resource).map(Pattern::Path),
    Form::Segments => parse_segment_glob(resource).map(Pattern::Segments),
    Form::Program => parse_program(resource).map(|program| Pattern::Program(program.to_owned())),
    Form::Net => parse_net_pattern(resource),
    Form::Name => parse_name_glob(resource).map(|name| Pattern::Name(name.to_owned())),
  }
}

/// A workspace-relative path glob. Lenient about spelling (`./a//b/` is `a/b`), strict
/// about reach: no absolute paths, no `..` anywhere.
fn parse_path_glob(text: &str) -> Result<Vec<String>, CapabilityErrorReason> {
  if text.starts_with('/') {
    return Err(CapabilityErrorReason::AbsolutePath(text.to_owned()));
  }
  let mut segments = Vec::new();
  for segment in text.split('/') {
    match segment {
      "" | "." => continue,
      ".." => return Err(CapabilityErrorReason::ParentSegment(text.to_owned())),
      _ => {
        check_glob_segment(segment)?;
        segments.push(segment.to_owned());
      }
    }
  }
  Ok(segments)
}

/// A namespace or `provider/model` glob: not a path, so no spelling variants to forgive.
fn parse_segment_glob(text: &str) -> Result<Vec<String>, CapabilityErrorReason> {
  text
    .split('/')
    .map(|segment| match segment {
      "" | "." => Err(CapabilityErrorReason::EmptySegment(text.to_owned())),
      ".." => Err(CapabilityErrorReason::ParentSegment(text.to_owned())),
      _ => check_glob_segment(segment).map(|()| segment.to_owned()),
    })
    .collect()
}

fn check_glob_segment(segment: &str) -> Result<(), CapabilityErrorReason> {
  if segment != "**" && segment.contains("**") {
    return Err(CapabilityErrorReason::PartialDoubleStar(segment.to_owned()));
  }
  Ok(())
}

fn parse_program(text: &str) -> Result<&str, CapabilityErrorReason> {
  if text == "*" {
    return Ok(text);
  }
  program_name_problem(text).map_or(Ok(text), |why| Err(CapabilityErrorReason::InvalidProgram(text.to_owned(), why)))
}

/// Why `name` is not a bare program name (shared by patterns and requests).
fn program_name_problem(name: &str) -> Option<&'static str> {
  if name.is_empty() {
    Some("empty program name")
  } else if name.contains('/') {
    Some("a bare program name is expected, not a path")
  } else if name == "." || name.contains("..") {
    Some("\".\" and \"..\" are not program names")
  } else if name.contains('*') {
    Some("\"*\" is allowed only on its own, meaning any program")
  } else if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
    Some("no whitespace or control characters")
  } else {
    None
  }
}

fn parse_name_glob(text: &str) -> Result<&str, CapabilityErrorReason> {
  if text.contains("**") {
    return Err(CapabilityErrorReason::DoubleStarInName(text.to_owned()));
  }
  Ok(text)
}

impl Pattern {
  /// Whether the pattern covers every well-formed request of its kind (conservatively).
  fn is_universal(&self) -> bool {
    match self {
      Pattern::Path(glob) | Pattern::Segments(glob) => !glob.is_empty() && glob.iter().all(|segment| segment == "**"),
      Pattern::Program(program) => program == "*",
      Pattern::Net { host, port } => *host == HostPattern::Any && matches!(port, None | Some(PortPattern::Any)),
      // `*` never crosses '/', so no name glob matches every name.
      Pattern::Name(_) => false,
    }
  }

  fn includes(&self, other: &Pattern) -> bool {
    match (self, other) {
      (Pattern::Path(mine), Pattern::Path(theirs)) | (Pattern::Segments(mine), Pattern::Segments(theirs)) => {
        segment_glob_includes(mine, theirs)
      }
      (Pattern::Program(mine), Pattern::Program(theirs)) => mine == "*" || mine == theirs,
      (Pattern::Net { host, port }, Pattern::Net { host: their_host, port: their_port }) => {
        let port_ok = match (port, their_port) {
          (None | Some(PortPattern::Any), _) => true,
          (Some(PortPattern::Exact(mine)), Some(PortPattern::Exact(theirs))) => mine == theirs,
          (Some(PortPattern::Exact(_)), None | Some(PortPattern::Any)) => false,
        };
        port_ok && host.includes(their_host)
      }
      (Pattern::Name(mine), Pattern::Name(theirs)) => name_glob_includes(mine, theirs),
      _ => false,
    }
  }
}

impl fmt::Display for Pattern {
  fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    match self {
      Pattern::Path(segments) if segments.is_empty() => f.write_str("."),
      Pattern::Path(segments) | Pattern::Segments(segments) => f.write_str(&segments.join("/")),
      Pattern::Program(name) | Pattern::Name(name) => f.write_str(name),
      Pattern::Net { host, port: None } => write!(f, "{host}"),
      Pattern::Net { host, port: Some(port) } => write!(f, "{host}:{port}"),
    }
  }
}

// ---------------------------------------------------------------------------------------
// Wildcard matching
// ---------------------------------------------------------------------------------------

/// Wildcard matching over sequences, by dynamic programming (no backtracking blow-up):
/// a pattern item for which `is_star` holds matches any run, possibly empty, of subject
/// items; any other item must `step`-match exactly one subject item.
///
/// The same routine decides both matching (subject = a concrete path, name, …) and
/// inclusion (subject = another pattern): for inclusion, a star may absorb anything of
/// the other pattern, stars included, while `step` refuses to let a literal stand for
/// the other pattern's star — which is what makes `includes` sound.
fn wildcard<P, S>(pattern: &[P], subject: &[S], is_star: impl Fn(&P) -> bool, step: impl Fn(&P, &S) -> bool) -> bool {
  let m = subject.len();
  // `next[j]`: does pattern[i + 1..] match subject[j..]? Starts as the empty pattern.
  let mut next = vec![false; m + 1];
  next[m] = true;
  for item in pattern.iter().rev() {
    let mut row = vec![false; m + 1];
    for j in (0..=m).rev() {
      row[j] =
        if is_star(item) { next[j] || (j < m && row[j + 1]) } else { j < m && step(item, &subject[j]) && next[j + 1] };
    }
    next = row;
  }
  next[0]
}

/// `*` inside one segment (or name part) matches any run of characters.
fn star_matches(glob: &str, text: &str) -> bool {
  // Bytes are exact for UTF-8: a literal after `*` starts with a leading byte, which
  // can never line up with a continuation byte of the text.
  wildcard(glob.as_bytes(), text.as_bytes(), |c| *c == b'*', |c, t| c == t)
}

fn star_includes(glob: &str, other: &str) -> bool {
  wildcard(glob.as_bytes(), other.as_bytes(), |c| *c == b'*', |c, o| *o != b'*' && c == o)
}

fn segment_glob_matches<T: AsRef<str>>(glob: &[String], segments: &[T]) -> bool {
  wildcard(glob, segments, |g| g == "**", |g, segment| star_matches(g, segment.as_ref()))
}

fn segment_glob_includes(glob: &[String], other: &[String]) -> bool {
  wildcard(glob, other, |g| g == "**", |g, o| o != "**" && star_includes(g, o))
}

/// Names and topics: `*` matches any run of characters except `/`, so the two sides
/// must have the same number of `/`-separated parts.
fn name_glob_matches(glob: &str, name: &str) -> bool {
  glob.split('/').count() == name.split('/').count()
    && glob.split('/').zip(name.split('/')).all(|(g, n)| star_matches(g, n))
}

fn name_glob_includes(glob: &str, other: &str) -> bool {
  glob.split('/').count() == other.split('/').count()
    && glob.split('/').zip(other.split('/')).all(|(g, o)| star_includes(g, o))
}

// ---------------------------------------------------------------------------------------
// Hosts and ports
// ---------------------------------------------------------------------------------------

/// A concrete host. IPv4-mapped IPv6 addresses are stored as IPv4, so `[::ffff:10.0.0.1]`
/// cannot dodge a rule written for `10.0.0.1`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Host {
  /// A lowercase DNS name.
  Name(String),
  V4(Ipv4Addr),
  V6(Ipv6Addr),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum HostPattern {
  Any,
  /// `*.example.com`: strict subdomains of the stored name, never the name itself.
  Subdomains(String),
  Exact(Host),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum PortPattern {
  Any,
  Exact(u16),
}

impl fmt::Display for Host {
  fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    match self {
      Host::Name(name) => f.write_str(name),
      Host::V4(addr) => write!(f, "{addr}"),
      Host::V6(addr) => write!(f, "[{addr}]"),
    }
  }
}

impl fmt::Display for HostPattern {
  fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    match self {
      HostPattern::Any => f.write_str("*"),
      HostPattern::Subdomains(domain) => write!(f, "*.{domain}"),
      HostPattern::Exact(host) => write!(f, "{host}"),
    }
  }
}

impl fmt::Display for PortPattern {
  fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    match self {
      PortPattern::Any => f.write_str("*"),
      PortPattern::Exact(port) => write!(f, "{port}"),
    }
  }
}

impl HostPattern {
  fn matches(&self, host: &Host) -> bool {
    match (self, host) {
      (HostPattern::Any, _) => true,
      (HostPattern::Subdomains(domain), Host::Name(name)) => is_strict_subdomain(name, domain),
      (HostPattern::Subdomains(_), _) => false,
      (HostPattern::Exact(exact), host) => exact == host,
    }
  }

  fn includes(&self, other: &HostPattern) -> bool {
    match (self, other) {
      (HostPattern::Any, _) => true,
      (HostPattern::Subdomains(mine), HostPattern::Subdomains(theirs)) => {
        mine == theirs || is_strict_subdomain(theirs, mine)
      }
      (HostPattern::Subdomains(mine), HostPattern::Exact(Host::Name(name))) => is_strict_subdomain(name, mine),
      (HostPattern::Exact(mine), HostPattern::Exact(theirs)) => mine == theirs,
      _ => false,
    }
  }
}

impl PortPattern {
  fn matches(&self, port: u16) -> bool {
    match self {
      PortPattern::Any => true,
      PortPattern::Exact(exact) => *exact == port,
    }
  }
}

fn is_strict_subdomain(name: &str, domain: &str) -> bool {
  name.strip_suffix(domain).is_some_and(|head| head.len() > 1 && head.ends_with('.'))
}

/// Splits `HOST[:PORT]`; an IPv6 host must be bracketed, so the port's ':' is unambiguous.
fn split_host_port(text: &str) -> Result<(&str, Option<&str>), CapabilityErrorReason> {
  let invalid = |why| CapabilityErrorReason::InvalidHost(text.to_owned(), why);
  if text.starts_with('[') {
    let close = text.find(']').ok_or_else(|| invalid("missing ']'"))?;
    let (host, rest) = text.split_at(close + 1);
    return match rest {
      "" => Ok((host, None)),
      _ => rest.strip_prefix(':').map(|port| (host, Some(port))).ok_or_else(|| invalid("expected ':' after ']'")),
    };
  }
  match text.split_once(':') {
    None => Ok((text, None)),
    Some((host, port)) if !port.contains(':') => Ok((host, Some(port))),
    Some(_) => Err(invalid("IPv6 addresses must be bracketed, as in [::1]")),
  }
}

/// A concrete host: a bracketed IPv6 address, a dotted-quad IPv4 address or a DNS name
/// (lowercased — DNS is case-insensitive, so case must not tell two spellings apart).
fn parse_host(text: &str) -> Result<Host, CapabilityErrorReason> {
  let invalid = |why| CapabilityErrorReason::InvalidHost(text.to_owned(), why);
  if let Some(inner) = text.strip_prefix('[') {
    let inner = inner.strip_suffix(']').ok_or_else(|| invalid("missing ']'"))?;
    let addr: Ipv6Addr = inner.parse().map_err(|_| invalid("not an IPv6 address"))?;
    return Ok(match addr.to_ipv4_mapped() {
      Some(v4) => Host::V4(v4),
      None => Host::V6(addr),
    });
  }
  let lower = text.to_ascii_lowercase();
  if let Ok(v4) = lower.parse::<Ipv4Addr>() {
    return Ok(Host::V4(v4));
  }
  domain_problem(&lower).map_or(Ok(Host::Name(lower)), |why| Err(invalid(why)))
}

/// Why `name` (lowercase) is not a plain DNS name.
fn domain_problem(name: &str) -> Option<&'static str> {
  if name.is_empty() {
    return Some("empty host");
  }
  if name.len() > 253 {
    return Some("longer than 253 characters");
  }
  for label in name.split('.') {
    if label.is_empty() {
      return Some("empty label (no leading, trailing or double dots)");
    }
    if label.len() > 63 {
      return Some("label longer than 63 characters");
    }
    if !label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
      return Some("only letters, digits, '-' and '_' are allowed in a host name");
    }
  }
  // URL parsers read a name whose last label is numeric as an IPv4 address in another
  // spelling (`127.1`, `0x7f.1`); accepting it as a name would let it dodge IP rules.
  let last = name.rsplit('.').next().unwrap_or(name);
  let hex = last.strip_prefix("0x").is_some_and(|digits| digits.bytes().all(|b| b.is_ascii_hexdigit()));
  if last.bytes().all(|b| b.is_ascii_digit()) || hex {
    return Some("looks like an IPv4 address in a non-standard form");
  }
  None
}

fn parse_port(text: &str) -> Option<u16> {
  // `u16::from_str` accepts a leading '+'; only plain digits are a port here.
  if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
    return None;
  }
  text.parse().ok().filter(|port| *port != 0)
}

fn parse_net_pattern(text: &str) -> Result<Pattern, CapabilityErrorReason> {
  let (host_text, port_text) = split_host_port(text)?;
  let host = if host_text == "*" {
    HostPattern::Any
  } else if let Some(domain) = host_text.strip_prefix("*.") {
    let domain = domain.to_ascii_lowercase();
    if let Some(why) = domain_problem(&domain) {
      return Err(CapabilityErrorReason::InvalidHost(host_text.to_owned(), why));
    }
    HostPattern::Subdomains(domain)
  } else if host_text.contains('*') {
    return Err(CapabilityErrorReason::InvalidHost(
      host_text.to_owned(),
      "'*' is allowed only on its own or as the whole first label, as in *.example.com",
    ));
  } else {
    HostPattern::Exact(parse_host(host_text)?)
  };
  let port = match port_text {
    None => None,
    Some("*") => Some(PortPattern::Any),
    Some(text) => {
      Some(PortPattern::Exact(parse_port(text).ok_or_else(|| CapabilityErrorReason::InvalidPort(text.to_owned()))?))
    }
  };
  Ok(Pattern::Net { host, port })
}

// ---------------------------------------------------------------------------------------
// Request
// ---------------------------------------------------------------------------------------

/// The authority one concrete operation needs. `resource` must be in normal form:
///
/// - `fs.*`: a workspace-relative path, segments joined by single `/`, no `.` or `..`
///   segments, no leading or trailing `/` (what `WsPath::as_str` gives). The workspace
///   root itself is `""`; `"."` is accepted as the same root, since it can mean nothing
///   else. (In a capability the root is written `.`: `fs.read:` would be empty.)
/// - `mem.*`: a namespace such as `proc/p1`; `model`: `provider/model`. Non-empty
///   segments, no `.` or `..` segments.
/// - `shell`: a bare program name.
/// - `net`: `host:port`, the host a DNS name (compared case-insensitively), a dotted-quad
///   IPv4 address or a bracketed IPv6 address (`[::1]:443`); the port is required.
///   Matching is on the host as written: a rule on an address does not see a name that
///   resolves to it, so the net provider should also check the resolved address.
/// - `tool.call`: the tool name; `event.*`: the topic.
/// - `human.ask`, `tool.register`, `proc.spawn`, `proc.signal`: `""`.
///
/// No resource may contain NUL. A request not in this form is covered by nothing.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Request {
  pub kind: Kind,
  pub resource: String,
}

/// A request's resource, checked and split according to its kind.
enum Target<'a> {
  None,
  Path(Vec<&'a str>),
  Segments(Vec<&'a str>),
  Program(&'a str),
  Net(Host, u16),
  Name(&'a str),
}

impl Request {
  pub fn new(kind: Kind, resource: impl Into<String>) -> Request {
    Request { kind, resource: resource.into() }
  }

  /// Whether `resource` is in the normal form documented on [`Request`].
  pub fn is_well_formed(&self) -> bool {
    self.target().is_some()
  }

  /// The narrowest capability that allows this request: the resource written literally,
  /// except that runs of characters a capability cannot contain (whitespace, control
  /// characters) and any literal `*` become a `*` wildcard — still covering this request,
  /// just not only it. `None` if the request is malformed, since nothing can allow it.
  pub fn suggestion(&self) -> Option<Capability> {
    let resource = match self.target()? {
      Target::None => None,
      Target::Path(segments) if segments.is_empty() => Some(".".to_owned()),
      Target::Path(segments) | Target::Segments(segments) => {
        Some(segments.iter().map(|segment| as_literal_glob(segment)).collect::<Vec<_>>().join("/"))
      }
      Target::Program(name) => Some(name.to_owned()),
      Target::Net(host, port) => Some(format!("{host}:{port}")),
      Target::Name(name) => Some(as_literal_glob(name)),
    };
    Capability::new(self.kind, resource.as_deref()).ok()
  }

  fn target(&self) -> Option<Target<'_>> {
    let resource = self.resource.as_str();
    if resource.contains('\0') {
      return None;
    }
    match self.kind.form() {
      Form::None => resource.is_empty().then_some(Target::None),
      Form::Path if resource.is_empty() || resource == "." => Some(Target::Path(Vec::new())),
      Form::Path => plain_segments(resource).map(Target::Path),
      Form::Segments => plain_segments(resource).map(Target::Segments),
      Form::Program => program_name_problem(resource).is_none().then_some(Target::Program(resource)),
      Form::Net => {
        let (host, port) = split_host_port(resource).ok()?;
        Some(Target::Net(parse_host(host).ok()?, parse_port(port?)?))
      }
      Form::Name => (!resource.is_empty()).then_some(Target::Name(resource)),
    }
  }
}

/// Splits a normalised path or namespace; `None` if any segment is empty, `.` or `..`.
fn plain_segments(text: &str) -> Option<Vec<&str>> {
  text.split('/').map(|segment| (!matches!(segment, "" | "." | "..")).then_some(segment)).collect()
}

/// `text` as a glob matching it: every run of characters a glob cannot hold (or holds
/// as a wildcard) becomes a single `*`.
fn as_literal_glob(text: &str) -> String {
  let mut glob = String::with_capacity(text.len());
  for c in text.chars() {
    if c == '*' || c.is_whitespace() || c.is_control() {
      if !glob.ends_with('*') {
        glob.push('*');
      }
    } else {
      glob.push(c);
    }
  }
  glob
}

// ---------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
  use super::*;
  use proptest::prelude::*;

  fn cap(text: &str) -> Capability {
    text.parse().unwrap_or_else(|e| panic!("{e}"))
  }

  fn req(kind: Kind, resource: &str) -> Request {
    Request::new(kind, resource)
  }

  fn reason(text: &str) -> CapabilityErrorReason {
    text.parse::<Capability>().expect_err(text).reason
  }

  // --- Kind ---

  #[test]
  fn kind_names_round_trip_and_are_unique() {
    for kind in Kind::ALL {
      assert_eq!(Kind::parse(kind.name()), Some(kind));
      assert_eq!(kind.to_string(), kind.name());
    }
    let mut names: Vec<_> = Kind::ALL.iter().map(|k| k.name()).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), Kind::ALL.len());
    assert_eq!(Kind::parse("FS.READ"), None);
    assert_eq!(Kind::parse("fs"), None);
  }

  #[test]
  fn resourceless_kinds() {
    let without: Vec<_> = Kind::ALL.into_iter().filter(|k| !k.takes_resource()).collect();
    assert_eq!(without, [Kind::HumanAsk, Kind::ToolRegister, Kind::ProcSpawn, Kind::ProcSignal]);
  }

  #[test]
  fn kind_serde_is_its_name() {
    assert_eq!(serde_json::to_string(&Kind::ToolCall).unwrap(), "\"tool.call\"");
    assert_eq!(serde_json::from_str::<Kind>("\"event.wait\"").unwrap(), Kind::EventWait);
    assert!(serde_json::from_str::<Kind>("\"event\"").is_err());
  }

  // --- Parsing and printing ---

  #[test]
  fn canonical_forms() {
    let cases = [
      ("fs.read", "fs.read"),
      ("fs.read:data/**", "fs.read:data/**"),
      ("fs.read:./data/", "fs.read:data"),
      ("fs.write:a//b///c", "fs.write:a/b/c"),
      ("fs.write:a/./b/.", "fs.write:a/b"),
      ("fs.read:.", "fs.read:."),
      ("fs.read:./", "fs.read:."),
      ("fs.delete:*.tmp", "fs.delete:*.tmp"),
      ("mem.read:proc/p1", "mem.read:proc/p1"),
      ("mem.write:shared/*", "mem.write:shared/*"),
      ("shell:git", "shell:git"),
      ("shell:*", "shell:*"),
      ("net:Example.COM", "net:example.com"),
      ("net:example.com:0443", "net:example.com:443"),
      ("net:example.com:*", "net:example.com:*"),
      ("net:*.Example.com:80", "net:*.example.com:80"),
      ("net:*:443", "net:*:443"),
      ("net:127.0.0.1:8080", "net:127.0.0.1:8080"),
      ("net:[::1]", "net:[::1]"),
      ("net:[0:0:0:0:0:0:0:1]:80", "net:[::1]:80"),
      ("net:[::FFFF:10.0.0.1]:80", "net:10.0.0.1:80"),
      ("model:openai/*", "model:openai/*"),
      ("model:ollama/llama3:8b", "model:ollama/llama3:8b"),
      ("human.ask", "human.ask"),
      ("tool.register", "tool.register"),
      ("tool.call:read_file", "tool.call:read_file"),
      ("proc.spawn", "proc.spawn"),
      ("proc.signal", "proc.signal"),
      ("event.emit:build/*", "event.emit:build/*"),
      ("event.wait:done", "event.wait:done"),
    ];
    for (input, canonical) in cases {
      let parsed = cap(input);
      assert_eq!(parsed.to_string(), canonical, "{input}");
      assert_eq!(cap(canonical), parsed, "{input}");
    }
  }

  #[test]
  fn accessors() {
    let c = cap("fs.read:./data/");
    assert_eq!(c.kind(), Kind::FsRead);
    assert_eq!(c.resource().as_deref(), Some("data"));
    assert_eq!(cap("net").resource(), None);
    assert_eq!(Capability::any(Kind::Net), cap("net"));
    assert_eq!(Capability::new(Kind::FsRead, Some("./x//y")).unwrap(), cap("fs.read:x/y"));
    assert_eq!(Capability::new(Kind::Net, None).unwrap(), cap("net"));
    let err = Capability::new(Kind::Shell, Some("/bin/sh")).unwrap_err();
    assert_eq!(err.input, "shell:/bin/sh");
  }

  #[test]
  fn unknown_kind_error_names_the_token_and_the_choices() {
    let err = "fs.raed:data/**".parse::<Capability>().unwrap_err();
    assert_eq!(err.reason, CapabilityErrorReason::UnknownKind("fs.raed".into()));
    let message = err.to_string();
    assert!(
      message.starts_with(
        r#"invalid capability "fs.raed:data/**": unknown kind "fs.raed" (expected one of fs.read, fs.write, "#
      ),
      "{message}"
    );
    assert!(message.ends_with("event.emit, event.wait)"), "{message}");
  }

  #[test]
  fn malformed_capabilities_are_rejected_with_a_reason() {
    use CapabilityErrorReason as R;
    assert_eq!(reason(""), R::Empty);
    assert_eq!(reason("fs.read:"), R::EmptyResource);
    assert_eq!(reason("net:"), R::EmptyResource);
    assert_eq!(reason(":x"), R::UnknownKind(String::new()));
    assert_eq!(reason("human.ask:bob"), R::UnexpectedResource(Kind::HumanAsk));
    assert_eq!(reason("proc.spawn:*"), R::UnexpectedResource(Kind::ProcSpawn));
    assert_eq!(reason("fs.read:a\0b"), R::ForbiddenChar('\0'));
    assert_eq!(reason("fs.read:a\nb"), R::ForbiddenChar('\n'));
    assert_eq!(reason("fs.read:a\u{1b}[2J"), R::ForbiddenChar('\u{1b}'));
    assert_eq!(reason("fs.read:my file"), R::ForbiddenChar(' '));
    assert_eq!(reason(" fs.read"), R::ForbiddenChar(' '));
    assert_eq!(reason("fs.read:a\u{a0}b"), R::ForbiddenChar('\u{a0}'));
    assert_eq!(reason("fs.read:/etc/passwd"), R::AbsolutePath("/etc/passwd".into()));
    assert_eq!(reason("fs.read:../x"), R::ParentSegment("../x".into()));
    assert_eq!(reason("fs.read:data/../../x"), R::ParentSegment("data/../../x".into()));
    assert_eq!(reason("fs.read:data/**/.."), R::ParentSegment("data/**/..".into()));
    assert_eq!(reason("fs.read:a**"), R::PartialDoubleStar("a**".into()));
    assert_eq!(reason("fs.read:a/***/b"), R::PartialDoubleStar("***".into()));
    assert_eq!(reason("mem.read:/proc"), R::EmptySegment("/proc".into()));
    assert_eq!(reason("mem.read:proc//p1"), R::EmptySegment("proc//p1".into()));
    assert_eq!(reason("mem.read:proc/./p1"), R::EmptySegment("proc/./p1".into()));
    assert_eq!(reason("mem.read:proc/.."), R::ParentSegment("proc/..".into()));
    assert_eq!(reason("model:openai/"), R::EmptySegment("openai/".into()));
    assert_eq!(reason("tool.call:a**"), R::DoubleStarInName("a**".into()));
    assert_eq!(reason("event.wait:**"), R::DoubleStarInName("**".into()));
    assert!(matches!(reason("shell:/bin/sh"), R::InvalidProgram(p, _) if p == "/bin/sh"));
    assert!(matches!(reason("shell:.."), R::InvalidProgram(..)));
    assert!(matches!(reason("shell:a..b"), R::InvalidProgram(..)));
    assert!(matches!(reason("shell:py*"), R::InvalidProgram(..)));
    assert!(matches!(reason("net:::1"), R::InvalidHost(..)));
    assert!(matches!(reason("net:[::1"), R::InvalidHost(..)));
    assert!(matches!(reason("net:[::1]x"), R::InvalidHost(..)));
    assert!(matches!(reason("net:[nope]"), R::InvalidHost(..)));
    assert!(matches!(reason("net:a.*.com"), R::InvalidHost(h, _) if h == "a.*.com"));
    assert!(matches!(reason("net:*example.com"), R::InvalidHost(..)));
    assert!(matches!(reason("net:*.*.com"), R::InvalidHost(..)));
    assert!(matches!(reason("net:example.com."), R::InvalidHost(..)));
    assert!(matches!(reason("net:exa$mple.com"), R::InvalidHost(..)));
    assert!(matches!(reason("net:127.1"), R::InvalidHost(..)));
    assert!(matches!(reason("net:0x7f000001"), R::InvalidHost(..)));
    assert!(matches!(reason("net:01.2.3.4"), R::InvalidHost(..)));
    assert!(matches!(reason("net:*.10.0.0"), R::InvalidHost(..)));
    assert!(matches!(reason("net:bücher.de"), R::InvalidHost(..)));
    assert_eq!(reason("net:example.com:"), R::InvalidPort(String::new()));
    assert_eq!(reason("net:example.com:0"), R::InvalidPort("0".into()));
    assert_eq!(reason("net:example.com:65536"), R::InvalidPort("65536".into()));
    assert_eq!(reason("net:example.com:+80"), R::InvalidPort("+80".into()));
    assert_eq!(reason("net:example.com:http"), R::InvalidPort("http".into()));
  }

  #[test]
  fn error_messages_escape_control_characters() {
    let message = "fs.read:\u{1b}[31mred".parse::<Capability>().unwrap_err().to_string();
    assert!(!message.contains('\u{1b}'), "{message}");
    assert!(message.contains("U+001B"), "{message}");
  }

  #[test]
  fn serde_uses_the_string_form() {
    let c = cap("fs.read:./data/**");
    assert_eq!(serde_json::to_string(&c).unwrap(), "\"fs.read:data/**\"");
    assert_eq!(serde_json::from_str::<Capability>("\"fs.read:data/**\"").unwrap(), c);
    let err = serde_json::from_str::<Capability>("\"fs.read:/etc\"").unwrap_err();
    assert!(err.to_string().contains("absolute path"), "{err}");
  }

  // --- Matching ---

  #[test]
  fn double_star_matches_the_directory_and_everything_below_it_only() {
    let c = cap("fs.read:data/**");
    for path in ["data", "data/a", "data/a/b", "data/.hidden"] {
      assert!(c.covers(&req(Kind::FsRead, path)), "{path}");
    }
    for path in ["database", "other", ".", "dat", "x/data", "database/a"] {
      assert!(!c.covers(&req(Kind::FsRead, path)), "{path}");
    }
    assert!(!c.covers(&req(Kind::FsWrite, "data/a")), "kind must match");
  }

  #[test]
  fn single_star_stays_within_one_segment() {
    let c = cap("fs.read:src/*.rs");
    assert!(c.covers(&req(Kind::FsRead, "src/main.rs")));
    assert!(c.covers(&req(Kind::FsRead, "src/.rs")));
    assert!(!c.covers(&req(Kind::FsRead, "src/a/main.rs")));
    assert!(!c.covers(&req(Kind::FsRead, "src/main.rsx")));
    let middle = cap("fs.read:a/**/b");
    for path in ["a/b", "a/x/b", "a/x/y/b"] {
      assert!(middle.covers(&req(Kind::FsRead, path)), "{path}");
    }
    assert!(!middle.covers(&req(Kind::FsRead, "a/b/c")));
    assert!(!middle.covers(&req(Kind::FsRead, "a/xb")));
  }

  #[test]
  fn the_root_is_empty_in_requests_and_dot_in_capabilities() {
    for root in [req(Kind::FsRead, ""), req(Kind::FsRead, ".")] {
      assert!(root.is_well_formed());
      assert!(cap("fs.read").covers(&root));
      assert!(cap("fs.read:**").covers(&root));
      assert!(cap("fs.read:.").covers(&root));
      assert!(cap("fs.read:./").covers(&root));
      assert!(!cap("fs.read:*").covers(&root));
      assert!(!cap("fs.read:a/**").covers(&root));
      assert_eq!(root.suggestion(), Some(cap("fs.read:.")));
    }
    assert!(!cap("fs.read:.").covers(&req(Kind::FsRead, "a")));
  }

  #[test]
  fn unnormalised_or_escaping_paths_are_covered_by_nothing() {
    let everything = cap("fs.read");
    let double_star = cap("fs.read:**");
    for path in ["../x", "/etc/passwd", "a/../b", "./a", "a//b", "a/", "a/.", "a\0b", ".."] {
      let r = req(Kind::FsRead, path);
      assert!(!r.is_well_formed(), "{path:?}");
      assert!(!everything.covers(&r), "{path:?}");
      assert!(!double_star.covers(&r), "{path:?}");
      assert_eq!(r.suggestion(), None, "{path:?}");
    }
  }

  #[test]
  fn mem_and_model_use_segment_globs() {
    let c = cap("mem.read:proc/*");
    assert!(c.covers(&req(Kind::MemRead, "proc/p1")));
    assert!(!c.covers(&req(Kind::MemRead, "proc/p1/x")));
    assert!(!c.covers(&req(Kind::MemRead, "proc")));
    assert!(!c.covers(&req(Kind::MemRead, "shared/notes")));
    assert!(!c.covers(&req(Kind::MemWrite, "proc/p1")));
    assert!(cap("mem.write:shared/**").covers(&req(Kind::MemWrite, "shared/notes/today")));
    assert!(!cap("mem.read").covers(&req(Kind::MemRead, "")));
    assert!(!cap("mem.read").covers(&req(Kind::MemRead, "proc//p1")));

    let m = cap("model:openai/*");
    assert!(m.covers(&req(Kind::Model, "openai/gpt-4o")));
    assert!(!m.covers(&req(Kind::Model, "anthropic/claude")));
    assert!(!m.covers(&req(Kind::Model, "openai")));
    assert!(cap("model:*/llama*").covers(&req(Kind::Model, "ollama/llama3:8b")));
  }

  #[test]
  fn shell_matches_bare_program_names() {
    assert!(cap("shell:git").covers(&req(Kind::Shell, "git")));
    assert!(!cap("shell:git").covers(&req(Kind::Shell, "gitk")));
    assert!(cap("shell:*").covers(&req(Kind::Shell, "rm")));
    for bad in ["/usr/bin/git", "./git", "", "..", "git status", "*"] {
      assert!(!cap("shell").covers(&req(Kind::Shell, bad)), "{bad:?}");
      assert!(!cap("shell:*").covers(&req(Kind::Shell, bad)), "{bad:?}");
    }
  }

  #[test]
  fn net_hosts_and_ports() {
    let exact = cap("net:example.com:443");
    assert!(exact.covers(&req(Kind::Net, "example.com:443")));
    assert!(exact.covers(&req(Kind::Net, "EXAMPLE.com:443")), "DNS is case-insensitive");
    assert!(!exact.covers(&req(Kind::Net, "example.com:80")));
    assert!(!exact.covers(&req(Kind::Net, "www.example.com:443")));
    assert!(!exact.covers(&req(Kind::Net, "example.com")), "a request names its port");

    let any_port = cap("net:example.com");
    assert!(any_port.covers(&req(Kind::Net, "example.com:8080")));
    assert!(cap("net:example.com:*").covers(&req(Kind::Net, "example.com:1")));

    let subdomains = cap("net:*.example.com");
    assert!(subdomains.covers(&req(Kind::Net, "a.example.com:443")));
    assert!(subdomains.covers(&req(Kind::Net, "a.b.example.com:443")));
    assert!(!subdomains.covers(&req(Kind::Net, "example.com:443")));
    assert!(!subdomains.covers(&req(Kind::Net, "badexample.com:443")));
    assert!(!subdomains.covers(&req(Kind::Net, "example.com.evil.org:443")));

    assert!(cap("net:*:443").covers(&req(Kind::Net, "10.1.2.3:443")));
    assert!(!cap("net:*:443").covers(&req(Kind::Net, "10.1.2.3:444")));

    let v6 = cap("net:[::1]:8080");
    assert!(v6.covers(&req(Kind::Net, "[::1]:8080")));
    assert!(v6.covers(&req(Kind::Net, "[0::0:1]:8080")));
    assert!(!v6.covers(&req(Kind::Net, "127.0.0.1:8080")));

    // An IPv4-mapped IPv6 spelling reaches the same address, so it is the same host.
    let v4 = cap("net:10.0.0.1");
    assert!(v4.covers(&req(Kind::Net, "[::ffff:10.0.0.1]:80")));
    assert!(v4.covers(&req(Kind::Net, "10.0.0.1:80")));

    for bad in ["example.com.:443", "127.1:80", "::1:80", "[::1]", "example.com:0", "*.example.com:443", ""] {
      assert!(!cap("net").covers(&req(Kind::Net, bad)), "{bad:?}");
    }
  }

  #[test]
  fn names_and_topics_do_not_cross_slashes() {
    let c = cap("event.wait:build/*");
    assert!(c.covers(&req(Kind::EventWait, "build/done")));
    assert!(c.covers(&req(Kind::EventWait, "build/")));
    assert!(!c.covers(&req(Kind::EventWait, "build/a/done")));
    assert!(!c.covers(&req(Kind::EventWait, "build")));
    assert!(!c.covers(&req(Kind::EventEmit, "build/done")));
    let t = cap("tool.call:mem_*");
    assert!(t.covers(&req(Kind::ToolCall, "mem_get")));
    assert!(!t.covers(&req(Kind::ToolCall, "read_file")));
    assert!(!cap("tool.call").covers(&req(Kind::ToolCall, "")));
    assert!(cap("tool.call:a*b*c").covers(&req(Kind::ToolCall, "abxbyc")));
  }

  #[test]
  fn resourceless_kinds_cover_only_the_empty_resource() {
    assert!(cap("human.ask").covers(&req(Kind::HumanAsk, "")));
    assert!(!cap("human.ask").covers(&req(Kind::HumanAsk, "anything")));
    assert!(!cap("human.ask").covers(&req(Kind::ProcSpawn, "")));
  }

  // --- Suggestions ---

  #[test]
  fn suggestions_are_the_narrowest_capability() {
    let cases = [
      (Kind::FsRead, "data/a.txt", "fs.read:data/a.txt"),
      (Kind::FsWrite, "", "fs.write:."),
      (Kind::FsRead, "my notes/a b.txt", "fs.read:my*notes/a*b.txt"),
      (Kind::FsRead, "x/a*b", "fs.read:x/a*b"),
      (Kind::FsRead, "x/**", "fs.read:x/*"),
      (Kind::MemWrite, "shared/notes", "mem.write:shared/notes"),
      (Kind::Shell, "git", "shell:git"),
      (Kind::Net, "Example.com:443", "net:example.com:443"),
      (Kind::Net, "[0::1]:80", "net:[::1]:80"),
      (Kind::Model, "openai/gpt-4o", "model:openai/gpt-4o"),
      (Kind::ToolCall, "read_file", "tool.call:read_file"),
      (Kind::EventEmit, "a b/c", "event.emit:a*b/c"),
      (Kind::HumanAsk, "", "human.ask"),
    ];
    for (kind, resource, expected) in cases {
      let r = req(kind, resource);
      let suggestion = r.suggestion().unwrap_or_else(|| panic!("{resource:?}"));
      assert_eq!(suggestion.to_string(), expected);
      assert!(suggestion.covers(&r), "{expected}");
    }
    assert!(!cap("fs.read:data/a.txt").covers(&req(Kind::FsRead, "data/a.txtx")));
  }

  // --- Attenuation ---

  #[test]
  fn includes_examples() {
    let yes = [
      ("fs.read", "fs.read:data/**"),
      ("fs.read:**", "fs.read"),
      ("fs.read:data/**", "fs.read:data/a/b"),
      ("fs.read:data/**", "fs.read:data"),
      ("fs.read:data/**", "fs.read:data/*/x/**"),
      ("fs.read:**/*.rs", "fs.read:src/**/main.rs"),
      ("fs.read:*", "fs.read:a*"),
      ("fs.read:a*", "fs.read:ab*c"),
      ("fs.read:*a*", "fs.read:x*a"),
      ("mem.read:proc/*", "mem.read:proc/p1"),
      ("mem.read:**", "mem.read"),
      ("shell:*", "shell:git"),
      ("shell:*", "shell"),
      ("net", "net:example.com"),
      ("net:*", "net"),
      ("net:*:*", "net"),
      ("net:*.example.com", "net:a.example.com:443"),
      ("net:*.example.com", "net:*.a.example.com"),
      ("net:*.example.com:443", "net:*.example.com:443"),
      ("net:example.com", "net:example.com:443"),
      ("net:example.com:*", "net:example.com"),
      ("net:*:443", "net:[::1]:443"),
      ("tool.call:mem_*", "tool.call:mem_get"),
      ("event.wait:*/done", "event.wait:build/done"),
      ("human.ask", "human.ask"),
    ];
    for (a, b) in yes {
      assert!(cap(a).includes(&cap(b)), "{a} should include {b}");
    }
    let no = [
      ("fs.read:data/**", "fs.read"),
      ("fs.read:data/**", "fs.read:**"),
      ("fs.read:data/**", "fs.read:database"),
      ("fs.read:data/*", "fs.read:data/**"),
      ("fs.read:a*", "fs.read:*"),
      ("fs.read:*", "fs.read:."),
      ("fs.read:.", "fs.read:a"),
      ("fs.read:*", "fs.read:*/*"),
      ("fs.write:**", "fs.read:a"),
      ("mem.read:proc/*", "mem.read:proc/**"),
      ("mem.read:*/**", "mem.read"),
      ("shell:git", "shell:*"),
      ("shell:git", "shell"),
      ("net:example.com", "net"),
      ("net:example.com", "net:*.example.com"),
      ("net:*.example.com", "net:example.com"),
      ("net:*.a.example.com", "net:*.example.com"),
      ("net:example.com:443", "net:example.com"),
      ("net:example.com:443", "net:example.com:*"),
      ("net:*.example.com", "net:127.0.0.1"),
      ("net:*:443", "net:*"),
      ("tool.call:*", "tool.call"),
      ("tool.call:*", "tool.call:a/b"),
      ("tool.call:mem_get", "tool.call:mem_*"),
      ("human.ask", "proc.spawn"),
    ];
    for (a, b) in no {
      assert!(!cap(a).includes(&cap(b)), "{a} should not include {b}");
    }
  }

  /// Every host/port pattern against every other, checked against a set of requests:
  /// `includes` must never claim more than the requests show.
  #[test]
  fn net_includes_is_sound_on_a_grid() {
    let hosts = [
      "*",
      "*.example.com",
      "*.a.example.com",
      "example.com",
      "a.example.com",
      "b.a.example.com",
      "other.com",
      "127.0.0.1",
      "[::1]",
    ];
    let ports = ["", ":*", ":80", ":443"];
    let patterns: Vec<_> = std::iter::once(cap("net"))
      .chain(hosts.iter().flat_map(|h| ports.iter().map(move |p| cap(&format!("net:{h}{p}")))))
      .collect();
    let requests: Vec<_> = [
      "example.com",
      "a.example.com",
      "b.a.example.com",
      "c.b.a.example.com",
      "other.com",
      "127.0.0.1",
      "[::1]",
      "[::ffff:127.0.0.1]",
    ]
    .iter()
    .flat_map(|h| ["80", "443", "8080"].map(|p| req(Kind::Net, &format!("{h}:{p}"))))
    .collect();
    let mut proven = 0;
    for a in &patterns {
      for b in &patterns {
        if a.includes(b) {
          proven += 1;
          for r in &requests {
            assert!(!b.covers(r) || a.covers(r), "{a} includes {b} but not {r:?}");
          }
        }
      }
      assert!(a.includes(a), "{a} includes itself");
    }
    assert!(proven > patterns.len(), "includes proves more than reflexivity");
  }

  // --- Properties ---

  /// Path-pattern pieces, including the spellings normalisation must cope with.
  fn pattern_piece() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec!["a", "b", "ab", "*", "a*", "*b", "**", ".", "..", "", "a**"])
  }

  fn path_piece() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec!["a", "b", "ab", "ba", "aab", ".", "..", "", "a*"])
  }

  fn valid_glob_segment() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec!["a", "b", "ab", "*", "a*", "*b", "*a*", "**"])
  }

  /// Turns a pattern's segments into a concrete path it should match, consuming
  /// `choices` to decide what each wildcard expands to.
  fn instantiate(glob: &[&str], choices: &[u8]) -> Vec<String> {
    const FILL: [&str; 4] = ["", "a", "b", "ab"];
    const SEGMENTS: [&str; 4] = ["a", "b", "ab", "ba"];
    let mut choices = choices.iter().cycle().map(|c| usize::from(*c));
    let mut out = Vec::new();
    for segment in glob {
      if *segment == "**" {
        for _ in 0..choices.next().unwrap() % 3 {
          out.push(SEGMENTS[choices.next().unwrap() % 4].to_owned());
        }
      } else {
        let mut concrete = String::new();
        for c in segment.chars() {
          if c == '*' {
            concrete.push_str(FILL[choices.next().unwrap() % 4]);
          } else {
            concrete.push(c);
          }
        }
        if concrete.is_empty() {
          concrete.push('a'); // `*` alone still needs a non-empty segment to match.
        }
        out.push(concrete);
      }
    }
    out
  }

  fn as_path<T: AsRef<str>>(segments: &[T]) -> String {
    let segments: Vec<&str> = segments.iter().map(AsRef::as_ref).collect();
    if segments.is_empty() {
      ".".to_owned()
    } else {
      segments.join("/")
    }
  }

  proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// After normalisation a glob only matches well-formed paths (no `..`, not absolute)
    /// that start with the glob's literal prefix.
    #[test]
    fn matches_stay_under_the_literal_prefix(
      lead in prop::sample::select(vec!["", "./", "/", ".//"]),
      pattern in prop::collection::vec(pattern_piece(), 0..6),
      path in prop::collection::vec(path_piece(), 0..6),
      absolute in any::<bool>(),
    ) {
      let Ok(glob) = format!("fs.read:{lead}{}", pattern.join("/")).parse::<Capability>() else {
        return Ok(());
      };
      let resource = glob.resource().unwrap();
      prop_assert!(!resource.split('/').any(|s| s == ".." || s.is_empty()), "{}", resource);
      prop_assert!(!resource.starts_with('/'));
      let path = format!("{}{}", if absolute { "/" } else { "" }, path.join("/"));
      let r = req(Kind::FsRead, &path);
      if glob.covers(&r) {
        prop_assert!(!path.starts_with('/'));
        prop_assert!(!path.split('/').any(|s| s == ".."), "{} matched {}", glob, path);
        let literal: Vec<_> = resource.split('/').take_while(|s| !s.contains('*') && *s != ".").collect();
        let segments: Vec<_> = if path.is_empty() || path == "." { Vec::new() } else { path.split('/').collect() };
        prop_assert!(segments.starts_with(&literal), "{} matched {} outside {:?}", glob, path, literal);
      }
    }

    /// A pattern matches what it was instantiated into, and whatever includes it
    /// matches that too.
    #[test]
    fn includes_implies_covers(
      a in prop::collection::vec(valid_glob_segment(), 0..5),
      b in prop::collection::vec(valid_glob_segment(), 0..5),
      choices in prop::collection::vec(any::<u8>(), 1..24),
    ) {
      let cap_a = Capability::new(Kind::FsWrite, Some(&as_path(&a))).unwrap();
      let cap_b = Capability::new(Kind::FsWrite, Some(&as_path(&b))).unwrap();
      let r = req(Kind::FsWrite, &as_path(&instantiate(&b, &choices)));
      prop_assert!(cap_b.covers(&r), "{} should cover {:?}", cap_b, r.resource);
      if cap_a.includes(&cap_b) {
        prop_assert!(cap_a.covers(&r), "{} includes {} but not {:?}", cap_a, cap_b, r.resource);
      }
      prop_assert!(cap_a.includes(&cap_a));
      prop_assert!(Capability::any(Kind::FsWrite).includes(&cap_a));
    }

    /// The same for names and topics, where `*` stops at '/'.
    #[test]
    fn name_includes_implies_covers(
      a in prop::collection::vec(prop::sample::select(vec!["a", "b", "*", "a*", "*b", "*a*"]), 1..4),
      b in prop::collection::vec(prop::sample::select(vec!["a", "b", "*", "a*", "*b", "*a*"]), 1..4),
      choices in prop::collection::vec(any::<u8>(), 1..24),
    ) {
      let cap_a = cap(&format!("event.wait:{}", a.join("/")));
      let cap_b = cap(&format!("event.wait:{}", b.join("/")));
      let r = req(Kind::EventWait, &instantiate(&b, &choices).join("/"));
      prop_assert!(cap_b.covers(&r), "{} should cover {:?}", cap_b, r.resource);
      if cap_a.includes(&cap_b) {
        prop_assert!(cap_a.covers(&r), "{} includes {} but not {:?}", cap_a, cap_b, r.resource);
      }
    }

    /// Display is canonical: it parses back to an equal value and prints the same.
    #[test]
    fn display_from_str_round_trip(
      kind in prop::sample::select(Kind::ALL.to_vec()),
      resource in prop::option::of("[a-zA-Z0-9*./:\\[\\]_-]{0,16}"),
    ) {
      let text = match &resource {
        Some(resource) => format!("{kind}:{resource}"),
        None => kind.to_string(),
      };
      if let Ok(parsed) = text.parse::<Capability>() {
        let printed = parsed.to_string();
        let reparsed: Capability = printed.parse().unwrap();
        prop_assert_eq!(&reparsed, &parsed);
        prop_assert_eq!(reparsed.to_string(), printed.clone());
        let json = serde_json::to_string(&parsed).unwrap();
        prop_assert_eq!(serde_json::from_str::<Capability>(&json).unwrap(), parsed);
      }
    }

    /// Net resources normalise (case, leading zeros, IPv6 spelling) to a canonical form
    /// that round-trips and still covers what the original spelling named.
    #[test]
    fn net_round_trip(
      wildcard in any::<bool>(),
      host in prop_oneof![
        "[a-zA-Z0-9]{1,5}(\\.[a-zA-Z0-9-]{1,5}){0,2}",
        "[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}",
        "\\[(::)?[0-9a-fA-F]{1,4}(:[0-9a-fA-F]{1,4}){0,3}(::)?\\]",
      ],
      port in prop::option::of(prop_oneof!["\\*", "[0-9]{1,6}"]),
      request_port in 1u16..,
    ) {
      let prefix = if wildcard { "*." } else { "" };
      let text = match &port {
        Some(port) => format!("net:{prefix}{host}:{port}"),
        None => format!("net:{prefix}{host}"),
      };
      if let Ok(parsed) = text.parse::<Capability>() {
        let printed = parsed.to_string();
        prop_assert_eq!(printed.parse::<Capability>().unwrap(), parsed.clone());
        if !wildcard {
          let port = match port.as_deref() {
            None | Some("*") => request_port,
            Some(digits) => digits.parse().unwrap(),
          };
          let r = req(Kind::Net, &format!("{host}:{port}"));
          prop_assert!(parsed.covers(&r), "{} should cover {:?}", printed, r.resource);
          let exact = r.suggestion().unwrap();
          prop_assert!(exact.covers(&r));
          prop_assert!(parsed.includes(&exact), "{} should include {}", printed, exact);
        }
      }
    }

    /// The suggestion for a well-formed request always parses and covers it, and for a
    /// plain name covers nothing else.
    #[test]
    fn suggestion_covers_exactly_the_request(
      kind in prop::sample::select(vec![Kind::FsRead, Kind::MemRead, Kind::Model, Kind::ToolCall, Kind::EventEmit]),
      segments in prop::collection::vec("[ab* \\t.]{1,4}", 1..4),
      other in prop::collection::vec("[ab]{1,3}", 1..4),
    ) {
      let r = req(kind, &segments.join("/"));
      let o = req(kind, &other.join("/"));
      if r.is_well_formed() {
        let suggestion = r.suggestion();
        prop_assert!(suggestion.as_ref().is_some_and(|s| s.covers(&r)), "{:?} -> {:?}", r, suggestion);
      }
      let plain = o.suggestion().unwrap();
      prop_assert_eq!(plain.resource().unwrap(), other.join("/"));
      prop_assert_eq!(plain.covers(&r), r == o);
    }
  }
}
