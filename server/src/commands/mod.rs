//! The binary's commands beyond `serve`: `map` on files, and the reference testbed that `serve` starts
//! in-process when no testbed URL is configured.

pub mod map;

use crate::config::Config;
use anyhow::Context;
use reference_testbed::cli::Embedded;

/// The embedded testbed's admin account, which the portal acts as (see `reference_testbed::cli::embedded`).
pub const EMBEDDED_ADMIN: &str = "portolan@portolan.local";

/// The in-process reference testbed (PLCAPI and its slivers' SSH endpoints), unless `testbed_url` names
/// another testbed.
pub async fn embedded_testbed(config: &Config) -> anyhow::Result<Option<Embedded>> {
    if config.testbed_url.is_some() {
        return Ok(None);
    }
    let embedded = reference_testbed::cli::embedded(
        &config.testbed_profile,
        config.testbed_seed,
        config.testbed_time_scale,
        config.testbed_listen,
    )
    .await
    .context(
        "the embedded testbed (PORTOLAN_TESTBED_PROFILE, PORTOLAN_TESTBED_TIME_SCALE, PORTOLAN_TESTBED_LISTEN)",
    )?;
    reference_testbed::cli::serve_ssh_on(&embedded.testbed, config.testbed_ssh_listen)
        .await
        .context("the embedded testbed's SSH endpoints (PORTOLAN_TESTBED_SSH_LISTEN)")?;
    Ok(Some(embedded))
}
