//! The agent: the watchdog in every sliver (`portolan agent`). Bring-up (the portal, over SSH) installs the
//! `portolan` binary in the sliver, writes its [`bringup::AgentConfig`] and starts it; from then on the agent
//! only *pulls*: it fetches the sliver's [`protocol::Manifest`] from the portal (accounts with their SSH keys,
//! software, a startup command), applies it idempotently, and heartbeats with its status and the node's load.
//! A heartbeat's reply says when the manifest changed, and the agent fetches it again. No inbound connection
//! to a sliver is needed after bring-up.
//!
//! - [`protocol`]: what crosses the wire between agent and portal (`/agent/v1/…`);
//! - [`bringup`]: the few commands bring-up runs in a sliver over SSH, in one place, so that the portal that
//!   sends them and the reference testbed's simulated slivers that answer them agree on every byte;
//! - [`host`]: the [`Host`] a manifest is applied to, and [`RealHost`], a real sliver (its home, its
//!   processes, the node's `/proc`);
//! - [`runtime`]: the agent's loop ([`run`]): fetch, apply, heartbeat, back off while the portal is away;
//! - [`daemon`]: what `portolan agent --config F [--detach | --stop]` does, for the binary's command line.
//!
//! The agent's runtime (its loop, the host it applies the manifest to) is written against a [`Host`] so that
//! the reference testbed runs the same logic in-process for its simulated slivers, without ever running a
//! user's command on the machine.

pub mod bringup;
pub mod daemon;
pub mod host;
pub mod protocol;
pub mod runtime;

pub use host::{Host, RealHost};
pub use runtime::{AGENT_VERSION, AgentError, run};
