//! `alos run SCRIPT`: run an agent script as a root AgentProcess.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use serde_json::json;

use super::exit;
use super::location::Location;
use super::usage_error;
use crate::engine::tool::ToolLimits;
use crate::engine::tool_host::EngineToolHost;
use crate::engine::tool_host::TOOL_HEAP_BYTES;
use crate::engine::tool_host::TOOL_MAX_RESULT_BYTES;
use crate::engine::IsolateLauncher;
use crate::engine::IsolateLimits;
use crate::kernel::capability::Capability;
use crate::kernel::grant::GrantSource;
use crate::kernel::human::HumanMode;
use crate::kernel::policy::Effect;
use crate::kernel::policy::Policy;
use crate::kernel::policy::Rule;
use crate::kernel::policy::RuleSource;
use crate::kernel::process::ExitStatus;
use crate::kernel::process::ProcessLimits;
use crate::kernel::Kernel;
use crate::kernel::KernelConfig;
use crate::kernel::ProcessSpec;
use crate::provider::clock::SystemClock;
use crate::provider::clock::VirtualClock;
use crate::provider::model::ModelProvider;
use crate::provider::model::ModelSpec;
use crate::provider::model::OpenAi;
use crate::provider::model::OpenAiConfig;
use crate::provider::model::Scripted;
use crate::provider::model::SCRIPTED_DEFAULT_MODEL;

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClockKind {
  System,
  Virtual,
}

#[derive(Args, Debug)]
#[command(after_help = "\
Examples:
  alos run examples/hello/agent.ts --allow 'fs.read:data/**' --allow 'fs.write:out/**'
  alos run agent.ts --allow fs.read --deny 'fs.read:secrets/**' --timeout 30s -- --verbose
  alos run agent.ts --json
  alos run agent.ts --policy policy.toml --ask 'fs.write:**'

Capabilities (KIND[:RESOURCE]): fs.read:PATH fs.write:PATH fs.delete:PATH (workspace-relative
globs; * is one path segment, ** any number), mem.read:NS mem.write:NS shell:PROGRAM
net:HOST[:PORT] model:PROVIDER/MODEL human.ask tool.register tool.call:NAME proc.spawn
proc.signal event.emit:TOPIC event.wait:TOPIC. Everything not allowed is denied.

Exit codes: 0 ok, 1 script error, 2 usage error, 3 permission denied, 4 limit exceeded.")]
pub struct RunArgs {
  /// The agent script (.ts, .mts, .js or .mjs). It may import modules beside it.
  script: PathBuf,

  #[command(flatten)]
  host: HostFlags,
}

/// The flags of every command that hosts a root process (`run`, `spawn`): its policy,
/// where it runs, its limits, how a human is reached, and how the end is reported.
#[derive(Args, Debug)]
pub struct HostFlags {
  /// Grant a capability to the process (repeatable).
  #[arg(long = "allow", value_name = "CAP", value_parser = parse_capability)]
  pub(super) allow: Vec<Capability>,

  /// Require a human's approval for operations this capability covers (repeatable).
  #[arg(long = "ask", value_name = "CAP", value_parser = parse_capability)]
  pub(super) ask: Vec<Capability>,

  /// Deny a capability, whatever is granted (repeatable; deny always wins).
  #[arg(long = "deny", value_name = "CAP", value_parser = parse_capability)]
  pub(super) deny: Vec<Capability>,

  /// A policy file (TOML): `allow = [...]`, `ask = [...]`, `deny = [...]`.
  #[arg(long, value_name = "FILE")]
  pub(super) policy: Option<PathBuf>,

  #[command(flatten)]
  pub(super) location: Location,

  /// Wall-clock limit for the whole run, e.g. 30s, 5m, 500ms.
  #[arg(long, value_name = "DUR", value_parser = parse_duration)]
  pub(super) timeout: Option<Duration>,

  /// Heap limit of the script's isolate, in MiB.
  #[arg(long = "heap-mb", value_name = "N", value_parser = clap::value_parser!(u32).range(8..=65536))]
  pub(super) heap_mb: Option<u32>,

  /// Maximum number of syscalls the process may make.
  #[arg(long = "max-syscalls", value_name = "N")]
  pub(super) max_syscalls: Option<u64>,

  /// Largest file the process may read, in bytes.
  #[arg(long = "max-read-bytes", value_name = "N", default_value_t = 64 << 20)]
  pub(super) max_read_bytes: u64,

  /// How `ask` decisions reach a human: prompt on this terminal, wait for `alos approve`
  /// from another one, or deny.
  #[arg(long, value_enum, value_name = "MODE", default_value = "queue")]
  pub(super) human: HumanMode,

  /// Where shell.exec looks programs up: absolute directories, separated by ':'.
  #[arg(long = "shell-path", value_name = "DIRS", default_value_t = crate::kernel::shell::SEARCH_PATH.join(":"))]
  pub(super) shell_path: String,

  /// Wall-clock limit of one tool call (the tool's isolate is stopped and replaced).
  #[arg(long = "tool-timeout", value_name = "DUR", value_parser = parse_duration, default_value = "30s")]
  pub(super) tool_timeout: Duration,

  /// The clock: the host's, or a virtual one starting at 2026-01-01T00:00:00Z on which
  /// sleeps and human deadlines pass at once (deterministic demos and tests).
  #[arg(long, value_enum, value_name = "CLOCK", default_value = "system")]
  pub(super) clock: ClockKind,

  /// The model libos.model.complete uses when a call names none: openai:MODEL (with
  /// OPENAI_BASE_URL and OPENAI_API_KEY from the environment) or scripted:FILE.json.
  #[arg(long, value_name = "SPEC", value_parser = parse_model)]
  pub(super) model: Option<ModelSpec>,

  /// Model calls the process and its children may make in all.
  #[arg(long = "model-calls", value_name = "N")]
  pub(super) model_calls: Option<u64>,

  /// Model tokens (input + output) the process and its children may use in all.
  #[arg(long = "model-tokens", value_name = "N")]
  pub(super) model_tokens: Option<u64>,

  /// Wall-clock limit of one attempt to get an answer from the model endpoint.
  #[arg(long = "model-timeout", value_name = "DUR", value_parser = parse_duration, default_value = "60s")]
  pub(super) model_timeout: Duration,

  /// Isolates that may run at once; further runnable processes queue for a slot.
  #[arg(long = "max-isolates", value_name = "N", default_value_t = crate::engine::launcher::DEFAULT_MAX_ISOLATES)]
  pub(super) max_isolates: usize,

  /// Print one JSON object describing how the process ended (stdout), instead of text.
  #[arg(long)]
  pub(super) json: bool,

  /// Arguments for the script (`libos.args`), after `--`.
  #[arg(last = true, value_name = "ARGS")]
  pub(super) args: Vec<String>,
}

pub(super) fn parse_capability(text: &str) -> Result<Capability, String> {
  text.parse::<Capability>().map_err(|e| e.to_string())
}

pub(super) fn parse_model(text: &str) -> Result<ModelSpec, String> {
  text.parse()
}

/// `--model` as a later host can use it again: a scripted file by its absolute path.
fn model_text(spec: &ModelSpec) -> String {
  match spec {
    ModelSpec::OpenAi { model } => format!("openai:{model}"),
    ModelSpec::Scripted { file } => {
      format!("scripted:{}", std::path::absolute(file).unwrap_or_else(|_| file.clone()).display())
    }
  }
}

pub(super) fn parse_duration(text: &str) -> Result<Duration, String> {
  humantime::parse_duration(text).map_err(|e| format!("invalid duration \"{text}\": {e} (examples: 30s, 5m, 500ms)"))
}

pub fn run(args: RunArgs) -> u8 {
  let entry = match args.script.canonicalize() {
    Ok(path) if path.is_file() => path,
    Ok(path) => return usage_error(format!("script {} is not a file", path.display())),
    Err(e) => return usage_error(format!("cannot open script {}: {e}", args.script.display())),
  };
  let flags = args.host;
  let policy = match flags.policy() {
    Ok(policy) => policy,
    Err(e) => return usage_error(e),
  };
  host(&flags, policy, |kernel| {
    kernel.start_root(ProcessSpec {
      image: args.script.display().to_string(),
      entry,
      args: flags.args.clone(),
      goal: None,
      grants: flags.allow.iter().map(|cap| (cap.clone(), GrantSource::Cli)).collect(),
      limits: flags.limits(),
      tools: None,
    })
  })
}

/// Who answers `model.complete` on this host, and its default model.
type HostModel = (Option<Arc<dyn ModelProvider>>, Option<String>);

impl HostFlags {
  /// The root process's budgets.
  pub(super) fn limits(&self) -> ProcessLimits {
    ProcessLimits {
      max_syscalls: self.max_syscalls,
      model_calls: self.model_calls,
      model_tokens: self.model_tokens,
      ..ProcessLimits::default()
    }
  }

  /// The host's model provider and default model (`PROVIDER:MODEL`), from `--model`.
  fn model(&self) -> Result<HostModel, String> {
    Ok(match &self.model {
      None => (None, None),
      Some(ModelSpec::OpenAi { model }) => {
        let provider = OpenAi::new(OpenAiConfig::from_env(self.model_timeout));
        (Some(Arc::new(provider)), Some(format!("openai:{model}")))
      }
      Some(ModelSpec::Scripted { file }) => {
        let provider = Scripted::load(file)?;
        (Some(Arc::new(provider)), Some(format!("scripted:{SCRIPTED_DEFAULT_MODEL}")))
      }
    })
  }

  /// The policy file's rules, then the `--deny` and `--ask` rules.
  pub(super) fn policy(&self) -> Result<Policy, String> {
    let mut policy = match &self.policy {
      None => Policy::default(),
      Some(file) => {
        let text =
          std::fs::read_to_string(file).map_err(|e| format!("cannot read policy file {}: {e}", file.display()))?;
        Policy::from_toml(&text, &file.display().to_string()).map_err(|e| e.to_string())?
      }
    };
    let cli_rules = self.deny.iter().map(|c| (Effect::Deny, c)).chain(self.ask.iter().map(|c| (Effect::Ask, c)));
    policy.extend(cli_rules.map(|(effect, capability)| Rule::new(effect, capability.clone(), RuleSource::Cli)));
    Ok(policy)
  }
}

/// Hosts one root process: opens the kernel on the flags' workspace and state with
/// `policy`, installs the engine with the flags' limits, lets `start` start the process
/// (returning its pid), waits for it to end and reports how (the exit code).
///
/// `start` is what differs between commands: `run` starts a script, `spawn` an image.
pub(super) fn host(flags: &HostFlags, policy: Policy, start: impl FnOnce(&Kernel) -> Result<String, String>) -> u8 {
  with_kernel(flags, policy, |kernel| {
    let pid = match start(kernel) {
      Ok(pid) => pid,
      Err(e) => {
        eprintln!("error: {e}");
        return exit::SCRIPT_ERROR;
      }
    };
    tracing::info!(%pid, "started");
    let status = kernel.wait_exit(&pid).unwrap_or(ExitStatus::Killed { reason: "the process record was lost".to_string() });
    report(&pid, &status, flags.json)
  })
}

/// Opens the kernel on the flags' workspace and state with `policy`, installs the
/// engine with the flags' limits, and hands it to `body`.
pub(super) fn with_kernel(flags: &HostFlags, policy: Policy, body: impl FnOnce(&Kernel) -> u8) -> u8 {
  let (workspace, state_dir) = match flags.location.workspace_dir().and_then(|w| Ok((w, flags.location.state_dir()?))) {
    Ok(dirs) => dirs,
    Err(e) => return usage_error(e),
  };
  let (model, default_model) = match flags.model() {
    Ok(model) => model,
    Err(e) => return usage_error(e),
  };
  let kernel = match Kernel::open(KernelConfig {
    workspace,
    state_dir,
    policy,
    clock: match flags.clock {
      ClockKind::System => Arc::new(SystemClock),
      ClockKind::Virtual => Arc::new(VirtualClock::starting_at(VirtualClock::EPOCH_MS)),
    },
    human: flags.human,
    shell_path: flags.shell_path.split(':').filter(|d| !d.is_empty()).map(PathBuf::from).collect(),
    max_read_bytes: flags.max_read_bytes,
    model,
    default_model,
  }) {
    Ok(kernel) => kernel,
    Err(e) => return usage_error(e),
  };
  let limits = IsolateLimits {
    heap_bytes: flags.heap_mb.map(|mb| mb as usize * 1024 * 1024),
    wall_time: flags.timeout,
  };
  if let Some(spec) = &flags.model {
    kernel.set_host_model(model_text(spec));
  }
  kernel.set_launcher(Arc::new(IsolateLauncher::new(limits, crate::engine::builtins::script_modules(), flags.max_isolates)));
  kernel.set_tool_host(Arc::new(EngineToolHost::new(ToolLimits {
    heap_bytes: Some(TOOL_HEAP_BYTES),
    call_wall_time: Some(flags.tool_timeout),
    max_result_bytes: TOOL_MAX_RESULT_BYTES,
  })));
  body(&kernel)
}

pub(super) fn report(pid: &str, status: &ExitStatus, json: bool) -> u8 {
  let code = match status {
    ExitStatus::Ok { .. } => exit::OK,
    ExitStatus::Error { class: Some(class), .. } if class == "PermissionDenied" => exit::PERMISSION_DENIED,
    ExitStatus::Error { .. } | ExitStatus::Killed { .. } => exit::SCRIPT_ERROR,
    ExitStatus::LimitExceeded { .. } => exit::LIMIT_EXCEEDED,
  };
  if json {
    let mut out = serde_json::to_value(status).unwrap_or_else(|_| json!({}));
    out["pid"] = json!(pid);
    out["exit_code"] = json!(code);
    // A reader that went away (`| head`) is no reason to fail: the outcome is in the
    // exit code and the audit log.
    let _ = writeln!(std::io::stdout(), "{out}");
    return code;
  }
  match status {
    ExitStatus::Ok { result } if !result.is_null() => {
      let _ = writeln!(std::io::stdout(), "{}", serde_json::to_string_pretty(result).unwrap_or_default());
    }
    ExitStatus::Ok { .. } => {}
    ExitStatus::Error { error, .. } => eprintln!("error: {error}"),
    ExitStatus::LimitExceeded { limit } => eprintln!("error: process {pid} stopped: limit exceeded: {limit}"),
    ExitStatus::Killed { reason } => eprintln!("error: process {pid} was killed: {reason}"),
  }
  code
}
