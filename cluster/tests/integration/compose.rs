//! `docker-compose.yml` checked against the native launcher, without a Docker engine.
//!
//! The compose file is the Docker alternative to `pipeline cluster up`; these tests keep the two
//! from drifting apart: the same services (by [`Service::name`]), the same host ports
//! ([`Service::ports`] of the default configuration) bound to 127.0.0.1 only, pinned images, a
//! healthcheck on every long-running service, `depends_on` that waits for health (or for a
//! one-shot's success), and the conf files of `conf/services/` mounted read-only from the repo.
//!
//! Each check collects its findings as readable strings; the `*_is_detected` tests feed it a
//! broken copy of the file to prove that the check can fail.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use pipeline_cluster::layout::SERVICE_FILES;
use pipeline_cluster::Service;
use pipeline_core::Config;
use serde_yaml::{Mapping, Value};

/// Compose services that run once and exit (no healthcheck, no published port).
const ONE_SHOT: &[&str] = &["kafka-init", "airflow-init", "pipeline-bin"];

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the crate lives inside the repository").to_path_buf()
}

fn compose() -> Value {
    let path = repo_root().join("docker-compose.yml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", path.display()))
}

fn services(doc: &Value) -> &Mapping {
    doc.get("services").and_then(Value::as_mapping).expect("docker-compose.yml has a `services` mapping")
}

fn services_mut(doc: &mut Value) -> &mut Mapping {
    doc.get_mut("services").and_then(Value::as_mapping_mut).expect("docker-compose.yml has a `services` mapping")
}

fn service_mut<'a>(doc: &'a mut Value, name: &str) -> &'a mut Mapping {
    services_mut(doc).get_mut(name).and_then(Value::as_mapping_mut).unwrap_or_else(|| panic!("no service {name}"))
}

/// (name, definition) of every compose service.
fn each_service(doc: &Value) -> Vec<(String, &Value)> {
    services(doc).iter().map(|(k, v)| (k.as_str().unwrap_or("<non-string key>").to_string(), v)).collect()
}

fn is_one_shot(name: &str) -> bool {
    ONE_SHOT.contains(&name)
}

fn assert_clean(what: &str, problems: Vec<String>) {
    assert!(problems.is_empty(), "docker-compose.yml: {what}:\n  - {}", problems.join("\n  - "));
}

// ------------------------------------------------------------------------------------------------
// Checks. Each returns the problems it found; an empty list means the file passes.

fn service_set_problems(doc: &Value) -> Vec<String> {
    let have: BTreeSet<String> = each_service(doc).into_iter().map(|(name, _)| name).collect();
    let want: BTreeSet<String> =
        Service::ALL.iter().map(|s| s.name().to_string()).chain(ONE_SHOT.iter().map(|s| s.to_string())).collect();
    let mut problems = Vec::new();
    for missing in want.difference(&have) {
        problems.push(format!("service `{missing}` is missing"));
    }
    for extra in have.difference(&want) {
        problems.push(format!(
            "service `{extra}` is neither a launcher service ({}) nor a known one-shot ({})",
            Service::ALL.map(|s| s.name()).join(", "),
            ONE_SHOT.join(", ")
        ));
    }
    problems
}

/// `Some(tag)` of an image reference (`repo[:tag][@digest]`, the registry may carry a port).
fn image_tag(image: &str) -> Option<&str> {
    let without_digest = image.split('@').next().unwrap_or(image);
    let last_component = without_digest.rsplit('/').next().unwrap_or(without_digest);
    last_component.split_once(':').map(|(_, tag)| tag)
}

fn image_problems(doc: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    for (name, svc) in each_service(doc) {
        match svc.get("image").and_then(Value::as_str) {
            None => problems.push(format!("{name}: no `image`")),
            Some(image) => match image_tag(image) {
                None => problems.push(format!("{name}: image `{image}` has no tag")),
                Some(tag) if tag.is_empty() || tag == "latest" || tag.contains('$') => {
                    problems.push(format!("{name}: image `{image}` is not pinned to a version"))
                }
                Some(_) => {}
            },
        }
    }
    problems
}

fn healthcheck_problems(doc: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    for (name, svc) in each_service(doc) {
        if is_one_shot(&name) {
            continue;
        }
        let Some(hc) = svc.get("healthcheck") else {
            problems.push(format!("{name}: long-running service without a healthcheck"));
            continue;
        };
        if hc.get("disable").and_then(Value::as_bool) == Some(true) {
            problems.push(format!("{name}: healthcheck is disabled"));
        }
        let test_ok = match hc.get("test") {
            Some(Value::String(s)) => !s.trim().is_empty(),
            Some(Value::Sequence(items)) => {
                let words: Vec<&str> = items.iter().filter_map(Value::as_str).collect();
                words.len() == items.len()
                    && match words.first() {
                        Some(&"CMD") | Some(&"CMD-SHELL") => {
                            words.len() >= 2 && words[1..].iter().any(|w| !w.trim().is_empty())
                        }
                        _ => false,
                    }
            }
            _ => false,
        };
        if !test_ok {
            problems.push(format!("{name}: healthcheck has no usable `test` (a string, or [CMD|CMD-SHELL, ...])"));
        }
    }
    problems
}

fn depends_on_problems(doc: &Value) -> Vec<String> {
    let names: BTreeSet<String> = each_service(doc).into_iter().map(|(name, _)| name).collect();
    let mut problems = Vec::new();
    for (name, svc) in each_service(doc) {
        let mut targets = BTreeSet::new();
        match svc.get("depends_on") {
            None => {}
            Some(Value::Mapping(deps)) => {
                for (dep, spec) in deps {
                    let dep = dep.as_str().unwrap_or("<non-string key>").to_string();
                    if !names.contains(&dep) {
                        problems.push(format!("{name}: depends on unknown service `{dep}`"));
                    }
                    let condition = spec.get("condition").and_then(Value::as_str);
                    let expected = if is_one_shot(&dep) { "service_completed_successfully" } else { "service_healthy" };
                    match condition {
                        Some(c @ ("service_healthy" | "service_completed_successfully")) if c == expected => {}
                        Some(c @ ("service_healthy" | "service_completed_successfully")) => problems.push(format!(
                            "{name}: depends on `{dep}` with condition {c}, expected {expected} for that service"
                        )),
                        other => problems.push(format!(
                            "{name}: depends on `{dep}` with condition {other:?}; use service_healthy or service_completed_successfully"
                        )),
                    }
                    targets.insert(dep);
                }
            }
            Some(Value::Sequence(_)) => problems.push(format!(
                "{name}: `depends_on` is a plain list, which only waits for the container to start; use the long form with a condition"
            )),
            Some(other) => problems.push(format!("{name}: unreadable `depends_on`: {other:?}")),
        }
        // The launcher's start order must hold in compose too.
        if let Ok(service) = name.parse::<Service>() {
            if let Some(dep) = service.depends_on() {
                if !targets.contains(dep.name()) {
                    problems
                        .push(format!("{name}: the launcher starts it after {dep}, but it does not depend on `{dep}`"));
                }
            }
        }
    }
    problems
}

/// One published port: host address (if any), host port, container port.
#[derive(Debug)]
struct Published {
    host_ip: Option<String>,
    host_port: Option<u16>,
    container_port: Option<u16>,
}

fn parse_port(entry: &Value) -> Result<Published, String> {
    let number = |s: &str| {
        s.parse::<u16>().map_err(|_| format!("`{s}` is not a single port number (ranges are not supported here)"))
    };
    match entry {
        Value::Mapping(_) => {
            let field = |k: &str| {
                entry.get(k).and_then(|v| v.as_u64().map(|n| n.to_string()).or(v.as_str().map(str::to_string)))
            };
            Ok(Published {
                host_ip: field("host_ip"),
                host_port: field("published").as_deref().map(number).transpose()?,
                container_port: field("target").as_deref().map(number).transpose()?,
            })
        }
        Value::Number(n) => {
            Ok(Published { host_ip: None, host_port: None, container_port: Some(number(&n.to_string())?) })
        }
        Value::String(s) => {
            let spec = s.split('/').next().unwrap_or(s);
            if spec.starts_with('[') {
                return Err(format!("`{s}`: IPv6 host address; only 127.0.0.1 is allowed"));
            }
            let parts: Vec<&str> = spec.split(':').collect();
            match parts.as_slice() {
                [container] => {
                    Ok(Published { host_ip: None, host_port: None, container_port: Some(number(container)?) })
                }
                [host, container] => Ok(Published {
                    host_ip: None,
                    host_port: Some(number(host)?),
                    container_port: Some(number(container)?),
                }),
                [ip, host, container] => Ok(Published {
                    host_ip: Some(ip.to_string()),
                    host_port: if host.is_empty() { None } else { Some(number(host)?) },
                    container_port: Some(number(container)?),
                }),
                _ => Err(format!("`{s}`: unreadable port mapping")),
            }
        }
        other => Err(format!("unreadable port mapping {other:?}")),
    }
}

fn port_problems(doc: &Value, config: &Config) -> Vec<String> {
    let mut problems = Vec::new();
    for (name, svc) in each_service(doc) {
        let entries: Vec<Value> = match svc.get("ports") {
            None => Vec::new(),
            Some(Value::Sequence(items)) => items.clone(),
            Some(other) => {
                problems.push(format!("{name}: `ports` is not a list: {other:?}"));
                continue;
            }
        };
        if svc.get("network_mode").and_then(Value::as_str) == Some("host") {
            problems.extend(host_network_problems(&name, svc, &entries, config));
            continue;
        }
        let mut host_ports = Vec::new();
        for entry in &entries {
            match parse_port(entry) {
                Err(e) => problems.push(format!("{name}: {e}")),
                Ok(p) => {
                    if p.host_ip.as_deref() != Some("127.0.0.1") {
                        problems.push(format!("{name}: port {entry:?} is not bound to 127.0.0.1 on the host"));
                    }
                    match p.host_port {
                        None => problems.push(format!("{name}: port {entry:?} has no fixed host port")),
                        Some(h) => {
                            host_ports.push(h);
                            if p.container_port != Some(h) {
                                problems.push(format!(
                                    "{name}: host port {h} maps to container port {:?}; the services listen on the launcher's ports inside too",
                                    p.container_port
                                ));
                            }
                        }
                    }
                }
            }
        }
        host_ports.sort_unstable();
        match name.parse::<Service>() {
            Ok(service) => {
                let mut expected = service.ports(config);
                expected.sort_unstable();
                if host_ports != expected {
                    problems.push(format!(
                        "{name}: publishes host ports {host_ports:?}, the launcher's Service::ports says {expected:?}"
                    ));
                }
            }
            Err(_) if !host_ports.is_empty() => {
                problems.push(format!("{name}: one-shot service publishes ports {host_ports:?}"));
            }
            Err(_) => {}
        }
    }
    problems
}

/// A service on the host's network publishes nothing (Docker ignores `ports` there): it binds
/// the launcher's ports itself, so its `*__HOST` settings must be 127.0.0.1 and, when it
/// listens, its `*__PORT` settings exactly the launcher's ports.
fn host_network_problems(name: &str, svc: &Value, published: &[Value], config: &Config) -> Vec<String> {
    let mut problems = Vec::new();
    if !published.is_empty() {
        problems.push(format!("{name}: on the host network, `ports` are ignored; bind 127.0.0.1 in its settings"));
    }
    let env = environment(svc);
    for (key, value) in &env {
        if key.ends_with("__HOST") && value != "127.0.0.1" {
            problems.push(format!("{name}: {key}={value}; on the host network it must bind 127.0.0.1"));
        }
    }
    let mut ports: Vec<u16> = env
        .iter()
        .filter(|(k, _)| k.ends_with("__PORT"))
        .filter_map(|(k, v)| match v.parse() {
            Ok(p) => Some(p),
            Err(_) => {
                problems.push(format!("{name}: {k}={v} is not a port number"));
                None
            }
        })
        .collect();
    ports.sort_unstable();
    // Services that share one environment see the listener's port too: only a service that
    // listens (Service::ports not empty) must match it.
    if let Ok(service) = name.parse::<Service>() {
        let mut expected = service.ports(config);
        expected.sort_unstable();
        if !expected.is_empty() && ports != expected {
            problems.push(format!(
                "{name}: binds ports {ports:?} on the host, the launcher's Service::ports says {expected:?}"
            ));
        }
    }
    problems
}

/// A service's `environment` as (key, value) pairs (mapping or KEY=VALUE list).
fn environment(svc: &Value) -> Vec<(String, String)> {
    match svc.get("environment") {
        Some(Value::Mapping(m)) => m
            .iter()
            .filter_map(|(k, v)| {
                let value = v.as_str().map(str::to_string).or_else(|| v.as_u64().map(|n| n.to_string()))?;
                Some((k.as_str()?.to_string(), value))
            })
            .collect(),
        Some(Value::Sequence(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .filter_map(|kv| kv.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
            .collect(),
        _ => Vec::new(),
    }
}

/// One mount: source, target, read-only.
#[derive(Debug)]
struct Mount {
    source: String,
    target: String,
    read_only: bool,
}

fn parse_volume(entry: &Value) -> Result<Mount, String> {
    match entry {
        Value::String(s) => {
            // SOURCE:TARGET[:MODE]; the source may contain ':' (`${VAR:-default}`), so split from the right.
            let mut parts: Vec<&str> = s.split(':').collect();
            let is_mode = |m: &str| {
                !m.is_empty()
                    && m.split(',').all(|o| {
                        matches!(o, "ro" | "rw" | "z" | "Z" | "cached" | "delegated" | "consistent" | "nocopy")
                    })
            };
            let mode = if parts.len() >= 3 && parts.last().is_some_and(|m| is_mode(m)) { parts.pop() } else { None };
            let target = parts.pop().ok_or_else(|| format!("`{s}`: no target"))?;
            let source = parts.join(":");
            Ok(Mount {
                source,
                target: target.to_string(),
                read_only: mode.is_some_and(|m| m.split(',').any(|o| o == "ro")),
            })
        }
        Value::Mapping(_) => Ok(Mount {
            source: entry.get("source").and_then(Value::as_str).unwrap_or_default().to_string(),
            target: entry.get("target").and_then(Value::as_str).unwrap_or_default().to_string(),
            read_only: entry.get("read_only").and_then(Value::as_bool).unwrap_or(false),
        }),
        other => Err(format!("unreadable volume entry {other:?}")),
    }
}

fn mounts(doc: &Value) -> Vec<(String, Result<Mount, String>)> {
    let mut out = Vec::new();
    for (name, svc) in each_service(doc) {
        if let Some(Value::Sequence(items)) = svc.get("volumes") {
            out.extend(items.iter().map(|v| (name.clone(), parse_volume(v))));
        }
    }
    out
}

/// `./conf/x` or `conf/x` relative to the repository root.
fn conf_path(source: &str) -> Option<&str> {
    let rel = source.strip_prefix("./").unwrap_or(source);
    rel.starts_with("conf/").then_some(rel)
}

fn mount_problems(doc: &Value, root: &Path) -> Vec<String> {
    let declared: BTreeSet<String> = doc
        .get("volumes")
        .and_then(Value::as_mapping)
        .map(|m| m.keys().filter_map(Value::as_str).map(str::to_string).collect())
        .unwrap_or_default();
    let mut problems = Vec::new();
    let mut mounted_conf = BTreeSet::new();
    for (name, mount) in mounts(doc) {
        let m = match mount {
            Ok(m) => m,
            Err(e) => {
                problems.push(format!("{name}: {e}"));
                continue;
            }
        };
        if m.target.is_empty() {
            problems.push(format!("{name}: a mount of `{}` has no target", m.source));
        }
        if let Some(rel) = conf_path(&m.source) {
            if !root.join(rel).exists() {
                problems.push(format!("{name}: mounts `{}`, which does not exist in the repository", m.source));
            }
            if !m.read_only {
                problems.push(format!("{name}: `{}` is mounted writable; conf files are mounted read-only", m.source));
            }
            mounted_conf.insert(rel.to_string());
        } else if !m.source.is_empty() && !m.source.starts_with(['.', '/', '~', '$']) && !declared.contains(&m.source) {
            problems.push(format!("{name}: named volume `{}` is not declared under the top-level `volumes`", m.source));
        }
    }
    // The launcher's service files are the single source of truth: compose must use every one.
    for (file, _) in SERVICE_FILES {
        let rel = format!("conf/services/{file}");
        if !mounted_conf.contains(&rel) {
            problems.push(format!("`./{rel}` (a launcher service file) is not mounted by any service"));
        }
    }
    problems
}

/// Every word (topic names, flags, numbers) of a service's `command`.
fn command_words(svc: &Value) -> Vec<String> {
    let text = match svc.get("command") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Sequence(items)) => items.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(" "),
        _ => String::new(),
    };
    text.split(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

/// The Airflow services run like the launcher's: LocalExecutor with the configured parallelism,
/// metadata in `airflow.database`, secrets never committed (generated, read through `*_CMD`),
/// the repository's DAG folder mounted read-only where Airflow looks, no log server.
fn airflow_problems(doc: &Value, config: &Config) -> Vec<String> {
    let mut problems = Vec::new();
    for (name, svc) in each_service(doc).into_iter().filter(|(n, _)| n.starts_with("airflow-")) {
        let env: std::collections::BTreeMap<String, String> = environment(svc).into_iter().collect();
        let get = |k: &str| env.get(k).map(String::as_str).unwrap_or("");
        let mut expect = |key: &str, want: &str| {
            if get(key) != want {
                problems.push(format!("{name}: {key}={:?}, expected {want:?}", get(key)));
            }
        };
        expect("AIRFLOW__CORE__EXECUTOR", "LocalExecutor");
        expect("AIRFLOW__CORE__PARALLELISM", &config.airflow.parallelism.to_string());
        expect("AIRFLOW__API__PORT", &config.airflow.port.to_string());
        for secret in ["AIRFLOW__CORE__FERNET_KEY", "AIRFLOW__API_AUTH__JWT_SECRET"] {
            if env.contains_key(secret) {
                problems.push(format!("{name}: {secret} is set in the file; generate it and use {secret}_CMD"));
            }
            if !env.contains_key(&format!("{secret}_CMD")) {
                problems.push(format!("{name}: {secret}_CMD is missing"));
            }
        }
        let conn = get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN");
        if !conn.contains("${PIPELINE__POSTGRES__PASSWORD:?")
            || !conn.ends_with(&format!("/{}", config.airflow.database))
        {
            problems.push(format!(
                "{name}: the metadata database must be {} with the password from the environment: {conn}",
                config.airflow.database
            ));
        }
        let dags = get("AIRFLOW__CORE__DAGS_FOLDER");
        let mounted = mounts(doc)
            .into_iter()
            .filter(|(n, _)| *n == name)
            .filter_map(|(_, m)| m.ok())
            .any(|m| m.source.trim_start_matches("./") == "airflow/dags" && m.target == dags && m.read_only);
        if !mounted {
            problems.push(format!(
                "{name}: ./airflow/dags is not mounted read-only at AIRFLOW__CORE__DAGS_FOLDER ({dags})"
            ));
        }
    }
    if let Some(scheduler) = services(doc).get("airflow-scheduler") {
        if !command_words(scheduler).iter().any(|w| w == "--skip-serve-logs") {
            problems.push("airflow-scheduler: runs its log server (0.0.0.0:8793); use --skip-serve-logs".into());
        }
    }
    problems
}

/// The `pipeline` image: built once (by `pipeline-bin`, from the Dockerfile, tagged with the
/// workspace version), never pulled by the services that run it, each of which waits for the
/// build; the Dockerfile's Rust toolchain is the workspace's `rust-version`.
fn pipeline_image_problems(doc: &Value, root: &Path) -> Vec<String> {
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap_or_default();
    let workspace_value = |key: &str| {
        manifest
            .lines()
            .find_map(|l| l.strip_prefix(key)?.trim_start().strip_prefix('='))
            .map(|v| v.trim().trim_matches('"').to_string())
    };
    let image = format!("pipeline:{}", workspace_value("version").unwrap_or_default());
    let mut problems = Vec::new();
    let dockerfile = std::fs::read_to_string(root.join("Dockerfile")).unwrap_or_default();
    let builder = format!("FROM rust:{}-", workspace_value("rust-version").unwrap_or_default());
    if !dockerfile.lines().any(|l| l.starts_with(&builder)) {
        problems.push(format!("Dockerfile: the build stage is not `{builder}...` (the workspace's rust-version)"));
    }
    let mut builders = Vec::new();
    for (name, svc) in each_service(doc) {
        if !svc.get("image").and_then(Value::as_str).is_some_and(|i| i.starts_with("pipeline:")) {
            continue;
        }
        if svc.get("image").and_then(Value::as_str) != Some(image.as_str()) {
            problems.push(format!("{name}: the pipeline image must be `{image}` (the workspace version)"));
        }
        if svc.get("build").is_some() {
            builders.push(name);
            continue;
        }
        if svc.get("pull_policy").and_then(Value::as_str) != Some("never") {
            problems.push(format!("{name}: runs `{image}` without `pull_policy: never` (no registry has it)"));
        }
        let waits = svc
            .get("depends_on")
            .and_then(|d| d.get("pipeline-bin"))
            .and_then(|d| d.get("condition"))
            .and_then(Value::as_str)
            == Some("service_completed_successfully");
        if !waits {
            problems.push(format!("{name}: does not wait for pipeline-bin to build the image"));
        }
    }
    if builders != ["pipeline-bin"] {
        problems.push(format!("the pipeline image must be built by pipeline-bin alone, built by {builders:?}"));
    }
    problems
}

// ------------------------------------------------------------------------------------------------
// The checks on the real file.

#[test]
fn compose_has_the_launcher_services_and_the_topic_init() {
    assert_clean("services", service_set_problems(&compose()));
}

#[test]
fn compose_images_are_pinned() {
    assert_clean("images", image_problems(&compose()));
}

#[test]
fn compose_long_running_services_have_healthchecks() {
    assert_clean("healthchecks", healthcheck_problems(&compose()));
}

#[test]
fn compose_depends_on_waits_for_health_or_success() {
    assert_clean("depends_on", depends_on_problems(&compose()));
}

#[test]
fn compose_host_ports_are_the_launcher_ports_on_loopback() {
    assert_clean("ports", port_problems(&compose(), &Config::defaults()));
}

#[test]
fn compose_mounts_the_repository_conf_files_read_only() {
    assert_clean("mounts", mount_problems(&compose(), &repo_root()));
}

#[test]
fn compose_airflow_runs_like_the_launcher_without_committed_secrets() {
    assert_clean("airflow", airflow_problems(&compose(), &Config::defaults()));
    assert!(repo_root().join("airflow/dags/users_created_ingest.py").exists());
}

#[test]
fn a_committed_airflow_secret_or_a_port_on_the_host_network_is_detected() {
    let config = Config::defaults();
    let mut doc = compose();
    let env = service_mut(&mut doc, "airflow-api")
        .get_mut("environment")
        .and_then(Value::as_mapping_mut)
        .expect("airflow-api environment");
    env.insert("AIRFLOW__CORE__FERNET_KEY".into(), "committed".into());
    env.insert("AIRFLOW__API__HOST".into(), "0.0.0.0".into());
    let problems = airflow_problems(&doc, &config);
    assert!(problems.iter().any(|p| p.contains("FERNET_KEY is set")), "{problems:?}");
    let problems = port_problems(&doc, &config);
    assert!(problems.iter().any(|p| p.contains("must bind 127.0.0.1")), "{problems:?}");

    let mut doc = compose();
    service_mut(&mut doc, "airflow-scheduler")
        .insert("ports".into(), Value::Sequence(vec![Value::from("127.0.0.1:8793:8793")]));
    service_mut(&mut doc, "airflow-scheduler").insert("command".into(), Value::from("scheduler"));
    let problems = port_problems(&doc, &config);
    assert!(problems.iter().any(|p| p.contains("`ports` are ignored")), "{problems:?}");
    assert!(airflow_problems(&doc, &config).iter().any(|p| p.contains("--skip-serve-logs")));
}

#[test]
fn compose_kafka_init_creates_the_configured_topics() {
    let doc = compose();
    let config = Config::defaults();
    let init = services(&doc).get("kafka-init").expect("kafka-init service");
    let words = command_words(init);
    for topic in [&config.kafka.topic, &config.kafka.dead_letter_topic] {
        assert!(
            words.iter().any(|w| w == topic),
            "kafka-init does not create topic `{topic}`; its command words: {words:?}"
        );
    }
    let partitions = config.kafka.partitions.to_string();
    let creates = words.iter().filter(|w| *w == "--create").count();
    let with_partitions = words.windows(2).filter(|w| w[0] == "--partitions" && w[1] == partitions).count();
    assert!(
        creates >= 2 && with_partitions == creates,
        "every topic must be created with --partitions {partitions}: {words:?}"
    );
}

#[test]
fn compose_postgres_password_comes_from_the_environment() {
    let doc = compose();
    let config = Config::defaults();
    let env = services(&doc).get("postgres").and_then(|s| s.get("environment")).expect("postgres has an environment");
    let get = |key: &str| -> Option<String> {
        match env {
            Value::Mapping(m) => m.get(key).and_then(|v| v.as_str().map(str::to_string)),
            Value::Sequence(items) => items
                .iter()
                .filter_map(Value::as_str)
                .find_map(|kv| kv.split_once('=').filter(|(k, _)| *k == key).map(|(_, v)| v.to_string())),
            _ => None,
        }
    };
    assert_eq!(get("POSTGRES_USER").as_deref(), Some(config.postgres.user.as_str()));
    assert_eq!(get("POSTGRES_DB").as_deref(), Some(config.postgres.database.as_str()));
    let password = get("POSTGRES_PASSWORD").expect("POSTGRES_PASSWORD is set");
    assert!(
        password.starts_with("${") && password.contains(":?") && password.ends_with('}'),
        "POSTGRES_PASSWORD must be a required variable (`${{NAME:?message}}`), never a committed value: {password}"
    );
}

/// Problems with Spark Connect's authentication: the interceptor loaded, its jar mounted, and
/// the token from a required variable, never a committed value.
fn connect_auth_problems(doc: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let Some(svc) = services(doc).get("spark-connect") else {
        return vec!["no spark-connect service".into()];
    };
    let words = command_words(svc);
    let interceptor = pipeline_cluster::connect_auth::INTERCEPTOR_CLASS;
    let loads = words.windows(2).any(|w| w[0] == "spark.connect.grpc.interceptor.classes" && w[1] == interceptor);
    if !loads {
        problems.push(format!("spark-connect does not load {interceptor} (spark.connect.grpc.interceptor.classes)"));
    }
    let jar = pipeline_cluster::connect_auth::INTERCEPTOR_JAR;
    let jar_dir = jar.rsplit_once('/').map(|(d, _)| d).unwrap_or(jar);
    let mounted = mounts(doc).into_iter().any(|(name, m)| {
        name == "spark-connect" && m.as_ref().is_ok_and(|m| m.source.ends_with(jar_dir) && m.read_only)
    });
    if !mounted {
        problems.push(format!("spark-connect does not mount the interceptor folder `{jar_dir}` read-only"));
    }
    let token = svc
        .get("environment")
        .and_then(|e| e.get(pipeline_cluster::connect_auth::TOKEN_ENV))
        .and_then(Value::as_str)
        .unwrap_or_default();
    if !(token.starts_with("${PIPELINE__SPARK__CONNECT_TOKEN:?") && token.ends_with('}')) {
        problems.push(format!(
            "spark-connect's {} must be the required variable ${{PIPELINE__SPARK__CONNECT_TOKEN:?...}}, got `{token}`",
            pipeline_cluster::connect_auth::TOKEN_ENV
        ));
    }
    problems
}

#[test]
fn compose_spark_connect_requires_the_token() {
    assert_clean("Spark Connect authentication", connect_auth_problems(&compose()));
}

#[test]
fn a_spark_connect_without_the_token_is_detected() {
    let mut doc = compose();
    let svc = service_mut(&mut doc, "spark-connect");
    svc.remove("environment");
    let problems = connect_auth_problems(&doc);
    assert!(problems.iter().any(|p| p.contains("PIPELINE__SPARK__CONNECT_TOKEN")), "{problems:?}");
    let mut doc = compose();
    service_mut(&mut doc, "spark-connect").insert(Value::from("command"), Value::from("spark-submit"));
    let problems = connect_auth_problems(&doc);
    assert!(problems.iter().any(|p| p.contains("interceptor.classes")), "{problems:?}");
}

// ------------------------------------------------------------------------------------------------
// The checks can fail: each is fed a broken copy of the real file.

#[test]
fn a_port_that_differs_from_the_launcher_is_detected() {
    let config = Config::defaults();
    let mut doc = compose();
    let ports = service_mut(&mut doc, "kafka").get_mut("ports").and_then(Value::as_sequence_mut).expect("kafka ports");
    ports.retain(|p| p.as_str() != Some("127.0.0.1:9093:9093"));
    ports.push(Value::from("127.0.0.1:9094:9094"));
    let problems = port_problems(&doc, &config);
    assert!(problems.iter().any(|p| p.starts_with("kafka:") && p.contains("Service::ports")), "{problems:?}");

    let mut doc = compose();
    service_mut(&mut doc, "postgres").insert("ports".into(), Value::Sequence(vec![Value::from("5432:5432")]));
    let problems = port_problems(&doc, &config);
    assert!(problems.iter().any(|p| p.contains("not bound to 127.0.0.1")), "{problems:?}");

    let mut doc = compose();
    service_mut(&mut doc, "registry").insert("ports".into(), Value::Sequence(vec![Value::from("127.0.0.1:8081:8080")]));
    let problems = port_problems(&doc, &config);
    assert!(problems.iter().any(|p| p.contains("maps to container port")), "{problems:?}");
}

#[test]
fn an_unpinned_image_is_detected() {
    for image in ["postgres:latest", "postgres", "registry.local:5000/postgres"] {
        let mut doc = compose();
        service_mut(&mut doc, "postgres").insert("image".into(), Value::from(image));
        let problems = image_problems(&doc);
        assert!(problems.iter().any(|p| p.starts_with("postgres:")), "{image}: {problems:?}");
    }
    assert_eq!(image_tag("registry.local:5000/postgres:15.18@sha256:abc"), Some("15.18"));
}

#[test]
fn a_missing_healthcheck_or_service_is_detected() {
    let mut doc = compose();
    service_mut(&mut doc, "kafka").remove("healthcheck");
    assert!(healthcheck_problems(&doc).iter().any(|p| p.starts_with("kafka:")));

    let mut doc = compose();
    services_mut(&mut doc).remove("spark-connect");
    assert!(service_set_problems(&doc).iter().any(|p| p.contains("spark-connect")));
}

#[test]
fn a_depends_on_without_health_condition_is_detected() {
    let mut doc = compose();
    service_mut(&mut doc, "spark-worker")
        .insert("depends_on".into(), Value::Sequence(vec![Value::from("spark-master")]));
    assert!(depends_on_problems(&doc).iter().any(|p| p.starts_with("spark-worker:")));

    let mut doc = compose();
    service_mut(&mut doc, "spark-connect").remove("depends_on");
    assert!(depends_on_problems(&doc).iter().any(|p| p.contains("the launcher starts it after")));
}

#[test]
fn a_missing_or_writable_conf_mount_is_detected() {
    let root = repo_root();
    let mut doc = compose();
    let volumes =
        service_mut(&mut doc, "kafka").get_mut("volumes").and_then(Value::as_sequence_mut).expect("kafka volumes");
    volumes.push(Value::from("./conf/services/kafka/no-such-file.properties:/etc/x:ro"));
    volumes.push(Value::from("./conf/services/kafka/server.properties:/etc/y"));
    let problems = mount_problems(&doc, &root);
    assert!(problems.iter().any(|p| p.contains("does not exist")), "{problems:?}");
    assert!(problems.iter().any(|p| p.contains("mounted writable")), "{problems:?}");

    let mut doc = compose();
    service_mut(&mut doc, "cassandra").remove("volumes");
    let problems = mount_problems(&doc, &root);
    assert!(problems.iter().any(|p| p.contains("cassandra/cassandra.yaml")), "{problems:?}");
}

#[test]
fn compose_builds_the_pipeline_image_once_from_the_dockerfile() {
    assert_clean("pipeline image", pipeline_image_problems(&compose(), &repo_root()));
}

#[test]
fn a_pulled_or_rebuilt_pipeline_image_is_detected() {
    let mut doc = compose();
    service_mut(&mut doc, "supervisor").remove("pull_policy");
    service_mut(&mut doc, "dashboard").insert("build".into(), ".".into());
    let problems = pipeline_image_problems(&doc, &repo_root()).join("\n");
    assert!(problems.contains("supervisor: runs `pipeline:"), "{problems}");
    assert!(problems.contains("built by pipeline-bin alone"), "{problems}");
}
