//! `alos image add FILE` and `alos image ls`: the AgentImages of a state directory.

use std::path::PathBuf;

use clap::Args;
use clap::Subcommand;
use serde_json::json;

use super::builtin_images;
use super::exit;
use super::location::Location;
use super::usage_error;
use crate::kernel::image::Image;
use crate::kernel::image::Manifest;
use crate::provider::clock::rfc3339;
use crate::provider::clock::Clock;
use crate::provider::clock::SystemClock;
use crate::provider::human::printable;
use crate::store::images::Added;
use crate::store::images::ImageRow;
use crate::store::Db;
use crate::store::StoreError;

#[derive(Args, Debug)]
pub struct ImageArgs {
  #[command(subcommand)]
  action: Action,
}

#[derive(Subcommand, Debug)]
enum Action {
  /// Check an image manifest (TOML) and store it under its name and version.
  Add(AddArgs),
  /// List the stored images, every version.
  Ls(LsArgs),
}

#[derive(Args, Debug)]
#[command(after_help = "\
Examples:
  alos image add examples/image/image.toml
  alos spawn hello-image --goal 'greet the workspace'

A manifest names its entry script (relative to the manifest's directory), its tools, a
capability ceiling and the grants given at spawn (within the ceiling), ask/deny rules and
limits. Every problem found is listed, and nothing is stored unless there are none.
A version, once added, always means the same content: re-adding it unchanged does nothing,
and adding other content under it is refused.")]
pub struct AddArgs {
  /// The image manifest, e.g. image.toml.
  file: PathBuf,
  /// Print one JSON object describing the stored image.
  #[arg(long)]
  json: bool,
  #[command(flatten)]
  location: Location,
}

#[derive(Args, Debug)]
pub struct LsArgs {
  /// One JSON array.
  #[arg(long)]
  json: bool,
  #[command(flatten)]
  location: Location,
}

pub fn run(args: ImageArgs) -> u8 {
  match args.action {
    Action::Add(args) => add(args),
    Action::Ls(args) => ls(args),
  }
}

fn add(args: AddArgs) -> u8 {
  let image = match Image::load(&args.file) {
    Ok(image) => image,
    Err(e) => return usage_error(e),
  };
  let db = match args.location.state_dir().and_then(|dir| {
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create state directory {}: {e}", dir.display()))?;
    Db::open(&dir).map_err(|e| e.to_string())
  }) {
    Ok(db) => db,
    Err(e) => return usage_error(e),
  };
  let row = ImageRow {
    name: image.manifest.name.clone(),
    version: image.manifest.version.clone(),
    hash: image.hash.clone(),
    manifest: image.text.clone(),
    dir: image.dir.display().to_string(),
    added_ms: SystemClock.now_ms(),
  };
  let added = match db.add_image(&row) {
    Ok(added) => added,
    Err(StoreError::Invalid(e)) => return usage_error(e),
    Err(e) => {
      eprintln!("error: {e}");
      return exit::SCRIPT_ERROR;
    }
  };
  if args.json {
    let out = json!({
      "name": row.name,
      "version": row.version,
      "hash": row.hash,
      "entry": image.manifest.entry,
      "dir": row.dir,
      "added": added == Added::New,
    });
    println!("{out}");
  } else if added == Added::New {
    println!("added {} ({})", image.id(), image.hash);
  } else {
    println!("already added {} ({}), unchanged", image.id(), image.hash);
  }
  exit::OK
}

fn ls(args: LsArgs) -> u8 {
  let dir = match args.location.state_dir() {
    Ok(dir) => dir,
    Err(e) => return usage_error(e),
  };
  // No state yet means no images, not an error.
  let rows = if dir.join("alos.db").is_file() {
    match Db::open(&dir).and_then(|db| db.images()) {
      Ok(rows) => rows,
      Err(e) => {
        eprintln!("error: {e}");
        return exit::SCRIPT_ERROR;
      }
    }
  } else {
    Vec::new()
  };
  let manifests: Vec<Option<Manifest>> = rows.iter().map(|row| Manifest::check(&row.manifest, None).ok()).collect();
  // Built-in images follow the added ones; an added image of the same name hides one.
  let builtins: Vec<_> =
    builtin_images::all().iter().filter(|b| !rows.iter().any(|r| r.name == b.name)).map(|b| (b, b.manifest())).collect();
  if args.json {
    let added = rows.iter().zip(&manifests).map(|(row, manifest)| {
      json!({
        "name": row.name,
        "version": row.version,
        "hash": row.hash,
        "entry": manifest.as_ref().map(|m| m.entry.clone()),
        "description": manifest.as_ref().and_then(|m| m.description.clone()),
        "dir": row.dir,
        "added_ms": row.added_ms,
        "added": rfc3339(row.added_ms),
        "builtin": false,
      })
    });
    let builtin = builtins.iter().map(|(b, manifest)| {
      json!({
        "name": b.name,
        "version": manifest.version,
        "hash": b.hash(),
        "entry": manifest.entry,
        "description": manifest.description,
        "dir": null,
        "added_ms": null,
        "added": null,
        "builtin": true,
      })
    });
    println!("{}", serde_json::Value::Array(added.chain(builtin).collect()));
    return exit::OK;
  }
  if rows.is_empty() {
    println!("no images added (add one with `alos image add FILE`); built-in images:");
  }
  let mut table = vec![["NAME", "VERSION", "HASH", "ENTRY", "ADDED"].map(String::from)];
  for (row, manifest) in rows.iter().zip(&manifests) {
    let hash = row.hash.get(..19).unwrap_or(&row.hash).to_string();
    let entry = manifest.as_ref().map_or("?".to_string(), |m| printable(&m.entry));
    table.push([row.name.clone(), row.version.clone(), hash, entry, rfc3339(row.added_ms)]);
  }
  for (b, manifest) in &builtins {
    let hash = b.hash();
    let hash = hash.get(..19).unwrap_or(&hash).to_string();
    table.push([b.name.to_string(), manifest.version.clone(), hash, manifest.entry.clone(), "built-in".to_string()]);
  }
  let widths: Vec<usize> = (0..5).map(|i| table.iter().map(|r| r[i].chars().count()).max().unwrap_or(0)).collect();
  for row in table {
    let cells: Vec<String> = row.iter().zip(&widths).map(|(cell, width)| format!("{cell:<width$}")).collect();
    println!("{}", cells.join("  ").trim_end());
  }
  exit::OK
}
