//! A flood of wrong log-ins (and registrations) does not slow the pages: argon2 runs on the blocking pool,
//! not on the async workers. Its own test binary, so that no other test competes for the two cores while it measures; SQLite
//! and PostgreSQL one after the other, on two workers as the portal has on this 2-core machine.

mod common;

use common::TestApp;
use reqwest::{Client, StatusCode};
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

const ROUNDS: usize = 4;
const FLOODERS: u8 = 48;

async fn flood_while_reading_a_page(app: TestApp) -> Vec<Duration> {
    let page = Client::new();
    let url = app.url("/login");
    let get_login = || async {
        let start = Instant::now();
        let response = page.get(&url).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        response.bytes().await.unwrap();
        start.elapsed()
    };
    let _ = get_login().await; // warm up
    // Built beforehand: building a client loads TLS roots, CPU work on this runtime's workers.
    let flooders: Vec<Client> = (0..FLOODERS)
        .map(|n| {
            Client::builder().local_address(IpAddr::V4(Ipv4Addr::new(127, 0, 1, 100 + n))).build().unwrap()
        })
        .collect();
    let mut times = Vec::new();
    for round in 0..ROUNDS {
        // Each flooder guesses another account from its own address, so nothing is throttled and every
        // attempt costs an argon2 verification: a burst of FLOODERS hashes at once.
        let burst: Vec<_> = (0..FLOODERS)
            .map(|n| {
                let url = app.url("/sf");
                let client = flooders[usize::from(n)].clone();
                tokio::spawn(async move {
                    let email = format!("flood{n}-{round}@example.org");
                    // Half log in with a wrong password, half register (hashing before any write).
                    let (endpoint, form, expected) = if n % 2 == 0 {
                        let form =
                            vec![("email", email.clone()), ("password", "a wrong password".to_owned())];
                        ("login", form, StatusCode::UNAUTHORIZED)
                    } else {
                        let form = vec![
                            ("email", email.clone()),
                            ("name", "Flood".to_owned()),
                            ("password", "trombone sunlit quarry".to_owned()),
                        ];
                        ("register", form, StatusCode::OK)
                    };
                    let response = client.post(format!("{url}/{endpoint}")).form(&form).send().await.unwrap();
                    assert_eq!(response.status(), expected, "{endpoint}");
                })
            })
            .collect();
        // Pages read while the burst is under way.
        while !burst.iter().all(tokio::task::JoinHandle::is_finished) {
            tokio::time::sleep(Duration::from_millis(10)).await;
            times.push(get_login().await);
        }
        for task in burst {
            task.await.unwrap();
        }
    }
    times
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_wrong_log_ins_does_not_slow_the_pages() {
    for app in [TestApp::sqlite().await, TestApp::postgres().await] {
        let backend = app.backend;
        let times = flood_while_reading_a_page(app).await;
        let mut times = times;
        times.sort_unstable();
        let worst = &times[times.len().saturating_sub(5)..];
        // With hashing on the two workers a page waited behind the burst's hashes (up to 500 ms here); off
        // them the worst of a few hundred pages stays under 40 ms. A bound with room for a loaded machine.
        assert!(
            worst.iter().all(|t| *t < Duration::from_millis(200)),
            "{backend}: the slowest of {} GET /login during the bursts took {worst:?}",
            times.len()
        );
    }
}
