//! What the benchmarks share (`mod common;` in each of `benches/*.rs`): environment
//! knobs, where temporary state goes, the kernel as the CLI opens it, the Deno peer's
//! binary, percentiles, and the markdown table of alos figures beside peers measured in
//! the same run.

// Each benchmark uses only some of these.
#![allow(dead_code)]

use std::path::Path;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;

use alos::engine::launcher::DEFAULT_MAX_ISOLATES;
use alos::engine::IsolateLauncher;
use alos::engine::IsolateLimits;
use alos::kernel::capability::Capability;
use alos::kernel::grant::GrantSource;
use alos::kernel::human::HumanMode;
use alos::kernel::policy::Policy;
use alos::kernel::Kernel;
use alos::kernel::KernelConfig;
use alos::provider::clock::SystemClock;

pub type Res<T> = Result<T, String>;

/// A kernel over `workspace` and `state_dir` as `alos run` opens it (default policy, the
/// host clock, no model, no isolate limits), with the engine's launcher installed.
pub fn open_kernel(workspace: &Path, state_dir: &Path, human: HumanMode) -> Res<Kernel> {
  let kernel = Kernel::open(KernelConfig {
    workspace: workspace.to_path_buf(),
    state_dir: state_dir.to_path_buf(),
    policy: Policy::default(),
    clock: Arc::new(SystemClock),
    human,
    shell_path: vec![],
    max_read_bytes: 64 << 20,
    model: None,
    default_model: None,
  })?;
  let limits = IsolateLimits { heap_bytes: None, wall_time: None };
  kernel.set_launcher(Arc::new(IsolateLauncher::new(limits, &[], DEFAULT_MAX_ISOLATES)));
  Ok(kernel)
}

/// `--allow` grants of `caps`.
pub fn cli_grants(caps: &[&str]) -> Res<Vec<(Capability, GrantSource)>> {
  caps.iter().map(|c| c.parse().map(|cap| (cap, GrantSource::Cli)).map_err(|e| format!("{c}: {e}"))).collect()
}

/// A numeric environment knob (`_` separators allowed), or `default`.
pub fn knob(name: &str, default: usize) -> usize {
  std::env::var(name).ok().and_then(|v| v.trim().replace('_', "").parse().ok()).unwrap_or(default)
}

/// Where temporary state goes: `ALOS_BENCH_DIR`, or `target/bench-tmp`.
pub fn bench_dir() -> PathBuf {
  let dir = std::env::var_os("ALOS_BENCH_DIR")
    .map(PathBuf::from)
    .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-tmp"));
  let _ = std::fs::create_dir_all(&dir);
  dir
}

pub fn io(e: std::io::Error) -> String {
  e.to_string()
}

/// The `deno` binary of the peers: `ALOS_BENCH_DENO` (`none` skips them), or the one
/// `scripts/bench` fetched into `target/bench-peers/`.
pub fn deno_binary() -> Res<PathBuf> {
  match std::env::var("ALOS_BENCH_DENO") {
    Ok(v) if v == "none" => Err("ALOS_BENCH_DENO=none".into()),
    Ok(v) => Ok(PathBuf::from(v)),
    Err(_) => {
      let cached = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-peers/deno");
      if !cached.exists() {
        return Err("no Deno binary (set ALOS_BENCH_DENO, or let scripts/bench fetch one)".into());
      }
      Ok(cached)
    }
  }
}

/// What `deno --version` says its version is (`?` when it says nothing readable).
pub fn deno_version(binary: &std::path::Path) -> Res<String> {
  let version = Command::new(binary)
    .arg("--version")
    .output()
    .map_err(|e| format!("cannot run {}: {e}", binary.display()))?;
  Ok(String::from_utf8_lossy(&version.stdout).split_whitespace().nth(1).unwrap_or("?").to_string())
}

pub fn percentile(values: &mut [f64], q: f64) -> f64 {
  if values.is_empty() {
    return f64::NAN;
  }
  values.sort_by(f64::total_cmp);
  let rank = ((values.len() as f64 * q).ceil() as usize).clamp(1, values.len());
  values[rank - 1]
}

pub fn mean(values: &[f64]) -> f64 {
  if values.is_empty() {
    return f64::NAN;
  }
  values.iter().sum::<f64>() / values.len() as f64
}

// ---------------------------------------------------------------------------------------
// The table

/// A figure and how to print it.
#[derive(Clone, Copy)]
pub struct Fig {
  pub value: f64,
  pub unit: &'static str,
  pub decimals: usize,
}

impl Fig {
  pub fn rate(value: f64, unit: &'static str) -> Fig {
    Fig { value, unit, decimals: 0 }
  }
  pub fn kib(value: f64) -> Fig {
    Fig { value, unit: "KiB", decimals: 1 }
  }
  pub fn ms(value: f64) -> Fig {
    Fig { value, unit: "ms", decimals: 1 }
  }
  /// Milliseconds with two decimals, for figures of a few ms or less.
  pub fn ms2(value: f64) -> Fig {
    Fig { value, unit: "ms", decimals: 2 }
  }
  /// Microseconds (the value is in µs).
  pub fn us(value: f64) -> Fig {
    Fig { value, unit: "µs", decimals: 1 }
  }
  pub fn secs(value: f64) -> Fig {
    Fig { value, unit: "s", decimals: 1 }
  }

  pub fn render(&self) -> String {
    if !self.value.is_finite() {
      return "n/a".into();
    }
    format!("{} {}", group_thousands(&format!("{:.*}", self.decimals, self.value)), self.unit)
  }
}

pub fn group_thousands(number: &str) -> String {
  let (int, frac) = number.split_once('.').map(|(i, f)| (i, Some(f))).unwrap_or((number, None));
  let (sign, digits) = int.strip_prefix('-').map(|d| ("-", d)).unwrap_or(("", int));
  let mut grouped = String::new();
  for (i, c) in digits.chars().enumerate() {
    if i > 0 && (digits.len() - i) % 3 == 0 {
      grouped.push(',');
    }
    grouped.push(c);
  }
  match frac {
    Some(f) => format!("{sign}{grouped}.{f}"),
    None => format!("{sign}{grouped}"),
  }
}

/// A ratio with two significant digits at least (0.63, 0.0081).
pub fn ratio(r: f64) -> String {
  let decimals = if r > 0.0 { (1 - r.log10().floor() as i64).max(2) as usize } else { 2 };
  format!("{r:.decimals$}")
}

#[derive(Default)]
pub struct Table {
  rows: Vec<[String; 5]>,
}

impl Table {
  /// A row; the ratio is alos / peer when both figures are there (in the same unit).
  pub fn row(&mut self, what: &str, alos: Fig, peer: &str, peer_fig: Option<Fig>) {
    let ratio = match peer_fig {
      Some(p) if p.value.is_finite() && p.value != 0.0 && alos.value.is_finite() => ratio(alos.value / p.value),
      _ => "—".into(),
    };
    self.rows.push([
      what.to_string(),
      alos.render(),
      peer.to_string(),
      peer_fig.map(|p| p.render()).unwrap_or_else(|| "—".into()),
      ratio,
    ]);
  }

  pub fn failed(&mut self, what: &str, error: &str) {
    self.rows.push([what.to_string(), format!("failed: {}", error.replace('|', "/")), "—".into(), "—".into(), "—".into()]);
  }

  pub fn render(&self) -> String {
    let mut out = String::from("| Measurement | alos | Peer (same run) | Peer | alos / peer |\n|---|---:|---|---:|---:|\n");
    for row in &self.rows {
      out.push_str(&format!("| {} |\n", row.join(" | ")));
    }
    out
  }
}
