//! Browser tests of the dashboard: Debian's headless Chromium, driven over CDP by
//! `headless_chrome`, against the shared cluster. The dashboard runs in-process on a free port.
//! A missing browser fails the test (`make deps` installs it).

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use headless_chrome::browser::tab::Tab;
use headless_chrome::protocol::cdp::types::Event;
use headless_chrome::protocol::cdp::Page::CaptureScreenshotFormatOption;
use headless_chrome::{Browser, LaunchOptions};
use pipeline_cluster::{Cluster, Service};
use pipeline_core::config::SourceKind;
use pipeline_core::Config;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

mod airflow;

/// The tests share the cluster and one of them stops a service: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn chromium() -> PathBuf {
    let path = std::env::var_os("PIPELINE_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium-headless-shell"));
    assert!(
        path.exists(),
        "{} is missing: run `make deps` (apt-get install chromium-headless-shell) or set PIPELINE_CHROMIUM",
        path.display()
    );
    path
}

/// A dashboard on a free port, a browser with the page open, and the page's errors.
struct Fixture {
    rt: tokio::runtime::Runtime,
    config: Config,
    addr: SocketAddr,
    shutdown: CancellationToken,
    _browser: Browser,
    tab: Arc<Tab>,
    errors: Arc<Mutex<Vec<String>>>,
    first_paint_ms: f64,
}

impl Fixture {
    fn start() -> Fixture {
        let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
        let config = pipeline_testkit::config();
        let shutdown = CancellationToken::new();
        let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let addr = listener.local_addr().unwrap();
        rt.spawn(pipeline_dashboard::serve(config.clone(), listener, shutdown.clone()));

        let browser = Browser::new(LaunchOptions {
            headless: true,
            sandbox: false,
            path: Some(chromium()),
            window_size: Some((1400, 2200)),
            idle_browser_timeout: Duration::from_secs(300),
            ..LaunchOptions::default()
        })
        .expect("headless Chromium starts");
        let tab = browser.new_tab().unwrap();
        let errors = Arc::new(Mutex::new(Vec::new()));
        let sink = errors.clone();
        tab.enable_log().unwrap().enable_runtime().unwrap();
        tab.add_event_listener(Arc::new(move |event: &Event| {
            let text = match event {
                Event::RuntimeExceptionThrown(e) => Some(format!("exception: {:?}", e.params.exception_details.text)),
                Event::RuntimeConsoleAPICalled(e) if format!("{:?}", e.params.Type) == "Error" => {
                    Some(format!("console.error: {:?}", e.params.args.first().and_then(|a| a.value.clone())))
                }
                Event::LogEntryAdded(e) if format!("{:?}", e.params.entry.level) == "Error" => {
                    Some(format!("log: {}", e.params.entry.text))
                }
                _ => None,
            };
            if let Some(t) = text {
                sink.lock().unwrap().push(t);
            }
        }))
        .unwrap();
        tab.set_default_timeout(Duration::from_secs(20));
        tab.navigate_to(&format!("http://{addr}/")).unwrap().wait_until_navigated().unwrap();
        let first_paint_ms = eval(&tab, "(performance.getEntriesByName('first-contentful-paint')[0] || {}).startTime")
            .as_f64()
            .expect("the page reports its first contentful paint");
        tab.wait_for_element("[data-testid=ready]").expect("the page shows data (data-testid=ready)");
        let nav = eval_json(
            &tab,
            "(function(){var n=performance.getEntriesByType('navigation')[0]||{};\
             return {response_end:n.responseEnd,dom_content_loaded:n.domContentLoadedEventEnd,load:n.loadEventEnd,\
             ready:performance.now()}})()",
        );
        println!(
            "performance timing (ms since navigation start): first contentful paint {first_paint_ms:.0}, \
             response end {:.0}, DOMContentLoaded {:.0}, load {:.0}, data-testid=ready seen by {:.0}",
            nav["response_end"].as_f64().unwrap_or(-1.0),
            nav["dom_content_loaded"].as_f64().unwrap_or(-1.0),
            nav["load"].as_f64().unwrap_or(-1.0),
            nav["ready"].as_f64().unwrap_or(-1.0)
        );
        Fixture { rt, config, addr, shutdown, _browser: browser, tab, errors, first_paint_ms }
    }

    /// The text of the element with this test id, if it is on the page.
    fn text(&self, testid: &str) -> Option<String> {
        let v = eval(
            &self.tab,
            &format!("(function(){{var e=document.querySelector('[data-testid=\"{testid}\"]');return e?e.textContent:null}})()"),
        );
        v.as_str().map(str::to_string)
    }

    fn number(&self, testid: &str) -> Option<i64> {
        self.text(testid).and_then(|t| t.chars().filter(char::is_ascii_digit).collect::<String>().parse().ok())
    }

    /// Page errors seen by the browser and by the page's own handler.
    fn page_errors(&self) -> Vec<String> {
        let mut all = self.errors.lock().unwrap().clone();
        let list = eval_json(&self.tab, "window.__errors");
        all.extend(list.as_array().expect("window.__errors is a list").iter().map(|v| format!("page: {v}")));
        all
    }

    fn screenshot(&self, path: &Path) {
        let png = self.tab.capture_screenshot(CaptureScreenshotFormatOption::Png, None, None, true).unwrap();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, png).unwrap();
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn eval(tab: &Tab, js: &str) -> Value {
    tab.evaluate(js, false).expect("evaluate in the page").value.unwrap_or(Value::Null)
}

/// An object or array from the page (CDP returns those by reference: go through JSON).
fn eval_json(tab: &Tab, js: &str) -> Value {
    let text = eval(tab, &format!("JSON.stringify({js})"));
    serde_json::from_str(text.as_str().unwrap_or("null")).unwrap_or(Value::Null)
}

/// Waits for `check` to return `Some`, polling every 200 ms, failing after `timeout`.
fn wait_for<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(started.elapsed() < timeout, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The Spark job on the shared topic: submitted if it is not running (it is left running).
fn ensure_spark_job(f: &Fixture) {
    let status = f.rt.block_on(pipeline_jobs::spark::status(&f.config));
    let running = status
        .queries
        .iter()
        .any(|q| q.name == f.config.job.query_name && q.state == pipeline_jobs::spark::QueryState::Running);
    if !running {
        if let Err(e) = f.rt.block_on(pipeline_jobs::spark::submit(&f.config)) {
            // The shared supervisor (or another test) may have started it meanwhile.
            wait_for(&format!("the Spark job running (submit said: {e})"), Duration::from_secs(60), || {
                let status = f.rt.block_on(pipeline_jobs::spark::status(&f.config));
                (status.state == pipeline_jobs::spark::JobState::Running).then_some(())
            });
        }
    }
}

/// Sum of the shared topic's end offsets, straight from Kafka.
fn end_offset(config: &Config) -> i64 {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer =
        ClientConfig::new().set("bootstrap.servers", &config.kafka.bootstrap_servers).create().unwrap();
    let md = consumer.fetch_metadata(Some(&config.kafka.topic), Duration::from_secs(10)).unwrap();
    md.topics()[0]
        .partitions()
        .iter()
        .map(|p| consumer.fetch_watermarks(&config.kafka.topic, p.id(), Duration::from_secs(10)).unwrap().1)
        .sum()
}

fn chart_points(f: &Fixture, name: &str) -> usize {
    let js = format!(
        "(function(){{var c=window.dashboard.charts['{name}'];if(!c)return -1;\
         return c.data.slice(1).reduce(function(n,s){{return n+s.filter(function(v){{return v!==null&&v!==undefined}}).length}},0)}})()"
    );
    eval(&f.tab, &js).as_i64().unwrap_or(-1).max(-1) as usize
}

/// The largest value of a chart's first series.
fn chart_max(f: &Fixture, name: &str) -> f64 {
    let js = format!(
        "(function(){{var c=window.dashboard.charts['{name}'];if(!c)return -1;\
         return c.data[1].reduce(function(m,v){{return v!==null&&v!==undefined&&v>m?v:m}},-1)}})()"
    );
    eval(&f.tab, &js).as_f64().unwrap_or(-1.0)
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

#[test]
fn produced_users_flow_through_the_page_live() {
    let _serial = serial();
    let started = Instant::now();
    let f = Fixture::start();
    println!("first contentful paint: {:.0} ms", f.first_paint_ms);
    assert!(f.first_paint_ms < 1000.0, "first paint took {} ms", f.first_paint_ms);

    let topic_hook = format!("topic-{}-end-offset", f.config.kafka.topic);
    let before = wait_for("the topic's end offset on the page", Duration::from_secs(10), || f.number(&topic_hook));
    let bytes_hook = format!("topic-{}-bytes", f.config.kafka.topic);
    let bytes_before = wait_for("the topic's bytes on the page", Duration::from_secs(10), || f.number(&bytes_hook));
    let writes_before = wait_for("Cassandra's write counter on the page", Duration::from_secs(10), || {
        f.number("cassandra-writes-total")
    });
    let opts = pipeline_producer::ProduceOptions {
        source: SourceKind::Synthetic,
        count: Some(500),
        rate: None,
        batch: 500,
        interval: None,
        // A new seed each run: the audit store skips users it has seen (same seed, same users).
        seed: (uuid::Uuid::new_v4().as_u128() as u64).max(1),
    };
    let summary =
        f.rt.block_on(pipeline_producer::run(&f.config, opts, CancellationToken::new(), None))
            .expect("500 users produced");
    assert_eq!(summary.published, 500, "{summary:?}");
    let produced_at = Instant::now();
    let shown = wait_for("the end offset to grow by 500 on the page", Duration::from_secs(10), || {
        f.number(&topic_hook).filter(|n| *n >= before + 500)
    });
    println!("end offset {before} -> {shown} shown {:.1} s after producing", produced_at.elapsed().as_secs_f64());
    // 500 Avro users are well over 500 bytes on disk.
    let bytes = wait_for("the topic's bytes to grow by 500 users", Duration::from_secs(10), || {
        f.number(&bytes_hook).filter(|n| *n >= bytes_before + 500 * 100)
    });
    println!(
        "topic bytes {bytes_before} -> {bytes} shown {:.1} s after producing",
        produced_at.elapsed().as_secs_f64()
    );
    wait_for("a non-zero bytes/s point", Duration::from_secs(10), || (chart_max(&f, "bytes") > 0.0).then_some(()));
    assert!(shown <= end_offset(&f.config), "the page never shows more than Kafka has");
    // After producing: the registry keeps schemas in memory, so a restarted one knows the
    // subject only once the producer registered it again.
    ensure_spark_job(&f);

    // The batch id shown is what `pipeline jobs status` reports (both move while data flows:
    // they must meet).
    let query = f.config.job.query_name.clone();
    let batch_hook = format!("spark-batch-{query}");
    let batch = wait_for("the page's batch id to equal `jobs status`", Duration::from_secs(60), || {
        let truth =
            f.rt.block_on(pipeline_jobs::spark::status(&f.config))
                .queries
                .into_iter()
                .find(|q| q.name == query)?
                .last_batch?
                .batch_id;
        (f.number(&batch_hook)? == truth).then_some(truth)
    });
    println!("Spark batch id {batch} on the page and in jobs status");

    // Spark writes the 500 rows: Cassandra's write counter for the table grows by at least 500.
    // (Generous: on a loaded machine a micro-batch of 500 rows has taken minutes.)
    let writes = wait_for("Cassandra's write counter to grow by 500", Duration::from_secs(180), || {
        f.number("cassandra-writes-total").filter(|n| *n >= writes_before + 500)
    });
    wait_for("a non-zero rows written/s point", Duration::from_secs(10), || {
        (chart_max(&f, "cassandra_writes") > 0.0).then_some(())
    });
    println!(
        "Cassandra writes {writes_before} -> {writes} shown {:.1} s after producing; peak {:.0} rows/s",
        produced_at.elapsed().as_secs_f64(),
        chart_max(&f, "cassandra_writes")
    );
    wait_for("latency points", Duration::from_secs(60), || (chart_points(&f, "latency") > 0).then_some(()));
    let p99 = f.text("latency-p99").unwrap_or_default();
    assert!(p99.contains("ms") && !p99.contains('–'), "p99 shown: {p99}");

    for chart in ["messages", "bytes", "lag", "spark_rows", "spark_duration", "latency", "cassandra_writes"] {
        let points = wait_for(&format!("data in the {chart} chart"), Duration::from_secs(30), || {
            Some(chart_points(&f, chart)).filter(|n| *n > 0)
        });
        let canvas = eval(&f.tab, &format!("!!document.querySelector('#chart-{chart} canvas')"));
        assert_eq!(canvas, Value::Bool(true), "chart {chart} has a canvas");
        println!("chart {chart}: {points} points");
    }
    // Every service of the launcher is listed with a health verdict.
    for s in Service::ALL {
        assert!(f.text(&format!("service-{}-health", s.name())).is_some(), "{} listed", s.name());
    }
    if f.config.airflow.enabled {
        wait_for("Airflow's DAG runs for the screenshot", Duration::from_secs(20), || {
            (eval(&f.tab, "document.querySelectorAll('[data-testid=airflow-run]').length").as_i64()? > 0).then_some(())
        });
    }
    f.screenshot(&repo_root().join("docs/img/dashboard.png"));
    let errors = f.page_errors();
    assert!(errors.is_empty(), "errors on the page: {errors:#?}");
    println!("test took {:.1} s", started.elapsed().as_secs_f64());
}

#[test]
fn bad_messages_show_as_dead_letters_with_reasons() {
    let _serial = serial();
    let f = Fixture::start();
    ensure_spark_job(&f);
    let before = wait_for("the dead-letter count", Duration::from_secs(10), || f.number("dlq-count"));
    let tag = pipeline_testkit::unique("dashboard_bad");
    let bad: [(&str, Vec<u8>); 3] = [
        ("short", vec![0, 0]),
        ("magic", vec![7, 0, 0, 0, 1, 1, 2, 3]),
        ("garbage", {
            let mut v = vec![0, 0, 0, 0, 1];
            v.extend_from_slice(&[0xff; 16]);
            v
        }),
    ];
    let producer: FutureProducer =
        ClientConfig::new().set("bootstrap.servers", &f.config.kafka.bootstrap_servers).create().unwrap();
    for (name, value) in &bad {
        let key = format!("{tag}-{name}");
        f.rt.block_on(
            producer.send(FutureRecord::to(&f.config.kafka.topic).key(&key).payload(value), Duration::from_secs(10)),
        )
        .expect("bad message sent");
    }
    let now = wait_for("the dead-letter count to grow by 3", Duration::from_secs(60), || {
        f.number("dlq-count").filter(|n| *n >= before + 3)
    });
    println!("dead letters {before} -> {now}");
    // The newest rows show our three keys, each with a reason.
    let rows = wait_for("the three dead letters in the latest rows", Duration::from_secs(20), || {
        let rows = eval_json(
            &f.tab,
            "Array.from(document.querySelectorAll('[data-testid=dlq-row]')).map(function(r){\
             return Array.from(r.children).map(function(c){return c.textContent})})",
        );
        let ours: Vec<Vec<String>> = rows
            .as_array()?
            .iter()
            .filter_map(|r| serde_json::from_value::<Vec<String>>(r.clone()).ok())
            .filter(|r| r.iter().any(|c| c.starts_with(&tag)))
            .collect();
        (ours.len() == 3).then_some(ours)
    });
    for r in &rows {
        // time, reason, engine, source offset, key, position
        assert!(!r[1].is_empty(), "a reason is shown: {r:?}");
        assert!(r[2] == "spark" || r[2] == "datafusion", "the engine is shown: {r:?}");
        assert!(r[3].contains(':'), "the source offset is shown: {r:?}");
    }
    let reasons: Vec<&str> = rows.iter().map(|r| r[1].as_str()).collect();
    assert!(reasons.iter().any(|r| r.contains("truncated")), "the short record's reason: {reasons:?}");
    let errors = f.page_errors();
    assert!(errors.is_empty(), "errors on the page: {errors:#?}");
}

/// Brings the service back even when the test fails.
struct BringBack(Config, Service);

impl Drop for BringBack {
    fn drop(&mut self) {
        let (config, service) = (self.0.clone(), self.1);
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            if let Err(e) = rt.block_on(Cluster::new(config).up(&[service])) {
                eprintln!("could not bring {service} back: {e}");
            }
        })
        .join();
    }
}

/// The launcher's `dashboard` service is stopped and started: it is stateless and no other
/// test depends on it (the schema registry keeps its schemas in memory, and the Spark services
/// carry the shared job, so those are not restarted here). Its launcher runs the `pipeline`
/// binary, which `make test` builds.
#[test]
fn a_stopped_service_turns_red_and_green_again() {
    let _serial = serial();
    let f = Fixture::start();
    let service = Service::Dashboard;
    let cluster = Cluster::new(f.config.clone());
    let _bring_back = BringBack(f.config.clone(), service);
    f.rt.block_on(cluster.up(&[service])).expect("the dashboard service starts (is the pipeline binary built?)");
    let hook = format!("service-{}-health", service.name());
    let healthy = |f: &Fixture| {
        eval(&f.tab, &format!("(function(){{var e=document.querySelector('[data-testid=\"{hook}\"]');return e?e.getAttribute('data-healthy'):null}})()"))
    };
    wait_for("the service green", Duration::from_secs(30), || (healthy(&f) == "true").then_some(()));

    let stopped = cluster.down(&[service]).expect("the service stops");
    assert!(stopped.contains(&service), "the service was running and is stopped: {stopped:?}");
    let down_at = Instant::now();
    wait_for("the service red within 5 s", Duration::from_secs(5), || (healthy(&f) == "false").then_some(()));
    println!("red {:.1} s after the stop", down_at.elapsed().as_secs_f64());

    f.rt.block_on(cluster.up(&[service])).expect("the service starts again");
    let up_at = Instant::now();
    wait_for("the service green again", Duration::from_secs(10), || (healthy(&f) == "true").then_some(()));
    println!("green {:.1} s after it was ready", up_at.elapsed().as_secs_f64());
    let errors = f.page_errors();
    assert!(errors.is_empty(), "errors on the page: {errors:#?}");
    let _ = f.addr;
}
