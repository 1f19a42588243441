//! Claims and leases: how a reconciler takes due rows of a table for itself, for a while.
//!
//! Any table with the standard columns can be claimed from: an integer `id`, `due_at` (when the row next needs
//! a pass; null: never), `lease_owner` and `lease_until` (who holds it, and until when). A claimer
//!
//! 1. [`Leased::claim`]s up to `n` due rows (`due_at <= now`) that nobody holds (`lease_until` null or
//!    `<= now`), oldest due first, in **one atomic statement**. Each row claimed is returned to exactly one
//!    claimer, however many claim at once, on one process or many;
//! 2. works, [`Leased::extend`]ing its lease before it runs out. An extension succeeds only while the lease
//!    is still the caller's and unexpired: once it has run out, another claimer may have taken the row, and
//!    the first must stop (its further writes should be conditional on the lease, or idempotent);
//! 3. [`Leased::release`]s the row with its next due time (or none). Release succeeds only while the row is
//!    still the caller's (an expired lease nobody has taken yet may still be released: nobody else worked).
//!
//! A claimer that dies simply stops extending; its rows become claimable when their leases run out.
//!
//! The statement is `UPDATE t SET lease_owner = …, lease_until = … WHERE id IN (SELECT id FROM t WHERE <due
//! and free> ORDER BY due_at, id LIMIT n …) RETURNING …`. On PostgreSQL the subquery ends `FOR UPDATE SKIP
//! LOCKED`: concurrent claimers skip rows another is claiming rather than wait for them, and a row another
//! claimer has just taken is re-checked against the condition (it is no longer free) before it is updated.
//! SQLite has one writer at a time, so the statement alone is atomic there, and has no lock clause (sea-query
//! would silently drop one; the SQL is written out per backend here instead). `RETURNING` on SQLite needs
//! 3.35 and sea-orm's `sqlite-use-returning-for-3_35`, named in the workspace's `Cargo.toml`.
//!
//! Times are the portal [`Clock`](crate::clock::Clock)'s: callers pass `clock.now()`. On SQLite timestamps
//! are RFC 3339 text in UTC (how sqlx writes a `DateTime<Utc>`), which compares in time order as text.

use chrono::{DateTime, TimeDelta, Utc};
use sea_orm::{ConnectionTrait, DatabaseBackend, DbErr, Statement, Value};

/// Who claims: a name unique to one claimer (a loop in one process), so that two processes running the same
/// loop never mistake each other's leases for their own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner(String);

impl Owner {
    /// `name` (what the claimer is, e.g. `discovery`) made unique: the process id and 64 random bits.
    pub fn new(name: &str) -> Self {
        Self(format!("{name}/{}/{:016x}", std::process::id(), rand::random::<u64>()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A row held by its claimer until `until`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim {
    pub id: i64,
    /// When the row was due (the claim does not change it).
    pub due_at: DateTime<Utc>,
    pub owner: Owner,
    pub until: DateTime<Utc>,
}

/// A table whose rows are claimed, optionally narrowed to the rows where one column has one value (e.g.
/// `reconcile_tasks` of one `kind`).
#[derive(Clone, Debug)]
pub struct Leased {
    table: &'static str,
    filter: Option<(&'static str, String)>,
}

/// The table of tasks that belong to no row of their own (see the migration for its columns).
pub const RECONCILE_TASKS: &str = "reconcile_tasks";

fn identifier(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

fn unsupported(backend: DatabaseBackend) -> DbErr {
    DbErr::Custom(format!("claims: unsupported database backend {backend:?}"))
}

impl Leased {
    /// The rows of `table`.
    ///
    /// # Panics
    /// If `table` is not a plain lower-case SQL identifier (it is written into the SQL).
    pub fn table(table: &'static str) -> Self {
        assert!(identifier(table), "not a table name: {table:?}");
        Self { table, filter: None }
    }

    /// Only the rows where `column` equals `value`.
    ///
    /// # Panics
    /// If `column` is not a plain lower-case SQL identifier.
    pub fn only(mut self, column: &'static str, value: impl Into<String>) -> Self {
        assert!(identifier(column), "not a column name: {column:?}");
        self.filter = Some((column, value.into()));
        self
    }

    /// The `reconcile_tasks` of one `kind`.
    pub fn tasks(kind: &str) -> Self {
        Self::table(RECONCILE_TASKS).only("kind", kind)
    }

    /// Claims up to `limit` due, unheld rows for `owner` until `now + lease`, oldest due first.
    pub async fn claim(
        &self,
        db: &impl ConnectionTrait,
        owner: &Owner,
        now: DateTime<Utc>,
        lease: TimeDelta,
        limit: u32,
    ) -> Result<Vec<Claim>, DbErr> {
        let backend = db.get_database_backend();
        let until = now + lease;
        let t = self.table;
        let mut values: Vec<Value> = vec![owner.as_str().into(), until.into(), now.into(), now.into()];
        let filter = match &self.filter {
            Some((column, value)) => {
                values.push(value.as_str().into());
                match backend {
                    DatabaseBackend::Postgres => format!(" AND {column} = ${}", values.len()),
                    _ => format!(" AND {column} = ?"),
                }
            }
            None => String::new(),
        };
        values.push(i64::from(limit).into());
        let sql = match backend {
            DatabaseBackend::Postgres => format!(
                "UPDATE {t} SET lease_owner = $1, lease_until = $2 WHERE id IN (\
                 SELECT id FROM {t} WHERE due_at <= $3 AND (lease_until IS NULL OR lease_until <= $4){filter} \
                 ORDER BY due_at, id LIMIT ${} FOR UPDATE SKIP LOCKED) \
                 RETURNING CAST(id AS BIGINT) AS id, due_at",
                values.len()
            ),
            DatabaseBackend::Sqlite => format!(
                "UPDATE {t} SET lease_owner = ?, lease_until = ? WHERE id IN (\
                 SELECT id FROM {t} WHERE due_at <= ? AND (lease_until IS NULL OR lease_until <= ?){filter} \
                 ORDER BY due_at, id LIMIT ?) \
                 RETURNING id, due_at"
            ),
            other => return Err(unsupported(other)),
        };
        let rows = db.query_all_raw(Statement::from_sql_and_values(backend, sql, values)).await?;
        let mut claims = rows
            .into_iter()
            .map(|row| {
                Ok(Claim {
                    id: row.try_get("", "id")?,
                    due_at: row.try_get("", "due_at")?,
                    owner: owner.clone(),
                    until,
                })
            })
            .collect::<Result<Vec<_>, DbErr>>()?;
        // RETURNING follows no ORDER BY; hand the rows out in the order they were chosen.
        claims.sort_by_key(|c| (c.due_at, c.id));
        Ok(claims)
    }

    /// Moves `claim`'s lease to `now + lease`, if it is still the claimer's and has not run out; `false`
    /// (and `claim` unchanged) otherwise: the claimer has lost the row and must stop working on it.
    pub async fn extend(
        &self,
        db: &impl ConnectionTrait,
        claim: &mut Claim,
        now: DateTime<Utc>,
        lease: TimeDelta,
    ) -> Result<bool, DbErr> {
        let until = now + lease;
        let values: Vec<Value> = vec![until.into(), claim.id.into(), claim.owner.as_str().into(), now.into()];
        let updated = self
            .execute(
                db,
                "UPDATE {t} SET lease_until = $1 WHERE id = $2 AND lease_owner = $3 AND lease_until > $4",
                values,
            )
            .await?;
        if updated {
            claim.until = until;
        }
        Ok(updated)
    }

    /// Gives the row up, due again at `next_due` (never, if `None`); `false` if it was no longer the
    /// claimer's (its lease ran out and another claimer took it).
    pub async fn release(
        &self,
        db: &impl ConnectionTrait,
        claim: Claim,
        next_due: Option<DateTime<Utc>>,
    ) -> Result<bool, DbErr> {
        let values: Vec<Value> = vec![next_due.into(), claim.id.into(), claim.owner.as_str().into()];
        self.execute(
            db,
            "UPDATE {t} SET lease_owner = NULL, lease_until = NULL, due_at = $1 WHERE id = $2 AND lease_owner = $3",
            values,
        )
        .await
    }

    /// Runs `sql` (`{t}` for the table, `$n` placeholders in order) and says whether it changed one row.
    async fn execute(&self, db: &impl ConnectionTrait, sql: &str, values: Vec<Value>) -> Result<bool, DbErr> {
        let backend = db.get_database_backend();
        let mut sql = sql.replace("{t}", self.table);
        match backend {
            DatabaseBackend::Postgres => {}
            DatabaseBackend::Sqlite => {
                for n in (1..=values.len()).rev() {
                    sql = sql.replace(&format!("${n}"), "?");
                }
            }
            other => return Err(unsupported(other)),
        }
        let result = db.execute_raw(Statement::from_sql_and_values(backend, sql, values)).await?;
        Ok(result.rows_affected() == 1)
    }
}

/// The consecutive failed passes of the task `kind`/`key` so far (0 if there is no such task).
pub async fn task_attempts(db: &impl ConnectionTrait, kind: &str, key: &str) -> Result<i32, DbErr> {
    let backend = db.get_database_backend();
    let sql = match backend {
        DatabaseBackend::Postgres => "SELECT attempts FROM reconcile_tasks WHERE kind = $1 AND key = $2",
        DatabaseBackend::Sqlite => "SELECT attempts FROM reconcile_tasks WHERE kind = ? AND key = ?",
        other => return Err(unsupported(other)),
    };
    let row =
        db.query_one_raw(Statement::from_sql_and_values(backend, sql, [kind.into(), key.into()])).await?;
    Ok(row.map(|r| r.try_get::<i32>("", "attempts")).transpose()?.unwrap_or(0))
}

/// Registers the task `kind`/`key` (due at `due_at`) unless it exists, and returns its id either way.
pub async fn ensure_task(
    db: &impl ConnectionTrait,
    kind: &str,
    key: &str,
    due_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<i64, DbErr> {
    let backend = db.get_database_backend();
    let (insert, select) = match backend {
        DatabaseBackend::Postgres => (
            "INSERT INTO reconcile_tasks (kind, key, due_at, attempts, updated_at) VALUES ($1, $2, $3, 0, $4) \
             ON CONFLICT (kind, key) DO NOTHING",
            "SELECT CAST(id AS BIGINT) AS id FROM reconcile_tasks WHERE kind = $1 AND key = $2",
        ),
        DatabaseBackend::Sqlite => (
            "INSERT INTO reconcile_tasks (kind, key, due_at, attempts, updated_at) VALUES (?, ?, ?, 0, ?) \
             ON CONFLICT (kind, key) DO NOTHING",
            "SELECT id FROM reconcile_tasks WHERE kind = ? AND key = ?",
        ),
        other => return Err(unsupported(other)),
    };
    db.execute_raw(Statement::from_sql_and_values(
        backend,
        insert,
        [kind.into(), key.into(), due_at.into(), now.into()],
    ))
    .await?;
    let row = db
        .query_one_raw(Statement::from_sql_and_values(backend, select, [kind.into(), key.into()]))
        .await?
        .ok_or_else(|| DbErr::RecordNotFound(format!("reconcile task {kind}/{key}")))?;
    row.try_get("", "id")
}

/// Releases a claimed task after a pass: on success (`error` none) due again at `next_due` with its
/// attempts reset; on failure at `next_due` (the caller's backoff) with one more attempt and the error kept.
/// `false` if the task was no longer the claimer's.
pub async fn finish_task(
    db: &impl ConnectionTrait,
    claim: Claim,
    next_due: Option<DateTime<Utc>>,
    error: Option<&str>,
    now: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let attempts = if error.is_some() { "attempts + 1" } else { "0" };
    let sql = format!(
        "UPDATE {{t}} SET lease_owner = NULL, lease_until = NULL, due_at = $1, attempts = {attempts}, \
         last_error = $2, updated_at = $3 WHERE id = $4 AND lease_owner = $5"
    );
    let values: Vec<Value> = vec![
        next_due.into(),
        error.map(str::to_owned).into(),
        now.into(),
        claim.id.into(),
        claim.owner.as_str().into(),
    ];
    Leased::table(RECONCILE_TASKS).execute(db, &sql, values).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_are_unique_and_say_what_they_are() {
        let (a, b) = (Owner::new("discovery"), Owner::new("discovery"));
        assert_ne!(a, b);
        assert!(a.as_str().starts_with("discovery/"));
    }

    #[test]
    #[should_panic(expected = "not a table name")]
    fn table_names_are_plain_identifiers() {
        Leased::table("tasks; DROP TABLE users");
    }

    #[test]
    #[should_panic(expected = "not a column name")]
    fn filter_columns_are_plain_identifiers() {
        Leased::table("nodes").only("kind = kind OR 1", "x");
    }
}
