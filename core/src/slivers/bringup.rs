//! The SSH half of a sliver's bring-up: connect (host key pinned), install the agent, write its
//! configuration, start it. Each step is one of [`portolan_agent::bringup::Command`]'s commands (idempotent:
//! a rerun after a crash repeats harmlessly) with its own deadline, and a failure names its step and class.

use super::Settings;
use crate::db::entity::SliverStep;
use crate::ssh::{Identity, Session, SshError, Target};
use crate::testbed::Class;
use portolan_agent::bringup::{AgentConfig, Command};

/// Why a bring-up stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StepFailure {
    pub step: SliverStep,
    pub class: Class,
    pub message: String,
}

impl StepFailure {
    pub fn new(step: SliverStep, class: Class, message: impl Into<String>) -> Self {
        Self { step, class, message: message.into() }
    }

    fn ssh(step: SliverStep, e: SshError) -> Self {
        Self::new(step, e.class(), e.to_string())
    }
}

/// What a bring-up did, for the record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Done {
    /// Whether the binary had to be installed (false: the sliver had this one already).
    pub installed: bool,
}

/// Brings the agent up in the sliver at `target`, configured with `config`.
pub async fn run(
    identity: &Identity,
    settings: &Settings,
    target: &Target,
    config: &AgentConfig,
) -> Result<Done, StepFailure> {
    let session = Session::connect(target, identity, settings.connect_timeout)
        .await
        .map_err(|e| StepFailure::ssh(SliverStep::Connect, e))?;
    let outcome = steps(&session, settings, config).await;
    session.close().await;
    outcome
}

async fn steps(session: &Session, settings: &Settings, config: &AgentConfig) -> Result<Done, StepFailure> {
    let installed = install(session, settings).await?;
    let json = serde_json::to_vec(config).map_err(|e| {
        StepFailure::new(
            SliverStep::Configure,
            Class::Fatal,
            format!("cannot encode the agent's config: {e}"),
        )
    })?;
    command(session, SliverStep::Configure, &Command::Configure, Some(&json), settings.command_timeout)
        .await?;
    command(session, SliverStep::Start, &Command::Start, None, settings.command_timeout).await?;
    Ok(Done { installed })
}

/// Installs the portal's agent binary unless the sliver holds it already; answers whether it installed.
async fn install(session: &Session, settings: &Settings) -> Result<bool, StepFailure> {
    let step = SliverStep::Install;
    let (Some(artifact), Some(url)) = (&settings.artifact, settings.artifact_url()) else {
        return Err(StepFailure::new(step, Class::Fatal, "the portal has no agent binary to hand out"));
    };
    let probe = command(session, step, &Command::Probe, None, settings.command_timeout).await?;
    if String::from_utf8_lossy(&probe.stdout).trim() == artifact.sha256 {
        return Ok(false);
    }
    let fetch = Command::Fetch { sha256: artifact.sha256.clone(), url };
    command(session, step, &fetch, None, settings.install_timeout).await?;
    Ok(true)
}

/// Runs one bring-up command; a non-zero exit is a failure of `step` (continuable: this sliver is broken,
/// others are not).
async fn command(
    session: &Session,
    step: SliverStep,
    command: &Command,
    stdin: Option<&[u8]>,
    limit: std::time::Duration,
) -> Result<crate::ssh::Output, StepFailure> {
    let output =
        session.exec(&command.to_shell(), stdin, limit).await.map_err(|e| StepFailure::ssh(step, e))?;
    if output.success() {
        Ok(output)
    } else {
        Err(StepFailure::new(
            step,
            Class::Continuable,
            format!("{} failed: {}", step.as_str(), output.describe()),
        ))
    }
}
