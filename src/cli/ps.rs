//! `alos ps`: the processes of a state directory, from any terminal; `alos kill`.

use std::time::Duration;
use std::time::Instant;

use clap::Args;

use super::exit;
use super::location::Location;
use super::usage_error;
use crate::kernel::human_name;
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

/// Whether the `alos` hosting a process is still running.
fn host_alive(host_pid: u32) -> bool {
  rustix::process::Pid::from_raw(host_pid as i32).is_some_and(|pid| rustix::process::test_kill_process(pid).is_ok())
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
  let db = match open(&args.location) {
    Ok(db) => db,
    Err(e) => return usage_error(e),
  };
  let row = match db.process(&args.pid) {
    Ok(Some(row)) => row,
    Ok(None) => return usage_error(format!("there is no process {} in this state directory", args.pid)),
    Err(e) => return usage_error(e),
  };
  if row.state == "exited" {
    eprintln!("error: {} has already exited", row.pid);
    return exit::SCRIPT_ERROR;
  }
  let by = human_name();
  if !host_alive(row.host_pid) {
    // Nobody runs it: record the end directly.
    let mut ended = row.clone();
    ended.state = "exited".into();
    ended.exit = Some(serde_json::json!({ "status": "killed", "reason": format!("killed by {by} (its host was gone)") }));
    ended.ended_ms = Some(SystemClock.now_ms());
    return match db.upsert_process(&ended) {
      Ok(()) => {
        println!("{} killed (its alos host was gone)", row.pid);
        exit::OK
      }
      Err(e) => usage_error(e),
    };
  }
  let id = match db.send_signal(&row.pid, "cancel", &by, SystemClock.now_ms()) {
    Ok(id) => id,
    Err(e) => return usage_error(e),
  };
  let deadline = Instant::now() + Duration::from_secs(10);
  while Instant::now() < deadline {
    if db.signal_is_handled(id).unwrap_or(false) {
      println!("{} killed, with its descendants", row.pid);
      return exit::OK;
    }
    std::thread::sleep(Duration::from_millis(50));
  }
  eprintln!("error: the kill signal for {} was sent, but its host (pid {}) has not applied it yet", row.pid, row.host_pid);
  exit::SCRIPT_ERROR
}
