//! Portolan's server-side domain: everything the portal does that is not HTTP. The web UI's server functions
//! (`app`, feature `ssr`) and the binary's REST handlers and commands (`server`) both call into it, so the
//! pages, the API and scripts share one implementation.
//!
//! - [`db`]: connection, entities, the session store, and [`db::claim`], the claim-and-lease mechanism every
//!   reconciler uses;
//! - services per domain, each taking the authenticated [`auth::Caller`]: [`accounts`], [`projects`],
//!   [`keys`], [`tokens`]; [`audit`] records what they change in the same transaction;
//! - [`mapper`]: places a topology on nodes (MILP);
//! - [`nodes`]: sites, nodes and paths as discovery reads them, node identity, admission, the mapper's world;
//! - [`slivers`]: slivers brought up over [`ssh`] (pinned host keys) with an agent in each, the agent's API
//!   (manifest, heartbeats), health; [`liveness`]: the service sliver on every node, the pools and their
//!   re-test schedule;
//! - [`testbed`]: the portal's side of the testbed: one trait, its PLCAPI client, error classification;
//! - [`clock`]: the portal's time (real, scaled, or driven by hand in tests);
//! - [`supervisor`]: runs the background loops, restarting them when they fail;
//! - [`blocking`]: CPU-heavy work (password hashing, mapping) off the async workers.

pub mod accounts;
pub mod audit;
pub mod auth;
pub mod blocking;
pub mod clock;
pub mod db;
pub mod keys;
pub mod liveness;
pub mod mapper;
pub mod nodes;
pub mod projects;
pub mod slivers;
pub mod ssh;
pub mod state;
pub mod supervisor;
pub mod testbed;
pub mod throttle;
pub mod tokens;

pub use model::error;
