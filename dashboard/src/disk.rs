//! Bytes per Kafka topic, from the broker's log folder.
//!
//! librdkafka, and so rdkafka, has no DescribeLogDirs request, so the size of each topic is
//! read where the broker keeps it when that is on this machine: the launcher's
//! `<state>/data/kafka`, one folder `<topic>-<partition>` per partition. A topic's bytes are the
//! sum of its segment files (`*.log`), which is what DescribeLogDirs reports (the index files
//! are preallocated and not counted). Under docker compose the folder is the container's and
//! the page shows no bytes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The broker's log folder when it is on this machine (a KRaft log folder has `meta.properties`).
pub fn kafka_log_dir(config: &pipeline_core::Config) -> Option<PathBuf> {
    let dir = pipeline_cluster::Layout::new(config).data("kafka");
    dir.join("meta.properties").is_file().then_some(dir)
}

/// The topic and partition of a partition folder (`users_created-2`); `None` for other
/// folders, such as a deleted partition's `t-0.<id>-delete`.
pub fn partition_of(folder: &str) -> Option<(&str, i32)> {
    let (topic, partition) = folder.rsplit_once('-')?;
    let partition = partition.parse::<i32>().ok()?;
    (!topic.is_empty()).then_some((topic, partition))
}

/// Bytes of segment files per topic under `dir`.
pub fn topic_bytes(dir: &Path) -> std::io::Result<BTreeMap<String, u64>> {
    let mut out: BTreeMap<String, u64> = BTreeMap::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some((topic, _)) = name.to_str().and_then(partition_of) else { continue };
        let Ok(files) = std::fs::read_dir(entry.path()) else { continue };
        let bytes: u64 = files
            .filter_map(Result::ok)
            .filter(|f| f.file_name().to_str().is_some_and(|n| n.ends_with(".log")))
            .filter_map(|f| f.metadata().ok().map(|m| m.len()))
            .sum();
        *out.entry(topic.to_string()).or_default() += bytes;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_folders_are_told_from_others() {
        assert_eq!(partition_of("users_created-2"), Some(("users_created", 2)));
        assert_eq!(partition_of("a-b-c-10"), Some(("a-b-c", 10)));
        assert_eq!(partition_of("t-0.5f1d2c-delete"), None);
        assert_eq!(partition_of("bootstrap.checkpoint"), None);
        assert_eq!(partition_of("-1"), None);
    }

    #[test]
    fn only_segment_files_count() {
        let dir = std::env::temp_dir().join(format!("dashboard-disk-{}", std::process::id()));
        for (folder, file, len) in [
            ("t-0", "00000000000000000000.log", 100),
            ("t-0", "00000000000000000000.index", 10_000),
            ("t-1", "00000000000000000007.log", 23),
            ("u.dlq-0", "00000000000000000000.log", 5),
            ("t-0.abc-delete", "00000000000000000000.log", 999),
        ] {
            std::fs::create_dir_all(dir.join(folder)).unwrap();
            std::fs::write(dir.join(folder).join(file), vec![0u8; len]).unwrap();
        }
        let bytes = topic_bytes(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(bytes.get("t"), Some(&123));
        assert_eq!(bytes.get("u.dlq"), Some(&5));
        assert_eq!(bytes.len(), 2);
    }
}
