//! `alos spawn IMAGE[@VERSION]`: run a stored AgentImage as a root AgentProcess, the way
//! `alos run` runs a script.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::builtin_images;
use super::exit;
use super::location::Location;
use super::progress::Progress;
use super::progress::Style;
use super::run::report;
use super::run::with_kernel;
use super::run::HostFlags;
use super::usage_error;
use crate::kernel::capability::Capability;
use crate::kernel::image::Image;
use crate::kernel::process::ExitStatus;
use crate::kernel::ProcessSpec;
use crate::provider::model::ModelSpec;
use crate::provider::model::SCRIPTED_DEFAULT_MODEL;
use crate::provider::human::printable;
use crate::store::images::ImageRow;
use crate::store::Db;

#[derive(Args, Debug)]
#[command(after_help = "\
Examples:
  alos image add examples/image/image.toml
  alos spawn hello-image --goal 'greet the workspace'
  alos spawn hello-image@0.1.0 --allow 'fs.write:out/**' --json -- --loud

The process holds the image's grants plus each --allow, which must be within the image's
capability ceiling (anything else is refused, never silently widened); allow rules of a
--policy file must be within it too. Its policy is the image's ask/deny rules plus
--ask, --deny and --policy. --timeout, --heap-mb and --max-syscalls can only lower the
image's limits: a larger value is capped to the image's, with a note on stderr. The
model is --model, else the image's `model`; the process is granted it (model:PROVIDER/MODEL)
when the image's ceiling allows it.

Without @VERSION, the image's highest version (semver precedence) runs. The built-in
images (base-agent, coding-agent, toolmaker-agent, review-agent; see `alos image ls`) run
when no image of that name was added.

Progress: on a terminal, each step (model call), tool call and its outcome, refusal,
child and wait for a human is shown on stderr as it happens. With --json, stdout has one
JSON event per line (field event: step, tool, action, denied, child, child_exit,
human_wait, human_answer; and pid), then the end of the process as `alos run --json`
prints it (the line without an event field).

Exit codes: 0 ok, 1 script error, 2 usage error, 3 permission denied, 4 limit exceeded.")]
pub struct SpawnArgs {
  /// The image: NAME (its highest version) or NAME@VERSION.
  image: String,

  /// What the process is asked to do; the script reads it as `libos.goal`.
  #[arg(long, value_name = "TEXT")]
  goal: Option<String>,

  /// Show the agent's steps, tool calls and waits for a human on stderr while it runs:
  /// `auto` on a terminal. With --json they are JSON events on stdout instead.
  #[arg(long, value_enum, value_name = "WHEN", default_value = "auto")]
  progress: When,

  #[command(flatten)]
  host: HostFlags,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum When {
  Auto,
  Always,
  Never,
}

pub fn spawn(args: SpawnArgs) -> u8 {
  let mut flags = args.host;
  let image = match find(&flags.location, &args.image) {
    Ok(image) => image,
    Err(e) => return usage_error(e),
  };
  let id = image.id();
  let policy = match flags.policy() {
    Ok(policy) => policy,
    Err(e) => return usage_error(e),
  };
  // The image's model is the default; --model overrides it.
  if flags.model.is_none() {
    if let Some(model) = &image.manifest.model {
      match model.parse::<ModelSpec>() {
        Ok(spec) => flags.model = Some(spec),
        Err(e) => return usage_error(format!("image {id}: {e}")),
      }
    }
  }
  let model = flags.model.as_ref().and_then(model_capability);
  let (grants, policy) = match image.authorize(&flags.allow, model, policy) {
    Ok(authority) => authority,
    Err(e) => return usage_error(e),
  };

  let limits = &image.manifest.limits;
  let show_duration = |d: Duration| humantime::format_duration(d).to_string();
  flags.timeout = at_most(flags.timeout, limits.timeout, "--timeout", &id, show_duration);
  flags.heap_mb = at_most(flags.heap_mb, limits.heap_mb, "--heap-mb", &id, |n| n.to_string());
  flags.max_syscalls = at_most(flags.max_syscalls, limits.max_syscalls, "--max-syscalls", &id, |n| n.to_string());

  let tools = match image.tool_table() {
    Ok(tools) => tools,
    Err(e) => return usage_error(e),
  };
  let style = match (flags.json, args.progress) {
    (true, _) => Some(Style::Json),
    (false, When::Always) => Some(Style::Display),
    (false, When::Auto) if std::io::stderr().is_terminal() => Some(Style::Display),
    _ => None,
  };
  let state_dir = match flags.location.state_dir() {
    Ok(dir) => dir,
    Err(e) => return usage_error(e),
  };
  with_kernel(&flags, policy, |kernel| {
    let started = kernel.start_root(ProcessSpec {
      image: id.clone(),
      entry: image.entry.clone(),
      args: flags.args.clone(),
      goal: args.goal,
      grants,
      limits: flags.limits(),
      tools,
    });
    let pid = match started {
      Ok(pid) => pid,
      Err(e) => {
        eprintln!("error: {e}");
        return exit::SCRIPT_ERROR;
      }
    };
    let progress = style.map(|style| Progress::start(style, state_dir, pid.clone()));
    let status = kernel.wait_exit(&pid).unwrap_or(ExitStatus::Killed { reason: "the process record was lost".to_string() });
    // Everything recorded before the end is shown before the end is reported.
    if let Some(progress) = progress {
      progress.finish();
    }
    report(&pid, &status, flags.json)
  })
}

/// The capability that lets a process call the host's model `spec`.
fn model_capability(spec: &ModelSpec) -> Option<Capability> {
  let resource = match spec {
    ModelSpec::OpenAi { model } => format!("openai/{model}"),
    ModelSpec::Scripted { .. } => format!("scripted/{SCRIPTED_DEFAULT_MODEL}"),
  };
  format!("model:{resource}").parse().ok()
}

/// The flag's value, but never above the image's limit (a larger one is capped, with a
/// note); the image's limit when the flag is absent.
fn at_most<T: PartialOrd + Copy>(flag: Option<T>, image: Option<T>, name: &str, id: &str, show: impl Fn(T) -> String) -> Option<T> {
  match (flag, image) {
    (Some(asked), Some(limit)) if asked > limit => {
      eprintln!("note: {name} {} is above image {id}'s limit; using {}", show(asked), show(limit));
      Some(limit)
    }
    (asked, limit) => asked.or(limit),
  }
}

/// Looks `reference` (NAME or NAME@VERSION) up in the state directory and checks that the
/// image still is what was added; a built-in image when no image of that name was added.
fn find(location: &Location, reference: &str) -> Result<Image, String> {
  let (name, version) = match reference.rsplit_once('@') {
    Some((name, version)) => (name, Some(version)),
    None => (reference, None),
  };
  let dir = location.state_dir()?;
  let db = if dir.join("alos.db").is_file() { Some(Db::open(&dir).map_err(|e| e.to_string())?) } else { None };
  let row = match (&db, version) {
    (None, _) => None,
    (Some(db), Some(version)) => db.image(name, version).map_err(|e| e.to_string())?,
    (Some(db), None) => db.latest_image(name).map_err(|e| e.to_string())?,
  };
  let Some(row) = row else {
    let all = match &db {
      Some(db) => db.images().map_err(|e| e.to_string())?,
      None => Vec::new(),
    };
    if let Some(builtin) = builtin_images::get(name).filter(|_| !all.iter().any(|r| r.name == name)) {
      let manifest = builtin.manifest();
      if version.is_none_or(|v| v == manifest.version) {
        return builtin.materialise(&dir);
      }
      return Err(format!("unknown image \"{}\": the built-in {name} is version {}", printable(reference), manifest.version));
    }
    return Err(unknown(reference, name, &all));
  };
  let source = format!("{}@{} (from {})", row.name, row.version, row.dir);
  let image = Image::open(row.manifest.clone(), PathBuf::from(&row.dir), &source)
    .map_err(|e| format!("{e}\nIt was valid when added: has its directory changed? Add it again under a new version."))?;
  if image.hash != row.hash {
    return Err(format!(
      "image {} has changed since it was added: its manifest or {} now hashes to {}, not {}; \
       add the new content under a new version",
      image.id(),
      image.entry.display(),
      image.hash,
      row.hash
    ));
  }
  Ok(image)
}

fn unknown(reference: &str, name: &str, all: &[ImageRow]) -> String {
  let shown = printable(reference);
  let builtins: Vec<&str> = builtin_images::all().iter().map(|b| b.name).collect();
  if all.is_empty() {
    return format!(
      "unknown image \"{shown}\": no images have been added here (add one with `alos image add FILE`); \
       the built-in images are {}",
      builtins.join(", ")
    );
  }
  let versions: Vec<&str> = all.iter().filter(|r| r.name == name).map(|r| r.version.as_str()).collect();
  if !versions.is_empty() {
    return format!("unknown image \"{shown}\": {name} has the versions {}", versions.join(", "));
  }
  let ids: Vec<String> = all.iter().map(|r| format!("{}@{}", r.name, r.version)).collect();
  format!("unknown image \"{shown}\"; the images here are: {}; built-in: {}", ids.join(", "), builtins.join(", "))
}
