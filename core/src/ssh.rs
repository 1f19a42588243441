//! SSH into slivers (russh): the portal's client for bring-up.
//!
//! The server's host key is **pinned**: the one the testbed published for that node (`GetNodes`'
//! `ssh_rsa_key`), compared in full; an unknown or different key ends the connection before authentication
//! and the error says which key was presented. The portal authenticates with its own key
//! ([`Identity`], stored in `portal_identity`: one per portal, shared by its `serve` processes).
//!
//! Commands run as SSH `exec` requests, each with a deadline; standard input may be streamed to them, and
//! their output is captured up to [`OUTPUT_LIMIT`] bytes per stream (the rest is counted, not kept).

use crate::testbed::Class;
use russh::client;
use russh::keys::{PrivateKey, PrivateKeyWithHashAlg, PublicKey};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Output kept per stream of one command.
pub const OUTPUT_LIMIT: usize = 64 * 1024;

/// Where to log in, and the key the server must present.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// `host:port`.
    pub addr: String,
    pub login: String,
    /// The published host key (OpenSSH public form; the comment is ignored).
    pub host_key: String,
}

/// Why an SSH operation failed.
#[derive(Debug, thiserror::Error)]
pub enum SshError {
    #[error("the node published no usable host key ({0}): refusing to connect unpinned")]
    NoPinnedKey(String),
    #[error("host key mismatch: the node presented {presented}, the testbed published {expected}")]
    HostKeyMismatch { expected: String, presented: String },
    #[error("cannot connect to {addr}: {message}")]
    Connect { addr: String, message: String },
    #[error("{login}@{addr} refused the portal's key")]
    AuthRefused { login: String, addr: String },
    #[error("{what} took longer than {seconds:.0} s")]
    Timeout { what: String, seconds: f64 },
    #[error("SSH protocol error: {0}")]
    Protocol(String),
}

impl SshError {
    /// How the caller should treat it: a refused or unreachable node may answer later (retryable); a key
    /// mismatch is the node's fault and will not mend by retrying now (continuable: other nodes go on).
    pub fn class(&self) -> Class {
        match self {
            Self::NoPinnedKey(_) | Self::HostKeyMismatch { .. } => Class::Continuable,
            Self::Connect { .. } | Self::AuthRefused { .. } | Self::Timeout { .. } | Self::Protocol(_) => {
                Class::Retryable
            }
        }
    }
}

/// The portal's SSH key pair.
#[derive(Clone)]
pub struct Identity {
    key: Arc<PrivateKey>,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity").field("public", &self.public_openssh()).finish()
    }
}

impl Identity {
    /// A fresh Ed25519 key pair.
    pub fn generate() -> Self {
        let seed: [u8; 32] = rand::random();
        let pair = russh::keys::ssh_key::private::Ed25519Keypair::from_seed(&seed);
        let mut key = PrivateKey::from(pair);
        key.set_comment("portolan");
        Self { key: Arc::new(key) }
    }

    /// From an OpenSSH private key (PEM-like text).
    pub fn from_openssh(text: &str) -> Result<Self, String> {
        PrivateKey::from_openssh(text)
            .map(|key| Self { key: Arc::new(key) })
            .map_err(|e| format!("the portal's SSH key cannot be read: {e}"))
    }

    /// The private key in OpenSSH form (what `portal_identity` stores).
    pub fn private_openssh(&self) -> String {
        self.key.to_openssh(russh::keys::ssh_key::LineEnding::LF).map(|t| t.to_string()).unwrap_or_default()
    }

    /// The public key, one OpenSSH line.
    pub fn public_openssh(&self) -> String {
        self.key.public_key().to_openssh().unwrap_or_default()
    }
}

/// The pinned-key check, remembering what was presented when it did not match.
struct Pinned {
    expected: PublicKey,
    presented: Arc<Mutex<Option<String>>>,
}

impl client::Handler for Pinned {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        presented: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let key = match presented {
            russh::keys::PublicKeyOrCertificate::PublicKey { key, .. } => key.clone(),
            russh::keys::PublicKeyOrCertificate::Certificate(cert) => cert.public_key().clone().into(),
        };
        let same = key.key_data() == self.expected.key_data();
        if !same {
            let text = key.to_openssh().unwrap_or_else(|_| "an unreadable key".to_owned());
            *self.presented.lock().unwrap_or_else(|p| p.into_inner()) = Some(text);
        }
        Ok(same)
    }
}

/// An authenticated SSH connection.
pub struct Session {
    handle: client::Handle<Pinned>,
    target: Target,
}

/// What a command printed and how it ended.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Output {
    /// The exit status; `None` if the server sent none (killed by a signal, or the channel closed).
    pub status: Option<u32>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Output {
    pub fn success(&self) -> bool {
        self.status == Some(0)
    }

    /// A short description for error messages: the status and the end of stderr.
    pub fn describe(&self) -> String {
        let stderr = String::from_utf8_lossy(&self.stderr);
        let tail: String =
            stderr.trim().chars().rev().take(300).collect::<Vec<_>>().into_iter().rev().collect();
        let status = self.status.map_or("no exit status".to_owned(), |s| format!("exit status {s}"));
        if tail.is_empty() { status } else { format!("{status}: {tail}") }
    }
}

async fn within<T>(what: &str, limit: Duration, work: impl Future<Output = T>) -> Result<T, SshError> {
    tokio::time::timeout(limit, work)
        .await
        .map_err(|_| SshError::Timeout { what: what.to_owned(), seconds: limit.as_secs_f64() })
}

impl Session {
    /// Connects to `target`, checks its host key against the pinned one, and logs in with `identity`,
    /// all within `limit`.
    pub async fn connect(target: &Target, identity: &Identity, limit: Duration) -> Result<Self, SshError> {
        let expected = PublicKey::from_openssh(target.host_key.trim())
            .map_err(|e| SshError::NoPinnedKey(e.to_string()))?;
        let presented = Arc::new(Mutex::new(None));
        let handler = Pinned { expected, presented: presented.clone() };
        // No inactivity timeout: a command may rightly be silent for minutes (a download); every call here
        // has its own deadline instead, and keepalives find a peer that is gone.
        let config = Arc::new(client::Config {
            inactivity_timeout: None,
            keepalive_interval: Some(Duration::from_secs(15)),
            keepalive_max: 3,
            nodelay: true,
            ..Default::default()
        });
        let what = format!("connecting to {}", target.addr);
        let connected = within(&what, limit, client::connect(config, target.addr.as_str(), handler)).await?;
        let mut handle = match connected {
            Ok(handle) => handle,
            Err(e) => {
                if let Some(presented) = presented.lock().unwrap_or_else(|p| p.into_inner()).take() {
                    return Err(SshError::HostKeyMismatch { expected: target.host_key.clone(), presented });
                }
                return Err(SshError::Connect { addr: target.addr.clone(), message: e.to_string() });
            }
        };
        let key = PrivateKeyWithHashAlg::new(identity.key.clone(), None);
        let auth = within("authenticating", limit, handle.authenticate_publickey(&target.login, key))
            .await?
            .map_err(|e| SshError::Protocol(e.to_string()))?;
        if !auth.success() {
            return Err(SshError::AuthRefused { login: target.login.clone(), addr: target.addr.clone() });
        }
        Ok(Self { handle, target: target.clone() })
    }

    pub fn target(&self) -> &Target {
        &self.target
    }

    /// Runs `command`, streaming `stdin` to it (then end of file), within `limit`.
    pub async fn exec(
        &self,
        command: &str,
        stdin: Option<&[u8]>,
        limit: Duration,
    ) -> Result<Output, SshError> {
        within("a command", limit, self.exec_unbounded(command, stdin)).await?
    }

    async fn exec_unbounded(&self, command: &str, stdin: Option<&[u8]>) -> Result<Output, SshError> {
        let protocol = |e: russh::Error| SshError::Protocol(e.to_string());
        let mut channel = self.handle.channel_open_session().await.map_err(protocol)?;
        channel.exec(true, command).await.map_err(protocol)?;
        if let Some(data) = stdin {
            channel.data(data).await.map_err(protocol)?;
        }
        channel.eof().await.map_err(protocol)?;
        let mut output = Output::default();
        while let Some(message) = channel.wait().await {
            match message {
                russh::ChannelMsg::Data { data } => keep(&mut output.stdout, &data),
                russh::ChannelMsg::ExtendedData { data, .. } => keep(&mut output.stderr, &data),
                russh::ChannelMsg::ExitStatus { exit_status } => output.status = Some(exit_status),
                _ => {}
            }
        }
        Ok(output)
    }

    /// Ends the connection politely (errors ignored: the connection is dropped either way).
    pub async fn close(self) {
        let _ = self.handle.disconnect(russh::Disconnect::ByApplication, "", "en").await;
    }
}

fn keep(buffer: &mut Vec<u8>, data: &[u8]) {
    let room = OUTPUT_LIMIT.saturating_sub(buffer.len());
    buffer.extend_from_slice(&data[..data.len().min(room)]);
}
