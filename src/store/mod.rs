//! Persistence. Nothing above this module writes state files or SQL.

pub mod audit_file;
pub mod db;
pub mod human;
pub mod processes;

pub use db::Db;
pub use db::StoreError;
