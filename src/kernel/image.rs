//! AgentImages (DESIGN §4): a TOML manifest naming the entry script, the tool table, a
//! capability ceiling and the grants given at spawn, a policy, limits and a model.
//!
//! ```toml
//! name = "coding-agent"          # [a-z0-9][a-z0-9-]*, at most 64 characters
//! version = "1.0.0"              # MAJOR.MINOR.PATCH[-PRERELEASE][+BUILD]
//! description = "..."            # optional
//! entry = "agent.ts"             # relative to the manifest's directory, inside it
//! model = "openai:gpt-4o-mini"   # optional, PROVIDER:MODEL
//! tools = ["read_file", "./tools/extract.ts"]   # built-in names or relative .ts modules
//! [capabilities]
//! ceiling = ["fs.read:**", "fs.write:out/**"]   # the most this image can ever hold
//! grant = ["fs.read:**"]                        # granted at spawn; within the ceiling
//! [policy]
//! ask = ["fs.write:**"]
//! deny = ["fs.read:secrets/**"]
//! [limits]
//! timeout = "10m"
//! heap_mb = 256
//! max_syscalls = 100000
//! ```
//!
//! Checking a manifest reports every problem it finds, each with its line, not just the
//! first. An image's identity is `NAME@VERSION`; its content hash covers the manifest
//! text and the entry file, so a stored version is known to run what was added.

use std::fmt;
use std::path::Path;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::audit::digest;
use super::capability::Capability;
use super::grant::GrantSource;
use super::policy::Effect;
use super::policy::Policy;
use super::policy::Rule;
use super::policy::RuleSource;
use crate::store::images::parse_version;

/// The built-in tools an image may list by name (the tool table implements them).
pub const BUILTIN_TOOLS: &[&str] = &[
  "read_file",
  "write_file",
  "list_dir",
  "search_text",
  "stat",
  "make_dir",
  "delete",
  "mem_get",
  "mem_put",
  "mem_list",
  "shell",
  "http_get",
  "ask_human",
  "sleep",
  "now",
  "spawn_agent",
  "wait_agent",
  "file_to_object",
  "object_to_file",
];

const MAX_NAME_LEN: usize = 64;

// ---- The on-disk form -----------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
  name: Option<Spanned<String>>,
  version: Option<Spanned<String>>,
  description: Option<String>,
  entry: Option<Spanned<String>>,
  model: Option<Spanned<String>>,
  #[serde(default)]
  tools: Vec<Spanned<String>>,
  #[serde(default)]
  capabilities: RawCapabilities,
  #[serde(default)]
  policy: RawPolicy,
  #[serde(default)]
  limits: RawLimits,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawCapabilities {
  #[serde(default)]
  ceiling: Vec<Spanned<String>>,
  #[serde(default)]
  grant: Vec<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
  #[serde(default)]
  ask: Vec<Spanned<String>>,
  #[serde(default)]
  deny: Vec<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLimits {
  timeout: Option<Spanned<String>>,
  heap_mb: Option<Spanned<i64>>,
  max_syscalls: Option<Spanned<i64>>,
}

// ---- What a valid manifest holds ------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Default)]
pub struct ImageLimits {
  pub timeout: Option<Duration>,
  pub heap_mb: Option<u32>,
  pub max_syscalls: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Manifest {
  pub name: String,
  pub version: String,
  pub description: Option<String>,
  /// As written: relative to the manifest's directory.
  pub entry: String,
  pub model: Option<String>,
  pub tools: Vec<String>,
  pub ceiling: Vec<Capability>,
  pub grant: Vec<Capability>,
  pub ask: Vec<Capability>,
  pub deny: Vec<Capability>,
  pub limits: ImageLimits,
}

/// One thing wrong with a manifest, and the line it is on when known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
  pub line: Option<usize>,
  pub message: String,
}

/// An image that cannot be used: the manifest file and everything wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageError {
  pub file: String,
  pub problems: Vec<Problem>,
}

impl fmt::Display for ImageError {
  fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let count = self.problems.len();
    write!(f, "image {} is invalid ({count} problem{}):", self.file, if count == 1 { "" } else { "s" })?;
    for problem in &self.problems {
      match problem.line {
        Some(line) => write!(f, "\n  {}:{line}: {}", self.file, problem.message)?,
        None => write!(f, "\n  {}: {}", self.file, problem.message)?,
      }
    }
    Ok(())
  }
}

impl std::error::Error for ImageError {}

impl Manifest {
  /// Checks a manifest's text. With `dir` (the manifest's directory), also that the entry
  /// and the tool modules exist inside it. Returns every problem found.
  pub fn check(text: &str, dir: Option<&Path>) -> Result<Manifest, Vec<Problem>> {
    let mut problems = Vec::new();
    let Some(raw) = deserialize(text, &mut problems) else {
      return Err(problems);
    };
    let manifest = validate(raw, text, dir, &mut problems);
    // In file order; problems with no line (a missing field) first.
    problems.sort_by_key(|p| p.line);
    if problems.is_empty() {
      Ok(manifest)
    } else {
      Err(problems)
    }
  }
}

/// Parses the TOML into the on-disk form. Every unknown field is reported (each is
/// dropped and the parse retried); any other error ends the parse.
fn deserialize(text: &str, problems: &mut Vec<Problem>) -> Option<RawManifest> {
  let mut root = match toml::de::DeTable::parse(text) {
    Ok(root) => root,
    Err(e) => {
      problems.push(toml_problem(text, &e));
      return None;
    }
  };
  loop {
    match RawManifest::deserialize(toml::de::Deserializer::from(root.clone())) {
      Ok(raw) => return Some(raw),
      Err(e) => {
        problems.push(toml_problem(text, &e));
        let unknown = e.message().starts_with("unknown field");
        if !(unknown && e.span().is_some_and(|span| remove_key_at(root.get_mut(), &span))) {
          return None;
        }
      }
    }
  }
}

/// Removes the key whose span is `span`, at any depth; whether one was found.
fn remove_key_at(table: &mut toml::de::DeTable<'_>, span: &std::ops::Range<usize>) -> bool {
  let found = table.keys().find(|key| key.span() == *span).map(|key| key.get_ref().to_string());
  if let Some(key) = found {
    return table.remove(key.as_str()).is_some();
  }
  table.iter_mut().any(|(_, value)| match value.get_mut() {
    toml::de::DeValue::Table(inner) => remove_key_at(inner, span),
    _ => false,
  })
}

fn toml_problem(text: &str, e: &toml::de::Error) -> Problem {
  Problem { line: e.span().map(|span| line_of(text, span.start)), message: e.message().trim().to_string() }
}

fn line_of(text: &str, offset: usize) -> usize {
  text.as_bytes()[..offset.min(text.len())].iter().filter(|b| **b == b'\n').count() + 1
}

fn validate(raw: RawManifest, text: &str, dir: Option<&Path>, problems: &mut Vec<Problem>) -> Manifest {
  let at = |span: std::ops::Range<usize>| Some(line_of(text, span.start));
  let mut push = |line: Option<usize>, message: String| problems.push(Problem { line, message });
  let mut manifest = Manifest { description: raw.description, ..Manifest::default() };

  match raw.name {
    None => push(None, "missing `name` (e.g. name = \"my-agent\")".into()),
    Some(name) => {
      let valid = !name.get_ref().is_empty()
        && name.get_ref().len() <= MAX_NAME_LEN
        && name.get_ref().bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.get_ref().starts_with('-');
      if !valid {
        push(
          at(name.span()),
          format!(
            "name {:?}: expected lowercase letters, digits and '-', not starting with '-', at most {MAX_NAME_LEN} characters",
            name.get_ref()
          ),
        );
      }
      manifest.name = name.into_inner();
    }
  }
  match raw.version {
    None => push(None, "missing `version` (e.g. version = \"1.0.0\")".into()),
    Some(version) => {
      if parse_version(version.get_ref()).is_none() {
        push(
          at(version.span()),
          format!("version {:?}: expected MAJOR.MINOR.PATCH, e.g. 1.0.0 (optionally -PRERELEASE or +BUILD)", version.get_ref()),
        );
      }
      manifest.version = version.into_inner();
    }
  }
  match raw.entry {
    None => push(None, "missing `entry` (the agent script, e.g. entry = \"agent.ts\")".into()),
    Some(entry) => {
      if let Some(dir) = dir {
        if let Err(why) = module_in(dir, entry.get_ref()) {
          push(at(entry.span()), format!("entry {:?}: {why}", entry.get_ref()));
        }
      }
      manifest.entry = entry.into_inner();
    }
  }
  if let Some(model) = raw.model {
    let valid = model.get_ref().split_once(':').is_some_and(|(provider, name)| {
      !provider.is_empty()
        && provider.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && !name.is_empty()
        && !name.chars().any(|c| c.is_whitespace() || c.is_control())
    });
    if !valid {
      push(at(model.span()), format!("model {:?}: expected PROVIDER:MODEL, e.g. openai:gpt-4o-mini", model.get_ref()));
    }
    manifest.model = Some(model.into_inner());
  }

  for (index, tool) in raw.tools.iter().enumerate() {
    let name = tool.get_ref();
    let line = at(tool.span());
    if raw.tools[..index].iter().any(|earlier| earlier.get_ref() == name) {
      push(line, format!("tools: {name:?} is listed twice"));
    } else if name.contains('/') || name.ends_with(".ts") {
      if !name.ends_with(".ts") {
        push(line, format!("tools: module {name:?} must be a .ts file"));
      } else if let Some(dir) = dir {
        if let Err(why) = module_in(dir, name) {
          push(line, format!("tools: module {name:?}: {why}"));
        }
      }
    } else if !BUILTIN_TOOLS.contains(&name.as_str()) {
      push(
        line,
        format!(
          "tools: unknown tool {name:?} (built-in tools: {}; a tool module is a relative path ending in .ts)",
          BUILTIN_TOOLS.join(", ")
        ),
      );
    }
  }
  manifest.tools = raw.tools.into_iter().map(Spanned::into_inner).collect();

  let capabilities = |field: &str, list: Vec<Spanned<String>>, problems: &mut Vec<Problem>| -> Vec<(Capability, Option<usize>)> {
    let mut parsed = Vec::new();
    for token in list {
      let line = at(token.span());
      match token.get_ref().parse::<Capability>() {
        Ok(capability) => parsed.push((capability, line)),
        Err(e) => problems.push(Problem { line, message: format!("{field}: {e}") }),
      }
    }
    parsed
  };
  let ceiling = capabilities("capabilities.ceiling", raw.capabilities.ceiling, problems);
  let grant = capabilities("capabilities.grant", raw.capabilities.grant, problems);
  let ask = capabilities("policy.ask", raw.policy.ask, problems);
  let deny = capabilities("policy.deny", raw.policy.deny, problems);
  manifest.ceiling = ceiling.into_iter().map(|(c, _)| c).collect();
  for (capability, line) in grant {
    if !within(&manifest.ceiling, &capability) {
      problems.push(Problem {
        line,
        message: format!("capabilities.grant: {capability} is not within the ceiling ({})", list(&manifest.ceiling)),
      });
    }
    manifest.grant.push(capability);
  }
  manifest.ask = ask.into_iter().map(|(c, _)| c).collect();
  manifest.deny = deny.into_iter().map(|(c, _)| c).collect();

  let limits = raw.limits;
  if let Some(timeout) = limits.timeout {
    match humantime::parse_duration(timeout.get_ref()) {
      Ok(duration) if !duration.is_zero() => manifest.limits.timeout = Some(duration),
      Ok(_) => problems.push(Problem { line: at(timeout.span()), message: "limits.timeout: must be more than 0".into() }),
      Err(e) => problems.push(Problem {
        line: at(timeout.span()),
        message: format!("limits.timeout {:?}: {e} (examples: 30s, 10m, 1h)", timeout.get_ref()),
      }),
    }
  }
  if let Some(heap) = limits.heap_mb {
    match u32::try_from(*heap.get_ref()) {
      Ok(mb) if (8..=65536).contains(&mb) => manifest.limits.heap_mb = Some(mb),
      _ => problems.push(Problem {
        line: at(heap.span()),
        message: format!("limits.heap_mb {}: expected 8 to 65536 (MiB)", heap.get_ref()),
      }),
    }
  }
  if let Some(max) = limits.max_syscalls {
    match u64::try_from(*max.get_ref()) {
      Ok(n) if n > 0 => manifest.limits.max_syscalls = Some(n),
      _ => problems.push(Problem {
        line: at(max.span()),
        message: format!("limits.max_syscalls {}: expected a number above 0", max.get_ref()),
      }),
    }
  }
  manifest
}

/// Whether some capability of `ceiling` includes `capability`.
pub fn within(ceiling: &[Capability], capability: &Capability) -> bool {
  ceiling.iter().any(|c| c.includes(capability))
}

/// `a, b, c`, or `empty` for none.
pub fn list(capabilities: &[Capability]) -> String {
  if capabilities.is_empty() {
    return "empty".into();
  }
  capabilities.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}

/// Resolves `rel` inside `dir`: it must be relative, exist, be a file, and (after
/// symlinks) stay inside `dir`. Returns the absolute, canonical path.
fn module_in(dir: &Path, rel: &str) -> Result<PathBuf, String> {
  if rel.is_empty() {
    return Err("empty path".into());
  }
  if Path::new(rel).is_absolute() {
    return Err("must be relative to the manifest's directory".into());
  }
  let mut depth = 0i32;
  for component in Path::new(rel).components() {
    match component {
      std::path::Component::ParentDir => depth -= 1,
      std::path::Component::Normal(_) => depth += 1,
      _ => {}
    }
    if depth < 0 {
      return Err("leads outside the manifest's directory".into());
    }
  }
  let root = dir.canonicalize().map_err(|e| format!("cannot open the manifest's directory {}: {e}", dir.display()))?;
  let path = match root.join(rel).canonicalize() {
    Ok(path) => path,
    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(format!("no such file in {}", root.display())),
    Err(e) => return Err(e.to_string()),
  };
  if !path.starts_with(&root) {
    return Err(format!("leads outside the manifest's directory {}", root.display()));
  }
  if !path.is_file() {
    return Err("not a file".into());
  }
  Ok(path)
}

/// The content hash of an image: sha256 of the manifest text, a NUL byte (which TOML
/// text cannot contain) and the entry file's bytes.
pub fn content_hash(manifest: &str, entry: &[u8]) -> String {
  let mut bytes = Vec::with_capacity(manifest.len() + 1 + entry.len());
  bytes.extend_from_slice(manifest.as_bytes());
  bytes.push(0);
  bytes.extend_from_slice(entry);
  digest(&bytes)
}

/// A checked image: its manifest, where it lives and what it hashes to.
#[derive(Debug, Clone)]
pub struct Image {
  pub manifest: Manifest,
  /// The manifest as TOML text (what is stored and hashed).
  pub text: String,
  /// The manifest's directory (absolute, canonical).
  pub dir: PathBuf,
  /// The entry module (absolute, canonical).
  pub entry: PathBuf,
  pub hash: String,
}

impl Image {
  /// The tool table the image gives its processes: its `tools`, built-in names and
  /// modules (read now, so a resumed process runs the code it started with); `None`
  /// when it lists none (every built-in tool).
  pub fn tool_table(&self) -> Result<Option<Vec<super::tools::ImageTool>>, String> {
    use super::tools::ImageTool;
    if self.manifest.tools.is_empty() {
      return Ok(None);
    }
    let tools = self.manifest.tools.iter().map(|entry| {
      if BUILTIN_TOOLS.contains(&entry.as_str()) {
        return Ok(ImageTool::Builtin(entry.clone()));
      }
      let path = self.dir.join(entry);
      let source = std::fs::read_to_string(&path).map_err(|e| format!("tool module {}: {e}", path.display()))?;
      let url = url::Url::from_file_path(&path).map_err(|()| format!("tool module {} has no file URL", path.display()))?;
      Ok(ImageTool::Module(super::tools::ToolCode { url: url.to_string(), source }))
    });
    tools.collect::<Result<Vec<_>, String>>().map(Some)
  }

  /// Reads and checks the manifest `file`.
  pub fn load(file: &Path) -> Result<Image, ImageError> {
    let source = file.display().to_string();
    let fail = |message: String| ImageError { file: source.clone(), problems: vec![Problem { line: None, message }] };
    let text = std::fs::read_to_string(file).map_err(|e| fail(format!("cannot read: {e}")))?;
    let dir = file
      .canonicalize()
      .map_err(|e| fail(format!("cannot open: {e}")))?
      .parent()
      .map(PathBuf::from)
      .ok_or_else(|| fail("has no directory".into()))?;
    Image::open(text, dir, &source)
  }

  /// Checks a manifest's `text` whose entry and tools are relative to `dir`, and hashes
  /// it. `source` names it in errors.
  pub fn open(text: String, dir: PathBuf, source: &str) -> Result<Image, ImageError> {
    let fail = |problems| ImageError { file: source.to_string(), problems };
    let manifest = Manifest::check(&text, Some(&dir)).map_err(fail)?;
    let one = |message: String| fail(vec![Problem { line: None, message }]);
    let entry = module_in(&dir, &manifest.entry).map_err(|why| one(format!("entry {:?}: {why}", manifest.entry)))?;
    let bytes = std::fs::read(&entry).map_err(|e| one(format!("cannot read entry {}: {e}", entry.display())))?;
    let hash = content_hash(&text, &bytes);
    let dir = dir.canonicalize().unwrap_or(dir);
    Ok(Image { manifest, text, dir, entry, hash })
  }

  /// `NAME@VERSION`.
  pub fn id(&self) -> String {
    format!("{}@{}", self.manifest.name, self.manifest.version)
  }

  /// The image's policy, as rules whose source is this image.
  pub fn rules(&self) -> Vec<Rule> {
    let source = RuleSource::Image(self.id());
    let ask = self.manifest.ask.iter().map(|c| (Effect::Ask, c));
    let deny = self.manifest.deny.iter().map(|c| (Effect::Deny, c));
    deny.chain(ask).map(|(effect, c)| Rule::new(effect, c.clone(), source.clone())).collect()
  }

  /// What a process of this image starts with, given what the command line adds: the
  /// image's grants plus `allow`, and `policy` with the image's rules. Anything beyond
  /// the capability ceiling — an `allow`, or an allow rule of the policy — is refused,
  /// never silently widened.
  /// `model`: the capability of the host's model (`--model`, or the image's own): choosing
  /// the model is choosing what the agent may call, so it is granted like an `--allow`,
  /// but only when the ceiling allows it (otherwise the agent's call is refused, naming it).
  pub fn authorize(
    &self,
    allow: &[Capability],
    model: Option<Capability>,
    mut policy: Policy,
  ) -> Result<(Vec<(Capability, GrantSource)>, Policy), String> {
    let (id, ceiling) = (self.id(), &self.manifest.ceiling);
    let outside: Vec<String> = allow.iter().filter(|c| !within(ceiling, c)).map(|c| format!("--allow {c}")).collect();
    if !outside.is_empty() {
      return Err(format!(
        "{} {} outside the capability ceiling of image {id} ({}); an image's process never holds more",
        outside.join(", "),
        if outside.len() == 1 { "is" } else { "are" },
        list(ceiling)
      ));
    }
    if let Some(rule) = policy.rules().iter().find(|r| r.effect == Effect::Allow && !within(ceiling, &r.capability)) {
      return Err(format!("{} allows {}, outside the capability ceiling of image {id} ({})", rule.source, rule.capability, list(ceiling)));
    }
    policy.extend(self.rules());
    let image = self.manifest.grant.iter().map(|c| (c.clone(), GrantSource::Image(id.clone())));
    let cli = allow.iter().map(|c| (c.clone(), GrantSource::Cli));
    let mut grants: Vec<(Capability, GrantSource)> = image.chain(cli).collect();
    if let Some(model) = model.filter(|m| within(ceiling, m) && !grants.iter().any(|(held, _)| held.includes(m))) {
      grants.push((model, GrantSource::Cli));
    }
    Ok((grants, policy))
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  const VALID: &str = r#"
name = "coding-agent"
version = "1.0.0"
description = "Edits code"
entry = "agent.ts"
model = "openai:gpt-4o-mini"
tools = ["read_file", "./tools/extract.ts"]

[capabilities]
ceiling = ["fs.read:**", "fs.write:out/**"]
grant = ["fs.read:**"]

[policy]
ask = ["fs.write:**"]
deny = ["fs.read:secrets/**"]

[limits]
timeout = "10m"
heap_mb = 256
max_syscalls = 100000
"#;

  fn image_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("agent.ts"), "libos.exit(1);").unwrap();
    std::fs::create_dir(dir.path().join("tools")).unwrap();
    std::fs::write(dir.path().join("tools/extract.ts"), "export default 1;").unwrap();
    dir
  }

  fn cap(text: &str) -> Capability {
    text.parse().unwrap()
  }

  fn problems(text: &str, dir: &Path) -> Vec<Problem> {
    Manifest::check(text, Some(dir)).unwrap_err()
  }

  fn messages(problems: &[Problem]) -> String {
    problems.iter().map(|p| format!("{:?}: {}", p.line, p.message)).collect::<Vec<_>>().join("\n")
  }

  #[test]
  fn a_valid_image_parses() {
    let dir = image_dir();
    let m = Manifest::check(VALID, Some(dir.path())).unwrap();
    assert_eq!(m.name, "coding-agent");
    assert_eq!(m.version, "1.0.0");
    assert_eq!(m.description.as_deref(), Some("Edits code"));
    assert_eq!(m.entry, "agent.ts");
    assert_eq!(m.model.as_deref(), Some("openai:gpt-4o-mini"));
    assert_eq!(m.tools, ["read_file", "./tools/extract.ts"]);
    assert_eq!(m.ceiling, [cap("fs.read:**"), cap("fs.write:out/**")]);
    assert_eq!(m.grant, [cap("fs.read:**")]);
    assert_eq!(m.ask, [cap("fs.write:**")]);
    assert_eq!(m.deny, [cap("fs.read:secrets/**")]);
    assert_eq!(
      m.limits,
      ImageLimits { timeout: Some(Duration::from_secs(600)), heap_mb: Some(256), max_syscalls: Some(100_000) }
    );
  }

  #[test]
  fn only_the_identity_and_entry_are_required() {
    let dir = image_dir();
    let m = Manifest::check("name = \"a\"\nversion = \"0.1.0\"\nentry = \"agent.ts\"\n", Some(dir.path())).unwrap();
    assert!(m.ceiling.is_empty() && m.grant.is_empty() && m.tools.is_empty());
    assert_eq!(m.limits, ImageLimits::default());
    let all = problems("", dir.path());
    assert_eq!(all.len(), 3, "{}", messages(&all));
    for field in ["`name`", "`version`", "`entry`"] {
      assert!(messages(&all).contains(&format!("missing {field}")), "{}", messages(&all));
    }
  }

  #[test]
  fn every_problem_is_reported_together() {
    let dir = image_dir();
    let text = r#"name = "Bad_Name"
version = "1.0"
entry = "../outside.ts"
colour = "blue"
tools = ["read_file", "rm_rf", "./tools/missing.ts"]
[capabilities]
ceiling = ["fs.read:data/**", "fs.raed:x"]
grant = ["fs.read:data/**", "fs.write:out/**", "net:"]
[policy]
deny = ["fs.read:/etc"]
[limits]
timeout = "soon"
heap_mb = 4
max_syscalls = 0
retries = 3
"#;
    let all = problems(text, dir.path());
    let text_of = messages(&all);
    let expect = [
      (Some(4), "unknown field `colour`"),
      (Some(15), "unknown field `retries`"),
      (Some(1), "name \"Bad_Name\""),
      (Some(2), "version \"1.0\""),
      (Some(3), "entry \"../outside.ts\": leads outside the manifest's directory"),
      (Some(5), "tools: unknown tool \"rm_rf\""),
      (Some(5), "tools: module \"./tools/missing.ts\": no such file"),
      (Some(7), "capabilities.ceiling: invalid capability \"fs.raed:x\": unknown kind \"fs.raed\""),
      (Some(8), "capabilities.grant: fs.write:out/** is not within the ceiling (fs.read:data/**)"),
      (Some(8), "capabilities.grant: invalid capability \"net:\""),
      (Some(10), "policy.deny: invalid capability \"fs.read:/etc\""),
      (Some(12), "limits.timeout \"soon\""),
      (Some(13), "limits.heap_mb 4"),
      (Some(14), "limits.max_syscalls 0"),
    ];
    for (line, needle) in expect {
      assert!(all.iter().any(|p| p.line == line && p.message.contains(needle)), "no {needle:?} at {line:?} in\n{text_of}");
    }
    assert_eq!(all.len(), expect.len(), "{text_of}");
  }

  #[test]
  fn unknown_fields_in_tables_are_named_with_their_line() {
    let dir = image_dir();
    let all = problems("name = \"a\"\nversion = \"1.0.0\"\nentry = \"agent.ts\"\n[policy]\nallow = [\"fs.read\"]\n", dir.path());
    assert_eq!(all.len(), 1, "{}", messages(&all));
    assert_eq!(all[0].line, Some(5));
    assert!(all[0].message.starts_with("unknown field `allow`, expected"), "{}", all[0].message);
    let err = ImageError { file: "img/image.toml".into(), problems: all };
    assert!(err.to_string().starts_with("image img/image.toml is invalid (1 problem):\n  img/image.toml:5: unknown field `allow`"), "{err}");
  }

  #[test]
  fn syntax_and_type_errors_stop_the_check() {
    let all = Manifest::check("name = \"a\nversion = 1", None).unwrap_err();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].line, Some(1));
    let all = Manifest::check("name = \"a\"\nversion = \"1.0.0\"\nentry = \"a.ts\"\ntools = \"read_file\"\n", None).unwrap_err();
    assert_eq!(all.len(), 1, "{}", messages(&all));
    assert_eq!(all[0].line, Some(4));
  }

  #[test]
  fn a_missing_entry_or_a_directory_as_entry_is_refused() {
    let dir = image_dir();
    for (entry, why) in [("gone.ts", "no such file"), ("tools", "not a file"), ("/etc/passwd", "must be relative")] {
      let text = format!("name = \"a\"\nversion = \"1.0.0\"\nentry = \"{entry}\"\n");
      let all = problems(&text, dir.path());
      assert!(all.len() == 1 && all[0].message.contains(why), "{entry}: {}", messages(&all));
    }
  }

  #[test]
  fn a_symlink_out_of_the_directory_is_refused() {
    let dir = image_dir();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("evil.ts"), "").unwrap();
    std::os::unix::fs::symlink(outside.path().join("evil.ts"), dir.path().join("link.ts")).unwrap();
    let all = problems("name = \"a\"\nversion = \"1.0.0\"\nentry = \"link.ts\"\n", dir.path());
    assert!(all[0].message.contains("leads outside"), "{}", messages(&all));
  }

  #[test]
  fn grants_must_be_within_the_ceiling() {
    let dir = image_dir();
    let base = "name = \"a\"\nversion = \"1.0.0\"\nentry = \"agent.ts\"\n[capabilities]\n";
    let ok = format!("{base}ceiling = [\"fs.read\", \"net:*.example.com\"]\ngrant = [\"fs.read:data/**\", \"net:api.example.com:443\"]\n");
    assert!(Manifest::check(&ok, Some(dir.path())).is_ok());
    let wide = format!("{base}ceiling = [\"fs.read:data/**\"]\ngrant = [\"fs.read\"]\n");
    assert_eq!(
      problems(&wide, dir.path())[0].message,
      "capabilities.grant: fs.read is not within the ceiling (fs.read:data/**)"
    );
    let none = format!("{base}grant = [\"human.ask\"]\n");
    assert_eq!(problems(&none, dir.path())[0].message, "capabilities.grant: human.ask is not within the ceiling (empty)");
  }

  #[test]
  fn names_and_versions() {
    let dir = image_dir();
    let check = |name: &str, version: &str| {
      Manifest::check(&format!("name = \"{name}\"\nversion = \"{version}\"\nentry = \"agent.ts\"\n"), Some(dir.path()))
    };
    assert!(check("a", "0.0.1").is_ok());
    assert!(check("0-agent-9", "1.2.3-rc.1+build.7").is_ok());
    assert!(check(&"a".repeat(64), "1.0.0").is_ok());
    for bad in ["", "-a", "A", "a_b", "a.b", "a b", &"a".repeat(65)] {
      assert!(check(bad, "1.0.0").is_err(), "name {bad:?}");
    }
    for bad in ["1", "1.0", "v1.0.0", "1.0.0.0", "latest"] {
      assert!(check("a", bad).is_err(), "version {bad:?}");
    }
  }

  #[test]
  fn the_image_hashes_manifest_and_entry_and_names_its_rules() {
    let dir = image_dir();
    std::fs::write(dir.path().join("image.toml"), VALID).unwrap();
    let image = Image::load(&dir.path().join("image.toml")).unwrap();
    assert_eq!(image.id(), "coding-agent@1.0.0");
    assert_eq!(image.hash, content_hash(VALID, b"libos.exit(1);"));
    assert!(image.hash.starts_with("sha256:"));
    assert_eq!(image.entry, dir.path().canonicalize().unwrap().join("agent.ts"));
    std::fs::write(dir.path().join("agent.ts"), "libos.exit(2);").unwrap();
    assert_ne!(Image::load(&dir.path().join("image.toml")).unwrap().hash, image.hash, "the entry is part of the hash");
    let source = RuleSource::Image("coding-agent@1.0.0".into());
    assert_eq!(
      image.rules(),
      [Rule::new(Effect::Deny, cap("fs.read:secrets/**"), source.clone()), Rule::new(Effect::Ask, cap("fs.write:**"), source)]
    );
    assert_eq!(image.authorize(&[], None, Policy::default()).unwrap().0, [(cap("fs.read:**"), GrantSource::Image("coding-agent@1.0.0".into()))]);
    // The host's model is granted only within the ceiling (this one holds no model:).
    let with_model = image.authorize(&[], Some(cap("model:openai/gpt-4o-mini")), Policy::default()).unwrap().0;
    assert_eq!(with_model.len(), 1, "a model outside the ceiling is not granted: {with_model:?}");
    let missing = Image::load(&dir.path().join("nope.toml")).unwrap_err();
    assert!(missing.to_string().contains("cannot read"), "{missing}");
  }
}
