//! The operators' admission thresholds: stored (one row), audited, and applied by the mapper as hard filters
//! (`mapper::Admission`). A threshold that is off (`null`) admits anything; one that is set never admits a
//! node whose metric is unknown. `allow_untested` decides whether nodes in pool `new` (discovered, no
//! end-to-end test passed yet) may be lent.

use super::{require_operator, world};
use crate::audit;
use crate::auth::Caller;
use crate::db::entity::admission_threshold;
use crate::error::AppResult;
use crate::mapper::{Admission, policy::Rejection};
use chrono::{DateTime, Utc};
use model::nodes::{AdmissionCounts, AdmissionView, ClassCount};
use model::topology::LinkClass;
use sea_orm::{ActiveModelTrait, ConnectionTrait, EntityTrait, Set, TransactionSession, TransactionTrait};
use std::collections::HashMap;

/// The thresholds of a fresh portal: the mapper's defaults, untested nodes lent (no liveness check exists
/// yet to make them `free`).
pub fn defaults() -> AdmissionView {
    let a = Admission::default();
    AdmissionView {
        max_load: a.max_load,
        min_disk_free_pct: a.min_disk_free_pct,
        min_memory_free_mb: a.min_memory_free_mb,
        max_metric_age_s: a.max_metric_age_s,
        max_path_age_s: a.max_path_age_s,
        exclude_after_failures: a.exclude_after_failures,
        allow_untested: true,
    }
}

/// The mapper's form of the thresholds.
pub fn to_mapper(view: &AdmissionView) -> Admission {
    Admission {
        max_load: view.max_load,
        min_disk_free_pct: view.min_disk_free_pct,
        min_memory_free_mb: view.min_memory_free_mb,
        max_metric_age_s: view.max_metric_age_s,
        max_path_age_s: view.max_path_age_s,
        exclude_after_failures: view.exclude_after_failures,
    }
}

/// Checks every field; the error names the one that is wrong.
pub fn validate(view: &AdmissionView) -> AppResult<()> {
    to_mapper(view).validate_as("")
}

pub async fn get(db: &impl ConnectionTrait) -> AppResult<AdmissionView> {
    Ok(match admission_threshold::Entity::find_by_id(1).one(db).await? {
        Some(row) => AdmissionView {
            max_load: row.max_load,
            min_disk_free_pct: row.min_disk_free_pct,
            min_memory_free_mb: row.min_memory_free_mb,
            max_metric_age_s: row.max_metric_age_s,
            max_path_age_s: row.max_path_age_s,
            exclude_after_failures: u32::try_from(row.exclude_after_failures).unwrap_or(0),
            allow_untested: row.allow_untested,
        },
        None => defaults(),
    })
}

/// Stores new thresholds (operators only); bad values change nothing.
pub async fn put<C: ConnectionTrait + TransactionTrait>(
    db: &C,
    now: DateTime<Utc>,
    caller: &Caller,
    view: &AdmissionView,
) -> AppResult<AdmissionView> {
    require_operator(caller)?;
    caller.require_write()?;
    validate(view)?;
    let txn = crate::db::begin_writing(db).await?;
    let before = get(&txn).await?;
    let row = admission_threshold::ActiveModel {
        id: Set(1),
        max_load: Set(view.max_load),
        min_disk_free_pct: Set(view.min_disk_free_pct),
        min_memory_free_mb: Set(view.min_memory_free_mb),
        max_metric_age_s: Set(view.max_metric_age_s),
        max_path_age_s: Set(view.max_path_age_s),
        exclude_after_failures: Set(i32::try_from(view.exclude_after_failures).unwrap_or(i32::MAX)),
        allow_untested: Set(view.allow_untested),
        updated_at: Set(Some(now)),
        updated_by: Set(Some(caller.user_id)),
    };
    if admission_threshold::Entity::find_by_id(1).one(&txn).await?.is_some() {
        row.update(&txn).await?;
    } else {
        row.insert(&txn).await?;
    }
    let detail = serde_json::json!({ "before": before, "after": view });
    audit::record(&txn, now, Some(caller.user_id), "admission.update", "admission", detail).await?;
    txn.commit().await?;
    Ok(view.clone())
}

/// How many nodes of each link class would pass `view` now, and why the others fail: the "what if" view,
/// computed on the world the mapper would see, without storing anything.
pub async fn what_if(
    db: &impl ConnectionTrait,
    now: DateTime<Utc>,
    view: &AdmissionView,
) -> AppResult<AdmissionCounts> {
    validate(view)?;
    let nodes = world::candidates(db, now, view.allow_untested).await?;
    let admission = to_mapper(view);
    let mut per_class: HashMap<LinkClass, (u64, u64)> = HashMap::new();
    let mut why: HashMap<Rejection, u64> = HashMap::new();
    let mut passing = std::collections::HashSet::new();
    for n in &nodes {
        let entry = per_class.entry(n.link_class).or_default();
        entry.0 += 1;
        match admission.check(n) {
            None => {
                entry.1 += 1;
                passing.insert(n.id);
            }
            Some(r) => *why.entry(r).or_default() += 1,
        }
    }
    // Counted by the database when every candidate or none passes (the common case while metrics are
    // unknown); only a partial pass needs the paths themselves.
    let since = view.max_path_age_s.map(|s| now - chrono::TimeDelta::milliseconds((s * 1000.0) as i64));
    let fresh_paths = if passing.is_empty() {
        0
    } else if passing.len() == nodes.len() {
        world::count_paths(db, view.allow_untested, since).await?
    } else {
        let all = world::build(db, now, view.allow_untested).await?;
        all.paths
            .iter()
            .filter(|p| passing.contains(&p.a) && passing.contains(&p.b) && admission.path_fresh(p.age_s))
            .count() as u64
    };
    let classes = LinkClass::ALL
        .iter()
        .map(|c| {
            let (candidates, passing) = per_class.get(c).copied().unwrap_or_default();
            ClassCount { class: c.as_str().to_owned(), candidates, passing }
        })
        .collect();
    let mut rejections: Vec<(String, u64)> =
        why.into_iter().map(|(r, n)| (r.describe(&admission), n)).collect();
    rejections.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    Ok(AdmissionCounts { classes, rejections, fresh_paths })
}
