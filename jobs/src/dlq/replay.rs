//! `pipeline dlq replay`: republishes dead letters to the events topic, once each.
//!
//! Each selected dead letter is sent to `kafka.topic` with its original key and bytes and its
//! headers minus the engines' dead-letter headers, plus [`REPLAY_HEADER`] naming the dead
//! letter. The producer is idempotent with `acks=all`. Only after a record is delivered is it
//! written to the ledger (`audit.dlq_replays`), and a later replay skips every dead letter the
//! ledger holds: a second replay republishes nothing.
//!
//! A crash between a delivery and its ledger row means that dead letter is republished again
//! by the next replay: at-least-once. That is harmless: both engines write Cassandra with
//! upserts keyed by the user id, so the same bytes arriving twice leave the same row. A replay
//! holds an advisory lock per dead-letter topic, so two replays never race each other.

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use pipeline_core::Config;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use rdkafka::ClientConfig;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::ledger::{self, Replayed};
use super::{DeadLetter, DlqError, ENGINE_HEADER, REASON_HEADER, REPLAY_HEADER, SOURCE_OFFSET_HEADER};

/// Records sent before their deliveries are awaited and recorded.
const CHUNK: usize = 500;

/// Which dead letters to replay.
#[derive(Debug, Clone, Default)]
pub struct ReplayOptions {
    /// Only dead letters whose reason header contains this text.
    pub reason: Option<String>,
    /// Only dead letters written (Kafka timestamp) at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Also replay dead letters whose key is not a user audited for `kafka.topic` (foreign or
    /// malformed input, which the engines would most likely refuse again).
    pub include_unaudited: bool,
}

/// What a replay did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplaySummary {
    /// Records on the dead-letter topic.
    pub dead_letters: u64,
    /// Of those, the ones matching `--reason` and `--since`.
    pub matched: u64,
    /// Matching, but already in the ledger: skipped.
    pub already_replayed: u64,
    /// Matching, but not audited users (without `include_unaudited`): skipped.
    pub skipped_unaudited: u64,
    /// Republished to the events topic and recorded.
    pub republished: u64,
}

/// Parses `--since`: an RFC 3339 time (`2026-12-04T15:00:00Z`), a UTC date (`2026-12-04`),
/// or an age (`30m`, `2h`, `7d`: that long before `now`).
pub fn parse_since(text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    let t = text.trim();
    if let Ok(at) = DateTime::parse_from_rfc3339(t) {
        return Ok(at.with_timezone(&Utc));
    }
    if let Ok(day) = chrono::NaiveDate::parse_from_str(t, "%Y-%m-%d") {
        return Ok(day.and_time(chrono::NaiveTime::MIN).and_utc());
    }
    let unit = t.chars().last().unwrap_or(' ');
    let seconds = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3_600,
        'd' => 86_400,
        _ => 0,
    };
    match t[..t.len() - unit.len_utf8().min(t.len())].parse::<i64>() {
        Ok(n) if seconds > 0 && n >= 0 => Ok(now - chrono::Duration::seconds(n.saturating_mul(seconds))),
        _ => Err(format!(
            "`{text}` is not a time: use RFC 3339 (2026-12-04T15:00:00Z), a date (2026-12-04) or an age (30m, 2h, 7d)"
        )),
    }
}

impl std::fmt::Display for ReplaySummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "republished {} | already replayed {} | skipped (not audited) {} | matching {} of {} dead letter(s)",
            self.republished, self.already_replayed, self.skipped_unaudited, self.matched, self.dead_letters
        )?;
        if self.skipped_unaudited > 0 {
            write!(f, "\nnote: dead letters of unaudited input are kept; --include-unaudited replays them too")?;
        }
        Ok(())
    }
}

/// Why a dead letter is not replayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// It does not match `--reason` or `--since`.
    NoMatch,
    AlreadyReplayed,
    Unaudited,
}

/// Whether to replay `d`. Pure.
pub fn select(
    d: &DeadLetter,
    opts: &ReplayOptions,
    replayed: &HashSet<(i32, i64)>,
    audited: &HashSet<Uuid>,
) -> Result<(), Skip> {
    if opts.reason.as_deref().is_some_and(|r| !d.reason().contains(r)) {
        return Err(Skip::NoMatch);
    }
    if opts.since.is_some_and(|since| d.timestamp.is_none_or(|t| t < since)) {
        return Err(Skip::NoMatch);
    }
    if replayed.contains(&(d.partition, d.offset)) {
        return Err(Skip::AlreadyReplayed);
    }
    if !opts.include_unaudited && !d.id().is_some_and(|id| audited.contains(&id)) {
        return Err(Skip::Unaudited);
    }
    Ok(())
}

/// The headers of the replayed record: the dead letter's own minus the engines' dead-letter
/// headers (and any earlier replay mark), plus [`REPLAY_HEADER`] = `dlq_topic:partition:offset`.
pub fn replay_headers(d: &DeadLetter, dlq_topic: &str) -> Vec<(String, Option<Vec<u8>>)> {
    let dropped = [REASON_HEADER, ENGINE_HEADER, SOURCE_OFFSET_HEADER, REPLAY_HEADER];
    let mut headers: Vec<(String, Option<Vec<u8>>)> =
        d.headers.iter().filter(|(k, _)| !dropped.contains(&k.as_str())).cloned().collect();
    headers.push((REPLAY_HEADER.to_string(), Some(format!("{dlq_topic}:{}:{}", d.partition, d.offset).into_bytes())));
    headers
}

/// Republishes the selected dead letters of `kafka.dead_letter_topic` to `kafka.topic`; see
/// the module documentation for the guarantees.
pub async fn replay(config: &Config, opts: &ReplayOptions) -> Result<ReplaySummary, DlqError> {
    let dlq_topic = &config.kafka.dead_letter_topic;
    let target = &config.kafka.topic;
    let mut client = pipeline_core::postgres::connect(&config.postgres, "pipeline-dlq-replay").await?;
    ledger::migrate(&mut client).await?;
    ledger::lock(&client, dlq_topic).await?;
    let outcome = replay_locked(config, opts, &client).await;
    // The lock also goes with the connection; an unlock failure changes nothing done.
    if let Err(e) = ledger::unlock(&client, dlq_topic).await {
        tracing::warn!("releasing the replay lock: {e}");
    }
    let summary = outcome?;
    tracing::info!(?summary, dlq_topic, target, "dead-letter replay done");
    Ok(summary)
}

async fn replay_locked(
    config: &Config,
    opts: &ReplayOptions,
    client: &tokio_postgres::Client,
) -> Result<ReplaySummary, DlqError> {
    let dlq_topic = &config.kafka.dead_letter_topic;
    let target = &config.kafka.topic;
    // The ledger is read under the lock, after any earlier replay has recorded everything.
    let replayed = ledger::replayed(client, dlq_topic).await?;
    let (_, dead) = super::read(config, true).await?;
    let ids: Vec<Uuid> = dead.iter().filter_map(DeadLetter::id).collect::<HashSet<_>>().into_iter().collect();
    let audited = ledger::audited(client, target, &ids).await?;

    let mut summary = ReplaySummary { dead_letters: dead.len() as u64, ..ReplaySummary::default() };
    let mut chosen = Vec::new();
    for d in &dead {
        match select(d, opts, &replayed, &audited) {
            Err(Skip::NoMatch) => continue,
            Err(Skip::AlreadyReplayed) => summary.already_replayed += 1,
            Err(Skip::Unaudited) => summary.skipped_unaudited += 1,
            Ok(()) => chosen.push(d),
        }
        summary.matched += 1;
    }
    if chosen.is_empty() {
        return Ok(summary);
    }

    let bootstrap = &config.kafka.bootstrap_servers;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("client.id", "pipeline-dlq-replay")
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .create()
        .map_err(|e| DlqError::Producer { bootstrap: bootstrap.clone(), reason: e.to_string() })?;
    for chunk in chosen.chunks(CHUNK) {
        let sends = chunk.iter().map(|d| {
            let mut headers = OwnedHeaders::new();
            for (key, value) in replay_headers(d, dlq_topic) {
                headers = headers.insert(Header { key: &key, value: value.as_deref() });
            }
            let mut record: FutureRecord<[u8], [u8]> = FutureRecord::to(target).headers(headers);
            if let Some(k) = &d.key {
                record = record.key(k.as_slice());
            }
            if let Some(v) = &d.value {
                record = record.payload(v.as_slice());
            }
            producer.send(record, Timeout::After(Duration::from_secs(30)))
        });
        let results = futures::future::join_all(sends).await;
        let mut done = Vec::with_capacity(chunk.len());
        let mut failed = Vec::new();
        for (d, result) in chunk.iter().zip(results) {
            match result {
                Ok(delivery) => done.push(Replayed {
                    dlq_partition: d.partition,
                    dlq_offset: d.offset,
                    user_key: d.key_str(),
                    reason: d.header(REASON_HEADER),
                    engine: d.header(ENGINE_HEADER),
                    target_partition: delivery.partition,
                    target_offset: delivery.offset,
                }),
                Err((e, _)) => failed.push(e.to_string()),
            }
        }
        // Delivered first, recorded after: see the module documentation.
        ledger::record(client, dlq_topic, target, &done).await?;
        summary.republished += done.len() as u64;
        if let Some(first) = failed.first() {
            return Err(DlqError::Delivery {
                failed: failed.len(),
                topic: target.clone(),
                first: first.clone(),
                recorded: summary.republished as usize,
            });
        }
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dlq::tests::dead;

    #[test]
    fn selection_filters_by_reason_time_ledger_and_audit() {
        let id = Uuid::new_v4();
        let audited = HashSet::from([id]);
        let d = dead(5, Some(&id.to_string()), Some("undecodable Avro payload for schema id 7"), "spark");
        let none = HashSet::new();
        let all = ReplayOptions::default();
        assert_eq!(select(&d, &all, &none, &audited), Ok(()));
        assert_eq!(select(&d, &all, &HashSet::from([(0, 5)]), &audited), Err(Skip::AlreadyReplayed));
        assert_eq!(select(&d, &all, &none, &HashSet::new()), Err(Skip::Unaudited));
        let unaudited = ReplayOptions { include_unaudited: true, ..ReplayOptions::default() };
        assert_eq!(select(&d, &unaudited, &none, &HashSet::new()), Ok(()));
        let junk = dead(6, Some("not-a-uuid"), Some("not registry-framed"), "datafusion");
        assert_eq!(select(&junk, &all, &none, &audited), Err(Skip::Unaudited));

        let by_reason = |r: &str| ReplayOptions { reason: Some(r.into()), ..ReplayOptions::default() };
        assert_eq!(select(&d, &by_reason("schema id 7"), &none, &audited), Ok(()));
        assert_eq!(select(&d, &by_reason("email"), &none, &audited), Err(Skip::NoMatch));
        // `dead(5, ..)` was written at 5 s after the epoch.
        let since = |s: i64| ReplayOptions { since: DateTime::from_timestamp(s, 0), ..ReplayOptions::default() };
        assert_eq!(select(&d, &since(5), &none, &audited), Ok(()));
        assert_eq!(select(&d, &since(6), &none, &audited), Err(Skip::NoMatch));
    }

    #[test]
    fn since_accepts_times_dates_and_ages() {
        let now = DateTime::from_timestamp(1_000_000, 0).expect("time");
        let at = |s: &str| parse_since(s, now);
        assert_eq!(at("2h"), Ok(now - chrono::Duration::hours(2)));
        assert_eq!(at("7d"), Ok(now - chrono::Duration::days(7)));
        assert_eq!(at("1970-01-02"), DateTime::from_timestamp(86_400, 0).ok_or_else(String::new));
        assert_eq!(at("1970-01-01T00:01:00+00:00"), DateTime::from_timestamp(60, 0).ok_or_else(String::new));
        for bad in ["", "h", "yesterday", "-2h", "2w"] {
            assert!(at(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn replay_headers_drop_the_dead_letter_headers_and_mark_the_replay() {
        let mut d = dead(9, None, Some("r"), "spark");
        d.partition = 2;
        d.headers.push((SOURCE_OFFSET_HEADER.into(), Some(b"1:4".to_vec())));
        d.headers.push(("source".into(), Some(b"synthetic".to_vec())));
        d.headers.push((REPLAY_HEADER.into(), Some(b"old".to_vec())));
        let h = replay_headers(&d, "t.dlq");
        assert_eq!(
            h,
            vec![
                ("source".to_string(), Some(b"synthetic".to_vec())),
                (REPLAY_HEADER.to_string(), Some(b"t.dlq:2:9".to_vec())),
            ]
        );
    }
}
