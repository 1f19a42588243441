//! The `portolan` binary's portal commands: `migrate`, `admin create-user`, `admin make-operator`, and a bad
//! setting stopping the start with the variable's name.

use std::io::Write;
use std::process::{Command, Stdio};

/// A `portolan` command with only the environment given here (no `DATABASE_URL` or ports inherited).
fn command(data_dir: &std::path::Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_portolan"));
    command
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("PORTOLAN_DATA_DIR", data_dir)
        .env("PORTOLAN_LOG", "warn");
    command
}

fn portolan(data_dir: &std::path::Path, args: &[&str], stdin: &str) -> (bool, String, String) {
    let mut child = command(data_dir, args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// Waits (bounded polling) for `child` to exit; kills it and fails with `else_panic` after `seconds`.
fn exit_within(child: &mut std::process::Child, seconds: u64, else_panic: &str) -> std::process::ExitStatus {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            panic!("{else_panic}");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn admin_commands_create_users_and_operators() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, _, err) = portolan(dir.path(), &["migrate"], "");
    assert!(ok, "{err}");
    assert!(dir.path().join("portolan.db").exists());

    let create = ["admin", "create-user", "--email", "Ops@Example.org", "--name", "Ops"];
    let (ok, out, err) = portolan(dir.path(), &create, "a long enough password\n");
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "Ops <ops@example.org> operator=false");
    let (ok, _, err) = portolan(dir.path(), &create, "a long enough password\n");
    assert!(!ok && err.contains("exists already"), "{err}");
    let (ok, _, err) =
        portolan(dir.path(), &["admin", "create-user", "--email", "x@example.org", "--name", "X"], "short\n");
    assert!(!ok && err.contains("at least 10 characters"), "{err}");

    let (ok, out, _) = portolan(dir.path(), &["admin", "make-operator", "ops@example.org"], "");
    assert!(ok && out.contains("operator=true"), "{out}");
    let (ok, out, _) = portolan(dir.path(), &["admin", "make-operator", "--revoke", "ops@example.org"], "");
    assert!(ok && out.contains("operator=false"), "{out}");
    let (ok, _, err) = portolan(dir.path(), &["admin", "make-operator", "nobody@example.org"], "");
    assert!(!ok && err.contains("not found"), "{err}");
}

#[test]
fn a_bad_setting_stops_the_start_naming_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    // Should the check ever break, `serve` must not start for good on fixed ports: any free port, and a
    // bounded wait that fails the test.
    let mut child = command(dir.path(), &["serve"])
        .env("PORTOLAN_SESSION_DAYS", "forever")
        .env("PORTOLAN_LISTEN", "127.0.0.1:0")
        .env("PORTOLAN_TESTBED_LISTEN", "127.0.0.1:0")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let status = exit_within(&mut child, 30, "serve started despite a bad setting");
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(!status.success());
    assert!(err.contains("PORTOLAN_SESSION_DAYS"), "{err}");
}

/// A service manager (systemd, Docker, Kubernetes) stops `serve` with SIGTERM: it shuts down as on
/// Ctrl-C (open requests are answered, the loops stop) and exits 0, rather than dying on the signal.
#[test]
fn serve_shuts_down_gracefully_on_sigterm() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let mut child = command(dir.path(), &["serve"])
        .env("PORTOLAN_LISTEN", "127.0.0.1:0")
        .env("PORTOLAN_TESTBED_LISTEN", "127.0.0.1:0")
        .env("PORTOLAN_LOG", "info")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    // Wait (bounded) for it to listen; the lines are read on a thread so that the wait cannot hang.
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut log = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !log.iter().any(|l: &String| l.contains("Portolan listening on")) {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => log.push(line),
            Err(_) => {
                let _ = child.kill();
                panic!("serve did not start: {log:#?}");
            }
        }
    }
    let killed = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(killed.success());
    let status = exit_within(&mut child, 30, "serve did not stop on SIGTERM");
    log.extend(rx.try_iter());
    assert!(status.success(), "{status}: {log:#?}");
    assert!(log.iter().any(|l| l.contains("shutting down")), "{log:#?}");
}
