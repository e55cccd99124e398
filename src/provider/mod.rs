//! The Resource Provider Substrate: the only code that touches the host.
//! The kernel decides; a provider performs.

pub mod clock;
pub mod fs;
pub mod human;
pub mod model;
pub mod net;
pub mod recording;
pub mod shell;
