//! PlanetLab users drove PLC with Python's `xmlrpc.client`: so must they drive the reference testbed.

use reference_testbed::{Settings, Testbed, clock::Clock, profile::Profile};

/// Runs `plcapi_client.py` against a testbed whose clock starts at `origin` (Unix seconds).
async fn drive(origin: f64) {
    let mut profile = Profile::mild();
    profile.churn.initially_down = 0.0;
    profile.lease.skew_probability = 0.0;
    let settings = Settings {
        seed: 1,
        profile,
        clock: Clock::scaled(origin, 1.0),
        admins: vec![("admin@plc.test".into(), "adminpw".into())],
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/PLCAPI/", listener.local_addr().unwrap());
    tokio::spawn(reference_testbed::serve(Testbed::new(settings), listener, std::future::pending()));
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/plcapi_client.py");
    let output = tokio::process::Command::new("python3")
        .args([script, &url, "admin@plc.test", "adminpw"])
        .output()
        .await
        .expect("python3 runs");
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "the script failed:\n{stdout}\n{stderr}");
    assert_eq!(stdout.trim(), "OK");
}

#[tokio::test]
async fn python_xmlrpc_client_drives_the_testbed() {
    drive(1_790_000_000.0).await;
}

/// In 2039 every time the testbed answers is past 32 bits: Python reads the `i8` values as ints, and sends
/// its times as floats or datetimes.
#[tokio::test]
async fn python_xmlrpc_client_drives_the_testbed_after_2038() {
    drive(2_200_000_000.0).await;
}
