//! Persistence. Nothing above this module writes state files or SQL.

pub mod checkpoints;
pub mod db;
pub mod events;
pub mod human;
pub mod images;
pub mod journal;
pub mod memory;
pub mod processes;
pub mod tools;

pub use db::Db;
pub use db::StoreError;

/// The content address of a blob.
pub fn blob_hash(bytes: &[u8]) -> String {
  use sha2::Digest;
  format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}
