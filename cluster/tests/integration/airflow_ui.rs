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
    let options = LaunchOptions::default_builder()
        .path(Some(PathBuf::from(BROWSER)))
        .sandbox(false)
        .window_size(Some((1400, 800)))
        .idle_browser_timeout(Duration::from_secs(120))
        .build()
        .map_err(|e| format!("browser options: {e}"))?;
    let browser = Browser::new(options).map_err(|e| format!("cannot start {BROWSER} (make deps installs it): {e}"))?;
    let tab = browser.new_tab().map_err(|e| e.to_string())?;
    tab.set_default_timeout(Duration::from_secs(60));
    tab.navigate_to(&format!("{base}/")).map_err(|e| e.to_string())?;
    tab.wait_for_element("input[name=username]")
        .map_err(|e| format!("no login form: {e}"))?
        .click()
        .map_err(|e| e.to_string())?;
    tab.type_str(airflow::ADMIN_USER).map_err(|e| e.to_string())?;
    tab.wait_for_element("input[name=password]").map_err(|e| e.to_string())?.click().map_err(|e| e.to_string())?;
    tab.type_str(password).map_err(|e| e.to_string())?;
    tab.press_key("Enter").map_err(|e| e.to_string())?;
    // Logged in: the DAG list, both DAGs, and the successful run in its "last run" column.
    wait_for_text(&tab, &["Dags"], Duration::from_secs(60)).map_err(|e| format!("login did not succeed: {e}"))?;
    tab.navigate_to(&format!("{base}/dags")).map_err(|e| e.to_string())?;
    wait_for_text(&tab, &["users_created_ingest", "users_pipeline_health"], Duration::from_secs(60))?;
    tab.wait_for_element("[data-testid=\"dag-list\"], table, [role=table], .chakra-table__root, main")
        .map_err(|e| e.to_string())?;
    let success = tab
        .evaluate(
            "Array.from(document.querySelectorAll('[class*=state], [data-state], [aria-label], [title]'))\
             .some(e => /success/i.test(e.className + ' ' + (e.getAttribute('data-state')||'') + ' ' + \
             (e.getAttribute('aria-label')||'') + ' ' + (e.getAttribute('title')||'') + ' ' + e.innerText))",
            false,
        )
        .map_err(|e| e.to_string())?
        .value
        .and_then(|v| v.as_bool())
        .unwrap_or(false);
    let png = tab
        .capture_screenshot(CaptureScreenshotFormatOption::Png, None, None, true)
        .map_err(|e| format!("screenshot: {e}"))?;
    if let Some(dir) = shot.parent() {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    }
    std::fs::write(shot, png).map_err(|e| format!("cannot write {}: {e}", shot.display()))?;
    if !success {
        let html = tab.get_content().unwrap_or_default();
        return Err(format!(
            "the DAG list shows no successful run (screenshot in {}):\n{}",
            shot.display(),
            &html[..html.len().min(3000)]
        ));
    }
    Ok(())
}
