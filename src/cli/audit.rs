//! `alos audit`: show the audit log; `alos audit verify`: check its hash chain.

use clap::Args;
use clap::Subcommand;

use super::exit;
use super::location::Location;
use super::usage_error;
use crate::kernel::audit;
use crate::kernel::audit::Record;
use crate::provider::human::printable;

#[derive(Args, Debug)]
#[command(after_help = "\
Examples:
  alos audit                 every record, oldest first
  alos audit --pid p1b76209d --json
  alos audit verify          exit 0 if the chain is intact; else names the first bad record")]
pub struct AuditArgs {
  #[command(subcommand)]
  action: Option<Action>,

  /// Only records of this process or its descendants.
  #[arg(long, value_name = "PID")]
  pid: Option<String>,

  /// One JSON record per line.
  #[arg(long)]
  json: bool,

  #[command(flatten)]
  location: Location,
}

#[derive(Subcommand, Debug)]
enum Action {
  /// Check that no record was edited, dropped, inserted or reordered.
  Verify,
}

pub fn run(args: AuditArgs) -> u8 {
  let state = match args.location.state_dir() {
    Ok(dir) => dir,
    Err(e) => return usage_error(e),
  };
  let path = state.join("alos.db");
  if !path.is_file() {
    return usage_error(format!("no state database at {} (has anything run with this --state?)", path.display()));
  }
  let lines = match crate::store::Db::open(&state).and_then(|db| db.audit_lines()) {
    Ok(lines) => lines,
    Err(e) => {
      eprintln!("error: cannot read the audit log: {e}");
      return exit::SCRIPT_ERROR;
    }
  };
  match args.action {
    Some(Action::Verify) => match audit::verify(&lines) {
      Ok(summary) => {
        println!("{}: {} audit records, chain intact (head {})", path.display(), summary.records, summary.head);
        exit::OK
      }
      Err(broken) => {
        eprintln!("{}: audit chain broken at record {}: {}", path.display(), broken.line, broken.reason);
        exit::SCRIPT_ERROR
      }
    },
    None => show(&lines, args.pid.as_deref(), args.json),
  }
}

fn show(lines: &[String], pid: Option<&str>, json: bool) -> u8 {
  for (index, line) in lines.iter().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
    let record: Record = match serde_json::from_str(line) {
      Ok(record) => record,
      Err(e) => {
        eprintln!("error: audit record {} is not valid ({e}); run `alos audit verify`", index + 1);
        return exit::SCRIPT_ERROR;
      }
    };
    if pid.is_some_and(|pid| !record.entry.lineage.iter().any(|p| p == pid)) {
      continue;
    }
    if json {
      println!("{line}");
      continue;
    }
    let e = &record.entry;
    let decision = match (&e.decided_by, e.decision) {
      (Some(by), decision) => format!("{decision:?} by {by}").to_lowercase(),
      (None, audit::Verdict::None) => "-".to_string(),
      (None, decision) => format!("{decision:?}").to_lowercase(),
    };
    println!(
      "{:>6} {} {} {} {} {} -> {}",
      record.seq,
      e.time,
      e.pid,
      e.syscall,
      printable(e.resource.as_deref().unwrap_or("-")),
      printable(&decision),
      printable(&e.outcome)
    );
  }
  exit::OK
}

