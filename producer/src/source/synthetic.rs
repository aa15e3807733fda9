//! A deterministic, offline source of RandomUser v1.4-shaped users.
//!
//! For a given seed (and reference time) the sequence of users is always the same, across runs
//! and machines, so tests and demos can replay a data set. Users look like the API's: twelve
//! nationalities with their own names (accented Latin, Ukrainian Cyrillic, Persian), streets,
//! cities, phone formats and postcodes (a JSON number for US/FR/DE/ES/FI/TR/UA/IR, a string for
//! GB/CA/NL/BR, as the API does), and a `login` section with credentials (`password`, `salt`,
//! `md5`, `sha1`, `sha256`: random, not real hashes) that normalisation must strip.
//!
//! Generation writes digits and patterns straight into the final strings, so the only per-user
//! allocations are those of the JSON value itself (about 100); a release build makes several
//! hundred thousand users per second on one core.

use std::sync::LazyLock;

use chrono::{DateTime, Datelike, NaiveDateTime, Timelike, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::Fetched;

/// The source name recorded in events.
pub const SOURCE_NAME: &str = "synthetic";

/// Reference "now" of [`SyntheticSource::new`]: 2026-01-01T00:00:00Z, in ms since the epoch.
///
/// Fixed, so a seed yields the same users whenever it runs; ages and registration dates are
/// relative to it.
pub const DEFAULT_REFERENCE_MS: i64 = 1_767_225_600_000;

/// 1900-01-01T00:00:00Z, the earliest date of birth.
const DOB_MIN_MS: i64 = -2_208_988_800_000;
/// 2009-01-01T00:00:00Z, just after the latest date of birth.
const DOB_END_MS: i64 = 1_230_768_000_000;
/// 2002-01-01T00:00:00Z, the earliest registration date.
const REGISTERED_MIN_MS: i64 = 1_009_843_200_000;

/// Deterministic generator of RandomUser v1.4-shaped users.
#[derive(Debug, Clone)]
pub struct SyntheticSource {
    rng: StdRng,
    reference_ms: i64,
    reference: NaiveDateTime,
}

impl SyntheticSource {
    /// A generator whose output depends only on `seed` (reference time [`DEFAULT_REFERENCE_MS`]).
    pub fn new(seed: u64) -> Self {
        let reference = DateTime::from_timestamp_millis(DEFAULT_REFERENCE_MS).unwrap_or_default();
        Self::with_reference_time(seed, reference)
    }

    /// A generator whose ages and registration dates are relative to `reference` (for example
    /// `Utc::now()`); registration dates fall between 2002 and `reference`.
    pub fn with_reference_time(seed: u64, reference: DateTime<Utc>) -> Self {
        let reference_ms = reference.timestamp_millis().max(REGISTERED_MIN_MS + 1);
        let reference = DateTime::from_timestamp_millis(reference_ms).unwrap_or_default().naive_utc();
        Self { rng: StdRng::seed_from_u64(seed), reference_ms, reference }
    }

    /// Generates `count` users; never rejects anything.
    pub fn fetch(&mut self, count: usize) -> Fetched {
        let users = (0..count).map(|_| self.next_user()).collect();
        Fetched { users, rejected: Vec::new(), fetched_at: Utc::now() }
    }

    /// The next user of the sequence.
    pub fn next_user(&mut self) -> Value {
        let words = &*WORDS;
        let rng = &mut self.rng;
        let nat = pick(rng, &words.nationalities);
        let male = rng.random_bool(0.5);
        let (first_names, titles) =
            if male { (&nat.male, &nat.male_titles) } else { (&nat.female, &nat.female_titles) };
        let (first, first_ascii) = split_entry(word(rng, first_names));
        let (last, last_ascii) = split_entry(word(rng, &nat.last));
        let (city, state) = pick(rng, &nat.places);
        let (tz_offset, tz_description) = pick(rng, &words.timezones);

        let postcode = match &nat.postcode {
            Postcode::Number(min, max) => Value::from(rng.random_range(*min..=*max)),
            Postcode::Text(pattern) => Value::String(pattern_string(rng, pattern)),
        };
        let coordinates =
            obj([("latitude", Value::String(coordinate(rng, 90))), ("longitude", Value::String(coordinate(rng, 180)))]);
        let location = obj([
            (
                "street",
                obj([("number", Value::from(rng.random_range(1..=9999u32))), ("name", text(word(rng, &nat.streets)))]),
            ),
            ("city", text(city)),
            ("state", text(state)),
            ("country", text(&nat.country)),
            ("postcode", postcode),
            ("coordinates", coordinates),
            ("timezone", obj([("offset", text(tz_offset)), ("description", text(tz_description))])),
        ]);

        let mut email = String::with_capacity(first_ascii.len() + last_ascii.len() + 13);
        push_folded(&mut email, first_ascii);
        email.push('.');
        push_folded(&mut email, last_ascii);
        email.push_str("@example.com");

        let uuid = uuid::Builder::from_random_bytes(rng.random()).into_uuid();
        let mut username = String::with_capacity(20);
        username.push_str(word(rng, &words.adjectives));
        username.push_str(word(rng, &words.animals));
        push_number(&mut username, rng.random_range(100..1000u64), 3);
        let login = obj([
            ("uuid", Value::String(uuid.to_string())),
            ("username", Value::String(username)),
            ("password", text(word(rng, &words.passwords))),
            ("salt", Value::String(random_chars(rng, 8, ALPHANUMERIC))),
            ("md5", Value::String(random_chars(rng, 32, HEX))),
            ("sha1", Value::String(random_chars(rng, 40, HEX))),
            ("sha256", Value::String(random_chars(rng, 64, HEX))),
        ]);

        let dob_ms = rng.random_range(DOB_MIN_MS..DOB_END_MS);
        let registered_ms = rng.random_range(REGISTERED_MIN_MS..self.reference_ms);
        let dob = self.dated(dob_ms);
        let registered = self.dated(registered_ms);
        let rng = &mut self.rng;

        let id_value =
            if nat.id_name.is_empty() { Value::Null } else { Value::String(pattern_string(rng, &nat.id_pattern)) };
        let folder = if male { "men/" } else { "women/" };
        let picture_number = rng.random_range(0..100u64);
        let picture = obj([
            ("large", Value::String(picture_url(folder, "", picture_number))),
            ("medium", Value::String(picture_url(folder, "med/", picture_number))),
            ("thumbnail", Value::String(picture_url(folder, "thumb/", picture_number))),
        ]);

        obj([
            ("gender", text(if male { "male" } else { "female" })),
            ("name", obj([("title", text(word(rng, titles))), ("first", text(first)), ("last", text(last))])),
            ("location", location),
            ("email", Value::String(email)),
            ("login", login),
            ("dob", dob),
            ("registered", registered),
            ("phone", Value::String(pattern_string(rng, &nat.phone))),
            ("cell", Value::String(pattern_string(rng, &nat.cell))),
            ("id", obj([("name", text(&nat.id_name)), ("value", id_value)])),
            ("picture", picture),
            ("nat", text(&nat.code)),
        ])
    }

    /// `{"date": "1992-03-08T15:13:16.688Z", "age": 30}` for an instant in ms since the epoch.
    fn dated(&self, ms: i64) -> Value {
        let date = DateTime::from_timestamp_millis(ms).unwrap_or_default().naive_utc();
        let mut text = String::with_capacity(24);
        push_number(&mut text, u64::try_from(date.year()).unwrap_or_default(), 4);
        text.push('-');
        push_number(&mut text, date.month().into(), 2);
        text.push('-');
        push_number(&mut text, date.day().into(), 2);
        text.push('T');
        push_number(&mut text, date.hour().into(), 2);
        text.push(':');
        push_number(&mut text, date.minute().into(), 2);
        text.push(':');
        push_number(&mut text, date.second().into(), 2);
        text.push('.');
        push_number(&mut text, u64::from(date.and_utc().timestamp_subsec_millis()), 3);
        text.push('Z');
        let reference = self.reference;
        let before_birthday = (reference.month(), reference.day()) < (date.month(), date.day());
        let age = reference.year() - date.year() - i32::from(before_birthday);
        obj([("date", Value::String(text)), ("age", Value::from(age.max(0)))])
    }
}

/// A JSON object from `(key, value)` pairs.
///
/// Inserted one by one: collecting would allocate and sort a temporary vector per object.
fn obj<const N: usize>(entries: [(&str, Value); N]) -> Value {
    let mut map = Map::new();
    for (key, value) in entries {
        map.insert(key.to_owned(), value);
    }
    Value::Object(map)
}

fn text(s: &str) -> Value {
    Value::String(s.to_owned())
}

fn pick<'a, T>(rng: &mut StdRng, items: &'a [T]) -> &'a T {
    &items[rng.random_range(0..items.len())]
}

/// One entry of a word list.
fn word<'a>(rng: &mut StdRng, items: &'a [String]) -> &'a str {
    pick::<String>(rng, items)
}

/// Word-list entries are `"text"` or `"text|transliteration"` (for non-Latin scripts).
fn split_entry(entry: &str) -> (&str, &str) {
    entry.split_once('|').unwrap_or((entry, entry))
}

/// Appends `n` zero-padded to at least `width` digits.
fn push_number(out: &mut String, mut n: u64, width: usize) {
    let mut digits = [0u8; 20];
    let mut len = 0;
    while n > 0 || len < width.max(1) {
        digits[len] = b'0' + (n % 10) as u8;
        n /= 10;
        len += 1;
    }
    out.extend(digits[..len].iter().rev().map(|&d| char::from(d)));
}

/// Expands a pattern: `#` is a random digit, `L` a random capital letter, anything else itself.
fn pattern_string(rng: &mut StdRng, pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len());
    for c in pattern.chars() {
        out.push(match c {
            '#' => char::from(b'0' + rng.random_range(0..10u8)),
            'L' => char::from(b'A' + rng.random_range(0..26u8)),
            other => other,
        });
    }
    out
}

const ALPHANUMERIC: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const HEX: &[u8] = b"0123456789abcdef";

fn random_chars(rng: &mut StdRng, len: usize, alphabet: &[u8]) -> String {
    (0..len).map(|_| char::from(alphabet[rng.random_range(0..alphabet.len())])).collect()
}

/// A decimal degree in `[-limit, limit]` with four decimals, as text (the API sends strings).
fn coordinate(rng: &mut StdRng, limit: i64) -> String {
    let ten_thousandths = rng.random_range(-limit * 10_000..=limit * 10_000);
    let mut out = String::with_capacity(10);
    if ten_thousandths < 0 {
        out.push('-');
    }
    let magnitude = ten_thousandths.unsigned_abs();
    push_number(&mut out, magnitude / 10_000, 1);
    out.push('.');
    push_number(&mut out, magnitude % 10_000, 4);
    out
}

fn picture_url(folder: &str, size: &str, number: u64) -> String {
    let mut url = String::with_capacity(56);
    url.push_str("https://randomuser.me/api/portraits/");
    url.push_str(size);
    url.push_str(folder);
    push_number(&mut url, number, 1);
    url.push_str(".jpg");
    url
}

/// Appends `name` lower-cased, accents folded to ASCII, other characters (spaces, apostrophes) dropped.
fn push_folded(out: &mut String, name: &str) {
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
            continue;
        }
        let folded = match c {
            'à' | 'á' | 'â' | 'ä' | 'ã' | 'å' | 'À' | 'Á' | 'Â' | 'Ä' | 'Ã' | 'Å' => "a",
            'ç' | 'Ç' => "c",
            'è' | 'é' | 'ê' | 'ë' | 'È' | 'É' | 'Ê' | 'Ë' => "e",
            'ì' | 'í' | 'î' | 'ï' | 'ı' | 'Ì' | 'Í' | 'Î' | 'Ï' | 'İ' => "i",
            'ñ' | 'Ñ' => "n",
            'ò' | 'ó' | 'ô' | 'ö' | 'õ' | 'ø' | 'Ò' | 'Ó' | 'Ô' | 'Ö' | 'Õ' | 'Ø' => "o",
            'ù' | 'ú' | 'û' | 'ü' | 'Ù' | 'Ú' | 'Û' | 'Ü' => "u",
            'ý' | 'ÿ' | 'Ý' => "y",
            'ş' | 'Ş' => "s",
            'ğ' | 'Ğ' => "g",
            'ß' => "ss",
            'æ' | 'Æ' => "ae",
            'œ' | 'Œ' => "oe",
            _ => "",
        };
        out.push_str(folded);
    }
}

/// How a nationality's postcode is sent.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Postcode {
    /// A JSON number in this inclusive range.
    Number(u32, u32),
    /// A JSON string from this pattern (`#` digit, `L` letter).
    Text(String),
}

/// Word lists and formats of one nationality.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Nationality {
    code: String,
    country: String,
    male: Vec<String>,
    female: Vec<String>,
    male_titles: Vec<String>,
    female_titles: Vec<String>,
    last: Vec<String>,
    streets: Vec<String>,
    /// `(city, state)` pairs.
    places: Vec<(String, String)>,
    postcode: Postcode,
    phone: String,
    cell: String,
    /// Empty means the API's `{"name": "", "value": null}`.
    id_name: String,
    id_pattern: String,
}

/// The generator's word lists: data, kept in `synthetic_words.json` beside this file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Words {
    nationalities: Vec<Nationality>,
    /// `(offset, description)` pairs as the API sends them (unrelated to the address, as in
    /// the API).
    timezones: Vec<(String, String)>,
    adjectives: Vec<String>,
    animals: Vec<String>,
    passwords: Vec<String>,
}

/// Parsed once; the file is compiled in and checked by a unit test.
static WORDS: LazyLock<Words> = LazyLock::new(|| {
    #[allow(clippy::expect_used)]
    serde_json::from_str(include_str!("synthetic_words.json")).expect("synthetic_words.json is valid (unit-tested)")
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_word_lists_parse_and_cover_twelve_nationalities() {
        assert_eq!(WORDS.nationalities.len(), 12);
        assert!(WORDS.nationalities.iter().all(|n| !n.male.is_empty() && !n.female.is_empty() && !n.places.is_empty()));
        assert!(!WORDS.timezones.is_empty() && !WORDS.passwords.is_empty());
    }
    use crate::normalize::{normalize, strip_credentials, CREDENTIAL_FIELDS};

    fn users(seed: u64, n: usize) -> Vec<Value> {
        SyntheticSource::new(seed).fetch(n).users
    }

    #[test]
    fn same_seed_same_users_and_different_seeds_differ() {
        assert_eq!(users(42, 200), users(42, 200));
        assert_ne!(users(42, 200), users(43, 200));
        let mut source = SyntheticSource::new(42);
        let first = source.next_user();
        assert_ne!(first, source.next_user());
    }

    #[test]
    fn both_postcode_forms_and_many_nationalities_appear() {
        let users = users(1, 2000);
        assert!(users.iter().any(|u| u["location"]["postcode"].is_u64()));
        assert!(users.iter().any(|u| u["location"]["postcode"].is_string()));
        for user in &users {
            let numeric = user["location"]["postcode"].is_u64();
            let nat = user["nat"].as_str().unwrap();
            assert_eq!(numeric, !["GB", "CA", "NL", "BR"].contains(&nat), "postcode form of {nat}");
        }
        let nats: std::collections::BTreeSet<&str> = users.iter().filter_map(|u| u["nat"].as_str()).collect();
        assert!(nats.len() >= 8, "{nats:?}");
    }

    #[test]
    fn non_latin_and_accented_names_appear() {
        let users = users(2, 2000);
        let first_names: Vec<&str> = users.iter().filter_map(|u| u["name"]["first"].as_str()).collect();
        let in_script = |lo: char, hi: char| first_names.iter().any(|n| n.chars().any(|c| (lo..=hi).contains(&c)));
        assert!(in_script('\u{0400}', '\u{04FF}'), "no Cyrillic name");
        assert!(in_script('\u{0600}', '\u{06FF}'), "no Persian name");
        assert!(first_names.iter().any(|n| n.chars().any(|c| "éèëïöüäßçñáíóúğşı".contains(c))), "no accented name");
    }

    #[test]
    fn every_user_normalises_and_loses_its_credentials() {
        let now = Utc::now();
        for user in users(3, 3000) {
            for field in CREDENTIAL_FIELDS {
                assert!(user["login"][*field].as_str().is_some_and(|s| !s.is_empty()), "login.{field} missing");
            }
            let normalized =
                normalize(user.clone(), SOURCE_NAME, now, now).unwrap_or_else(|e| panic!("{}: {user}", e.reason));
            let event = normalized.event;
            assert_eq!(event.id.get_version_num(), 4);
            assert!(event.email.ends_with("@example.com") && event.email.is_ascii(), "{}", event.email);
            assert!(event.street_number.is_some() && event.post_code.is_some() && event.latitude.is_some());
            let dob = event.dob.unwrap();
            assert!((1900..=2008).contains(&dob.year()), "{dob}");
            let registered = event.registered_date.unwrap();
            assert!(registered.year() >= 2002 && registered.timestamp_millis() < DEFAULT_REFERENCE_MS);
            assert_eq!(user["dob"]["date"].as_str().unwrap().len(), 24);
            for field in CREDENTIAL_FIELDS {
                assert!(normalized.payload["login"].get(*field).is_none());
            }
            let mut stripped = user.clone();
            strip_credentials(&mut stripped);
            assert_eq!(stripped, normalized.payload);
        }
    }

    #[test]
    fn id_value_is_null_for_some_nationalities() {
        let users = users(4, 500);
        assert!(users.iter().any(|u| u["id"]["value"].is_null()));
        assert!(users.iter().any(|u| u["id"]["value"].is_string()));
    }

    #[test]
    fn ages_match_the_reference_time() {
        let source = SyntheticSource::new(5);
        let dated = source.dated(0);
        assert_eq!(dated["date"], "1970-01-01T00:00:00.000Z");
        assert_eq!(dated["age"], 56);
        assert_eq!(source.dated(1_000_000_000_000)["age"], 24, "2001-09-09 is 24 on 2026-01-01");
        assert_eq!(source.dated(-2_208_988_800_000 + 1)["date"], "1900-01-01T00:00:00.001Z");
        let mut coordinate_rng = StdRng::seed_from_u64(9);
        for _ in 0..1000 {
            let c: f64 = coordinate(&mut coordinate_rng, 90).parse().unwrap();
            assert!(c.abs() <= 90.0);
        }
    }

    /// Throughput check: `cargo test --release -p pipeline-producer --lib synthetic_throughput -- --ignored --nocapture`.
    #[test]
    #[ignore = "timing; run in release"]
    fn synthetic_throughput() {
        let mut source = SyntheticSource::new(6);
        let (batches, batch) = (100, 5000);
        let (mut generating, mut dropping) = (std::time::Duration::ZERO, std::time::Duration::ZERO);
        for _ in 0..batches {
            let start = std::time::Instant::now();
            let fetched = source.fetch(batch);
            generating += start.elapsed();
            assert_eq!(fetched.users.len(), batch);
            let start = std::time::Instant::now();
            drop(fetched);
            dropping += start.elapsed();
        }
        let n = (batches * batch) as f64;
        println!(
            "{n} users: generated in {generating:?} ({:.0} users/s), dropped in {dropping:?} ({:.0} users/s overall)",
            n / generating.as_secs_f64(),
            n / (generating + dropping).as_secs_f64()
        );
    }
}
