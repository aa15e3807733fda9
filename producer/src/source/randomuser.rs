//! The RandomUser API client (<https://randomuser.me/documentation>).
//!
//! `GET {base_url}/api/[{api_version}/]?results=N[&nat=..][&seed=..&page=..][&inc=..][&exc=..]`.
//!
//! - A fetch of more than `max_results_per_request` users (the API caps it at 5000) is split into
//!   several requests.
//! - Connect and whole-request timeouts apply to every attempt; the body is read chunk by chunk
//!   and refused ([`SourceError::BodyTooLarge`]) as soon as it exceeds `max_body_kib`.
//! - Timeouts, connection errors, HTTP 5xx and 429 are retried with exponential backoff and full
//!   jitter, honouring `Retry-After` (seconds form only; capped at 4 x `backoff_max`).
//! - HTTP 4xx other than 429 is not retried: it becomes a [`Rejected`] and the rest of the fetch
//!   is skipped. Malformed 200 responses are rejections too (see [the module](super)).
//! - With a `seed`, each request carries a `page` so pages never repeat; the page is aligned to
//!   the request size, so with a constant fetch size the seeded sequence is read without gaps
//!   (when the size changes, the next aligned page is used, skipping a few users of the sequence
//!   rather than repeating any).

use std::time::Duration;

use chrono::Utc;
use rand::Rng;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::StatusCode;
use serde_json::Value;
use tracing::{debug, warn};

use pipeline_core::config::RandomUserApiConfig;

use super::{Fetched, Rejected, SourceError};

/// The source name recorded in events.
pub const SOURCE_NAME: &str = "randomuser";

/// Most results the API returns for one request.
pub const API_MAX_RESULTS: usize = 5000;

/// Largest error body read from a non-2xx response (for its message).
const ERROR_BODY_LIMIT: usize = 64 * 1024;

/// Client of the RandomUser API.
#[derive(Debug)]
pub struct RandomUserSource {
    config: RandomUserApiConfig,
    client: reqwest::Client,
    endpoint: String,
    /// Users of the seeded sequence already requested (drives `page`).
    offset: u64,
}

/// What one request (with its retries) produced.
enum Outcome {
    /// A 2xx response: its users and the rejected parts.
    Parsed { users: Vec<Value>, rejected: Vec<Rejected> },
    /// A response that refuses the request itself (4xx): later requests would fail the same way.
    Refused(Rejected),
}

/// How one attempt ended.
enum Attempt {
    Done(Outcome),
    Retry { cause: String, retry_after: Option<Duration> },
    Fatal(SourceError),
}

/// Why reading a body stopped.
enum BodyError {
    TooLarge,
    Transport(reqwest::Error),
}

impl RandomUserSource {
    /// Builds the client.
    ///
    /// # Errors
    /// [`SourceError::InvalidConfig`] with every problem of the settings (the same check as
    /// `pipeline config check`); [`SourceError::Client`] if the TLS client cannot be built.
    pub fn new(mut config: RandomUserApiConfig) -> Result<Self, SourceError> {
        let problems = config.problems();
        if !problems.is_empty() {
            return Err(SourceError::InvalidConfig(problems.join("; ")));
        }
        if config.max_results_per_request > API_MAX_RESULTS {
            warn!(
                requested = config.max_results_per_request,
                cap = API_MAX_RESULTS,
                "producer.randomuser.max_results_per_request is above the API cap; using the cap"
            );
            config.max_results_per_request = API_MAX_RESULTS;
        }
        let base = config.base_url.trim().trim_end_matches('/');
        let endpoint = match config.api_version.trim() {
            "" => format!("{base}/api/"),
            version => format!("{base}/api/{version}/"),
        };
        let client = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout())
            .timeout(config.request_timeout())
            .user_agent(concat!("pipeline-producer/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(SourceError::Client)?;
        Ok(Self { config, client, endpoint, offset: 0 })
    }

    /// The configuration in use (`max_results_per_request` capped at [`API_MAX_RESULTS`]).
    pub fn config(&self) -> &RandomUserApiConfig {
        &self.config
    }

    /// The request URL without its query string, e.g. `https://randomuser.me/api/1.4/`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Fetches `count` users in as many requests as `max_results_per_request` requires.
    ///
    /// # Errors
    /// [`SourceError::RetriesExhausted`] or [`SourceError::BodyTooLarge`]; the users of earlier
    /// requests of this fetch are then dropped and, with a seed, the paging position is restored
    /// so the next fetch asks for the same pages again.
    pub async fn fetch(&mut self, count: usize) -> Result<Fetched, SourceError> {
        let start_offset = self.offset;
        let mut users = Vec::with_capacity(count);
        let mut rejected = Vec::new();
        let mut remaining = count;
        while remaining > 0 {
            let results = remaining.min(self.config.max_results_per_request);
            let page = self.next_page(results);
            match self.request(results, page).await {
                Ok(Outcome::Parsed { users: mut batch, rejected: mut refused }) => {
                    if batch.len() + refused.len() != results {
                        debug!(requested = results, received = batch.len(), "API returned another number of results");
                    }
                    // Never more than asked: the caller counts down from what it requested.
                    if batch.len() > results {
                        warn!(
                            requested = results,
                            received = batch.len(),
                            "API returned more users than asked; extra dropped"
                        );
                        batch.truncate(results);
                    }
                    users.append(&mut batch);
                    rejected.append(&mut refused);
                }
                Ok(Outcome::Refused(rejection)) => {
                    rejected.push(rejection);
                    break;
                }
                Err(error) => {
                    self.offset = start_offset;
                    return Err(error);
                }
            }
            remaining -= results;
        }
        Ok(Fetched { users, rejected, fetched_at: Utc::now() })
    }

    /// The page for a request of `results` users, if seeded: the first page of that size that
    /// starts at or after the current offset.
    fn next_page(&mut self, results: usize) -> Option<u64> {
        if self.config.seed.trim().is_empty() {
            return None;
        }
        let size = results as u64;
        let page = self.offset.div_ceil(size) + 1;
        self.offset = page * size;
        Some(page)
    }

    /// The query string pairs of one request.
    fn query(&self, results: usize, page: Option<u64>) -> Vec<(&'static str, String)> {
        let mut query = vec![("results", results.to_string())];
        let optional = [
            ("nat", &self.config.nat),
            ("seed", &self.config.seed),
            ("inc", &self.config.inc),
            ("exc", &self.config.exc),
        ];
        for (key, value) in optional {
            let value = value.trim();
            if !value.is_empty() {
                query.push((key, value.to_owned()));
            }
        }
        if let Some(page) = page {
            query.push(("page", page.to_string()));
        }
        query
    }

    /// One request with its retries.
    async fn request(&self, results: usize, page: Option<u64>) -> Result<Outcome, SourceError> {
        let query = self.query(results, page);
        let max_attempts = self.config.max_retries.saturating_add(1);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (cause, retry_after) = match self.attempt(&query).await {
                Attempt::Done(outcome) => return Ok(outcome),
                Attempt::Fatal(error) => return Err(error),
                Attempt::Retry { cause, retry_after } => (cause, retry_after),
            };
            if attempt >= max_attempts {
                return Err(SourceError::RetriesExhausted {
                    url: self.url(&query),
                    attempts: attempt,
                    last_cause: cause,
                });
            }
            let delay = self.backoff(attempt, retry_after);
            warn!(
                endpoint = %self.endpoint,
                attempt,
                max_attempts,
                delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                %cause,
                "RandomUser request failed; retrying"
            );
            metrics::counter!("producer_fetch_retries_total").increment(1);
            tokio::time::sleep(delay).await;
        }
    }

    /// One attempt, classified.
    async fn attempt(&self, query: &[(&'static str, String)]) -> Attempt {
        let response = match self.client.get(&self.endpoint).query(query).send().await {
            Ok(response) => response,
            Err(error) if error.is_builder() => {
                return Attempt::Fatal(SourceError::InvalidConfig(format!(
                    "cannot build a request to {}: {}; check base_url and api_version",
                    self.endpoint,
                    describe(&error)
                )))
            }
            Err(error) => return Attempt::Retry { cause: describe(&error), retry_after: None },
        };
        let status = response.status();
        if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
            let retry_after = retry_after(response.headers());
            let message = match read_body(response, ERROR_BODY_LIMIT).await {
                Ok(body) => api_error(&body).map(|m| format!(": {m}")).unwrap_or_default(),
                Err(_) => String::new(),
            };
            return Attempt::Retry { cause: format!("HTTP {status}{message}"), retry_after };
        }
        if !status.is_success() {
            let body = match read_body(response, ERROR_BODY_LIMIT).await {
                Ok(body) => body,
                Err(BodyError::TooLarge) => b"(body larger than 64 KiB, not kept)".to_vec(),
                Err(BodyError::Transport(error)) => format!("(body unreadable: {})", describe(&error)).into_bytes(),
            };
            let message = api_error(&body).map(|m| format!(": {m}")).unwrap_or_default();
            let reason = format!("HTTP {status} from the RandomUser API (not retried){message}");
            warn!(endpoint = %self.endpoint, %status, "RandomUser API refused the request; skipping the rest of this fetch");
            return Attempt::Done(Outcome::Refused(Rejected::from_bytes(reason, &body)));
        }
        match read_body(response, self.config.max_body_bytes()).await {
            Ok(body) => Attempt::Done(parse_response(&body)),
            Err(BodyError::TooLarge) => {
                Attempt::Fatal(SourceError::BodyTooLarge { url: self.url(query), limit: self.config.max_body_bytes() })
            }
            Err(BodyError::Transport(error)) => Attempt::Retry { cause: describe(&error), retry_after: None },
        }
    }

    /// Delay before retry number `attempt` (1-based): `Retry-After` if given (capped at
    /// 4 x `backoff_max`), otherwise full jitter in `[0, min(backoff_max, base x 2^(attempt-1))]`.
    fn backoff(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(wait) = retry_after {
            return wait.min(self.config.backoff_max().saturating_mul(4));
        }
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1));
        let ceiling = self.config.backoff_base().saturating_mul(factor).min(self.config.backoff_max());
        let ceiling_nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(rand::rng().random_range(0..=ceiling_nanos))
    }

    /// The full URL of a request, for error messages.
    fn url(&self, query: &[(&'static str, String)]) -> String {
        match reqwest::Url::parse_with_params(&self.endpoint, query) {
            Ok(url) => url.to_string(),
            Err(_) => self.endpoint.clone(),
        }
    }
}

/// Reads a body chunk by chunk, refusing it once it exceeds `limit` bytes.
async fn read_body(mut response: reqwest::Response, limit: usize) -> Result<Vec<u8>, BodyError> {
    let announced = response.content_length();
    if announced.is_some_and(|len| len > limit as u64) {
        return Err(BodyError::TooLarge);
    }
    let capacity = announced.map_or(16 * 1024, |len| usize::try_from(len).unwrap_or(limit)).min(limit);
    let mut body = Vec::with_capacity(capacity);
    while let Some(chunk) = response.chunk().await.map_err(BodyError::Transport)? {
        if body.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Turns a 2xx body into users and rejections.
fn parse_response(body: &[u8]) -> Outcome {
    let reject = |reason: String, payload: &[u8]| Outcome::Parsed {
        users: Vec::new(),
        rejected: vec![Rejected::from_bytes(reason, payload)],
    };
    let value: Value = match serde_json::from_slice(body) {
        Ok(value) => value,
        Err(error) => return reject(format!("response is not valid JSON: {error}"), body),
    };
    if let Some(message) = error_message(&value) {
        return reject(format!("API returned an error: {message}"), body);
    }
    let Value::Object(mut response) = value else {
        return reject("response is not a JSON object".into(), body);
    };
    let Some(Value::Array(results)) = response.remove("results") else {
        return reject("response has no `results` array".into(), body);
    };
    let mut users = Vec::with_capacity(results.len());
    let mut rejected = Vec::new();
    for (index, item) in results.into_iter().enumerate() {
        if item.is_object() {
            users.push(item);
        } else {
            rejected.push(Rejected::from_value(format!("results[{index}] is not a JSON object"), &item));
        }
    }
    Outcome::Parsed { users, rejected }
}

/// The API's `{"error": "..."}` message, if `body` is one.
fn api_error(body: &[u8]) -> Option<String> {
    serde_json::from_slice::<Value>(body).ok().as_ref().and_then(error_message)
}

/// The `error` member of an object, as text (at most 500 characters).
fn error_message(value: &Value) -> Option<String> {
    let error = value.as_object()?.get("error")?;
    let message = match error {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    Some(message.chars().take(500).collect())
}

/// `Retry-After` in its delay-seconds form (an HTTP date is ignored: the backoff applies).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let seconds = headers.get(RETRY_AFTER)?.to_str().ok()?.trim().parse::<u64>().ok()?;
    Some(Duration::from_secs(seconds))
}

/// A transport error with its causes (reqwest's own message omits them).
fn describe(error: &reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "connection failed"
    } else if error.is_body() || error.is_decode() {
        "reading the body failed"
    } else {
        "request failed"
    };
    let mut text = kind.to_owned();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    const FIXTURE: &str = include_str!("../../tests/fixtures/randomuser_v1_4.json");
    const PATH: &str = "/api/1.4/";

    fn defaults() -> RandomUserApiConfig {
        pipeline_core::Config::defaults().producer.randomuser
    }

    fn config(server: &MockServer) -> RandomUserApiConfig {
        RandomUserApiConfig {
            base_url: server.uri(),
            connect_timeout_ms: 2000,
            request_timeout_ms: 5000,
            max_retries: 3,
            backoff_base_ms: 10,
            backoff_max_ms: 1000,
            ..defaults()
        }
    }

    fn source(server: &MockServer) -> RandomUserSource {
        RandomUserSource::new(config(server)).unwrap()
    }

    fn ok_fixture() -> ResponseTemplate {
        ResponseTemplate::new(200).set_body_raw(FIXTURE, "application/json")
    }

    /// Mounts `response` for the first `times` matching requests, ahead of any fallback.
    async fn first(server: &MockServer, times: u64, response: ResponseTemplate) {
        Mock::given(method("GET"))
            .and(path(PATH))
            .respond_with(response)
            .up_to_n_times(times)
            .with_priority(1)
            .mount(server)
            .await;
    }

    async fn otherwise(server: &MockServer, response: ResponseTemplate) {
        Mock::given(method("GET")).and(path(PATH)).respond_with(response).with_priority(10).mount(server).await;
    }

    async fn requests(server: &MockServer) -> Vec<wiremock::Request> {
        server.received_requests().await.unwrap()
    }

    fn param(request: &wiremock::Request, key: &str) -> Option<String> {
        request.url.query_pairs().find(|(k, _)| k == key).map(|(_, v)| v.into_owned())
    }

    #[tokio::test]
    async fn fixture_response_yields_its_users() {
        let server = MockServer::start().await;
        otherwise(&server, ok_fixture()).await;
        let mut source = RandomUserSource::new(RandomUserApiConfig {
            nat: "us,gb".into(),
            inc: "name,login,email,location".into(),
            ..config(&server)
        })
        .unwrap();
        let fetched = source.fetch(2).await.unwrap();
        assert_eq!(fetched.users.len(), 2);
        assert!(fetched.rejected.is_empty());
        assert_eq!(fetched.users[0]["login"]["password"], "marigold", "users are returned as the API shaped them");
        let request = &requests(&server).await[0];
        assert_eq!(param(request, "results").as_deref(), Some("2"));
        assert_eq!(param(request, "nat").as_deref(), Some("us,gb"));
        assert_eq!(param(request, "inc").as_deref(), Some("name,login,email,location"));
        assert_eq!(param(request, "page"), None, "no paging without a seed");
    }

    #[tokio::test]
    async fn more_users_than_asked_are_capped_to_the_request() {
        // The fixture holds two users whatever `results` says.
        let server = MockServer::start().await;
        otherwise(&server, ok_fixture()).await;
        let fetched = source(&server).fetch(1).await.unwrap();
        assert_eq!(fetched.users.len(), 1, "a fetch never returns more than it asked for");
        assert_eq!(requests(&server).await.len(), 1);
    }

    #[tokio::test]
    async fn server_error_is_retried_then_succeeds() {
        let server = MockServer::start().await;
        first(
            &server,
            1,
            ResponseTemplate::new(500).set_body_string(r#"{"error": "Uh oh, something has gone wrong."}"#),
        )
        .await;
        otherwise(&server, ok_fixture()).await;
        let fetched = source(&server).fetch(2).await.unwrap();
        assert_eq!(fetched.users.len(), 2);
        assert_eq!(requests(&server).await.len(), 2);
    }

    #[tokio::test]
    async fn too_many_requests_honours_retry_after() {
        let server = MockServer::start().await;
        first(&server, 1, ResponseTemplate::new(429).insert_header("Retry-After", "1")).await;
        otherwise(&server, ok_fixture()).await;
        let start = Instant::now();
        let fetched = source(&server).fetch(2).await.unwrap();
        let elapsed = start.elapsed();
        assert!(elapsed >= Duration::from_millis(900), "waited only {elapsed:?}");
        assert_eq!(fetched.users.len(), 2);
    }

    #[tokio::test]
    async fn retry_after_is_capped() {
        let server = MockServer::start().await;
        let source = RandomUserSource::new(RandomUserApiConfig { backoff_max_ms: 50, ..config(&server) }).unwrap();
        assert_eq!(source.backoff(1, Some(Duration::from_secs(3600))), Duration::from_millis(200));
        for attempt in 1..40 {
            assert!(source.backoff(attempt, None) <= Duration::from_millis(50));
        }
    }

    #[tokio::test]
    async fn slow_response_times_out_and_is_retried() {
        let server = MockServer::start().await;
        first(&server, 1, ok_fixture().set_delay(Duration::from_secs(3))).await;
        otherwise(&server, ok_fixture()).await;
        let mut source =
            RandomUserSource::new(RandomUserApiConfig { request_timeout_ms: 300, ..config(&server) }).unwrap();
        let start = Instant::now();
        let fetched = source.fetch(2).await.unwrap();
        assert_eq!(fetched.users.len(), 2);
        assert!(start.elapsed() < Duration::from_secs(3), "did not time out: {:?}", start.elapsed());
        assert_eq!(requests(&server).await.len(), 2);
    }

    #[tokio::test]
    async fn persistent_failure_exhausts_retries() {
        let server = MockServer::start().await;
        otherwise(&server, ResponseTemplate::new(503)).await;
        let error = source(&server).fetch(2).await.unwrap_err();
        let SourceError::RetriesExhausted { attempts, ref last_cause, .. } = error else { panic!("{error}") };
        assert_eq!(attempts, 4);
        assert!(last_cause.contains("503"), "{last_cause}");
        assert!(error.to_string().contains("max_retries"), "{error}");
        assert_eq!(requests(&server).await.len(), 4);
    }

    #[tokio::test]
    async fn connection_refused_is_retried_then_fails() {
        // A port that was free a moment ago: nothing listens there (wiremock pools its servers, so
        // dropping a MockServer would not close its port).
        let address = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let server = MockServer::start().await;
        let config = RandomUserApiConfig { base_url: format!("http://{address}"), max_retries: 1, ..config(&server) };
        let error = RandomUserSource::new(config).unwrap().fetch(1).await.unwrap_err();
        assert!(matches!(error, SourceError::RetriesExhausted { attempts: 2, .. }), "{error}");
    }

    #[tokio::test]
    async fn garbage_body_is_one_rejection() {
        let server = MockServer::start().await;
        otherwise(&server, ResponseTemplate::new(200).set_body_string("<html>502 Bad Gateway</html>")).await;
        let fetched = source(&server).fetch(2).await.unwrap();
        assert!(fetched.users.is_empty());
        assert_eq!(fetched.rejected.len(), 1);
        assert!(fetched.rejected[0].reason.contains("JSON"), "{}", fetched.rejected[0].reason);
        assert_eq!(fetched.rejected[0].payload, "<html>502 Bad Gateway</html>");
        assert_eq!(requests(&server).await.len(), 1, "a malformed 200 is not retried");
    }

    #[tokio::test]
    async fn api_error_with_200_is_a_rejection_with_its_message() {
        let server = MockServer::start().await;
        let body = r#"{"error": "Uh oh, something has gone wrong. Please tweet us @randomapi about the issue."}"#;
        otherwise(&server, ResponseTemplate::new(200).set_body_raw(body, "application/json")).await;
        let fetched = source(&server).fetch(2).await.unwrap();
        assert!(fetched.users.is_empty());
        assert_eq!(fetched.rejected.len(), 1);
        assert!(fetched.rejected[0].reason.contains("Uh oh, something has gone wrong"), "{:?}", fetched.rejected);
    }

    #[tokio::test]
    async fn missing_results_and_non_object_results_are_rejections() {
        let server = MockServer::start().await;
        first(&server, 1, ResponseTemplate::new(200).set_body_string(r#"{"info": {"results": 2}}"#)).await;
        let mixed = r#"{"results": [{"login": {"uuid": "x", "password": "p"}}, 7, "x"], "info": {}}"#;
        otherwise(&server, ResponseTemplate::new(200).set_body_string(mixed)).await;
        let mut source = source(&server);
        let fetched = source.fetch(2).await.unwrap();
        assert_eq!(fetched.rejected.len(), 1);
        assert!(fetched.rejected[0].reason.contains("results"), "{:?}", fetched.rejected);
        let fetched = source.fetch(3).await.unwrap();
        assert_eq!(fetched.users.len(), 1);
        let reasons: Vec<&str> = fetched.rejected.iter().map(|r| r.reason.as_str()).collect();
        assert_eq!(reasons, ["results[1] is not a JSON object", "results[2] is not a JSON object"]);
        assert_eq!(fetched.rejected[0].payload, "7");
    }

    #[tokio::test]
    async fn oversized_body_is_refused_naming_the_limit() {
        let server = MockServer::start().await;
        otherwise(&server, ok_fixture()).await;
        let mut source = RandomUserSource::new(RandomUserApiConfig { max_body_kib: 1, ..config(&server) }).unwrap();
        let error = source.fetch(2).await.unwrap_err();
        assert!(matches!(error, SourceError::BodyTooLarge { limit: 1024, .. }), "{error}");
        assert!(error.to_string().contains("1024 bytes"), "{error}");
        assert_eq!(requests(&server).await.len(), 1, "an oversized body is not retried");
    }

    #[tokio::test]
    async fn large_fetch_is_split_into_api_sized_requests() {
        let server = MockServer::start().await;
        otherwise(&server, ok_fixture()).await;
        let fetched = source(&server).fetch(12_000).await.unwrap();
        assert_eq!(fetched.users.len(), 6, "two fixture users per request");
        let sizes: Vec<String> = requests(&server).await.iter().filter_map(|r| param(r, "results")).collect();
        assert_eq!(sizes, ["5000", "5000", "2000"]);
    }

    #[tokio::test]
    async fn seeded_requests_advance_the_page() {
        let server = MockServer::start().await;
        otherwise(&server, ok_fixture()).await;
        let mut source = RandomUserSource::new(RandomUserApiConfig { seed: "abc".into(), ..config(&server) }).unwrap();
        source.fetch(12_000).await.unwrap();
        source.fetch(10).await.unwrap();
        source.fetch(10).await.unwrap();
        let pages: Vec<(String, String, String)> = requests(&server)
            .await
            .iter()
            .map(|r| (param(r, "results").unwrap(), param(r, "page").unwrap(), param(r, "seed").unwrap()))
            .collect();
        let expected = [("5000", "1"), ("5000", "2"), ("2000", "6"), ("10", "1201"), ("10", "1202")];
        let expected: Vec<(String, String, String)> =
            expected.iter().map(|(n, p)| (n.to_string(), p.to_string(), "abc".to_string())).collect();
        assert_eq!(pages, expected, "users 0..12000 then 12000..12020 of the seeded sequence");
    }

    #[tokio::test]
    async fn not_found_is_not_retried() {
        let server = MockServer::start().await;
        otherwise(&server, ResponseTemplate::new(404).set_body_string("Not Found")).await;
        let fetched = source(&server).fetch(12_000).await.unwrap();
        assert!(fetched.users.is_empty());
        assert_eq!(fetched.rejected.len(), 1);
        assert!(fetched.rejected[0].reason.contains("404"), "{}", fetched.rejected[0].reason);
        assert_eq!(requests(&server).await.len(), 1, "neither retried nor repeated for the other pages");
    }

    #[tokio::test]
    async fn endpoint_follows_version_and_config_is_checked() {
        let unversioned = RandomUserSource::new(RandomUserApiConfig {
            base_url: "https://randomuser.me/".into(),
            api_version: String::new(),
            ..defaults()
        })
        .unwrap();
        assert_eq!(unversioned.endpoint(), "https://randomuser.me/api/");
        assert_eq!(RandomUserSource::new(defaults()).unwrap().endpoint(), "https://randomuser.me/api/1.4/");
        let capped =
            RandomUserSource::new(RandomUserApiConfig { max_results_per_request: 9000, ..defaults() }).unwrap();
        assert_eq!(capped.config().max_results_per_request, API_MAX_RESULTS);
        let bad = RandomUserSource::new(RandomUserApiConfig { base_url: "randomuser.me".into(), ..defaults() });
        assert!(matches!(bad, Err(SourceError::InvalidConfig(_))));
    }
}
