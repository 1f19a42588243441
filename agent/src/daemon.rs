//! What `portolan agent --config F [--detach | --stop]` does, as functions for the binary's command line.
//! Bring-up starts the agent with `--detach` over SSH ([`crate::bringup::Command::Start`]): the SSH session
//! must end while the agent goes on, so [`detach`] starts it again in the background, in its own process
//! group, and records its pid; `--stop` ([`stop`]) ends the recorded one. Without either, [`run_foreground`]
//! runs the agent in the calling process until SIGTERM or SIGINT.
//!
//! The pid file and the log sit next to the configuration (`$HOME/.portolan/agent.pid`, `agent.log`). A pid
//! file can outlive its process and the pid be reused: a process is stopped only if its command line has an
//! `agent` argument.

use crate::bringup::AgentConfig;
use crate::host::RealHost;
use crate::runtime::{self, AgentError};
use rustix::process::{Pid, Signal};
use std::ffi::OsString;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// The running agent's pid, in the configuration's directory.
pub const PID_FILE: &str = "agent.pid";
/// The detached agent's output, in the configuration's directory.
pub const LOG_FILE: &str = "agent.log";
/// How long [`stop`] waits for the agent to exit after SIGTERM (then it sends SIGKILL).
const STOP_WAIT: Duration = Duration::from_secs(5);

/// Stops a running agent (see [`stop`]) and starts this executable again as `agent --config <config_path>`
/// in the background: its own process group, no standard input, output appended to `agent.log`. Returns once
/// it is started and its pid recorded.
pub fn detach(config_path: &Path) -> io::Result<()> {
    let config_path = std::path::absolute(config_path)?;
    stop(&config_path)?;
    let mut command = Command::new(std::env::current_exe()?);
    command.arg("agent").arg("--config").arg(&config_path);
    launch(command, &config_path).map(drop)
}

/// Stops the agent the pid file next to `config_path` names, if it runs (SIGTERM, then SIGKILL after 5 s),
/// and removes the pid file. A missing pid file, or one naming a process that is not an agent, is not an
/// error.
pub fn stop(config_path: &Path) -> io::Result<()> {
    let pid_file = config_dir(config_path).join(PID_FILE);
    let text = match fs::read_to_string(&pid_file) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let pid = text.trim().parse::<i32>().ok().and_then(Pid::from_raw);
    if let Some(pid) = pid.filter(|pid| *pid != rustix::process::getpid() && is_agent(*pid)) {
        terminate(pid)?;
    }
    match fs::remove_file(&pid_file) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Runs the agent configured in `config_path` in this process, on the sliver's real home (`$HOME`, or the
/// configuration directory's parent), until SIGTERM or SIGINT.
pub async fn run_foreground(config_path: &Path) -> Result<(), AgentError> {
    let config = read_config(config_path)?;
    let home = home_dir(config_path, std::env::var_os("HOME"));
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| AgentError::Config(format!("cannot build an HTTP client: {e}")))?;
    let stop = CancellationToken::new();
    let signals = tokio::spawn(cancel_on_signal(stop.clone()).await.map_err(AgentError::Signals)?);
    let result = runtime::run(config, Arc::new(RealHost::new(home)), client, stop).await;
    signals.abort();
    result
}

/// Reads the agent's configuration; warns when others may read it (it holds the credential).
pub fn read_config(path: &Path) -> Result<AgentConfig, AgentError> {
    let text = fs::read_to_string(path)
        .map_err(|e| AgentError::Config(format!("cannot read {}: {e}", path.display())))?;
    if fs::metadata(path).is_ok_and(|meta| meta.mode() & 0o077 != 0) {
        let path = path.display();
        tracing::warn!(%path, "the agent's configuration is readable by others; it should be mode 600");
    }
    serde_json::from_str(&text)
        .map_err(|e| AgentError::Config(format!("{} is not an agent configuration: {e}", path.display())))
}

/// The sliver's home: `$HOME` when set, else the parent of the configuration's directory
/// (`<home>/.portolan/agent.json`).
pub fn home_dir(config_path: &Path, env_home: Option<OsString>) -> PathBuf {
    match env_home.filter(|home| !home.is_empty()) {
        Some(home) => PathBuf::from(home),
        None => {
            let dir = config_dir(config_path);
            let dir = std::path::absolute(&dir).unwrap_or(dir);
            dir.parent().map(Path::to_path_buf).unwrap_or(dir)
        }
    }
}

fn config_dir(config_path: &Path) -> PathBuf {
    match config_path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// A future that cancels `stop` on SIGTERM or SIGINT; the handlers are installed before it is returned.
async fn cancel_on_signal(stop: CancellationToken) -> io::Result<impl Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = terminate.recv() => tracing::info!("SIGTERM"),
            _ = interrupt.recv() => tracing::info!("SIGINT"),
        }
        stop.cancel();
    })
}

/// Spawns `command` detached (own process group, stdin null, output appended to the log next to
/// `config_path`) and writes its pid to the pid file there.
fn launch(mut command: Command, config_path: &Path) -> io::Result<u32> {
    let dir = config_dir(config_path);
    let log = OpenOptions::new().create(true).append(true).mode(0o600).open(dir.join(LOG_FILE))?;
    command.current_dir(&dir).process_group(0).stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log);
    let child = command.spawn()?;
    let pid = child.id();
    write_pid_file(&dir.join(PID_FILE), pid)?;
    Ok(pid)
}

fn write_pid_file(path: &Path, pid: u32) -> io::Result<()> {
    let temporary = path.with_extension("pid.part");
    let mut file = OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&temporary)?;
    writeln!(file, "{pid}")?;
    fs::rename(&temporary, path)
}

/// Whether `pid` runs (a zombie does not) with an `agent` argument on its command line.
fn is_agent(pid: Pid) -> bool {
    let cmdline = fs::read(format!("/proc/{}/cmdline", pid.as_raw_nonzero())).unwrap_or_default();
    is_alive(pid) && cmdline.split(|b| *b == 0).any(|argument| argument == b"agent")
}

/// Whether `pid` exists and is not a zombie (read from `/proc/<pid>/stat`, the state after the name).
fn is_alive(pid: Pid) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{}/stat", pid.as_raw_nonzero())) else { return false };
    let state = stat.rsplit_once(')').and_then(|(_, rest)| rest.trim_start().chars().next());
    !matches!(state, None | Some('Z' | 'X' | 'x'))
}

/// SIGTERM, up to [`STOP_WAIT`] for `pid` to go, then SIGKILL and a last second.
fn terminate(pid: Pid) -> io::Result<()> {
    terminate_within(pid, STOP_WAIT)
}

fn terminate_within(pid: Pid, patience: Duration) -> io::Result<()> {
    let _ = rustix::process::kill_process(pid, Signal::TERM);
    if wait_gone(pid, patience) {
        return Ok(());
    }
    let _ = rustix::process::kill_process(pid, Signal::KILL);
    if wait_gone(pid, Duration::from_secs(1)) {
        return Ok(());
    }
    Err(io::Error::other(format!("the agent (pid {}) did not exit after SIGKILL", pid.as_raw_nonzero())))
}

fn wait_gone(pid: Pid, patience: Duration) -> bool {
    let deadline = Instant::now() + patience;
    while is_alive(pid) {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Credential;

    fn config_in(dir: &Path) -> PathBuf {
        dir.join("agent.json")
    }

    /// A stand-in for a detached agent: a shell loop with `agent` among its arguments, that exits on SIGTERM
    /// unless `ignore_term`.
    fn fake_agent(config: &Path, ignore_term: bool) -> Command {
        let trap = if ignore_term { "trap '' TERM" } else { "trap 'exit 0' TERM" };
        let script = format!("echo started; {trap}; while :; do sleep 0.1; done");
        let mut command = Command::new("sh");
        command.arg("-c").arg(script).arg("agent").arg("--config").arg(config);
        command
    }

    fn pgrp(pid: u32) -> Option<String> {
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        stat.rsplit_once(')')?.1.split_whitespace().nth(2).map(str::to_owned)
    }

    fn pid(raw: u32) -> Pid {
        Pid::from_raw(raw as i32).unwrap()
    }

    #[test]
    fn a_launched_agent_is_detached_recorded_and_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let config = config_in(dir.path());
        let child = launch(fake_agent(&config, false), &config).unwrap();
        let recorded = fs::read_to_string(dir.path().join(PID_FILE)).unwrap();
        assert_eq!(recorded, format!("{child}\n"));
        assert_eq!(pgrp(child), Some(child.to_string()), "it leads its own process group");
        assert_eq!(fs::read_link(format!("/proc/{child}/fd/0")).unwrap(), Path::new("/dev/null"));
        assert!(
            wait_for(|| fs::read_to_string(dir.path().join(LOG_FILE)).unwrap_or_default() == "started\n")
        );
        assert!(is_agent(pid(child)));

        stop(&config).unwrap();
        assert!(!is_alive(pid(child)), "stopped, and stop waited for it");
        assert!(!dir.path().join(PID_FILE).exists());
        stop(&config).unwrap();
    }

    #[test]
    fn a_pid_file_naming_another_program_stops_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let config = config_in(dir.path());
        let mut other = Command::new("sleep").arg("30").spawn().unwrap();
        fs::write(dir.path().join(PID_FILE), format!("{}\n", other.id())).unwrap();
        stop(&config).unwrap();
        assert!(is_alive(pid(other.id())), "a process without an `agent` argument is left alone");
        assert!(!dir.path().join(PID_FILE).exists(), "the stale pid file is removed");
        other.kill().unwrap();
        other.wait().unwrap();

        fs::write(dir.path().join(PID_FILE), "not a pid\n").unwrap();
        stop(&config).unwrap();
        assert!(!dir.path().join(PID_FILE).exists());
    }

    #[test]
    fn an_agent_ignoring_sigterm_is_killed() {
        let dir = tempfile::tempdir().unwrap();
        let config = config_in(dir.path());
        let child = launch(fake_agent(&config, true), &config).unwrap();
        assert!(wait_for(
            || fs::read_to_string(dir.path().join(LOG_FILE)).is_ok_and(|log| log.contains("started"))
        ));
        assert!(!wait_gone(pid(child), Duration::from_millis(50)));
        let _ = rustix::process::kill_process(pid(child), Signal::TERM);
        assert!(!wait_gone(pid(child), Duration::from_millis(300)), "SIGTERM is ignored");
        terminate_within(pid(child), Duration::from_millis(200)).unwrap();
        assert!(!is_alive(pid(child)));
    }

    #[test]
    fn the_home_is_home_or_the_configuration_directory_s_parent() {
        let config = Path::new("/home/pl_demo/.portolan/agent.json");
        assert_eq!(home_dir(config, Some("/srv/home".into())), Path::new("/srv/home"));
        assert_eq!(home_dir(config, None), Path::new("/home/pl_demo"));
        assert_eq!(home_dir(config, Some(OsString::new())), Path::new("/home/pl_demo"));
    }

    #[tokio::test]
    async fn a_bad_configuration_file_is_named_in_the_error() {
        let dir = tempfile::tempdir().unwrap();
        let config = config_in(dir.path());
        let error = run_foreground(&config).await.unwrap_err().to_string();
        assert!(error.contains("cannot read") && error.contains(&config.display().to_string()), "{error}");
        fs::write(&config, r#"{"portal": "https://p.example"}"#).unwrap();
        let error = run_foreground(&config).await.unwrap_err().to_string();
        assert!(error.contains("not an agent configuration") && error.contains("credential"), "{error}");

        let good = AgentConfig {
            portal: "https://p.example".to_owned(),
            credential: Credential::generate(9).expose(),
            slice: "pl_demo".to_owned(),
            node: "n1".to_owned(),
        };
        fs::write(&config, serde_json::to_string(&good).unwrap()).unwrap();
        assert_eq!(read_config(&config).unwrap(), good);
    }

    fn wait_for(condition: impl Fn() -> bool) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !condition() {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        true
    }
}
