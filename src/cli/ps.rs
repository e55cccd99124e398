//! `alos ps`: the processes of a state directory, from any terminal; `alos kill`.

use std::time::Duration;
use std::time::Instant;

use clap::Args;

use super::exit;
use super::location::Location;
use super::usage_error;
use crate::kernel::human_name;
use crate::kernel::lifecycle;
use crate::kernel::lifecycle::host_alive;
use crate::kernel::lifecycle::Killed;
use crate::provider::clock::rfc3339;
use crate::provider::clock::Clock;
use crate::provider::clock::SystemClock;
use crate::store::processes::ProcessRow;
use crate::store::Db;

#[derive(Args, Debug)]
#[command(after_help = "Examples:\n  alos ps --tree\n  alos ps --all --json")]
pub struct PsArgs {
  /// Show children under their parents.
  #[arg(long)]
  tree: bool,
  /// Include processes that have exited.
  #[arg(long)]
  all: bool,
  /// One JSON array.
  #[arg(long)]
  json: bool,
  #[command(flatten)]
  location: Location,
}

#[derive(Args, Debug)]
pub struct KillArgs {
  /// The process to end, with all its descendants.
  pid: String,
  #[command(flatten)]
  location: Location,
}

fn open(location: &Location) -> Result<Db, String> {
  let dir = location.state_dir()?;
  if !dir.join("alos.db").is_file() {
    return Err(format!("no alos state in {} (pass the --workspace or --state the agent runs with)", dir.display()));
  }
  Db::open(&dir).map_err(|e| e.to_string())
}

/// The state to show: a process whose host died without ending it is orphaned.
fn shown_state(row: &ProcessRow) -> String {
  if row.state != "exited" && !host_alive(row.host_pid) {
    return "orphaned (its alos host is gone)".into();
  }
  match (&row.state[..], &row.exit) {
    ("exited", Some(exit)) => format!("exited ({})", exit.get("status").and_then(|s| s.as_str()).unwrap_or("?")),
    (state, _) => state.to_string(),
  }
}

pub fn ps(args: PsArgs) -> u8 {
  let rows = match open(&args.location).and_then(|db| db.processes().map_err(|e| e.to_string())) {
    Ok(rows) => rows,
    Err(e) => return usage_error(e),
  };
  let rows: Vec<ProcessRow> = rows.into_iter().filter(|r| args.all || r.state != "exited").collect();
  if args.json {
    let shown: Vec<serde_json::Value> = rows
      .iter()
      .map(|r| {
        let mut v = serde_json::to_value(r).unwrap_or_default();
        v["shown_state"] = serde_json::json!(shown_state(r));
        v
      })
      .collect();
    println!("{}", serde_json::to_string(&shown).unwrap_or_default());
    return exit::OK;
  }
  println!("{:<12} {:<12} {:<34} {:<24} IMAGE", "PID", "PARENT", "STATE", "STARTED");
  let mut ordered: Vec<&ProcessRow> = rows.iter().collect();
  if args.tree {
    // Depth-first by lineage, so children follow their parents.
    ordered.sort_by(|a, b| a.lineage.cmp(&b.lineage));
  }
  for row in ordered {
    let indent = if args.tree { "  ".repeat(row.lineage.len().saturating_sub(1)) } else { String::new() };
    println!(
      "{:<12} {:<12} {:<34} {:<24} {}",
      format!("{indent}{}", row.pid),
      row.parent.as_deref().unwrap_or("-"),
      shown_state(row),
      rfc3339(row.started_ms),
      crate::provider::human::printable(&row.image)
    );
  }
  exit::OK
}

pub fn kill(args: KillArgs) -> u8 {
  let (dir, db) = match open(&args.location).and_then(|db| Ok((args.location.state_dir()?, db))) {
    Ok(opened) => opened,
    Err(e) => return usage_error(e),
  };
  if matches!(db.process(&args.pid), Ok(None)) {
    return usage_error(format!("there is no process {} in this state directory", args.pid));
  }
  match lifecycle::kill(&dir, &args.pid, &human_name(), SystemClock.now_ms()) {
    Ok(Killed::Orphan) => {
      println!("{} killed (its alos host was gone)", args.pid);
      exit::OK
    }
    Ok(Killed::Signalled(id)) => {
      let deadline = Instant::now() + Duration::from_secs(10);
      while Instant::now() < deadline {
        if db.signal_is_handled(id).unwrap_or(false) {
          println!("{} killed, with its descendants", args.pid);
          return exit::OK;
        }
        std::thread::sleep(Duration::from_millis(50));
      }
      eprintln!("error: the kill signal for {} was sent, but its host has not applied it yet", args.pid);
      exit::SCRIPT_ERROR
    }
    Err(e) => {
      eprintln!("error: {e}");
      exit::SCRIPT_ERROR
    }
  }
}
