//! Log-in throttling: per account and per client, with exponential backoff, kept in the database
//! (`login_throttle`) so that every `serve` process on one PostgreSQL sees the same counts.
//!
//! Each key (an account, a client address) has a budget of free failed attempts; from the last free one
//! on, every failure locks the key for a backoff that doubles up to a cap. While a key is locked its attempts
//! are refused with `429 Too Many Requests` and `Retry-After`, *before* any password is checked, so a locked
//! account is refused even the right password, and refused attempts cost no argon2 time. A quiet period
//! forgets a key's failures.
//!
//! Attempts are reserved before the password is checked: one atomic upsert counts the attempt as a failure
//! and sets the lock it would earn, unless the key is locked already. So parallel attempts cannot overtake
//! the count (200 concurrent guesses on one account get [`ACCOUNT`]`.free` verifications, not 200). A
//! successful log-in then forgets the account's failures and takes the client's reservation back (a
//! client's successes do not count against it: many people behind one address log in every morning).
//!
//! Account keys are hashes of the normalised email, taken whether or not such an account exists, so the
//! throttle answers an unknown email exactly as a known one and does not reveal which exist; the email is
//! not stored. Client keys are the client's address (IPv6: its /64, which one host usually has whole): the
//! connection's peer, or, when the peer is one of the configured `trusted_proxies`, the address the proxy
//! forwarded (resolved in the server's HTTP layer, `server/src/web.rs`).

use crate::error::{AppError, AppResult};
use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DatabaseBackend, DbErr, Statement, Value};
use sha2::{Digest, Sha256};
use std::net::IpAddr;

/// How a kind of key is throttled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Failed attempts before the first lock.
    pub free: i32,
    /// The first lock, in seconds; each further failure doubles it...
    pub base_s: i64,
    /// ...up to this.
    pub max_s: i64,
    /// A key without a failure for this long starts afresh.
    pub reset_s: i64,
}

/// Per account: 5 failures, then 1, 2, 4, 8 and at most 15 minutes per further failure (about four guesses
/// an hour once locked); forgotten after a day without failures or at a successful log-in.
pub const ACCOUNT: Policy = Policy { free: 5, base_s: 60, max_s: 900, reset_s: 86_400 };

/// Per client address: 20 failures (on any accounts), then the same backoff; forgotten after an hour
/// without failures.
pub const CLIENT: Policy = Policy { free: 20, base_s: 60, max_s: 900, reset_s: 3_600 };

/// Registrations per client address, successful or not (each costs a strength estimate and an argon2 hash,
/// and stores a row): 20, then one per 5, 10, 20, 40 and at most 60 minutes; forgotten after a day without
/// one. A classroom behind one address registers; a script making accounts by the thousand does not.
pub const REGISTRATIONS: Policy = Policy { free: 20, base_s: 300, max_s: 3_600, reset_s: 86_400 };

impl Policy {
    /// The lock earned by the `n`-th counted failure (0: none).
    pub fn lock_s(&self, n: i32) -> i64 {
        if n < self.free {
            return 0;
        }
        let doublings = u32::try_from(n - self.free).unwrap_or(u32::MAX).min(32);
        self.base_s.saturating_mul(1_i64 << doublings).min(self.max_s)
    }

    /// `lock_s` as SQL over the integer expression `n`, for the constants of this policy.
    fn lock_sql(&self, n: &str, now: i64) -> String {
        let mut sql = String::from("CASE");
        let mut k = self.free;
        loop {
            let lock = self.lock_s(k);
            if lock >= self.max_s {
                sql.push_str(&format!(" WHEN {n} >= {k} THEN {} ELSE 0 END", now + lock));
                return sql;
            }
            sql.push_str(&format!(" WHEN {n} = {k} THEN {}", now + lock));
            k += 1;
        }
    }
}

/// The throttle key of an account (any email, known or not).
pub fn account_key(normalized_email: &str) -> String {
    format!("account:{}", hex::encode(Sha256::digest(normalized_email.as_bytes())))
}

/// The throttle key of a client address, for log-ins.
pub fn client_key(addr: IpAddr) -> String {
    format!("client:{}", address(addr))
}

/// The throttle key of a client address, for registrations.
pub fn registration_key(addr: IpAddr) -> String {
    format!("{REGISTRATION_PREFIX}{}", address(addr))
}

const REGISTRATION_PREFIX: &str = "register:";

/// An address as throttled: IPv4 whole (also when mapped into IPv6), IPv6 by its /64.
fn address(addr: IpAddr) -> String {
    match addr {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

fn placeholder(backend: DatabaseBackend) -> &'static str {
    match backend {
        DatabaseBackend::Postgres => "$1",
        _ => "?",
    }
}

fn statement(backend: DatabaseBackend, sql: String, key: &str) -> Statement {
    Statement::from_sql_and_values(backend, sql, [Value::from(key.to_owned())])
}

fn too_many(key: &str, retry_after_s: i64) -> AppError {
    let s = u64::try_from(retry_after_s).unwrap_or(1).max(1);
    let what = if key.starts_with(REGISTRATION_PREFIX) {
        "too many registrations from this address"
    } else {
        "too many failed log-ins"
    };
    AppError::too_many(format!("{what}; try again in {}", human(s)), s)
}

fn human(s: u64) -> String {
    match s {
        1 => "1 second".to_owned(),
        0..60 => format!("{s} seconds"),
        _ => {
            let m = s.div_ceil(60);
            if m == 1 { "1 minute".to_owned() } else { format!("{m} minutes") }
        }
    }
}

/// Refuses at once (`429`) if any of `keys` is locked at `now`: a read, so a flood of refused attempts
/// writes nothing.
pub async fn check(db: &impl ConnectionTrait, now: DateTime<Utc>, keys: &[&str]) -> AppResult<()> {
    let now = now.timestamp();
    let backend = db.get_database_backend();
    for key in keys {
        let sql =
            format!(r#"SELECT locked_until_s FROM login_throttle WHERE "key" = {}"#, placeholder(backend));
        if let Some(row) = db.query_one_raw(statement(backend, sql, key)).await? {
            let until: i64 = row.try_get("", "locked_until_s")?;
            if until > now {
                return Err(too_many(key, until - now));
            }
        }
    }
    Ok(())
}

/// A counted attempt on one key: what to give back if it succeeds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    pub key: String,
    /// The key's failure count including this attempt.
    pub n: i32,
}

/// Counts an attempt on `key` as a failure (setting the lock that failure earns) unless the key is locked;
/// refuses with `429` if it is. One statement, so concurrent attempts are counted one by one.
pub async fn reserve(
    db: &impl ConnectionTrait,
    now: DateTime<Utc>,
    key: &str,
    policy: &Policy,
) -> AppResult<Reservation> {
    let now_s = now.timestamp();
    let backend = db.get_database_backend();
    let stale = now_s - policy.reset_s;
    let n = format!(
        "(CASE WHEN login_throttle.last_failure_s < {stale} THEN 1 ELSE login_throttle.failures + 1 END)"
    );
    let sql = format!(
        r#"INSERT INTO login_throttle ("key", failures, last_failure_s, locked_until_s)
           VALUES ({p}, 1, {now_s}, {first_lock})
           ON CONFLICT ("key") DO UPDATE SET
             failures = {n},
             last_failure_s = {now_s},
             locked_until_s = {lock}
           WHERE login_throttle.locked_until_s <= {now_s}
           RETURNING failures"#,
        p = placeholder(backend),
        first_lock = if policy.lock_s(1) > 0 { now_s + policy.lock_s(1) } else { 0 },
        lock = policy.lock_sql(&n, now_s),
    );
    match db.query_one_raw(statement(backend, sql, key)).await? {
        Some(row) => Ok(Reservation { key: key.to_owned(), n: row.try_get("", "failures")? }),
        None => {
            // Locked (by a parallel attempt since `check`): tell how long.
            check(db, now, &[key]).await?;
            Err(too_many(key, 1))
        }
    }
}

/// A successful log-in: the account's failures are forgotten.
pub async fn forget(db: &impl ConnectionTrait, reservation: &Reservation) -> Result<(), DbErr> {
    let backend = db.get_database_backend();
    let sql = format!(r#"DELETE FROM login_throttle WHERE "key" = {}"#, placeholder(backend));
    db.execute_raw(statement(backend, sql, &reservation.key)).await.map(drop)
}

/// Takes back a reservation that turned out not to be a failure (the client's, for a successful log-in or
/// an attempt refused for its account's lock). The lock it set goes too, unless a later attempt has been
/// counted since (whose lock stands).
pub async fn refund(db: &impl ConnectionTrait, reservation: &Reservation) -> Result<(), DbErr> {
    let backend = db.get_database_backend();
    let sql = format!(
        r#"UPDATE login_throttle
           SET failures = failures - 1,
               locked_until_s = CASE WHEN failures = {n} THEN 0 ELSE locked_until_s END
           WHERE "key" = {p} AND failures > 0"#,
        n = reservation.n,
        p = placeholder(backend),
    );
    db.execute_raw(statement(backend, sql, &reservation.key)).await.map(drop)
}

/// Deletes keys that have been quiet for longer than any policy remembers (and are not locked), so rows
/// for the unknown emails of a guessing run do not pile up.
pub async fn prune(db: &impl ConnectionTrait, now: DateTime<Utc>) -> Result<(), DbErr> {
    let now = now.timestamp();
    let before = now - ACCOUNT.reset_s.max(CLIENT.reset_s).max(REGISTRATIONS.reset_s);
    db.execute_unprepared(&format!(
        "DELETE FROM login_throttle WHERE last_failure_s < {before} AND locked_until_s <= {now}"
    ))
    .await
    .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_the_last_free_failure_up_to_the_cap() {
        let locks: Vec<i64> = (1..=11).map(|n| ACCOUNT.lock_s(n)).collect();
        assert_eq!(locks, [0, 0, 0, 0, 60, 120, 240, 480, 900, 900, 900]);
        assert_eq!(CLIENT.lock_s(19), 0);
        assert_eq!(CLIENT.lock_s(20), 60);
        assert_eq!(ACCOUNT.lock_s(i32::MAX), 900);
    }

    #[test]
    fn the_sql_backoff_is_the_same_table() {
        let sql = ACCOUNT.lock_sql("n", 1000);
        assert_eq!(
            sql,
            "CASE WHEN n = 5 THEN 1060 WHEN n = 6 THEN 1120 WHEN n = 7 THEN 1240 WHEN n = 8 THEN 1480 \
             WHEN n >= 9 THEN 1900 ELSE 0 END"
        );
    }

    #[test]
    fn keys() {
        assert_eq!(client_key("192.0.2.7".parse().unwrap()), "client:192.0.2.7");
        assert_eq!(client_key("::ffff:192.0.2.7".parse().unwrap()), "client:192.0.2.7");
        assert_eq!(client_key("2001:db8:1:2:3:4:5:6".parse().unwrap()), "client:2001:db8:1:2::/64");
        let key = account_key("ada@example.org");
        assert!(key.starts_with("account:") && key.len() == 8 + 64 && !key.contains("ada"));
        assert!(key.len() <= 80 && client_key("ffff:ffff:ffff:ffff::1".parse().unwrap()).len() <= 80);
    }

    #[test]
    fn retry_messages() {
        assert_eq!(human(1), "1 second");
        assert_eq!(human(45), "45 seconds");
        assert_eq!(human(60), "1 minute");
        assert_eq!(human(61), "2 minutes");
    }
}
