//! The reference testbed: a PlanetLab-Central-compatible service (see the README and `../shared/DESIGN.md`).

pub mod clock;
pub mod profile;
pub mod random;
pub mod world;
