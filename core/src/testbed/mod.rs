//! The portal's side of the testbed: where it is and how the portal authenticates. The client that talks
//! PLCAPI over XML-RPC, and the one place that classifies its errors, come with the nodes issue; this is the
//! slot `AppState` carries for it. (The reference testbed, a separate service, is the `reference-testbed`
//! crate.)

use std::fmt;

/// A PLCAPI endpoint and the portal's credentials there.
#[derive(Clone)]
pub struct Endpoint {
    /// The PLCAPI URL, e.g. `http://127.0.0.1:3101/PLCAPI/`.
    pub url: String,
    pub username: String,
    pub password: String,
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the password (Debug output reaches logs).
        f.debug_struct("Endpoint")
            .field("url", &self.url)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}
