//! Portolan's shared crate: the web UI (Leptos components and routes), the server functions behind it, and
//! the types the browser and the server share. Server-only code (database, sessions, password hashing) sits in
//! `ssr` modules beside the server functions that use it and is compiled only with the `ssr` feature.

pub mod accounts;
pub mod auth;
pub mod error;
pub mod keys;
pub mod pages;
pub mod projects;
pub mod tokens;
pub mod topology;

#[cfg(feature = "ssr")]
pub mod audit;
#[cfg(feature = "ssr")]
pub mod db;
#[cfg(feature = "ssr")]
pub mod state;

pub use pages::{App, shell};
