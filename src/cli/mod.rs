//! The `alos` command line (clap). Each subcommand has its own module.

mod audit;
mod builtin_images;
mod human;
mod image;
mod location;
mod mem;
mod progress;
mod ps;
mod resume;
mod run;
mod spawn;
mod tool;

use std::process::ExitCode;

use clap::Parser;
use clap::Subcommand;

/// Exit codes (DESIGN.md section 8).
pub mod exit {
  pub const OK: u8 = 0;
  pub const SCRIPT_ERROR: u8 = 1;
  pub const USAGE: u8 = 2;
  pub const PERMISSION_DENIED: u8 = 3;
  pub const LIMIT_EXCEEDED: u8 = 4;
}

#[derive(Parser, Debug)]
#[command(
  name = "alos",
  version,
  about = "A library-OS runtime for long-running, capability-controlled LLM agents",
  long_about = "alos runs TypeScript agent scripts and tools in isolates whose only authority is \
                the syscall broker: every file, process, network or human interaction is a \
                capability-checked, audited kernel primitive."
)]
pub struct Cli {
  /// More log output (-v info, -vv debug, -vvv trace); RUST_LOG overrides.
  #[arg(short, long, action = clap::ArgAction::Count, global = true)]
  verbose: u8,

  #[command(subcommand)]
  command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
  /// Run an agent script as a new process.
  Run(run::RunArgs),
  /// Run a stored agent image as a new process.
  Spawn(spawn::SpawnArgs),
  /// Add agent images (manifests) and list them.
  Image(image::ImageArgs),
  /// Show the audit log, or verify its hash chain.
  Audit(audit::AuditArgs),
  /// List the requests waiting for a human.
  Inbox(human::InboxArgs),
  /// Approve a waiting request (or answer a question).
  Approve(human::ApproveArgs),
  /// Deny a waiting request.
  Deny(human::DenyArgs),
  /// List processes (from any terminal).
  Ps(ps::PsArgs),
  /// End a process and its descendants (from any terminal).
  Kill(ps::KillArgs),
  /// Finish a process tree whose alos is gone, replaying its journal.
  Resume(resume::ResumeArgs),
  /// Return a process to a checkpoint and resume it from there.
  Rollback(resume::RollbackArgs),
  /// Host a state directory: resume unfinished processes, wake hibernated ones.
  Serve(resume::ServeArgs),
  /// Object Memory: list, show and write objects (ls|get|put).
  Mem(mem::MemArgs),
  /// Test a tool against mocked syscalls, or check it statically (test|check).
  Tool(tool::ToolArgs),
}

fn init_tracing(verbose: u8) {
  let default = match verbose {
    0 => "warn",
    1 => "info",
    2 => "debug",
    _ => "trace",
  };
  let filter = tracing_subscriber::EnvFilter::try_from_default_env()
    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
  let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

pub fn main() -> ExitCode {
  let cli = match Cli::try_parse() {
    Ok(cli) => cli,
    Err(e) => {
      // clap prints help/version to stdout with exit 0, and usage errors with exit 2.
      let _ = e.print();
      return ExitCode::from(if e.use_stderr() { exit::USAGE } else { exit::OK });
    }
  };
  init_tracing(cli.verbose);
  // Commands that only read and print end quietly when their reader goes away
  // (`alos audit | head`), as Unix tools do; commands that host processes keep
  // Rust's default (a closed pipe is an error they report, not a signal that kills them).
  if matches!(cli.command, Command::Audit(_) | Command::Inbox(_) | Command::Ps(_) | Command::Mem(_) | Command::Image(_)) {
    // SAFETY: restoring the default disposition of one signal before any thread starts.
    unsafe {
      libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
  }
  let code = match cli.command {
    Command::Run(args) => run::run(args),
    Command::Spawn(args) => spawn::spawn(args),
    Command::Image(args) => image::run(args),
    Command::Audit(args) => audit::run(args),
    Command::Inbox(args) => human::inbox(args),
    Command::Approve(args) => human::approve(args),
    Command::Deny(args) => human::deny(args),
    Command::Ps(args) => ps::ps(args),
    Command::Kill(args) => ps::kill(args),
    Command::Mem(args) => mem::run(args),
    Command::Resume(args) => resume::resume(args),
    Command::Serve(args) => resume::serve(args),
    Command::Rollback(args) => resume::rollback(args),
    Command::Tool(args) => tool::run(args),
  };
  ExitCode::from(code)
}

/// Prints a usage error and returns its exit code.
pub(crate) fn usage_error(message: impl std::fmt::Display) -> u8 {
  eprintln!("error: {message}");
  exit::USAGE
}
