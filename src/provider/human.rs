//! The human channel: how a waiting request reaches a person. Answers always go
//! through the state database, whichever channel delivered the question, so a request
//! can be answered from this terminal or any other.

use std::io::BufRead;
use std::io::Write;
use std::sync::Arc;

use crate::store::human::Answer;
use crate::store::human::HumanRequest;
use crate::store::human::RequestKind;
use crate::store::Db;

pub trait HumanChannel: Send + Sync {
  /// A request is waiting for a human.
  fn request(&self, request: &HumanRequest);
}

/// Escapes what could drive a terminal: control characters (ANSI escapes, `\r`) and
/// the bidirectional-text overrides that make text read differently than it is.
pub fn printable(text: &str) -> String {
  let bidi = |c: char| matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}');
  text.chars().flat_map(|c| if c.is_control() || bidi(c) { c.escape_unicode().collect::<Vec<_>>() } else { vec![c] }).collect()
}

/// The command that answers `request` from another terminal.
pub fn answer_hint(request: &HumanRequest) -> String {
  match request.kind {
    RequestKind::Approval => format!("alos approve {0} [--process|--always]  or  alos deny {0} [--reason TEXT]", request.id),
    RequestKind::Question => format!("alos approve {0} --answer VALUE  or  alos deny {0}", request.id),
  }
}

/// Tells the operator on stderr what is waiting and which command answers it.
pub struct QueueNotice;

impl HumanChannel for QueueNotice {
  fn request(&self, request: &HumanRequest) {
    eprintln!(
      "alos: {} is waiting for a human ({}): {}\n      answer with: {}",
      request.pid,
      request.id,
      printable(&request.detail),
      answer_hint(request)
    );
  }
}

/// Asks on the controlling terminal (`/dev/tty`), from a thread of its own; the answer
/// is written to the database like any other. Without a terminal it falls back to the
/// queue notice.
pub struct Terminal {
  pub db: Arc<Db>,
  pub user: String,
  pub clock: Arc<dyn super::clock::Clock>,
}

impl HumanChannel for Terminal {
  fn request(&self, request: &HumanRequest) {
    let tty = std::fs::OpenOptions::new().read(true).write(true).open("/dev/tty");
    let Ok(tty) = tty else {
      QueueNotice.request(request);
      return;
    };
    let (db, user, clock, request) = (self.db.clone(), self.user.clone(), self.clock.clone(), request.clone());
    std::thread::spawn(move || {
      let mut out = &tty;
      let prompt = match request.kind {
        RequestKind::Approval => "allow [o]nce, for this [p]rocess, [a]lways, or [d]eny? ",
        RequestKind::Question => "answer (empty to decline): ",
      };
      let _ = write!(
        out,
        "\nalos: {} asks ({}): {}\n  (or from another terminal: {})\n{prompt}",
        request.pid,
        request.id,
        printable(&request.detail),
        answer_hint(&request)
      );
      let mut line = String::new();
      if std::io::BufReader::new(&tty).read_line(&mut line).is_err() {
        return;
      }
      let line = line.trim();
      let answer = match (request.kind, line) {
        (RequestKind::Approval, "o" | "once") => Answer::Approve { scope: "once".into() },
        (RequestKind::Approval, "p" | "process") => Answer::Approve { scope: "process".into() },
        (RequestKind::Approval, "a" | "always") => Answer::Approve { scope: "always".into() },
        (RequestKind::Question, value) if !value.is_empty() => Answer::Value(value.to_string()),
        _ => Answer::Deny { reason: Some("declined at the terminal".into()) },
      };
      // Another terminal may have answered first; then this answer is void.
      let _ = db.answer_request(&request.id, &answer, &user, clock.now_ms());
    });
  }
}
