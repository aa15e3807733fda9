//! The text form of a [`Report`]: counts per stage, the differences with sample ids, the
//! dead letters by reason, and the verdict on the last line.

use std::fmt;

use uuid::Uuid;

use super::{ReasonGroup, Report, SAMPLE_SIZE};

const W: usize = 44;

fn samples(f: &mut fmt::Formatter<'_>, items: &[String], total: u64, indent: &str) -> fmt::Result {
    for s in items {
        writeln!(f, "{indent}{s}")?;
    }
    if total > items.len() as u64 {
        writeln!(f, "{indent}... and {} more", total - items.len() as u64)?;
    }
    Ok(())
}

fn reasons(f: &mut fmt::Formatter<'_>, groups: &[ReasonGroup]) -> fmt::Result {
    for g in groups {
        writeln!(f, "  {:>7} x {} [{}]", g.count, g.reason, g.engines.join(", "))?;
        samples(f, &g.samples, g.count, "            ")?;
    }
    Ok(())
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let k = &self.kafka;
        let d = &self.dead_letters;
        writeln!(f, "topic {}, dead letters {}, table {}", self.topic, self.dead_letter_topic, self.table)?;
        writeln!(f)?;
        writeln!(f, "{:<W$} {:>9}", "stage", "count")?;
        let counts: [(&str, u64); 11] = [
            ("audited in PostgreSQL", self.audited),
            ("  not yet published (outbox)", self.audited_unpublished),
            ("Kafka records", k.records),
            ("  distinct UUID keys", k.distinct_keys),
            ("  keys that are not UUIDs", k.non_uuid_keys),
            ("  null keys", k.null_keys),
            ("  tombstones (null value)", k.tombstones),
            ("dead-letter records", d.records),
            ("  distinct UUID keys", d.distinct_keys),
            ("  keys that are not UUIDs or null", d.non_uuid_keys + d.null_keys),
            ("rows in Cassandra", self.cassandra_rows),
        ];
        for (label, n) in counts {
            writeln!(f, "{label:<W$} {n:>9}")?;
        }
        writeln!(f)?;
        writeln!(f, "{:<W$} {:>9}", "difference", "count")?;
        let audited_missing = if self.missing_unpublished > 0 {
            format!("audited, not in Kafka ({} unpublished)", self.missing_unpublished)
        } else {
            "audited, not in Kafka".to_string()
        };
        let diffs: [(&str, &[Uuid], &str); 6] = [
            (&audited_missing, &self.diff.audited_not_in_kafka, "LOST"),
            ("in Kafka, not in Cassandra", &self.diff.kafka_not_in_cassandra, "LOST"),
            ("audited, dead-lettered, in Cassandra since", &self.diff.dead_lettered_since_written, ""),
            ("in Kafka, not audited, dead-lettered", &self.diff.dead_lettered_unaudited, ""),
            ("in Kafka, not audited", &self.diff.kafka_not_audited, ""),
            ("in Cassandra, not audited", &self.diff.cassandra_not_audited, ""),
        ];
        for (label, ids, flag) in diffs {
            if ids.is_empty() || flag.is_empty() {
                writeln!(f, "{label:<W$} {:>9}", ids.len())?;
            } else {
                writeln!(f, "{label:<W$} {:>9}  {flag}", ids.len())?;
            }
            let shown: Vec<String> = ids.iter().take(SAMPLE_SIZE).map(Uuid::to_string).collect();
            samples(f, &shown, ids.len() as u64, "    ")?;
        }
        writeln!(f)?;
        let refused = self.diff.refused_audited.len();
        if refused > 0 {
            writeln!(f, "{:<W$} {:>9}  REFUSED", "audited, refused by an engine", refused)?;
        } else {
            writeln!(f, "{:<W$} {:>9}", "audited, refused by an engine", refused)?;
        }
        reasons(f, &self.refused_reasons)?;
        writeln!(f, "{:<W$} {:>9}", "dead letters of unaudited input (no failure)", self.unaudited_dead_letters)?;
        reasons(f, &self.unaudited_reasons)?;
        writeln!(f)?;
        if !d.exists {
            writeln!(f, "note: dead-letter topic {} does not exist (read as empty)", self.dead_letter_topic)?;
        }
        if k.truncated {
            writeln!(f, "note: {} no longer starts at offset 0 (retention); older ids cannot be checked", self.topic)?;
        }
        if self.lost() {
            if !self.diff.kafka_not_in_cassandra.is_empty() {
                writeln!(f, "note: if the job is still catching up (`pipeline jobs status`), run verify again later")?;
            }
            if self.missing_unpublished > 0 {
                writeln!(f, "note: unpublished ids are published by the producer's outbox on its next start")?;
            }
        }
        if self.refused() {
            writeln!(
                f,
                "note: refused users are valid, audited records: fix the cause, then `pipeline dlq replay` \
                 (see `pipeline dlq list`)"
            )?;
        }
        match (self.lost(), self.refused()) {
            (true, true) => write!(f, "result: LOST, and {refused} audited user(s) refused by an engine"),
            (true, false) => write!(f, "result: LOST"),
            (false, true) => write!(f, "result: FAILED, {refused} audited user(s) refused by an engine"),
            (false, false) => write!(f, "result: OK, nothing lost"),
        }
    }
}
