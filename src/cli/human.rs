//! The human side of the queue: `alos inbox`, `alos approve`, `alos deny`. Any terminal
//! with access to the state directory can answer.

use clap::Args;

use super::exit;
use super::location::Location;
use super::usage_error;
use crate::kernel::human::answer;
use crate::kernel::human_name;
use crate::provider::clock::rfc3339;
use crate::provider::clock::Clock;
use crate::provider::clock::SystemClock;
use crate::provider::human::answer_hint;
use crate::provider::human::printable;
use crate::store::human::Answer;
use crate::store::Db;

#[derive(Args, Debug)]
#[command(after_help = "Example:\n  alos inbox\n  alos approve r3 --once")]
pub struct InboxArgs {
  /// One JSON array of the pending requests.
  #[arg(long)]
  json: bool,
  #[command(flatten)]
  location: Location,
}

#[derive(Args, Debug)]
#[command(after_help = "\
Examples:
  alos approve r3                 allow this exact operation once
  alos approve r3 --process       allow it for the rest of the process
  alos approve r3 --always        allow it from now on (adds a rule)
  alos approve r4 --answer yes    answer a question")]
pub struct ApproveArgs {
  /// The request id, as `alos inbox` shows it (r3).
  request: String,
  /// Allow this exact operation once (the default).
  #[arg(long, group = "scope")]
  once: bool,
  /// Allow it for the rest of the requesting process.
  #[arg(long, group = "scope")]
  process: bool,
  /// Allow it always: persists an allow rule for its capability.
  #[arg(long, group = "scope")]
  always: bool,
  /// The answer to a question.
  #[arg(long, value_name = "VALUE", conflicts_with = "scope")]
  answer: Option<String>,
  #[command(flatten)]
  location: Location,
}

#[derive(Args, Debug)]
pub struct DenyArgs {
  /// The request id (r3).
  request: String,
  /// Why; the process sees it in the error.
  #[arg(long, value_name = "TEXT")]
  reason: Option<String>,
  #[command(flatten)]
  location: Location,
}

fn state_db(location: &Location) -> Result<(std::path::PathBuf, Db), String> {
  let dir = location.state_dir()?;
  if !dir.join("alos.db").is_file() {
    return Err(format!("no alos state in {} (pass the --workspace or --state the agent runs with)", dir.display()));
  }
  let db = Db::open(&dir).map_err(|e| e.to_string())?;
  Ok((dir, db))
}

pub fn inbox(args: InboxArgs) -> u8 {
  let pending = match state_db(&args.location).and_then(|(_, db)| db.pending_requests().map_err(|e| e.to_string())) {
    Ok(pending) => pending,
    Err(e) => return usage_error(e),
  };
  if args.json {
    println!("{}", serde_json::to_string(&pending).unwrap_or_default());
    return exit::OK;
  }
  if pending.is_empty() {
    println!("no pending requests");
  }
  for request in pending {
    let kind = match request.kind {
      crate::store::human::RequestKind::Approval => "approval",
      crate::store::human::RequestKind::Question => "question",
    };
    println!("{}  {}  {kind}  {}", request.id, request.pid, printable(&request.detail));
    if let Some(choices) = &request.choices {
      println!("    choices: {}", printable(&choices.join(" | ")));
    }
    println!(
      "    lineage {} · asked {}{}",
      request.lineage.join(" > "),
      rfc3339(request.created_ms),
      request.deadline_ms.map(|d| format!(" · deadline {}", rfc3339(d))).unwrap_or_default()
    );
    println!("    answer: {}", answer_hint(&request));
  }
  exit::OK
}

fn respond(location: &Location, id: &str, response: Answer) -> u8 {
  let dir = match state_db(location) {
    Ok((dir, _)) => dir,
    Err(e) => return usage_error(e),
  };
  match answer(&dir, id, response, &human_name(), SystemClock.now_ms()) {
    Ok(answered) => {
      println!("{} {} ({})", answered.id, answered.status, printable(&answered.detail));
      exit::OK
    }
    Err(e) => {
      eprintln!("error: {e}");
      exit::SCRIPT_ERROR
    }
  }
}

pub fn approve(args: ApproveArgs) -> u8 {
  // `--once` is the default; the flag exists so a script can say so.
  let once = args.once;
  let response = match (&args.answer, args.process, args.always) {
    (Some(value), _, _) => Answer::Value(value.clone()),
    (None, true, _) => Answer::Approve { scope: "process".into() },
    (None, _, true) => Answer::Approve { scope: "always".into() },
    (None, false, false) => Answer::Approve { scope: "once".into() },
  };
  debug_assert!(!once || matches!(&response, Answer::Approve { scope } if scope == "once"));
  respond(&args.location, &args.request, response)
}

pub fn deny(args: DenyArgs) -> u8 {
  respond(&args.location, &args.request, Answer::Deny { reason: args.reason })
}
