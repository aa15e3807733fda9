//! The one door to each external system. Every caller (producer, engines, verify, the
//! launcher's probes, the dashboard, the test kit) builds its clients here, from the config,
//! so connection settings, timeouts, client ids and (later) TLS/SASL are one edit per system.
//!
//! - [`kafka`] (feature `kafka`): librdkafka client configs and topic creation.
//! - [`cassandra`] (feature `cassandra`): scylla sessions.
//! - PostgreSQL: [`crate::postgres::connect`]; the schema registry: [`crate::registry::RegistryClient::from_config`].

#[cfg(feature = "cassandra")]
pub mod cassandra;
#[cfg(feature = "kafka")]
pub mod kafka;
