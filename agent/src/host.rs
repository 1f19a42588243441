//! What the agent applies a manifest to. The runtime ([`crate::runtime`]) talks to the portal and decides
//! *when* to apply what; a [`Host`] does the applying. Two implementations exist, so that one runtime serves
//! both: [`RealHost`], for a real sliver (files under its home, real processes, `/proc`), and the reference
//! testbed's simulated slivers, which implement [`Host`] in memory and never run a user's command.

use crate::protocol::{Account, Metrics, OUTPUT_TAIL_BYTES, Software, Startup, StartupState};
use rustix::process::{Pid, Signal};
use sha2::{Digest, Sha256};
use std::ffi::OsStr;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::process::Child;

/// Where the runtime applies a manifest: accounts, software, the startup command, and the load it reports.
#[async_trait::async_trait]
pub trait Host: Send + Sync + 'static {
    /// Makes the accounts' keys the sliver's authorized keys (replacing the keys an earlier manifest wrote,
    /// keeping lines it did not write).
    async fn apply_accounts(&self, accounts: &[Account]) -> Result<(), String>;
    /// Installs one software item (idempotent: an item already in place is not fetched again).
    async fn install(&self, software: &Software) -> Result<(), String>;
    /// Starts the startup command (stopping one this host started before).
    async fn start(&self, startup: &Startup) -> Result<(), String>;
    /// The startup command's state now.
    async fn startup_state(&self) -> StartupState;
    /// The node's load now.
    async fn metrics(&self) -> Metrics;
}

/// The line that opens the agent's block in `authorized_keys`.
pub const KEYS_BEGIN: &str = "# portolan: begin";
/// The line that closes it.
pub const KEYS_END: &str = "# portolan: end";
/// The key types an authorized key may have: a line must start with one of them (and a space), so that no
/// `command="…"` or other option can be slipped in front of a key.
pub const KEY_TYPES: &[&str] = &[
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
];
/// The largest tarball the agent downloads.
pub const MAX_TARBALL_BYTES: u64 = 2 << 30;
/// How long a stopped startup command gets to exit after SIGTERM before its process group is killed.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// Set in the startup command's environment (to the home), so an agent started later recognises the process
/// group an earlier agent left running (through `.portolan/startup.pid`) and stops it before starting anew.
const STARTUP_MARK: &str = "PORTOLAN_STARTUP";

/// A real sliver: its home directory, its processes, the node's `/proc`.
pub struct RealHost {
    home: PathBuf,
    client: reqwest::Client,
    startup: tokio::sync::Mutex<Option<Started>>,
}

/// The startup command this host started: its shell, and the process group it leads (which outlives the
/// shell when the command leaves something running in the background).
struct Started {
    child: Child,
    group: Option<Pid>,
}

impl RealHost {
    /// The sliver whose login's home is `home`.
    pub fn new(home: PathBuf) -> Self {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(30))
            .read_timeout(Duration::from_secs(120))
            .build()
            .unwrap_or_default();
        Self::with_client(home, client)
    }

    /// The same, downloading tarballs with `client`.
    pub fn with_client(home: PathBuf, client: reqwest::Client) -> Self {
        Self { home, client, startup: tokio::sync::Mutex::new(None) }
    }

    fn portolan_dir(&self) -> PathBuf {
        self.home.join(crate::bringup::DIR)
    }

    fn startup_log(&self) -> PathBuf {
        self.portolan_dir().join("startup.log")
    }

    fn startup_pid_file(&self) -> PathBuf {
        self.portolan_dir().join("startup.pid")
    }
}

#[async_trait::async_trait]
impl Host for RealHost {
    async fn apply_accounts(&self, accounts: &[Account]) -> Result<(), String> {
        let lines = authorized_key_lines(accounts)?;
        write_authorized_keys(&self.home, &lines)
            .map_err(|e| format!("cannot write {}/.ssh/authorized_keys: {e}", self.home.display()))
    }

    async fn install(&self, software: &Software) -> Result<(), String> {
        match software {
            Software::Tarball { url, sha256, target_dir } => {
                self.install_tarball(url, sha256, target_dir).await.map_err(|e| format!("tarball {url}: {e}"))
            }
            Software::Package { name } => install_package(name).await,
        }
    }

    async fn start(&self, startup: &Startup) -> Result<(), String> {
        let mut current = self.startup.lock().await;
        match current.take() {
            Some(Started { mut child, group: Some(group) }) => stop_group(group, Some(&mut child)).await,
            Some(Started { group: None, .. }) => {}
            None => self.stop_orphan().await,
        }
        let child =
            self.spawn_startup(startup).map_err(|e| format!("cannot start the startup command: {e}"))?;
        let group = child.id().and_then(|id| i32::try_from(id).ok()).and_then(Pid::from_raw);
        if let Some(group) = group {
            let _ = fs::write(self.startup_pid_file(), format!("{}\n", group.as_raw_nonzero()));
        }
        *current = Some(Started { child, group });
        Ok(())
    }

    async fn startup_state(&self) -> StartupState {
        let mut current = self.startup.lock().await;
        let Some(started) = current.as_mut() else { return StartupState::None };
        match started.child.try_wait() {
            Ok(None) => StartupState::Running,
            Ok(Some(status)) => {
                StartupState::Exited { code: status.code(), output_tail: output_tail(&self.startup_log()) }
            }
            Err(e) => StartupState::Failed { error: format!("cannot watch the startup command: {e}") },
        }
    }

    async fn metrics(&self) -> Metrics {
        node_metrics(&self.home)
    }
}

// ---------------------------------------------------------------------------------------------------------
// Accounts

/// The `authorized_keys` line for one key, or why it is refused. The key is re-encoded from its parsed form,
/// so what is written is exactly one well-formed key (type, base64, comment).
pub fn authorized_key_line(key: &str) -> Result<String, String> {
    let key = key.trim();
    if key.chars().any(char::is_control) {
        return Err("a key must be one line without control characters".to_owned());
    }
    let kind = key.split(' ').next().unwrap_or_default();
    if !KEY_TYPES.contains(&kind) {
        return Err(format!("a key must start with its type, one of {}", KEY_TYPES.join(", ")));
    }
    let parsed =
        ssh_key::PublicKey::from_openssh(key).map_err(|e| format!("not an OpenSSH public key ({e})"))?;
    parsed.to_openssh().map_err(|e| format!("cannot encode the key ({e})"))
}

/// Every account's keys as `authorized_keys` lines (duplicates once), or the first key refused.
fn authorized_key_lines(accounts: &[Account]) -> Result<Vec<String>, String> {
    let mut lines: Vec<String> = Vec::new();
    for account in accounts {
        for key in &account.keys {
            let line = authorized_key_line(key)
                .map_err(|e| format!("account {}: key {}: {e}", account.name, key_preview(key)))?;
            if !lines.contains(&line) {
                lines.push(line);
            }
        }
    }
    Ok(lines)
}

/// The start of a key, enough to recognise it in an error message.
fn key_preview(key: &str) -> String {
    let shown: String = key.chars().take(40).map(|c| if c.is_control() { '?' } else { c }).collect();
    if shown.len() < key.len() { format!("{shown:?}…") } else { format!("{shown:?}") }
}

/// `existing` with the agent's block replaced by one holding `lines` (where the block was, or at the end).
/// Lines outside the block are kept as they are; an unterminated block runs to the end of the file.
pub fn replace_key_block(existing: &str, lines: &[String]) -> String {
    let mut block = vec![KEYS_BEGIN];
    block.extend(lines.iter().map(String::as_str));
    block.push(KEYS_END);
    let mut out: Vec<&str> = Vec::new();
    let (mut inside, mut placed) = (false, false);
    for line in existing.lines() {
        if inside {
            inside = line.trim() != KEYS_END;
        } else if line.trim() == KEYS_BEGIN {
            inside = true;
            if !placed {
                out.extend(&block);
                placed = true;
            }
        } else {
            out.push(line);
        }
    }
    if !placed {
        out.extend(&block);
    }
    let mut text = out.join("\n");
    text.push('\n');
    text
}

fn write_authorized_keys(home: &Path, lines: &[String]) -> io::Result<()> {
    let ssh = home.join(".ssh");
    DirBuilder::new().recursive(true).mode(0o700).create(&ssh)?;
    let path = ssh.join("authorized_keys");
    let existing = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e),
    };
    write_atomically(&path, replace_key_block(&existing, lines).as_bytes())
}

/// Writes `path` (mode 600) through a temporary file in the same directory and a rename, so a reader sees
/// the old content or the new, never half of it.
fn write_atomically(path: &Path, content: &[u8]) -> io::Result<()> {
    let name = path.file_name().unwrap_or(OsStr::new("file")).to_string_lossy();
    let temporary = path.with_file_name(format!(".{name}.portolan-tmp"));
    let mut file = OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&temporary)?;
    file.write_all(content)?;
    file.sync_all()?;
    fs::rename(&temporary, path)
}

// ---------------------------------------------------------------------------------------------------------
// Software

/// Where a tarball with `target_dir` unpacks under `home`, or why it may not: `target_dir` is relative and
/// never climbs out (`..`). Empty or `.` is the home itself.
pub fn target_path(home: &Path, target_dir: &str) -> Result<PathBuf, String> {
    if target_dir.chars().any(char::is_control) {
        return Err(format!("target directory {target_dir:?} has control characters"));
    }
    for component in Path::new(target_dir).components() {
        match component {
            Component::Normal(_) | Component::CurDir => {}
            Component::ParentDir => {
                return Err(format!("target directory {target_dir:?} climbs out of the home with `..`"));
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(format!(
                    "target directory {target_dir:?} is absolute; it must be relative to the home"
                ));
            }
        }
    }
    Ok(home.join(target_dir))
}

fn valid_sha256(text: &str) -> Result<String, String> {
    let well_formed = text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit());
    well_formed
        .then(|| text.to_ascii_lowercase())
        .ok_or_else(|| format!("{text:?} is not a SHA-256 (64 hex digits)"))
}

impl RealHost {
    async fn install_tarball(&self, url: &str, sha256: &str, target_dir: &str) -> Result<(), String> {
        let sha256 = valid_sha256(sha256)?;
        let target = target_path(&self.home, target_dir)?;
        let software = self.portolan_dir().join("software");
        // The marker lists the target directories the tarball was unpacked in, one a line.
        let marker = software.join(format!("{sha256}.done"));
        let done = fs::read_to_string(&marker).unwrap_or_default();
        if done.lines().any(|line| line == target_dir) && target.is_dir() {
            return Ok(());
        }
        DirBuilder::new().recursive(true).mode(0o700).create(&software).map_err(|e| e.to_string())?;
        let part = software.join(format!("{sha256}.part"));
        let result = self.fetch_and_unpack(url, &sha256, &part, &target).await;
        let _ = fs::remove_file(&part);
        result?;
        let record = OpenOptions::new().create(true).append(true).open(&marker);
        record
            .and_then(|mut file| writeln!(file, "{target_dir}"))
            .map_err(|e| format!("cannot record the installation: {e}"))
    }

    async fn fetch_and_unpack(
        &self,
        url: &str,
        sha256: &str,
        part: &Path,
        target: &Path,
    ) -> Result<(), String> {
        let actual = self.download(url, part).await?;
        if actual != sha256 {
            return Err(format!("its SHA-256 is {actual}, the manifest says {sha256}: refused"));
        }
        fs::create_dir_all(target).map_err(|e| format!("cannot create {}: {e}", target.display()))?;
        self.check_inside_home(target)?;
        let (part, target) = (part.to_owned(), target.to_owned());
        tokio::task::spawn_blocking(move || unpack(&part, &target))
            .await
            .map_err(|e| format!("unpacking stopped: {e}"))?
            .map_err(|e| format!("cannot unpack: {e}"))
    }

    /// `target` must not lead outside the home through a symbolic link.
    fn check_inside_home(&self, target: &Path) -> Result<(), String> {
        let home = self.home.canonicalize().map_err(|e| format!("cannot resolve the home: {e}"))?;
        let resolved =
            target.canonicalize().map_err(|e| format!("cannot resolve {}: {e}", target.display()))?;
        if resolved.starts_with(&home) {
            Ok(())
        } else {
            Err(format!("target directory {} leads outside the home", target.display()))
        }
    }

    /// Downloads `url` into `part`, returning its SHA-256 (hex).
    async fn download(&self, url: &str, part: &Path) -> Result<String, String> {
        let parsed = reqwest::Url::parse(url).map_err(|e| format!("not a URL ({e})"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err("only http and https URLs are fetched".to_owned());
        }
        let mut response =
            self.client.get(parsed).send().await.map_err(|e| format!("cannot fetch: {}", chain(&e)))?;
        if !response.status().is_success() {
            return Err(format!("fetching it answered HTTP {}", response.status()));
        }
        let mut file = tokio::fs::File::create(part).await.map_err(|e| format!("cannot store it: {e}"))?;
        let (mut hasher, mut size) = (Sha256::new(), 0u64);
        while let Some(chunk) =
            response.chunk().await.map_err(|e| format!("download broke off: {}", chain(&e)))?
        {
            size += chunk.len() as u64;
            if size > MAX_TARBALL_BYTES {
                return Err(format!("larger than {MAX_TARBALL_BYTES} bytes"));
            }
            hasher.update(&chunk);
            file.write_all(&chunk).await.map_err(|e| format!("cannot store it: {e}"))?;
        }
        file.flush().await.map_err(|e| format!("cannot store it: {e}"))?;
        Ok(hex::encode(hasher.finalize()))
    }
}

/// An error with its causes, `a: b: c`.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Unpacks the tar file `archive` (gzip'd or not: told by its magic bytes) under `target`. An entry that
/// would land outside `target` fails the whole unpacking.
fn unpack(archive: &Path, target: &Path) -> io::Result<()> {
    let mut reader = BufReader::new(File::open(archive)?);
    let gzipped = reader.fill_buf()?.starts_with(&[0x1f, 0x8b]);
    let input: Box<dyn Read> =
        if gzipped { Box::new(flate2::read::GzDecoder::new(reader)) } else { Box::new(reader) };
    let mut archive = tar::Archive::new(input);
    for entry in archive.entries()? {
        let mut entry = entry?;
        if !entry.unpack_in(target)? {
            let path = entry.path().map(|p| p.display().to_string()).unwrap_or_default();
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("entry {path:?} escapes the target"),
            ));
        }
    }
    Ok(())
}

/// Whether `name` may be a distribution package's name: `[a-z0-9][a-z0-9+.-]*`.
pub fn valid_package_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'+' | b'.' | b'-'))
}

/// The `apt-get` to install `name` with, or why a package cannot be installed here.
fn package_installer(name: &str, is_root: bool, apt_get: Option<PathBuf>) -> Result<PathBuf, String> {
    if !valid_package_name(name) {
        return Err(format!("cannot install package {name:?}: not a package name ([a-z0-9][a-z0-9+.-]*)"));
    }
    if !is_root {
        return Err(format!(
            "cannot install package {name}: the agent does not run as root (a sliver's login cannot install \
             packages); ship it as a tarball instead"
        ));
    }
    apt_get.ok_or_else(|| format!("cannot install package {name}: this node has no apt-get"))
}

fn find_in_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(program)).find(|candidate| candidate.is_file())
}

async fn install_package(name: &str) -> Result<(), String> {
    let is_root = rustix::process::geteuid().is_root();
    let apt_get = package_installer(name, is_root, find_in_path("apt-get"))?;
    let output = tokio::process::Command::new(apt_get)
        .args(["install", "-y", "--no-install-recommends", name])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|e| format!("cannot install package {name}: cannot run apt-get: {e}"))?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let tail: String = stderr.trim().chars().rev().take(500).collect::<Vec<_>>().into_iter().rev().collect();
    Err(format!("cannot install package {name}: apt-get {}: {tail}", output.status))
}

// ---------------------------------------------------------------------------------------------------------
// The startup command

impl RealHost {
    fn spawn_startup(&self, startup: &Startup) -> io::Result<Child> {
        DirBuilder::new().recursive(true).mode(0o700).create(self.portolan_dir())?;
        let log = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(self.startup_log())?;
        tokio::process::Command::new("sh")
            .arg("-c")
            .arg(&startup.command)
            .current_dir(&self.home)
            .env(STARTUP_MARK, &self.home)
            .process_group(0)
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
    }

    /// Stops the startup command an earlier agent process left running, if `startup.pid` names a process
    /// that carries this home's mark in its environment.
    async fn stop_orphan(&self) {
        let Ok(text) = fs::read_to_string(self.startup_pid_file()) else { return };
        let Some(pid) = text.trim().parse::<i32>().ok().and_then(Pid::from_raw) else { return };
        let mark = [STARTUP_MARK.as_bytes(), b"=", self.home.as_os_str().as_bytes()].concat();
        let environ = fs::read(format!("/proc/{}/environ", pid.as_raw_nonzero())).unwrap_or_default();
        if environ.split(|b| *b == 0).any(|variable| variable == mark) {
            stop_group(pid, None).await;
        }
    }
}

/// SIGTERM to the process group `group`, SIGKILL after [`STOP_GRACE`] if some of it still runs. `child`,
/// when the group's leader is ours, is reaped along the way (a zombie would keep the group alive).
async fn stop_group(group: Pid, mut child: Option<&mut Child>) {
    use rustix::process::{kill_process_group, test_kill_process_group};
    let _ = kill_process_group(group, Signal::TERM);
    let deadline = tokio::time::Instant::now() + STOP_GRACE;
    while tokio::time::Instant::now() < deadline {
        if let Some(child) = child.as_mut() {
            let _ = child.try_wait();
        }
        if test_kill_process_group(group).is_err() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = kill_process_group(group, Signal::KILL);
    if let Some(child) = child {
        let _ = child.wait().await;
    }
}

/// The last [`OUTPUT_TAIL_BYTES`] of the file at `path` as text (empty when unreadable), starting at a
/// character boundary.
pub fn output_tail(path: &Path) -> String {
    let read = || -> io::Result<Vec<u8>> {
        let mut file = File::open(path)?;
        let length = file.metadata()?.len();
        file.seek(SeekFrom::Start(length.saturating_sub(OUTPUT_TAIL_BYTES as u64)))?;
        let mut bytes = Vec::with_capacity(OUTPUT_TAIL_BYTES);
        file.take(OUTPUT_TAIL_BYTES as u64).read_to_end(&mut bytes)?;
        Ok(bytes)
    };
    let bytes = read().unwrap_or_default();
    let start = bytes.iter().position(|b| (b & 0xC0) != 0x80).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[start..]).into_owned()
}

// ---------------------------------------------------------------------------------------------------------
// Metrics

const MIB: f64 = 1024.0 * 1024.0;

/// The node's load from `/proc`, and free space on the file system holding `home`; unknown fields `None`.
pub fn node_metrics(home: &Path) -> Metrics {
    use procfs::Current;
    let load1 = procfs::LoadAverage::current().ok().map(|load| f64::from(load.one));
    let memory = procfs::Meminfo::current().ok();
    let (net_rx_bytes, net_tx_bytes) = network_counters().unzip();
    Metrics {
        load1,
        memory_total_mb: memory.as_ref().map(|m| m.mem_total as f64 / MIB),
        memory_free_mb: memory.as_ref().and_then(|m| m.mem_available).map(|bytes| bytes as f64 / MIB),
        disk_free_pct: disk_free_pct(home),
        net_rx_bytes,
        net_tx_bytes,
    }
}

fn disk_free_pct(path: &Path) -> Option<f64> {
    let stats = rustix::fs::statvfs(path).ok()?;
    (stats.f_blocks > 0).then(|| stats.f_bavail as f64 * 100.0 / stats.f_blocks as f64)
}

/// Bytes received and sent on every interface but loopback.
fn network_counters() -> Option<(u64, u64)> {
    let devices = procfs::net::dev_status().ok()?;
    let counted = devices.values().filter(|device| device.name != "lo");
    Some(counted.fold((0u64, 0u64), |(rx, tx), device| {
        (rx.saturating_add(device.recv_bytes), tx.saturating_add(device.sent_bytes))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::AsyncReadExt;

    const ED25519: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHSosCkOwvHosaO5XajB4PB/GG8m3Rjh10cCekloOakN alice@example";
    const ECDSA: &str = "\
        ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBP3hl2qytELaHTGBBE\
        NOKYVzaGDife06m92ju1sVoJ1TF6HW3t1uyXX7gpz4NL8Kn4o6y7T2lYlJsjOtBpjJHCM= bob@example";
    const RSA: &str = "\
        ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQCunxkYPwaRjMq+RQuFp9xnlbcpq1TV4wKWvf/MoClUpRp8AB0H3e\
        yFJAwoNtWtrV5Fg640hKWZfmlKZdyVi3YRLBfVr/ZadMfhx0GTh4TlWQ4QiyxXvGHqHqZqfn9xwuJ1VD1lQ+2jicDW\
        6URuWNLaZ83XogSXmaNnA55Y8YWwF292m3I4CktfFqEhJSR3Rxzs89sJzthqaXD7Jo/xqhVmtsDofHtHCrnt1CXzFy\
        cgaU+wvThAa6SYNrK8wSbS+Yyg7LcDppdlD/99BXa41CY+KRy63BiOeE6ds3tz32zNms4n8TO3gVEPgSeG73GoRdm4\
        agzjKOTw39AMu1boJLof carol";

    fn account(name: &str, keys: &[&str]) -> Account {
        Account { name: name.to_owned(), keys: keys.iter().map(|k| (*k).to_owned()).collect() }
    }

    fn host() -> (tempfile::TempDir, RealHost) {
        let home = tempfile::tempdir().unwrap();
        let host = RealHost::new(home.path().to_owned());
        (home, host)
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[tokio::test]
    async fn the_key_block_is_replaced_and_foreign_lines_stay() {
        let (home, host) = host();
        let ssh = home.path().join(".ssh");
        fs::create_dir(&ssh).unwrap();
        let keys = ssh.join("authorized_keys");
        let old_block = format!("{KEYS_BEGIN}\n{RSA}\n{KEYS_END}");
        fs::write(&keys, format!("# mine\n{ECDSA}\n{old_block}\nssh-ed25519 AAAAforeign after\n")).unwrap();

        host.apply_accounts(&[account("alice", &[ED25519]), account("bob", &[ECDSA, ED25519])])
            .await
            .unwrap();
        let text = fs::read_to_string(&keys).unwrap();
        let expected = format!(
            "# mine\n{ECDSA}\n{KEYS_BEGIN}\n{ED25519}\n{ECDSA}\n{KEYS_END}\nssh-ed25519 AAAAforeign after\n"
        );
        assert_eq!(text, expected, "the old block's RSA key is gone, foreign lines are where they were");
        assert_eq!(mode(&keys), 0o600);

        host.apply_accounts(&[]).await.unwrap();
        let text = fs::read_to_string(&keys).unwrap();
        assert_eq!(
            text,
            format!("# mine\n{ECDSA}\n{KEYS_BEGIN}\n{KEYS_END}\nssh-ed25519 AAAAforeign after\n")
        );
        assert!(fs::read_dir(&ssh).unwrap().count() == 1, "no temporary file is left behind");
    }

    #[tokio::test]
    async fn a_fresh_home_gets_a_private_ssh_directory() {
        let (home, host) = host();
        host.apply_accounts(&[account("carol", &[RSA])]).await.unwrap();
        let ssh = home.path().join(".ssh");
        assert_eq!(mode(&ssh), 0o700);
        assert_eq!(mode(&ssh.join("authorized_keys")), 0o600);
        let text = fs::read_to_string(ssh.join("authorized_keys")).unwrap();
        assert_eq!(text, format!("{KEYS_BEGIN}\n{RSA}\n{KEYS_END}\n"));
    }

    #[test]
    fn an_unterminated_block_runs_to_the_end() {
        let text = replace_key_block(&format!("a\n{KEYS_BEGIN}\nold\n"), &["new".to_owned()]);
        assert_eq!(text, format!("a\n{KEYS_BEGIN}\nnew\n{KEYS_END}\n"));
    }

    #[tokio::test]
    async fn bad_keys_are_refused_and_nothing_is_written() {
        let (home, host) = host();
        let cases = [
            (format!("command=\"rm -rf ~\" {ED25519}"), "must start with its type"),
            (format!("{ED25519}\n{RSA}"), "one line"),
            (format!("{ED25519}\rcommand=x"), "one line"),
            ("ssh-ed25519 AAAAnotakey".to_owned(), "not an OpenSSH public key"),
            ("ssh-dss AAAAB3NzaC1kc3MAAACBAP".to_owned(), "must start with its type"),
            (String::new(), "must start with its type"),
            // The type says ed25519, the data is an RSA key.
            (RSA.replacen("ssh-rsa", "ssh-ed25519", 1), "not an OpenSSH public key"),
        ];
        for (key, reason) in cases {
            let error = host.apply_accounts(&[account("mallory", &[ED25519, &key])]).await.unwrap_err();
            assert!(error.contains("account mallory") && error.contains(reason), "{key:?}: {error}");
        }
        assert!(
            !home.path().join(".ssh/authorized_keys").exists(),
            "no key of a refused manifest is written"
        );
    }

    /// Serves `body` to every request on a local port; counts the requests.
    async fn serve(body: Vec<u8>) -> (String, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/pkg.tar", listener.local_addr().unwrap());
        let requests = Arc::new(AtomicUsize::new(0));
        let counter = requests.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                let mut request = Vec::new();
                let mut buffer = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buffer).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => request.extend_from_slice(&buffer[..n]),
                    }
                }
                let head =
                    format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
                let _ = socket.write_all(head.as_bytes()).await;
                let _ = socket.write_all(&body).await;
            }
        });
        (url, requests)
    }

    fn tarball(files: &[(&str, &[u8])], gzip: bool) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, data) in files {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            builder.append_data(&mut header, path, *data).unwrap();
        }
        let tar = builder.into_inner().unwrap();
        if !gzip {
            return tar;
        }
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(&tar).unwrap();
        encoder.finish().unwrap()
    }

    fn sha256_hex(bytes: &[u8]) -> String {
        hex::encode(Sha256::digest(bytes))
    }

    fn tarball_item(url: &str, sha256: &str, target_dir: &str) -> Software {
        Software::Tarball {
            url: url.to_owned(),
            sha256: sha256.to_owned(),
            target_dir: target_dir.to_owned(),
        }
    }

    #[tokio::test]
    async fn a_gzipped_tarball_is_checked_unpacked_and_not_fetched_again() {
        let (home, host) = host();
        let body = tarball(&[("bin/tool", b"#!/bin/sh\n"), ("README", b"read me")], true);
        let (url, requests) = serve(body.clone()).await;
        let item = tarball_item(&url, &sha256_hex(&body).to_uppercase(), "opt/tool");

        host.install(&item).await.unwrap();
        let target = home.path().join("opt/tool");
        assert_eq!(fs::read(target.join("bin/tool")).unwrap(), b"#!/bin/sh\n");
        assert_eq!(fs::read(target.join("README")).unwrap(), b"read me");
        let marker = home.path().join(format!(".portolan/software/{}.done", sha256_hex(&body)));
        assert!(marker.exists());

        host.install(&item).await.unwrap();
        assert_eq!(requests.load(Ordering::SeqCst), 1, "an installed tarball is not fetched again");
        let elsewhere = tarball_item(&url, &sha256_hex(&body), "other");
        host.install(&elsewhere).await.unwrap();
        assert!(
            home.path().join("other/README").exists(),
            "the same tarball for another directory is unpacked"
        );
        host.install(&item).await.unwrap();
        host.install(&elsewhere).await.unwrap();
        assert_eq!(requests.load(Ordering::SeqCst), 2, "both directories are remembered");
    }

    #[tokio::test]
    async fn a_plain_tarball_unpacks_too() {
        let (home, host) = host();
        let body = tarball(&[("data.txt", b"plain")], false);
        let (url, _) = serve(body.clone()).await;
        host.install(&tarball_item(&url, &sha256_hex(&body), ".")).await.unwrap();
        assert_eq!(fs::read(home.path().join("data.txt")).unwrap(), b"plain");
    }

    #[tokio::test]
    async fn a_tarball_with_the_wrong_checksum_is_refused() {
        let (home, host) = host();
        let body = tarball(&[("data.txt", b"tampered")], true);
        let (url, _) = serve(body).await;
        let error = host.install(&tarball_item(&url, &"0".repeat(64), "opt")).await.unwrap_err();
        assert!(error.contains(&url) && error.contains("SHA-256") && error.contains("refused"), "{error}");
        assert!(!home.path().join("opt/data.txt").exists());
        let software = home.path().join(".portolan/software");
        assert_eq!(fs::read_dir(software).unwrap().count(), 0, "no marker, no leftover download");
    }

    #[tokio::test]
    async fn target_directories_outside_the_home_are_refused_before_fetching() {
        let (_home, host) = host();
        let body = tarball(&[("x", b"x")], true);
        let (url, requests) = serve(body.clone()).await;
        for (target_dir, reason) in
            [("../escape", "climbs out"), ("a/../../b", "climbs out"), ("/etc", "absolute")]
        {
            let error = host.install(&tarball_item(&url, &sha256_hex(&body), target_dir)).await.unwrap_err();
            assert!(error.contains(reason) && error.contains(target_dir), "{target_dir}: {error}");
        }
        let error = host.install(&tarball_item(&url, "abc", "opt")).await.unwrap_err();
        assert!(error.contains("not a SHA-256"), "{error}");
        assert_eq!(requests.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn an_entry_escaping_the_target_fails_the_install() {
        let (home, host) = host();
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.as_old_mut().name[..11].copy_from_slice(b"../evil.txt");
        header.set_size(4);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Regular);
        header.set_cksum();
        builder.append(&header, &b"evil"[..]).unwrap();
        let body = builder.into_inner().unwrap();
        let (url, _) = serve(body.clone()).await;
        let error = host.install(&tarball_item(&url, &sha256_hex(&body), "opt")).await.unwrap_err();
        assert!(error.contains("escapes the target"), "{error}");
        assert!(!home.path().join("evil.txt").exists());
        assert!(!home.path().join(format!(".portolan/software/{}.done", sha256_hex(&body))).exists());
    }

    #[test]
    fn packages_need_a_valid_name_root_and_apt_get() {
        for good in ["curl", "g++", "libssl3", "python3.11", "0ad"] {
            assert!(valid_package_name(good), "{good}");
        }
        for bad in ["", "-y", "Curl", "curl;rm", "a b", "../x", "+x"] {
            assert!(!valid_package_name(bad), "{bad}");
            assert!(
                package_installer(bad, true, Some("/usr/bin/apt-get".into()))
                    .unwrap_err()
                    .contains("not a package name")
            );
        }
        let error = package_installer("curl", false, Some("/usr/bin/apt-get".into())).unwrap_err();
        assert!(error.starts_with("cannot install package curl:") && error.contains("root"), "{error}");
        let error = package_installer("curl", true, None).unwrap_err();
        assert!(error.starts_with("cannot install package curl:") && error.contains("apt-get"), "{error}");
        assert_eq!(
            package_installer("curl", true, Some("/usr/bin/apt-get".into())),
            Ok("/usr/bin/apt-get".into())
        );
    }

    async fn wait_exited(host: &RealHost) -> StartupState {
        for _ in 0..500 {
            let state = host.startup_state().await;
            if state != StartupState::Running {
                return state;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the startup command still runs after 10 s");
    }

    #[tokio::test]
    async fn the_startup_command_runs_in_the_home_and_its_exit_and_output_are_reported() {
        let (home, host) = host();
        assert_eq!(host.startup_state().await, StartupState::None);
        host.start(&Startup { command: "echo hi; pwd; echo oops >&2; exit 3".to_owned() }).await.unwrap();
        let StartupState::Exited { code, output_tail } = wait_exited(&host).await else {
            panic!("not exited")
        };
        assert_eq!(code, Some(3));
        let home_text = home.path().canonicalize().unwrap().display().to_string();
        assert!(
            output_tail.contains("hi\n") && output_tail.contains(&home_text) && output_tail.contains("oops"),
            "{output_tail:?}"
        );
    }

    #[tokio::test]
    async fn starting_again_stops_the_previous_command_and_its_group() {
        let (home, host) = host();
        let pid_file = home.path().join("background.pid");
        host.start(&Startup { command: "sleep 60 & echo $! > background.pid; sleep 60".to_owned() })
            .await
            .unwrap();
        assert_eq!(host.startup_state().await, StartupState::Running);
        let mut background = String::new();
        for _ in 0..250 {
            background = fs::read_to_string(&pid_file).unwrap_or_default();
            if background.ends_with('\n') {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let background = Pid::from_raw(background.trim().parse().unwrap()).unwrap();
        assert!(rustix::process::test_kill_process(background).is_ok());

        host.start(&Startup { command: "echo second".to_owned() }).await.unwrap();
        let state = wait_exited(&host).await;
        assert_eq!(state, StartupState::Exited { code: Some(0), output_tail: "second\n".to_owned() });
        let stat =
            fs::read_to_string(format!("/proc/{}/stat", background.as_raw_nonzero())).unwrap_or_default();
        let state = stat.rsplit_once(')').map(|(_, rest)| rest.trim_start().chars().next());
        assert!(
            matches!(state, None | Some(Some('Z'))),
            "the first command's background job was stopped: {stat}"
        );
    }

    #[tokio::test]
    async fn a_new_host_stops_the_command_an_earlier_agent_left_running() {
        let home = tempfile::tempdir().unwrap();
        let first = RealHost::new(home.path().to_owned());
        first.start(&Startup { command: "sleep 60".to_owned() }).await.unwrap();
        let pid: i32 =
            fs::read_to_string(home.path().join(".portolan/startup.pid")).unwrap().trim().parse().unwrap();
        let mut orphan = first.startup.lock().await.take().unwrap();
        drop(first);

        // The orphan's parent (this test) reaps it as it dies, as init would once the old agent is gone.
        let second = RealHost::new(home.path().to_owned());
        let started = std::time::Instant::now();
        let startup = Startup { command: "true".to_owned() };
        let (result, status) = tokio::join!(second.start(&startup), orphan.child.wait());
        result.unwrap();
        assert_eq!(status.unwrap().code(), None, "pid {pid} was killed by a signal");
        assert!(started.elapsed() < STOP_GRACE, "SIGTERM was enough: {:?}", started.elapsed());
    }

    #[test]
    fn the_output_tail_is_the_last_bytes_from_a_character_boundary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let text = format!("{}{}end", "x".repeat(5000), "é".repeat(OUTPUT_TAIL_BYTES));
        fs::write(&path, &text).unwrap();
        let tail = output_tail(&path);
        assert!(tail.ends_with("éend") && !tail.contains('x') && !tail.contains('\u{FFFD}'), "{tail}");
        assert!(tail.len() <= OUTPUT_TAIL_BYTES);
        assert_eq!(output_tail(&dir.path().join("missing")), "");
    }

    #[tokio::test]
    async fn metrics_on_this_machine_are_known() {
        let (_home, host) = host();
        let metrics = host.metrics().await;
        assert!(metrics.load1.is_some_and(|load| load >= 0.0), "{metrics:?}");
        let total = metrics.memory_total_mb.unwrap();
        let free = metrics.memory_free_mb.unwrap();
        assert!(total > 0.0 && free > 0.0 && free <= total, "{metrics:?}");
        assert!(metrics.disk_free_pct.is_some_and(|pct| (0.0..=100.0).contains(&pct)), "{metrics:?}");
        assert!(metrics.net_rx_bytes.is_some() && metrics.net_tx_bytes.is_some(), "{metrics:?}");
        assert_eq!(node_metrics(Path::new("/nonexistent/home")).disk_free_pct, None);
    }
}
