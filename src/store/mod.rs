//! Persistence. Nothing above this module writes state files.

pub mod audit_file;
