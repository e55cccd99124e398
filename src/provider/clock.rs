//! Time as a provider, so tests can run on a virtual clock.

use std::time::SystemTime;
use std::time::UNIX_EPOCH;

pub trait Clock: Send + Sync {
  /// Milliseconds since the Unix epoch.
  fn now_ms(&self) -> u64;
}

/// The host's wall clock.
pub struct SystemClock;

impl Clock for SystemClock {
  fn now_ms(&self) -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
  }
}

/// Formats epoch milliseconds as RFC 3339 UTC with milliseconds.
pub fn rfc3339(ms: u64) -> String {
  humantime::format_rfc3339_millis(UNIX_EPOCH + std::time::Duration::from_millis(ms)).to_string()
}
