//! `alos mem`: Object Memory from a terminal. `ls` and `get` read any namespace (the
//! human at the terminal owns the state directory); `put` is a human's write, checked
//! like a process's and recorded in the audit log with actor `human`.

use clap::Args;
use clap::Subcommand;

use super::exit;
use super::location::Location;
use super::usage_error;
use crate::kernel::capability::Capability;
use crate::kernel::capability::Kind;
use crate::kernel::capability::Request;
use crate::kernel::error::SyscallError;
use crate::kernel::human_name;
use crate::kernel::memory::put_as_human;
use crate::kernel::memory::PutArgs;
use crate::kernel::memory::LIST_VALUE_BYTES;
use crate::provider::clock::rfc3339;
use crate::provider::clock::Clock;
use crate::provider::clock::SystemClock;
use crate::provider::human::printable;
use crate::store::memory::MemEntry;
use crate::store::Db;

/// Most objects `alos mem ls` shows.
const LS_LIMIT: usize = 10_000;

#[derive(Args, Debug)]
#[command(after_help = "\
Examples:
  alos mem ls                          every object of every namespace
  alos mem ls 'team/*' --prefix notes/ namespaces matching a glob, keys starting with notes/
  alos mem get team/x plan --json
  alos mem put team/x plan '{\"step\": 2}' --if-version 1")]
pub struct MemArgs {
  #[command(subcommand)]
  action: Action,
  #[command(flatten)]
  location: Location,
}

#[derive(Subcommand, Debug)]
enum Action {
  /// List objects (values up to 16 KiB are shown with --json).
  Ls {
    /// A namespace, or a namespace glob as in `mem.read:NS` (`team/*`, `proc/**`); default all.
    ns: Option<String>,
    /// Only keys starting with this (exact, case-sensitive).
    #[arg(long, default_value = "")]
    prefix: String,
    /// One JSON array.
    #[arg(long)]
    json: bool,
  },
  /// Show one object.
  Get {
    ns: String,
    key: String,
    /// The whole object as JSON.
    #[arg(long)]
    json: bool,
  },
  /// Write one object as a human (recorded in the audit log).
  Put {
    ns: String,
    key: String,
    /// The value, as JSON (a string needs its quotes: '"text"').
    value: String,
    /// The object's type name.
    #[arg(long = "type", value_name = "T", default_value = "json")]
    type_name: String,
    /// Write only if the object is at this version (0: only if it does not exist).
    #[arg(long, value_name = "N")]
    if_version: Option<u64>,
  },
}

pub fn run(args: MemArgs) -> u8 {
  let state_dir = match args.location.state_dir() {
    Ok(dir) => dir,
    Err(e) => return usage_error(e),
  };
  // Reading needs state that exists; a human may seed memory before the first run.
  let open = || {
    if !state_dir.join("alos.db").is_file() {
      return Err(format!("no alos state in {} (pass the --workspace or --state the agent runs with)", state_dir.display()));
    }
    Db::open(&state_dir).map_err(|e| e.to_string())
  };
  match args.action {
    Action::Ls { ns, prefix, json } => match open() {
      Ok(db) => ls(&db, ns.as_deref(), &prefix, json),
      Err(e) => usage_error(e),
    },
    Action::Get { ns, key, json } => match open() {
      Ok(db) => get(&db, &ns, &key, json),
      Err(e) => usage_error(e),
    },
    Action::Put { ns, key, value, type_name, if_version } => {
      let value = match serde_json::from_str(&value) {
        Ok(value) => value,
        Err(e) => return usage_error(format!("VALUE is not JSON ({e}); a string needs quotes, as in '\"text\"'")),
      };
      if let Err(e) = std::fs::create_dir_all(&state_dir) {
        return usage_error(format!("cannot create state directory {}: {e}", state_dir.display()));
      }
      let args = PutArgs { key, value, type_name: Some(type_name), ns: None, if_version };
      match put_as_human(&state_dir, &ns, &args, &human_name(), SystemClock.now_ms()) {
        Ok(written) => {
          println!("{ns} {} version {}", printable(&args.key), written["version"]);
          exit::OK
        }
        Err(e @ (SyscallError::InvalidArgument(_) | SyscallError::LimitExceeded(_))) => usage_error(e),
        Err(e) => {
          eprintln!("error: {e}");
          exit::SCRIPT_ERROR
        }
      }
    }
  }
}

fn ls(db: &Db, ns: Option<&str>, prefix: &str, json: bool) -> u8 {
  let listed = match ns {
    None => db.mem_list(None, prefix, LS_LIMIT, LIST_VALUE_BYTES).map_err(|e| e.to_string()),
    Some(glob) => {
      // The namespace matches as a capability's would, so `ls` shows what `mem.read:NS` reads.
      let pattern = match Capability::new(Kind::MemRead, Some(glob)) {
        Ok(pattern) => pattern,
        Err(e) => return usage_error(format!("NS {glob:?} is not a namespace or namespace glob: {}", e.reason)),
      };
      let mut listed = Vec::new();
      let namespaces = match db.mem_namespaces() {
        Ok(namespaces) => namespaces,
        Err(e) => return failed(e),
      };
      for ns in namespaces.iter().filter(|ns| pattern.covers(&Request::new(Kind::MemRead, ns.as_str()))) {
        match db.mem_list(Some(ns), prefix, LS_LIMIT - listed.len(), LIST_VALUE_BYTES) {
          Ok(entries) => listed.extend(entries),
          Err(e) => return failed(e),
        }
        if listed.len() >= LS_LIMIT {
          break;
        }
      }
      Ok(listed)
    }
  };
  let listed: Vec<MemEntry> = match listed {
    Ok(listed) => listed,
    Err(e) => return failed(e),
  };
  if json {
    println!("{}", serde_json::to_string(&listed).unwrap_or_default());
    return exit::OK;
  }
  if listed.is_empty() {
    println!("no objects");
  }
  for e in &listed {
    println!(
      "{}  {}  {}  v{}  {} B  {}  {}",
      e.ns,
      printable(&e.key),
      printable(&e.type_name),
      e.version,
      e.size,
      printable(&e.creator),
      rfc3339(e.updated_ms)
    );
  }
  if listed.len() >= LS_LIMIT {
    eprintln!("(showing the first {LS_LIMIT}; narrow with NS or --prefix)");
  }
  exit::OK
}

fn get(db: &Db, ns: &str, key: &str, json: bool) -> u8 {
  let object = match db.mem_get(ns, key) {
    Ok(Some(object)) => object,
    Ok(None) => {
      eprintln!("error: there is no object {} in namespace {}", printable(&format!("{key:?}")), printable(ns));
      return exit::SCRIPT_ERROR;
    }
    Err(e) => return failed(e),
  };
  if json {
    println!("{}", serde_json::to_string(&object).unwrap_or_default());
    return exit::OK;
  }
  println!(
    "{} {}  type {}  version {}  created by {} at {}  updated {}",
    object.ns,
    printable(&object.key),
    printable(&object.type_name),
    object.version,
    printable(&object.creator),
    rfc3339(object.created_ms),
    rfc3339(object.updated_ms)
  );
  // Compact JSON is one line; `printable` escapes what serde_json leaves raw (C1, bidi).
  println!("{}", printable(&object.value.to_string()));
  exit::OK
}

fn failed(e: impl std::fmt::Display) -> u8 {
  eprintln!("error: {e}");
  exit::SCRIPT_ERROR
}
