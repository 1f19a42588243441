//! Nodes: the portal's view of the testbed's sites, nodes and paths, what discovery did, and the operators'
//! admission thresholds.
//!
//! - `sites`: one row per site, identified by its `login_base` (unique); `testbed_id` is the testbed's
//!   current `site_id`. `present` is false once the testbed stops listing it (`gone_at` says when).
//! - `nodes`: one row per node, **`id` is Portolan's own node id** (the testbed's `node_id`, hostname and IP
//!   are attributes that can change: see `portolan_core::nodes::identity`). `site_id` → sites (restrict:
//!   sites are never deleted while a node names them). `pool` ∈ {`new`, `free`, `down`, `gone`, `held`}
//!   (checked). Metrics (`load`, `memory_free_mb`, `disk_free_pct`, `metrics_at`) are null while unknown.
//!   `last_seen` is when a sync last listed the node (written when it changes, and at most hourly
//!   otherwise). The standard reconcile columns (`due_at`, `lease_owner`, `lease_until`) are for the
//!   liveness loop of the slivers issue.
//! - `node_events`: a node's identity history (`kind` ∈ {`appeared`, `changed`, `gone`, `returned`,
//!   `replaced`, `held`, `decided`}, old and new identifying attributes as JSON, the match score). Deleted with
//!   the node (cascade): nodes are never deleted except a held duplicate merged into its match, whose events
//!   move first.
//! - `identity_decisions`: ambiguous matches waiting for an operator: the held node, the candidates with
//!   their scores (JSON), why; `decision` (`accept:<node id>` or `new`) and who made it once decided.
//! - `paths`: the latest measurement per unordered node pair (`node_a < node_b`, Portolan ids), with when the
//!   sensor measured it and when the portal last wrote it. No foreign keys: checking two per row tripled the
//!   cost of ingesting the feed's 120,000 pairs on PostgreSQL, and nodes are never deleted but by an
//!   operator's merge of a held duplicate, which deletes its paths itself. On PostgreSQL the table keeps
//!   free room on each page (`fillfactor` 45) so that each round's updates stay on their pages. History,
//!   when wanted, goes in a table of its own keyed the same way; this one stays "latest per pair".
//! - `discovery_runs`: one row per pass of discovery (`kind` `nodes` or `paths`): when, how long, what
//!   changed (JSON counts), the error if it failed. Pruned to the latest few hundred.
//! - `admission_thresholds`: one row (`id` = 1) of thresholds; a null threshold is off.

use crate::index;
use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

const POOLS: [&str; 5] = ["new", "free", "down", "gone", "held"];
const EVENTS: [&str; 7] = ["appeared", "changed", "gone", "returned", "replaced", "held", "decided"];

fn one_of(column: &'static str, values: &[&str]) -> SimpleExpr {
    Expr::col(Alias::new(column)).is_in(values.iter().map(|v| (*v).to_owned()))
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("sites")
                    .col(pk_auto("id"))
                    .col(integer("testbed_id"))
                    .col(string_len("login_base", 64))
                    .col(string_len("name", 256))
                    .col(boolean("enabled"))
                    .col(integer_null("max_slices"))
                    .col(double_null("latitude"))
                    .col(double_null("longitude"))
                    .col(boolean("present"))
                    .col(timestamp_with_time_zone("first_seen"))
                    .col(timestamp_with_time_zone("last_seen"))
                    .col(timestamp_with_time_zone_null("gone_at"))
                    .to_owned(),
            )
            .await?;
        manager.create_index(index("sites", "sites_login_base", &["login_base"], true)).await?;

        manager
            .create_table(
                Table::create()
                    .table("nodes")
                    .col(big_pk_auto("id"))
                    .col(integer_null("testbed_id"))
                    .col(string_len("hostname", 256))
                    .col(string_len_null("ip", 64))
                    .col(text_null("host_key"))
                    .col(integer("site_id"))
                    .col(string_len("link_class", 32))
                    .col(string_len_null("country", 8))
                    .col(string_len("boot_state", 32))
                    .col(timestamp_with_time_zone_null("last_contact"))
                    .col(text("tags"))
                    .col(integer_null("cpu_cores"))
                    .col(integer_null("memory_mb"))
                    .col(integer_null("disk_gb"))
                    .col(string_len("pool", 16).check(one_of("pool", &POOLS)))
                    .col(double_null("load"))
                    .col(double_null("memory_free_mb"))
                    .col(double_null("disk_free_pct"))
                    .col(timestamp_with_time_zone_null("metrics_at"))
                    .col(double("reliability").default(1.0))
                    .col(integer("recent_failures").default(0))
                    .col(timestamp_with_time_zone("first_seen"))
                    .col(timestamp_with_time_zone("last_seen"))
                    .col(timestamp_with_time_zone_null("gone_at"))
                    .col(timestamp_with_time_zone_null("due_at"))
                    .col(string_len_null("lease_owner", 200))
                    .col(timestamp_with_time_zone_null("lease_until"))
                    .col(timestamp_with_time_zone("updated_at"))
                    .foreign_key(
                        ForeignKey::create()
                            .name("nodes_site")
                            .from("nodes", "site_id")
                            .to("sites", "id")
                            .on_delete(ForeignKeyAction::Restrict),
                    )
                    .to_owned(),
            )
            .await?;
        for (name, cols) in [
            ("nodes_testbed_id", &["testbed_id"][..]),
            ("nodes_hostname", &["hostname"]),
            ("nodes_site", &["site_id"]),
            ("nodes_pool", &["pool"]),
            ("nodes_due", &["due_at"]),
        ] {
            manager.create_index(index("nodes", name, cols, false)).await?;
        }

        manager
            .create_table(
                Table::create()
                    .table("node_events")
                    .col(big_pk_auto("id"))
                    .col(big_integer("node_id"))
                    .col(timestamp_with_time_zone("at"))
                    .col(string_len("kind", 16).check(one_of("kind", &EVENTS)))
                    .col(integer_null("score"))
                    .col(text("old"))
                    .col(text("new"))
                    .col(text("detail"))
                    .foreign_key(
                        ForeignKey::create()
                            .name("node_events_node")
                            .from("node_events", "node_id")
                            .to("nodes", "id")
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager.create_index(index("node_events", "node_events_node", &["node_id", "at"], false)).await?;

        manager
            .create_table(
                Table::create()
                    .table("identity_decisions")
                    .col(big_pk_auto("id"))
                    .col(big_integer("node_id"))
                    .col(text("candidates"))
                    .col(text("reason"))
                    .col(timestamp_with_time_zone("created_at"))
                    .col(timestamp_with_time_zone_null("decided_at"))
                    .col(string_len_null("decision", 64))
                    .col(integer_null("decided_by"))
                    .foreign_key(
                        ForeignKey::create()
                            .name("identity_decisions_node")
                            .from("identity_decisions", "node_id")
                            .to("nodes", "id")
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("identity_decisions_decided_by")
                            .from("identity_decisions", "decided_by")
                            .to("users", "id")
                            .on_delete(ForeignKeyAction::SetNull),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index("identity_decisions", "identity_decisions_node", &["node_id"], false))
            .await?;

        manager
            .create_table(
                Table::create()
                    .table("paths")
                    .col(big_integer("node_a"))
                    .col(big_integer("node_b"))
                    .col(double("latency_ms"))
                    .col(double("bandwidth_kbps"))
                    .col(double("loss"))
                    .col(timestamp_with_time_zone("measured_at"))
                    .col(timestamp_with_time_zone("seen_at"))
                    .primary_key(Index::create().col("node_a").col("node_b"))
                    .check(Expr::col(Alias::new("node_a")).lt(Expr::col(Alias::new("node_b"))))
                    .to_owned(),
            )
            .await?;
        if manager.get_database_backend() == sea_orm_migration::sea_orm::DatabaseBackend::Postgres {
            // Room on each page for the next round's version of its rows: updates stay on the page (HOT)
            // and touch no index, so a round of the feed rewrites in a third of the time.
            manager.get_connection().execute_unprepared("ALTER TABLE paths SET (fillfactor = 45)").await?;
        }
        manager.create_index(index("paths", "paths_node_b", &["node_b"], false)).await?;

        manager
            .create_table(
                Table::create()
                    .table("discovery_runs")
                    .col(big_pk_auto("id"))
                    .col(string_len("kind", 16).check(one_of("kind", &["nodes", "paths"])))
                    .col(timestamp_with_time_zone("started_at"))
                    .col(big_integer("duration_ms"))
                    .col(boolean("ok"))
                    .col(text("counts"))
                    .col(text_null("error"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index("discovery_runs", "discovery_runs_kind", &["kind", "started_at"], false))
            .await?;

        manager
            .create_table(
                Table::create()
                    .table("admission_thresholds")
                    .col(integer("id").primary_key())
                    .col(double_null("max_load"))
                    .col(double_null("min_disk_free_pct"))
                    .col(double_null("min_memory_free_mb"))
                    .col(double_null("max_metric_age_s"))
                    .col(double_null("max_path_age_s"))
                    .col(integer("exclude_after_failures"))
                    .col(boolean("allow_untested"))
                    .col(timestamp_with_time_zone_null("updated_at"))
                    .col(integer_null("updated_by"))
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            "admission_thresholds",
            "discovery_runs",
            "paths",
            "identity_decisions",
            "node_events",
            "nodes",
            "sites",
        ] {
            manager.drop_table(Table::drop().table(table).to_owned()).await?;
        }
        Ok(())
    }
}
