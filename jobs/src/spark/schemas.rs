//! The schema versions the Spark job decodes, and how it treats an id it does not know.
//!
//! Spark 3.5's `from_avro` takes one writer schema, fixed when the query starts. The job
//! therefore gets one decode branch per version of the subject registered at submit, each
//! resolving its writer schema to the job's own reader schema (the model's, through the
//! `avroSchema` option): fields a version adds are ignored, optional fields it lacks are NULL,
//! and every branch yields the same struct.
//!
//! A message's schema id `i` is then classified against what the registry held at submit
//! (`high` = the registry's highest id then, found by probing `/schemas/ids/{n}`, as ids are
//! allocated in sequence):
//! - a version of the subject: decoded;
//! - `i <= high`, not a version of the subject: dead-lettered (another subject's schema);
//! - `high < i <= high + headroom`: probably registered after submit. The batch fails on
//!   purpose (`raise_error`), so nothing is dead-lettered; a resubmit (by a user or the
//!   supervisor) restarts from the checkpoint with the new version and processes the batch again;
//! - beyond that: dead-lettered as unknown to the registry.

use std::sync::Arc;

use pipeline_core::registry::{RegistryClient, RegistryError};

/// Ids above the registry's highest id at submit that fail the batch instead of being
/// dead-lettered (registrations racing with the job). Larger ids are garbage.
pub const DEFAULT_HEADROOM: u32 = 1000;

/// The versions of the subject at submit.
#[derive(Debug, Clone)]
pub struct KnownSchemas {
    pub subject: String,
    /// (version, id, schema text), oldest first.
    pub versions: Vec<(u32, u32, Arc<str>)>,
    /// The registry's highest id at submit.
    pub registry_high_id: u32,
    pub headroom: u32,
}

/// The subject's versions and the registry's highest id.
pub async fn known_schemas(registry: &RegistryClient, subject: &str) -> Result<KnownSchemas, RegistryError> {
    let versions = registry.versions(subject).await?;
    let start = versions.iter().map(|(_, id, _)| *id).max().unwrap_or(0);
    let registry_high_id = highest_id(registry, start).await?;
    Ok(KnownSchemas { subject: subject.to_string(), versions, registry_high_id, headroom: DEFAULT_HEADROOM })
}

/// The highest id the registry knows, at least `known` (which exists): exponential probing
/// then bisection, O(log n) requests.
async fn highest_id(registry: &RegistryClient, known: u32) -> Result<u32, RegistryError> {
    let (mut lo, mut step) = (known, 1u32);
    // lo exists (or is 0); find a hi that does not.
    let hi = loop {
        let probe = lo.saturating_add(step);
        if probe == lo || !registry.has_id(probe).await? {
            break probe;
        }
        lo = probe;
        step = step.saturating_mul(2);
    };
    let mut hi = hi;
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if registry.has_id(mid).await? {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Ok(lo)
}

fn sql_string(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

impl KnownSchemas {
    pub fn ids(&self) -> Vec<u32> {
        self.versions.iter().map(|(_, id, _)| *id).collect()
    }

    /// The newest version's id (what the producer of record writes).
    pub fn latest_id(&self) -> u32 {
        self.versions.last().map(|(_, id, _)| *id).unwrap_or(0)
    }

    /// Spark SQL over `kafka_value` and `schema_id`: why a message cannot be decoded (NULL when
    /// it can), or `raise_error` for an id registered after submit.
    pub fn frame_check(&self) -> String {
        let ids = self.ids().iter().map(u32::to_string).collect::<Vec<_>>().join(", ");
        let subject = &self.subject;
        let high = self.registry_high_id;
        let limit = u64::from(high) + u64::from(self.headroom);
        let not_version = sql_string(&format!(" is not a version of subject {subject} (its ids at submit: {ids})"));
        let newer = sql_string(&format!(
            " is newer than the Spark job (registry's highest id at submit: {high}); the batch fails on purpose: \
             resubmit the job (pipeline submit, or the supervisor) to decode it"
        ));
        format!(
            "CASE WHEN kafka_value IS NULL OR length(kafka_value) = 0 THEN 'empty value' \
             WHEN hex(substring(kafka_value, 1, 1)) <> '00' THEN concat('not registry-framed: first byte is 0x', \
                  lower(hex(substring(kafka_value, 1, 1))), ', expected the magic byte 0x00') \
             WHEN length(kafka_value) < 5 THEN concat('truncated registry header: ', length(kafka_value), \
                  ' byte(s), need at least 5') \
             WHEN schema_id IN ({ids}) THEN CAST(NULL AS STRING) \
             WHEN schema_id <= {high} THEN concat('schema id ', schema_id, {not_version}) \
             WHEN schema_id <= {limit} THEN CAST(raise_error(concat('schema id ', schema_id, {newer})) AS STRING) \
             ELSE concat('schema id ', schema_id, ' is unknown to the registry') END"
        )
    }
}

/// The schema id of a framed `kafka_value` (meaningful when at least 5 bytes long).
pub const SCHEMA_ID_SQL: &str = "CAST(conv(hex(substring(kafka_value, 2, 4)), 16, 10) AS BIGINT)";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_check_classifies_ids_against_the_registry_at_submit() {
        let known = KnownSchemas {
            subject: "users_created-value".into(),
            versions: vec![(1, 4, Arc::from("{}")), (2, 9, Arc::from("{}"))],
            registry_high_id: 12,
            headroom: 1000,
        };
        let sql = known.frame_check();
        assert!(sql.contains("schema_id IN (4, 9)"), "{sql}");
        assert!(sql.contains("schema_id <= 12 THEN"), "{sql}");
        assert!(sql.contains("schema_id <= 1012 THEN CAST(raise_error("), "{sql}");
        assert_eq!(known.latest_id(), 9);
    }

    #[test]
    fn sql_strings_are_escaped() {
        assert_eq!(sql_string("it's"), "'it\\'s'");
    }
}
