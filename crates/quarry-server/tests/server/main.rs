#![allow(clippy::unwrap_used)]
//! The server's integration tests: one binary, modules by concern.

mod access;
mod api;
mod browser;
mod common;
mod eval;
mod openai;
mod openapi;
mod webapp;
