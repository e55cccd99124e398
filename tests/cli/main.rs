//! Integration tests that drive the real `alos` binary on real files.
//! One test binary (modules by topic) keeps link time low.

mod agent_loop;
mod audit;
mod builtin_tools;
mod common;
mod confinement;
mod demos;
mod durable;
mod events;
mod examples;
mod fake_openai;
mod human;
mod images;
mod limits;
mod memory;
mod model;
mod net;
mod processes;
mod ps;
mod run;
mod scripts;
mod shell;
mod tool_test;
mod tools;
