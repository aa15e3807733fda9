//! The Airflow UI in a real browser (Debian's chromium-headless-shell, `make deps`), driven by
//! the scheduler test in `airflow.rs`: log in with the generated admin password, the DAG list
//! shows both DAGs and a successful run. The page is saved to docs/img/airflow.png (the README
//! shows it).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use headless_chrome::protocol::cdp::Page::CaptureScreenshotFormatOption;
use headless_chrome::{Browser, LaunchOptions, Tab};
use pipeline_cluster::services::airflow;
use pipeline_core::Config;

use crate::airflow::admin_password;

const BROWSER: &str = "/usr/bin/chromium-headless-shell";

fn screenshot_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/img/airflow.png")
}

/// The page's visible text, polled until it contains every word or `timeout` passes.
fn wait_for_text(tab: &Tab, words: &[&str], timeout: Duration) -> Result<String, String> {
    let start = Instant::now();
    let mut text = String::new();
    while start.elapsed() < timeout {
        if let Ok(v) = tab.evaluate("document.body ? document.body.innerText : ''", false) {
            text = v.value.and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
            if words.iter().all(|w| text.contains(w)) {
                return Ok(text);
            }
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    Err(format!("after {timeout:?} the page lacks some of {words:?}; it shows:\n{text}"))
}

/// Logs in to the UI with the generated password; the DAG list must show both DAGs and a
/// successful run (the caller made one). Saves the screenshot.
pub(crate) async fn dag_list_shows_both_dags_and_a_success(config: &Config) {
    let base = airflow::base_url(config);
    let password = admin_password(config);
    let shot = screenshot_path();
    tokio::task::spawn_blocking(move || browse(&base, &password, &shot))
        .await
        .expect("browser thread")
        .unwrap_or_else(|e| panic!("{e}"));
}

fn browse(base: &str, password: &str, shot: &Path) -> Result<(), String> {
    let at = |step: &str| {
        let step = step.to_string();
        move |e: anyhow::Error| format!("{step}: {e}")
    };
    let options = LaunchOptions::default_builder()
        .path(Some(PathBuf::from(BROWSER)))
        .sandbox(false)
        .window_size(Some((1400, 800)))
        .idle_browser_timeout(Duration::from_secs(300))
        .build()
        .map_err(|e| format!("browser options: {e}"))?;
    let browser = Browser::new(options).map_err(at("cannot start the browser (make deps installs it)"))?;
    let tab = browser.new_tab().map_err(at("new tab"))?;
    tab.set_default_timeout(Duration::from_secs(120));
    tab.navigate_to(&format!("{base}/")).map_err(at("open the UI"))?;
    tab.wait_for_element("input[name=username]").map_err(at("the login form"))?.click().map_err(at("click"))?;
    tab.type_str(airflow::ADMIN_USER).map_err(at("type the user"))?;
    tab.wait_for_element("input[name=password]").map_err(at("the password field"))?.click().map_err(at("click"))?;
    tab.type_str(password).map_err(at("type the password"))?;
    tab.press_key("Enter").map_err(at("submit the login form"))?;
    // Logged in: the DAG list, both DAGs, and the successful run in its "last run" column.
    wait_for_text(&tab, &["Dags"], Duration::from_secs(120)).map_err(|e| format!("login did not succeed: {e}"))?;
    tab.navigate_to(&format!("{base}/dags")).map_err(at("open the DAG list"))?;
    let text = wait_for_text(&tab, &["users_created_ingest", "users_pipeline_health"], Duration::from_secs(120));
    let success = tab
        .evaluate(
            "Array.from(document.querySelectorAll('*')).some(e => e.children.length === 0 && \
             /success/i.test((e.getAttribute('aria-label') || '') + ' ' + (e.getAttribute('title') || '') + ' ' + \
             (e.getAttribute('data-state') || '') + ' ' + (e.textContent || '')))",
            false,
        )
        .map_err(at("read the page"))?
        .value
        .and_then(|v| v.as_bool())
        .unwrap_or(false);
    let png = tab.capture_screenshot(CaptureScreenshotFormatOption::Png, None, None, true).map_err(at("screenshot"))?;
    if let Some(dir) = shot.parent() {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    }
    std::fs::write(shot, png).map_err(|e| format!("cannot write {}: {e}", shot.display()))?;
    text?;
    if !success {
        let html = tab.get_content().unwrap_or_default();
        let end = html.char_indices().nth(4000).map(|(i, _)| i).unwrap_or(html.len());
        return Err(format!("the DAG list shows no successful run (screenshot {}):\n{}", shot.display(), &html[..end]));
    }
    Ok(())
}
