//! The deno_core embedding: isolates on their own threads, under limits, loading
//! TypeScript through a confined module loader. The engine knows how to run a script;
//! it decides nothing about authority — every op goes to the broker.

pub mod analysis;
pub mod builtins;
pub mod isolate;
pub mod launcher;
pub mod loader;
pub mod mock;
pub mod tool;
pub mod tool_host;
pub mod tool_test;

pub use isolate::Isolate;
pub use isolate::IsolateLimits;
pub use isolate::IsolateSpec;
pub use isolate::Outcome;
pub use isolate::Stopper;
pub use isolate::Termination;
pub use launcher::IsolateLauncher;
