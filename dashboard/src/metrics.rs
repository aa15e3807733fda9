//! The snapshot as Prometheus gauges (text exposition format), for `/metrics`.

use std::fmt::Write;

use crate::state::Snapshot;

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

struct Out(String);

impl Out {
    fn help(&mut self, name: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} gauge");
    }
    fn gauge(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{}\"", escape(v))).collect();
        let labels = if labels.is_empty() { String::new() } else { format!("{{{}}}", labels.join(",")) };
        let _ = writeln!(self.0, "{name}{labels} {value}");
    }
}

/// Renders every figure of the snapshot that is a number.
pub fn render(s: &Snapshot) -> String {
    let mut o = Out(String::new());
    if let Some(services) = &s.services.data {
        o.help("pipeline_service_up", "1 when the service answers its protocol probe");
        for v in services {
            o.gauge("pipeline_service_up", &[("service", &v.name)], if v.healthy { 1.0 } else { 0.0 });
        }
        o.help("pipeline_service_rss_bytes", "Resident memory of the service's process group");
        for v in services {
            o.gauge("pipeline_service_rss_bytes", &[("service", &v.name)], (v.rss_mib * 1024 * 1024) as f64);
        }
    }
    if let Some(k) = &s.kafka.data {
        o.help("pipeline_kafka_topic_partitions", "Partitions of the topic");
        for t in &k.topics {
            o.gauge("pipeline_kafka_topic_partitions", &[("topic", &t.name)], t.partitions as f64);
        }
        o.help("pipeline_kafka_topic_end_offset", "Sum of the topic's partition end offsets");
        for t in &k.topics {
            if let Some(end) = t.end_offset {
                o.gauge("pipeline_kafka_topic_end_offset", &[("topic", &t.name)], end as f64);
            }
        }
        o.help("pipeline_kafka_messages_per_second", "Messages per second into the pipeline's topic");
        o.gauge("pipeline_kafka_messages_per_second", &[("topic", &s.topic)], k.messages_per_sec);
        o.help(
            "pipeline_kafka_topic_bytes",
            "Bytes of the topic's log segments (when the broker's log folder is local)",
        );
        for t in &k.topics {
            if let Some(b) = t.bytes {
                o.gauge("pipeline_kafka_topic_bytes", &[("topic", &t.name)], b as f64);
            }
        }
        if let Some(b) = k.bytes_per_sec {
            o.help("pipeline_kafka_bytes_per_second", "Bytes per second into the pipeline's topic");
            o.gauge("pipeline_kafka_bytes_per_second", &[("topic", &s.topic)], b);
        }
        o.help("pipeline_consumer_lag", "End offsets minus what the engine consumed");
        for (engine, lag) in &k.lag {
            if let Some(lag) = lag {
                o.gauge("pipeline_consumer_lag", &[("engine", engine)], *lag as f64);
            }
        }
    }
    if let Some(spark) = &s.spark.data {
        o.help("pipeline_spark_query_active", "1 when the streaming query runs");
        for q in &spark.queries {
            o.gauge("pipeline_spark_query_active", &[("query", &q.name)], if q.active { 1.0 } else { 0.0 });
        }
        o.help("pipeline_spark_batch_id", "Latest micro-batch id of the query");
        for q in &spark.queries {
            if let Some(b) = q.batch_id {
                o.gauge("pipeline_spark_batch_id", &[("query", &q.name)], b as f64);
            }
        }
        o.help("pipeline_spark_processed_rows_per_second", "Processed rows per second of the latest batch");
        for q in &spark.queries {
            o.gauge("pipeline_spark_processed_rows_per_second", &[("query", &q.name)], q.processed_rows_per_sec);
        }
        o.help("pipeline_spark_batch_duration_seconds", "Duration of the latest batch");
        for q in &spark.queries {
            if let Some(ms) = q.batch_duration_ms {
                o.gauge("pipeline_spark_batch_duration_seconds", &[("query", &q.name)], ms as f64 / 1000.0);
            }
        }
    }
    if let Some(l) = &s.latency.data {
        o.help("pipeline_end_to_end_latency_seconds", "produced_at to Cassandra write time over the last minute");
        for (q, v) in [("0.5", l.p50_ms), ("0.99", l.p99_ms)] {
            if let Some(ms) = v {
                o.gauge("pipeline_end_to_end_latency_seconds", &[("quantile", q)], ms / 1000.0);
            }
        }
        o.help("pipeline_end_to_end_latency_samples", "Rows measured in the last minute");
        o.gauge("pipeline_end_to_end_latency_samples", &[], l.samples as f64);
    }
    if let Some(c) = &s.cassandra.data {
        if let Some(n) = c.estimated_rows {
            o.help("pipeline_cassandra_rows_estimate", "Cassandra's partition estimate of the table");
            o.gauge("pipeline_cassandra_rows_estimate", &[("table", &c.table)], n as f64);
        }
        if let Some(n) = c.writes_total {
            o.help("pipeline_cassandra_writes", "Writes to the table on this node since Cassandra started");
            o.gauge("pipeline_cassandra_writes", &[("table", &c.table)], n as f64);
        }
        if let Some(rate) = c.writes_per_sec {
            o.help("pipeline_cassandra_writes_per_second", "Rows written per second (engine split: estimated)");
            o.gauge("pipeline_cassandra_writes_per_second", &[("engine", "all")], rate);
            for (engine, r) in &c.writes_per_sec_by_engine {
                o.gauge("pipeline_cassandra_writes_per_second", &[("engine", engine)], *r);
            }
        }
        if let Some(exact) = &c.exact {
            o.help("pipeline_cassandra_rows", "Rows by engine at the last exact count");
            for (engine, n) in &exact.by_engine {
                o.gauge("pipeline_cassandra_rows", &[("engine", engine)], *n as f64);
            }
        }
    }
    if let Some(d) = &s.dlq.data {
        o.help("pipeline_dead_letters", "Records in the dead-letter topic");
        o.gauge("pipeline_dead_letters", &[("topic", &d.topic)], d.count as f64);
        o.help("pipeline_dead_letters_by_reason", "Dead letters read by the dashboard, by reason");
        for (reason, n) in &d.by_reason {
            o.gauge("pipeline_dead_letters_by_reason", &[("reason", reason)], *n as f64);
        }
    }
    if let Some(r) = &s.registry.data {
        o.help("pipeline_registry_subjects", "Subjects in the schema registry");
        o.gauge("pipeline_registry_subjects", &[], r.subjects_total as f64);
        o.help("pipeline_registry_subject_versions", "Versions of the subject");
        for sub in &r.subjects {
            o.gauge("pipeline_registry_subject_versions", &[("subject", &sub.subject)], sub.versions.len() as f64);
        }
    }
    if let Some(a) = &s.audit.data {
        o.help("pipeline_audit_rows", "Rows of the audit store");
        o.gauge("pipeline_audit_rows", &[("table", "audited")], a.audited as f64);
        o.gauge("pipeline_audit_rows", &[("table", "outbox_pending")], a.outbox_pending as f64);
        o.gauge("pipeline_audit_rows", &[("table", "rejected")], a.rejected as f64);
    }
    if let Some(a) = s.airflow.data.as_ref().filter(|_| s.airflow_enabled) {
        o.help("pipeline_airflow_dag_paused", "1 when the DAG is paused");
        for d in &a.dags {
            o.gauge("pipeline_airflow_dag_paused", &[("dag", &d.dag_id)], if d.paused { 1.0 } else { 0.0 });
        }
        o.help("pipeline_airflow_dag_runs", "Of the DAG's latest runs shown, how many are in each state");
        for d in &a.dags {
            let mut states: std::collections::BTreeMap<&str, u32> = Default::default();
            for r in &d.runs {
                *states.entry(r.state.as_str()).or_default() += 1;
            }
            for (state, n) in states {
                o.gauge("pipeline_airflow_dag_runs", &[("dag", &d.dag_id), ("state", state)], n as f64);
            }
        }
        o.help("pipeline_airflow_dag_last_run", "1 for the state of the DAG's newest run");
        for d in &a.dags {
            if let Some(r) = d.runs.first() {
                o.gauge("pipeline_airflow_dag_last_run", &[("dag", &d.dag_id), ("state", &r.state)], 1.0);
            }
        }
    }
    o.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::DlqView;

    #[test]
    fn labels_are_escaped_and_gauges_typed() {
        let mut s = Snapshot::default();
        let mut d = DlqView { topic: "t.dlq".into(), count: 3, ..Default::default() };
        d.by_reason.insert("bad \"frame\"\nx".into(), 3);
        s.dlq.set(d);
        let text = render(&s);
        assert!(text.contains("# TYPE pipeline_dead_letters gauge"), "{text}");
        assert!(text.contains("pipeline_dead_letters{topic=\"t.dlq\"} 3"), "{text}");
        assert!(text.contains("reason=\"bad \\\"frame\\\"\\nx\""), "{text}");
    }
}
