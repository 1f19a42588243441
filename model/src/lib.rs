//! The types the browser and the server share: the error every service answers with, the topology a
//! researcher asks for (with its validation, so the editor can check it in the browser), the mapper's world
//! format (which the reference testbed also exports), and the views the pages and the REST API show.
//!
//! Nothing here touches a database or the network, and everything compiles for `wasm32`. The `ssr` feature
//! adds what only the server needs on these types: OpenAPI schemas, HTTP responses, database-error mapping.

pub mod accounts;
pub mod error;
pub mod keys;
pub mod limits;
pub mod nodes;
pub mod projects;
pub mod slivers;
pub mod tokens;
pub mod topology;
pub mod world;
