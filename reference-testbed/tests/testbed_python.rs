//! PlanetLab users drove PLC with Python's `xmlrpc.client`: so must they drive the reference testbed.

use reference_testbed::{Settings, Testbed, clock::Clock, profile::Profile};

#[tokio::test]
async fn python_xmlrpc_client_drives_the_testbed() {
    let mut profile = Profile::mild();
    profile.churn.initially_down = 0.0;
    profile.lease.skew_probability = 0.0;
    let settings = Settings {
        seed: 1,
        profile,
        clock: Clock::scaled(1_790_000_000.0, 1.0),
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
