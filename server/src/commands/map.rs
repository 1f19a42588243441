//! `portolan map`: the mapper on files (or, with `--from-db`, on the live world in the portal's database), for
//! operators' what-if questions and for benchmarks. Reads a world and a topology (and optionally a policy) as
//! JSON, prints the answer as JSON. Errors name the file and, for bad content, the field.

use anyhow::{Context, anyhow};
use model::{error::AppError, topology::Topology};
use portolan_core::mapper::{DEFAULT_TIME_LIMIT_S, MapWorld, Policy, map};
use serde::de::DeserializeOwned;
use std::path::Path;

fn read_json<T: DeserializeOwned>(path: &Path, what: &str) -> anyhow::Result<T> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the {what} file {}", path.display()))?;
    serde_json::from_str(&text)
        .map_err(|e| anyhow!("the {what} file {} is not a valid {what}: {e}", path.display()))
}

fn named(err: AppError, file: &Path) -> anyhow::Error {
    match err.field {
        Some(field) => anyhow!("{}: {field}: {}", file.display(), err.message),
        None => anyhow!("{}", err.message),
    }
}

/// Runs the mapper on files and returns the answer as pretty JSON.
pub fn run(
    world: &Path,
    topology: &Path,
    policy: Option<&Path>,
    time_limit_s: Option<f64>,
) -> anyhow::Result<String> {
    let w: MapWorld = read_json(world, "world")?;
    solve(w, world, topology, policy, time_limit_s)
}

/// `portolan map --from-db`: the mapper on the live world, built from the portal's database as the swap
/// reconciler will build it (allocatable nodes, their latest metrics, the stored paths), under the stored
/// admission thresholds, or under the `--policy` file's when one is given (to ask "what if").
pub async fn run_from_db(
    db: &sea_orm::DatabaseConnection,
    topology: &Path,
    policy: Option<&Path>,
    time_limit_s: Option<f64>,
) -> anyhow::Result<String> {
    let stored = portolan_core::nodes::admission::get(db).await?;
    let now = chrono::Utc::now();
    let w = portolan_core::nodes::world::build(db, now, stored.allow_untested).await?;
    if policy.is_none() {
        let p =
            Policy { admission: portolan_core::nodes::admission::to_mapper(&stored), ..Policy::default() };
        let t: Topology = read_json(topology, "topology")?;
        t.validate().map_err(|e| named(e, topology))?;
        return answer(&w, &t, &p, time_limit_s);
    }
    solve(w, Path::new("(the database)"), topology, policy, time_limit_s)
}

fn answer(w: &MapWorld, t: &Topology, p: &Policy, time_limit_s: Option<f64>) -> anyhow::Result<String> {
    let answer = map(w, t, p, time_limit_s.unwrap_or(DEFAULT_TIME_LIMIT_S))
        .map_err(|e| anyhow!("{}{}", e.field.map(|f| format!("{f}: ")).unwrap_or_default(), e.message))?;
    Ok(serde_json::to_string_pretty(&answer)?)
}

fn solve(
    w: MapWorld,
    world: &Path,
    topology: &Path,
    policy: Option<&Path>,
    time_limit_s: Option<f64>,
) -> anyhow::Result<String> {
    let t: Topology = read_json(topology, "topology")?;
    let p: Policy = match policy {
        Some(path) => read_json(path, "policy")?,
        None => Policy::default(),
    };
    w.validate().map_err(|e| named(e, world))?;
    t.validate().map_err(|e| named(e, topology))?;
    if let Some(path) = policy {
        p.validate().map_err(|e| named(e, path))?;
    }
    answer(&w, &t, &p, time_limit_s)
}
