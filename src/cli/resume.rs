//! `alos resume PID`: takes over a process tree whose `alos` is gone (killed, crashed,
//! rebooted) and finishes it here, replaying each process's journal; and `alos serve`,
//! the long-running host of a state directory.

use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering;
use std::time::Duration;

use clap::Args;

use super::exit;
use super::run::host;
use super::run::HostFlags;
use super::usage_error;
use crate::kernel::policy::Policy;

#[derive(Args, Debug)]
#[command(after_help = "\
Examples:
  alos resume p1b76209d                 finish it here, replaying what it already did
  alos resume p1b76209d --human queue --json

The process keeps the capabilities and policy it was started with: --allow, --ask,
--deny and --policy are refused here. A side effect that had begun but was not recorded
as done when its host died is not re-run: a human decides (alos inbox) to retry it,
skip it or abort.")]
pub struct ResumeArgs {
  /// The process to resume (its whole tree is resumed).
  pid: String,

  #[command(flatten)]
  host: HostFlags,
}

/// A resumed process gets no new authority from the command line.
fn refuse_new_authority(flags: &HostFlags, command: &str) -> Result<(), String> {
  if !flags.allow.is_empty() || !flags.ask.is_empty() || !flags.deny.is_empty() || flags.policy.is_some() {
    return Err(format!(
      "{command} takes no --allow, --ask, --deny or --policy: resumed processes keep the authority they were started with"
    ));
  }
  Ok(())
}

pub fn resume(args: ResumeArgs) -> u8 {
  if let Err(e) = refuse_new_authority(&args.host, "alos resume") {
    return usage_error(e);
  }
  let state_dir = match args.host.location.state_dir() {
    Ok(dir) => dir,
    Err(e) => return usage_error(e),
  };
  let row = match crate::store::Db::open(&state_dir).and_then(|db| db.process(&args.pid)) {
    Ok(Some(row)) => row,
    Ok(None) => return usage_error(format!("there is no process {} in {}", args.pid, state_dir.display())),
    Err(e) => return usage_error(e.to_string()),
  };
  let root = row.lineage.first().cloned().unwrap_or(row.pid.clone());
  let mut args = args;
  // The model it was started with, unless this host is given another.
  if args.host.model.is_none() {
    let recorded = row.spec.as_ref().and_then(|spec| spec.get("model")).and_then(|m| m.as_str());
    match recorded.map(super::run::parse_model).transpose() {
      Ok(model) => args.host.model = model,
      Err(e) => return usage_error(format!("the model {} was started with: {e}", args.pid)),
    }
  }
  host(&args.host, Policy::default(), |kernel| {
    let adopted = kernel.adopt(Some(std::slice::from_ref(&root)))?;
    if adopted.is_empty() {
      return Err(format!("{} has already exited; there is nothing to resume", args.pid));
    }
    Ok(root.clone())
  })
}

#[derive(Args, Debug)]
#[command(after_help = "\
Examples:
  alos rollback p1b76209d 3        back to the checkpoint libos.checkpoint() numbered 3

Restores the process's own Object Memory namespace, its journal up to the checkpoint
and its cwd, then resumes it here: what came after the checkpoint runs again. Not rolled
back: the audit log, grants (spent one-shot approvals stay spent, revoked grants stay
revoked), and side effects on the world, which are listed.")]
pub struct RollbackArgs {
  /// The process to roll back.
  pid: String,
  /// The checkpoint id (`libos.checkpoint()` returned it).
  checkpoint: i64,

  #[command(flatten)]
  host: HostFlags,
}

pub fn rollback(args: RollbackArgs) -> u8 {
  if let Err(e) = refuse_new_authority(&args.host, "alos rollback") {
    return usage_error(e);
  }
  let state_dir = match args.host.location.state_dir() {
    Ok(dir) => dir,
    Err(e) => return usage_error(e),
  };
  let now = crate::provider::clock::Clock::now_ms(&crate::provider::clock::SystemClock);
  match crate::kernel::hibernate::rollback(&state_dir, &args.pid, args.checkpoint, &crate::kernel::human_name(), now) {
    Ok(effects) if effects.is_empty() => eprintln!("rolled back {} to checkpoint {}", args.pid, args.checkpoint),
    Ok(effects) => {
      eprintln!("rolled back {} to checkpoint {}; these side effects after it cannot be undone:", args.pid, args.checkpoint);
      for effect in effects {
        eprintln!("  {effect}");
      }
    }
    Err(e) => return usage_error(e),
  }
  resume(ResumeArgs { pid: args.pid, host: args.host })
}

#[derive(Args, Debug)]
#[command(after_help = "\
Examples:
  alos serve                       host every unfinished process of ./.alos
  alos serve --state /srv/agents/.alos --max-isolates 16

At start it resumes the processes whose alos is gone; while it runs it wakes hibernated
processes on answers, timers and events, and takes over processes whose host dies.
SIGTERM or Ctrl-C stops it cleanly: side effects in progress are let finish (up to
10 s), everything else is left hibernated in the journal for the next `alos serve` or
`alos resume`.")]
pub struct ServeArgs {
  #[command(flatten)]
  host: HostFlags,
}

static STOPPING: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop_signal(_: libc::c_int) {
  STOPPING.store(true, Ordering::SeqCst);
}

pub fn serve(args: ServeArgs) -> u8 {
  if let Err(e) = refuse_new_authority(&args.host, "alos serve") {
    return usage_error(e);
  }
  // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
  unsafe {
    libc::signal(libc::SIGTERM, on_stop_signal as *const () as libc::sighandler_t);
    libc::signal(libc::SIGINT, on_stop_signal as *const () as libc::sighandler_t);
  }
  super::run::with_kernel(&args.host, Policy::default(), |kernel| {
    eprintln!("alos serve: hosting {} (pid {})", args.host.location.state_dir().map(|d| d.display().to_string()).unwrap_or_default(), std::process::id());
    while !STOPPING.load(Ordering::SeqCst) {
      match kernel.adopt(None) {
        Ok(roots) if !roots.is_empty() => eprintln!("alos serve: resumed {}", roots.join(", ")),
        Ok(_) => {}
        Err(e) => tracing::warn!("{e}"),
      }
      for _ in 0..10 {
        if STOPPING.load(Ordering::SeqCst) {
          break;
        }
        std::thread::sleep(Duration::from_millis(100));
      }
    }
    eprintln!("alos serve: stopping; in-flight work is journaled for the next host");
    kernel.suspend_all(Duration::from_secs(10));
    exit::OK
  })
}
