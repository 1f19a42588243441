//! The commands bring-up runs in a sliver over SSH, and the agent's configuration file it writes there.
//!
//! A real sliver runs each command with the login's shell (POSIX `sh` is enough); the reference testbed's
//! simulated slivers [`Command::parse`] the exact text and do what it says without any shell, and refuse
//! everything else. So the portal and the simulated slivers must agree on every byte: both use this module.
//!
//! Everything lives under `$HOME/.portolan/` in the sliver:
//! - `bin/portolan` (the binary, mode 700) and `bin/portolan.sha256` (its checksum, written once it is
//!   verified: [`Command::Probe`] reads it, so an unchanged binary is not uploaded again);
//! - `agent.json` (mode 600): the [`AgentConfig`], credential included;
//! - `agent.pid`, `agent.log`: the running agent's.

use serde::{Deserialize, Serialize};

/// The sliver's directory, relative to its home.
pub const DIR: &str = ".portolan";

/// One bring-up step's command. Each is idempotent: running it twice leaves the sliver as running it once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Prints the installed binary's SHA-256 (hex), or nothing when none is installed.
    Probe,
    /// Standard input: the binary. It replaces the installed one only if its SHA-256 is `sha256`; the command
    /// fails otherwise (and the installed one stays).
    Install { sha256: String },
    /// Standard input: the agent's configuration (an [`AgentConfig`] as JSON), written readable by the login
    /// only.
    Configure,
    /// Downloads the binary from `url` (the portal's, `/agent/v1/portolan/<sha256>`) with `curl` (or `wget`)
    /// and installs it as [`Command::Install`] does, only if its SHA-256 is `sha256`. What bring-up uses by
    /// default: the portal serves one file to every sliver instead of pushing it through every SSH session.
    /// A simulated sliver checks the checksum the portal announces for `url` (a `HEAD`) instead of
    /// downloading.
    Fetch { sha256: String, url: String },
    /// Starts the agent in the background, stopping one that already runs (so new credentials take effect).
    Start,
    /// Stops the agent, if it runs.
    Stop,
}

fn is_sha256(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Whether `url` can sit between single quotes in a shell command: an http(s) URL of plain characters.
pub fn is_safe_url(url: &str) -> bool {
    (url.starts_with("http://") || url.starts_with("https://"))
        && url.len() <= 2048
        && url.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~:/?#[]@!$&()*+,;=%".contains(&b))
        && !url.contains('\'')
}

const PROBE: &str = r#"cat "$HOME/.portolan/bin/portolan.sha256" 2>/dev/null || true"#;
const INSTALL_HEAD: &str =
    r#"set -e; d="$HOME/.portolan/bin"; mkdir -p "$d"; cat > "$d/portolan.part"; echo ""#;
const INSTALL_TAIL: &str = r#"  $d/portolan.part" | sha256sum -c --status -; chmod 700 "$d/portolan.part"; mv -f "$d/portolan.part" "$d/portolan"; echo "#;
const INSTALL_END: &str = r#" > "$d/portolan.sha256""#;
const FETCH_HEAD: &str = r#"set -e; d="$HOME/.portolan/bin"; mkdir -p "$d"; u='"#;
const FETCH_MID: &str =
    r#"'; curl -fsS -o "$d/portolan.part" "$u" 2>/dev/null || wget -q -O "$d/portolan.part" "$u"; echo ""#;
const CONFIGURE: &str = r#"set -e; umask 077; mkdir -p "$HOME/.portolan"; cat > "$HOME/.portolan/agent.json.part"; mv -f "$HOME/.portolan/agent.json.part" "$HOME/.portolan/agent.json""#;
const START: &str = r#""$HOME/.portolan/bin/portolan" agent --config "$HOME/.portolan/agent.json" --detach"#;
const STOP: &str = r#""$HOME/.portolan/bin/portolan" agent --config "$HOME/.portolan/agent.json" --stop"#;

impl Command {
    /// The command line sent over SSH.
    ///
    /// # Panics
    /// If an [`Command::Install`]'s checksum is not 64 lowercase hex digits (it comes from a digest, never
    /// from input).
    pub fn to_shell(&self) -> String {
        match self {
            Self::Probe => PROBE.to_owned(),
            Self::Install { sha256 } => {
                assert!(is_sha256(sha256), "a SHA-256 in lowercase hex");
                format!("{INSTALL_HEAD}{sha256}{INSTALL_TAIL}{sha256}{INSTALL_END}")
            }
            Self::Fetch { sha256, url } => {
                assert!(is_sha256(sha256), "a SHA-256 in lowercase hex");
                assert!(is_safe_url(url), "a URL without quotes or spaces");
                format!("{FETCH_HEAD}{url}{FETCH_MID}{sha256}{INSTALL_TAIL}{sha256}{INSTALL_END}")
            }
            Self::Configure => CONFIGURE.to_owned(),
            Self::Start => START.to_owned(),
            Self::Stop => STOP.to_owned(),
        }
    }

    /// The command `text` is, if it is exactly one of these; `None` for anything else.
    pub fn parse(text: &str) -> Option<Self> {
        let simple = [Self::Probe, Self::Configure, Self::Start, Self::Stop];
        if let Some(command) = simple.into_iter().find(|c| c.to_shell() == text) {
            return Some(command);
        }
        if let Some(rest) = text.strip_prefix(FETCH_HEAD) {
            let (url, rest) = rest.split_once(FETCH_MID)?;
            let sha256 = rest.get(..64)?;
            let command = Self::Fetch { sha256: sha256.to_owned(), url: url.to_owned() };
            return (is_sha256(sha256) && is_safe_url(url) && command.to_shell() == text).then_some(command);
        }
        let sha256 = text.strip_prefix(INSTALL_HEAD)?.get(..64)?;
        let command = Self::Install { sha256: sha256.to_owned() };
        (is_sha256(sha256) && command.to_shell() == text).then_some(command)
    }
}

/// The agent's configuration, written by bring-up to `$HOME/.portolan/agent.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentConfig {
    /// The portal's base URL (e.g. `https://portolan.example.org`); the agent calls `<portal>/agent/v1/…`.
    pub portal: String,
    /// The sliver's credential ([`crate::protocol::Credential`]'s text).
    pub credential: String,
    pub slice: String,
    pub node: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_parses_back_and_nothing_else_does() {
        let sha = "0123456789abcdef".repeat(4);
        let all = [
            Command::Probe,
            Command::Install { sha256: sha.clone() },
            Command::Fetch {
                sha256: sha.clone(),
                url: format!("http://127.0.0.1:3000/agent/v1/portolan/{sha}"),
            },
            Command::Configure,
            Command::Start,
            Command::Stop,
        ];
        for command in all {
            assert_eq!(Command::parse(&command.to_shell()), Some(command));
        }
        let install = Command::Install { sha256: sha.clone() }.to_shell();
        for other in [
            "rm -rf /".to_owned(),
            format!("{install}; rm -rf /"),
            install.replacen(&sha, &"0".repeat(63), 1),
            install.replace(&sha, &sha.to_uppercase()),
            format!(" {PROBE}"),
            String::new(),
            Command::Fetch { sha256: sha.clone(), url: "http://x/".into() }
                .to_shell()
                .replace("http://x/", "http://x/'; rm -rf / #"),
        ] {
            assert_eq!(Command::parse(&other), None, "{other}");
        }
    }
}
