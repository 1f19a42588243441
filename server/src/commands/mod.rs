//! The binary's commands beyond `serve`: `map` on files, and the reference testbed that `serve` starts
//! in-process when no testbed URL is configured.

pub mod map;

use crate::config::Config;
use anyhow::Context;
use reference_testbed::cli::Embedded;

/// The in-process reference testbed, unless `testbed_url` names another testbed.
pub async fn embedded_testbed(config: &Config) -> anyhow::Result<Option<Embedded>> {
    if config.testbed_url.is_some() {
        return Ok(None);
    }
    reference_testbed::cli::embedded(
        &config.testbed_profile,
        config.testbed_seed,
        config.testbed_time_scale,
        config.testbed_listen,
    )
    .await
    .context(
        "the embedded testbed (PORTOLAN_TESTBED_PROFILE, PORTOLAN_TESTBED_TIME_SCALE, PORTOLAN_TESTBED_LISTEN)",
    )
    .map(Some)
}
