//! A tower-sessions store on Portolan's own database, so sessions survive restarts and are shared by every
//! `serve` process on one PostgreSQL. (The published sqlx stores pin another sqlx than sea-orm 2 uses, and two
//! sqlx versions cannot link SQLite twice.)
//!
//! Sessions end after a time of inactivity: the session layer saves every session at the end of every
//! request (`with_always_save`), with its expiry pushed to now plus the idle time. Writing that to the database
//! on every request would cost a write per page view (and on SQLite, whose writers queue one at a time, a
//! place in that queue). So [`DbSessionStore::save`] compares the record with what it loaded: when the data is
//! the same and the expiry moved less than [`EXPIRY_REFRESH`], it writes nothing; an idle session thus ends
//! between the idle time minus [`EXPIRY_REFRESH`] and the idle time after its last request.
//!
//! Writes never resurrect a session: `save` only updates an existing row (a session logged out or cycled by a
//! concurrent request stays gone), an unchanged record only moves the expiry (so a request that did not
//! touch the session cannot undo a concurrent change of its data), and `create` stores no empty session (a
//! request carrying an unknown cookie creates no row).

use super::entity::session;
use sea_orm::{
    ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, Set, sea_query::Expr, sea_query::OnConflict,
};
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};
use time::OffsetDateTime;
use tower_sessions::{
    ExpiredDeletion, SessionStore,
    session::{Id, Record},
    session_store::{Error, Result},
};

/// An unchanged session's expiry is written at most this often (per session).
pub const EXPIRY_REFRESH: time::Duration = time::Duration::minutes(5);

/// A session's data (compared as values: the order its map serialises in is not fixed).
type Data = HashMap<String, serde_json::Value>;

/// Sessions remembered as loaded; beyond this many the memory is cleared (costing one write each, at most).
const REMEMBERED: usize = 10_000;

#[derive(Debug, Clone)]
pub struct DbSessionStore {
    db: DatabaseConnection,
    /// What each session's row held when it was last loaded or written: its data and expiry.
    stored: Arc<Mutex<HashMap<Id, (Data, i64)>>>,
}

impl DbSessionStore {
    pub fn new(db: DatabaseConnection) -> Self {
        Self { db, stored: Arc::default() }
    }

    fn remember(&self, id: Id, data: Data, expiry: i64) {
        let mut stored = self.stored.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if stored.len() >= REMEMBERED && !stored.contains_key(&id) {
            stored.clear();
        }
        stored.insert(id, (data, expiry));
    }

    fn forget(&self, id: &Id) {
        self.stored.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(id);
    }

    /// The data and expiry last seen in `id`'s row, if remembered.
    fn last_stored(&self, id: &Id) -> Option<(Data, i64)> {
        self.stored.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(id).cloned()
    }
}

fn backend(err: sea_orm::DbErr) -> Error {
    Error::Backend(err.to_string())
}

fn encode(record: &Record) -> Result<Vec<u8>> {
    serde_json::to_vec(&record.data).map_err(|e| Error::Encode(e.to_string()))
}

#[async_trait::async_trait]
impl SessionStore for DbSessionStore {
    async fn create(&self, record: &mut Record) -> Result<()> {
        // A session without data is a visitor's: nothing worth a row (the next request finds no row and
        // starts afresh). Without this, every request with a made-up cookie would store a row.
        if record.data.is_empty() {
            return Ok(());
        }
        let data = encode(record)?;
        let expiry = record.expiry_date.unix_timestamp();
        // Ids are 128 random bits; still, never overwrite someone else's session on a collision.
        loop {
            let model = session::ActiveModel {
                id: Set(record.id.to_string()),
                data: Set(data.clone()),
                expiry_date: Set(expiry),
            };
            let inserted = session::Entity::insert(model)
                .on_conflict(OnConflict::column(session::Column::Id).do_nothing().to_owned())
                .exec_without_returning(&self.db)
                .await
                .map_err(backend)?;
            if inserted == 1 {
                self.remember(record.id, record.data.clone(), expiry);
                return Ok(());
            }
            record.id = Id::default();
        }
    }

    async fn save(&self, record: &Record) -> Result<()> {
        let expiry = record.expiry_date.unix_timestamp();
        let last = self.last_stored(&record.id);
        let update = session::Entity::update_many()
            .col_expr(session::Column::ExpiryDate, Expr::value(expiry))
            .filter(session::Column::Id.eq(record.id.to_string()));
        let update = match last {
            Some((stored_data, stored_expiry)) if stored_data == record.data => {
                let moved = expiry - stored_expiry;
                if (0..EXPIRY_REFRESH.whole_seconds()).contains(&moved) {
                    return Ok(());
                }
                update
            }
            _ => update.col_expr(session::Column::Data, Expr::value(encode(record)?)),
        };
        let updated = update.exec(&self.db).await.map_err(backend)?;
        if updated.rows_affected == 1 {
            self.remember(record.id, record.data.clone(), expiry);
        } else {
            // Deleted meanwhile (logged out, cycled, expired): it stays deleted.
            self.forget(&record.id);
        }
        Ok(())
    }

    async fn load(&self, id: &Id) -> Result<Option<Record>> {
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let Some(row) = session::Entity::find_by_id(id.to_string())
            .filter(session::Column::ExpiryDate.gt(now))
            .one(&self.db)
            .await
            .map_err(backend)?
        else {
            self.forget(id);
            return Ok(None);
        };
        let data: Data = serde_json::from_slice(&row.data).map_err(|e| Error::Decode(e.to_string()))?;
        let expiry_date =
            OffsetDateTime::from_unix_timestamp(row.expiry_date).map_err(|e| Error::Decode(e.to_string()))?;
        self.remember(*id, data.clone(), row.expiry_date);
        Ok(Some(Record { id: *id, data, expiry_date }))
    }

    async fn delete(&self, id: &Id) -> Result<()> {
        self.forget(id);
        session::Entity::delete_by_id(id.to_string()).exec(&self.db).await.map_err(backend)?;
        Ok(())
    }
}

#[async_trait::async_trait]
impl ExpiredDeletion for DbSessionStore {
    async fn delete_expired(&self) -> Result<()> {
        let now = OffsetDateTime::now_utc().unix_timestamp();
        session::Entity::delete_many()
            .filter(session::Column::ExpiryDate.lte(now))
            .exec(&self.db)
            .await
            .map_err(backend)?;
        Ok(())
    }
}
