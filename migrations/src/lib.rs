//! Portolan's schema, one migration per step, run at start (`portolan serve`) or by `portolan migrate`.
//!
//! Table names are plural nouns of the domain. Later issues add experiments, slices and slivers in migrations of
//! their own; nothing here presumes their shape.

pub use sea_orm_migration::prelude::*;

mod m20261125_000001_accounts;
mod m20261201_000001_integrity;
mod m20261201_000002_reconcile;
mod m20261201_000003_login_throttle;
mod m20261202_000001_nodes;
mod m20261203_000001_slivers;

/// An index on `cols` of `table`, unique or not: every migration's index statement.
fn index(table: &'static str, name: &str, cols: &[&'static str], unique: bool) -> IndexCreateStatement {
    let mut index = Index::create();
    index.name(name).table(table);
    for col in cols {
        index.col(*col);
    }
    if unique {
        index.unique();
    }
    index.to_owned()
}

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261125_000001_accounts::Migration),
            Box::new(m20261201_000001_integrity::Migration),
            Box::new(m20261201_000002_reconcile::Migration),
            Box::new(m20261201_000003_login_throttle::Migration),
            Box::new(m20261202_000001_nodes::Migration),
            Box::new(m20261203_000001_slivers::Migration),
        ]
    }
}
