//! Portolan's web UI: the Leptos pages and components, and the server functions behind them. Compiled for the
//! browser (feature `hydrate`) and for the server (feature `ssr`). The types the browser shares live in
//! `model`; what only the server runs (database, services, mapper, testbed client) lives in `portolan_core`,
//! which only the `ssr` build links.

pub mod accounts;
pub mod keys;
pub mod nodes;
pub mod pages;
pub mod projects;
pub mod tokens;

#[cfg(feature = "ssr")]
pub mod request;

pub use model::{error, topology};
pub use pages::{App, shell};
