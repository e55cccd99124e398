//! Time as a provider: the host's wall clock, or a virtual clock for tests and
//! deterministic runs, on which sleeps and deadlines pass at once.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::time::Duration;
use std::time::SystemTime;
use std::time::UNIX_EPOCH;

pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send>>;

pub trait Clock: Send + Sync {
  /// Milliseconds since the Unix epoch.
  fn now_ms(&self) -> u64;

  /// Resolves when the clock reads `at_ms` or later.
  fn sleep_until(&self, at_ms: u64) -> Sleep;

  /// Whether waiting costs no real time (a virtual clock): a process then never
  /// hibernates to wait for this clock, since no host loop would advance it.
  fn is_virtual(&self) -> bool {
    false
  }
}

/// The host's wall clock.
pub struct SystemClock;

impl Clock for SystemClock {
  fn now_ms(&self) -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
  }

  fn sleep_until(&self, at_ms: u64) -> Sleep {
    let left = at_ms.saturating_sub(self.now_ms());
    Box::pin(tokio::time::sleep(Duration::from_millis(left)))
  }
}

/// A clock that only moves when something waits on it: a sleep or a deadline moves it
/// forward to its end at once. Runs on it are deterministic and take no real time.
pub struct VirtualClock {
  now: AtomicU64,
}

impl VirtualClock {
  /// 2026-01-01T00:00:00Z, the default start of virtual runs.
  pub const EPOCH_MS: u64 = 1_767_225_600_000;

  pub fn starting_at(ms: u64) -> VirtualClock {
    VirtualClock { now: AtomicU64::new(ms) }
  }

  /// Moves the clock forward (never back) to `ms`.
  pub fn advance_to(&self, ms: u64) {
    self.now.fetch_max(ms, Ordering::SeqCst);
  }
}

impl Clock for VirtualClock {
  fn now_ms(&self) -> u64 {
    self.now.load(Ordering::SeqCst)
  }

  fn sleep_until(&self, at_ms: u64) -> Sleep {
    self.advance_to(at_ms);
    Box::pin(std::future::ready(()))
  }

  fn is_virtual(&self) -> bool {
    true
  }
}

/// Formats epoch milliseconds as RFC 3339 UTC with milliseconds.
pub fn rfc3339(ms: u64) -> String {
  humantime::format_rfc3339_millis(UNIX_EPOCH + std::time::Duration::from_millis(ms)).to_string()
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn a_virtual_sleep_moves_the_clock_and_takes_no_time() {
    let clock = VirtualClock::starting_at(VirtualClock::EPOCH_MS);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(clock.sleep_until(VirtualClock::EPOCH_MS + 3_600_000));
    assert_eq!(clock.now_ms(), VirtualClock::EPOCH_MS + 3_600_000);
    // A deadline in the past does not move it back.
    rt.block_on(clock.sleep_until(VirtualClock::EPOCH_MS));
    assert_eq!(clock.now_ms(), VirtualClock::EPOCH_MS + 3_600_000);
    assert_eq!(rfc3339(VirtualClock::EPOCH_MS), "2026-01-01T00:00:00.000Z");
  }
}
