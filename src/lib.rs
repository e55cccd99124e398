//! alos: a library-OS runtime for long-running, capability-controlled LLM agents.
//!
//! Layers, each depending only on the ones after it:
//! `cli` → `engine` → `alos_ops` (the op surface) → `kernel` → `store` / `provider`.
//! See ARCHITECTURE.md.

pub mod cli;
pub mod engine;
pub mod kernel;
pub mod provider;
pub mod store;
