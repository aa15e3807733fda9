//! RandomUser-shaped JSON record -> [`UserEvent`], with credentials removed.
//!
//! The mapping follows the RandomUser v1.4 shape (see `tests/fixtures/randomuser_v1_4.json`).
//! Required fields (`login.uuid`, `name.first`, `name.last`, `email`, `login.username`) and
//! malformed dates are rejections with a short reason naming the field; every other field is
//! optional and reads as `None` when absent, null, empty or unusable, since `inc`/`exc` make the
//! API omit whole sections.

use chrono::{DateTime, Utc};
use pipeline_core::model::UserEvent;
use serde_json::{Map, Value};
use uuid::Uuid;

/// The `login` fields that are secrets and never leave the producer.
pub const CREDENTIAL_FIELDS: &[&str] = &["password", "salt", "md5", "sha1", "sha256"];

/// A user ready to publish: the event (produced_at = the given time) and the raw payload with credentials removed.
#[derive(Debug, Clone, PartialEq)]
pub struct Normalized {
    /// The event to publish.
    pub event: UserEvent,
    /// The record as received, minus [`CREDENTIAL_FIELDS`] under `login`.
    pub payload: Value,
}

/// A record refused by [`normalize`]: the reason (naming the field) and the record itself with
/// its credentials removed, ready for the audit store's rejected table.
#[derive(Debug, Clone, PartialEq)]
pub struct Refused {
    pub reason: String,
    pub payload: Value,
}

/// Maps one RandomUser-shaped record to a [`UserEvent`], taking the record (it becomes the
/// payload, so the hot path copies nothing).
///
/// `source` is the [`crate::source::Source::name`], `fetched_at` the fetch time and
/// `produced_at` the publication time recorded in the event.
///
/// # Errors
/// A short reason naming the field when a required field is missing or malformed, or when a
/// present date is not RFC 3339; the refused record comes back without its credentials.
pub fn normalize(
    mut user: Value,
    source: &str,
    fetched_at: DateTime<Utc>,
    produced_at: DateTime<Utc>,
) -> Result<Normalized, Refused> {
    let event = to_event(&user, source, fetched_at, produced_at);
    strip_credentials(&mut user);
    match event {
        Ok(event) => Ok(Normalized { event, payload: user }),
        Err(reason) => Err(Refused { reason, payload: user }),
    }
}

/// Removes `login.password`, `salt`, `md5`, `sha1` and `sha256` (keeps `login.uuid` and `login.username`).
pub fn strip_credentials(user: &mut Value) {
    if let Some(Value::Object(login)) = user.get_mut("login") {
        remove_credentials(login);
    }
}

/// Removes every key named like a credential field, at any depth.
///
/// For payloads whose structure is unknown (rejected responses), where credentials may sit
/// anywhere; well-formed users only need [`strip_credentials`].
pub fn strip_credentials_everywhere(value: &mut Value) {
    match value {
        Value::Object(map) => {
            remove_credentials(map);
            map.values_mut().for_each(strip_credentials_everywhere);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_credentials_everywhere),
        _ => {}
    }
}

fn remove_credentials(map: &mut Map<String, Value>) {
    for field in CREDENTIAL_FIELDS {
        map.remove(*field);
    }
}

fn to_event(
    user: &Value,
    source: &str,
    fetched_at: DateTime<Utc>,
    produced_at: DateTime<Utc>,
) -> Result<UserEvent, String> {
    if !user.is_object() {
        return Err("record is not a JSON object".into());
    }
    let id = str_at(user, &["login", "uuid"])
        .and_then(|s| Uuid::parse_str(s.trim()).ok())
        .ok_or("login.uuid missing or not a UUID")?;
    let first_name =
        str_at(user, &["name", "first"]).filter(|s| !s.trim().is_empty()).ok_or("name.first missing or empty")?;
    let last_name = str_at(user, &["name", "last"]).ok_or("name.last missing")?;
    let email = str_at(user, &["email"]).ok_or("email missing")?;
    if !is_email(email) {
        return Err("email is not an address (needs exactly one '@' with text on both sides)".into());
    }
    let username =
        str_at(user, &["login", "username"]).filter(|s| !s.is_empty()).ok_or("login.username missing or empty")?;
    let dob = date_at(user, &["dob", "date"])?;
    let registered_date = date_at(user, &["registered", "date"])?;
    let (street_number, street_name) = street(at(user, &["location", "street"]));

    Ok(UserEvent {
        id,
        gender: text_at(user, &["gender"]),
        title: text_at(user, &["name", "title"]),
        first_name: first_name.to_owned(),
        last_name: last_name.to_owned(),
        street_number,
        street_name,
        city: text_at(user, &["location", "city"]),
        state: text_at(user, &["location", "state"]),
        country: text_at(user, &["location", "country"]),
        post_code: text_at(user, &["location", "postcode"]),
        latitude: coordinate_at(user, &["location", "coordinates", "latitude"], 90.0),
        longitude: coordinate_at(user, &["location", "coordinates", "longitude"], 180.0),
        timezone_offset: text_at(user, &["location", "timezone", "offset"]),
        email: email.to_owned(),
        username: username.to_owned(),
        dob,
        registered_date,
        phone: text_at(user, &["phone"]),
        cell: text_at(user, &["cell"]),
        picture: text_at(user, &["picture", "large"]),
        nat: text_at(user, &["nat"]),
        source: source.to_owned(),
        fetched_at,
        produced_at,
    })
}

/// The value at `path`, `None` if any step is missing, not an object, or the value is null.
fn at<'a>(value: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(value, |v, key| v.as_object()?.get(*key)).filter(|v| !v.is_null())
}

/// A string at `path` (other types give `None`).
fn str_at<'a>(value: &'a Value, path: &[&str]) -> Option<&'a str> {
    at(value, path)?.as_str()
}

/// Optional text: strings as they are, numbers rendered (integral floats without decimals);
/// empty strings, booleans, arrays and objects give `None`.
fn text_at(value: &Value, path: &[&str]) -> Option<String> {
    match at(value, path)? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(match n.as_f64() {
            Some(f) if !n.is_i64() && !n.is_u64() && f.is_finite() && f.fract() == 0.0 && f.abs() < 1e15 => {
                format!("{f:.0}")
            }
            _ => n.to_string(),
        }),
        _ => None,
    }
}

/// A date at `path`: `None` if absent or null, an error if present but not an RFC 3339 string.
fn date_at(value: &Value, path: &[&str]) -> Result<Option<DateTime<Utc>>, String> {
    let Some(date) = at(value, path) else { return Ok(None) };
    date.as_str()
        .and_then(|s| DateTime::parse_from_rfc3339(s.trim()).ok())
        .map(|d| Some(d.with_timezone(&Utc)))
        .ok_or_else(|| format!("{} is not an RFC 3339 date", path.join(".")))
}

/// A coordinate from a string or a number; unparseable, non-finite or beyond `±limit` gives `None`.
fn coordinate_at(value: &Value, path: &[&str], limit: f64) -> Option<f64> {
    let parsed = match at(value, path)? {
        Value::String(s) => s.trim().parse::<f64>().ok()?,
        Value::Number(n) => n.as_f64()?,
        _ => return None,
    };
    (parsed.is_finite() && parsed.abs() <= limit).then_some(parsed)
}

/// An integer from a number (integral floats too) or a numeric string, if it fits an `i32`.
fn int(value: &Value) -> Option<i32> {
    let wide = match value {
        Value::Number(n) => {
            n.as_i64().or_else(|| n.as_f64().filter(|f| f.fract() == 0.0 && f.abs() < 1e15).map(|f| f as i64))?
        }
        Value::String(s) => s.trim().parse::<i64>().ok()?,
        _ => return None,
    };
    i32::try_from(wide).ok()
}

/// `location.street`: `{number, name}` since v1.2; before that a single string such as
/// `"8929 valwood pkwy"`, split on its leading number.
fn street(street: Option<&Value>) -> (Option<i32>, Option<String>) {
    match street {
        Some(object @ Value::Object(_)) => (at(object, &["number"]).and_then(int), text_at(object, &["name"])),
        Some(Value::String(s)) => match s.split_once(' ') {
            Some((number, name)) if number.parse::<i32>().is_ok() => {
                (number.parse().ok(), Some(name.to_owned()).filter(|n| !n.is_empty()))
            }
            _ => (None, Some(s.clone()).filter(|s| !s.is_empty())),
        },
        _ => (None, None),
    }
}

/// Exactly one `@`, with text on both sides.
fn is_email(email: &str) -> bool {
    match email.split_once('@') {
        Some((local, domain)) => !local.is_empty() && !domain.is_empty() && !domain.contains('@'),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const FIXTURE: &str = include_str!("../tests/fixtures/randomuser_v1_4.json");

    fn fixture_users() -> Vec<Value> {
        let response: Value = serde_json::from_str(FIXTURE).unwrap();
        response["results"].as_array().unwrap().clone()
    }

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-28T12:00:00Z").unwrap().with_timezone(&Utc)
    }

    fn norm(user: &Value) -> Result<Normalized, String> {
        normalize(user.clone(), "randomuser", now(), now() + chrono::Duration::seconds(1)).map_err(|r| r.reason)
    }

    #[test]
    fn fixture_users_normalise_field_by_field() {
        let users = fixture_users();
        let us = norm(&users[0]).unwrap().event;
        assert_eq!(us.id, Uuid::parse_str("4b7c1d2e-9f3a-4c5b-8d6e-7f8091a2b3c4").unwrap());
        assert_eq!(us.gender.as_deref(), Some("female"));
        assert_eq!(us.title.as_deref(), Some("Ms"));
        assert_eq!((us.first_name.as_str(), us.last_name.as_str()), ("Harper", "Whitfield"));
        assert_eq!(us.street_number, Some(4127));
        assert_eq!(us.street_name.as_deref(), Some("Cedar Hollow Rd"));
        assert_eq!(us.city.as_deref(), Some("Springdale"));
        assert_eq!(us.state.as_deref(), Some("Arkansas"));
        assert_eq!(us.country.as_deref(), Some("United States"));
        assert_eq!(us.post_code.as_deref(), Some("72764"));
        assert_eq!(us.latitude, Some(36.1867));
        assert_eq!(us.longitude, Some(-94.1288));
        assert_eq!(us.timezone_offset.as_deref(), Some("-6:00"));
        assert_eq!(us.email, "harper.whitfield@example.com");
        assert_eq!(us.username, "quietotter284");
        assert_eq!(us.dob.map(|d| d.to_rfc3339()), Some("1987-04-19T08:42:13.517+00:00".into()));
        assert_eq!(us.registered_date.map(|d| d.to_rfc3339()), Some("2011-06-08T11:30:22.904+00:00".into()));
        assert_eq!(us.phone.as_deref(), Some("(479) 555-0142"));
        assert_eq!(us.cell.as_deref(), Some("(479) 555-0187"));
        assert_eq!(us.picture.as_deref(), Some("https://randomuser.me/api/portraits/women/37.jpg"));
        assert_eq!(us.nat.as_deref(), Some("US"));
        assert_eq!(us.source, "randomuser");
        assert_eq!(us.fetched_at, now());
        assert_eq!(us.produced_at, now() + chrono::Duration::seconds(1));

        let gb = norm(&users[1]).unwrap().event;
        assert_eq!(gb.post_code.as_deref(), Some("LS12 7QW"));
        assert_eq!(gb.nat.as_deref(), Some("GB"));
    }

    #[test]
    fn payload_keeps_the_record_minus_credentials() {
        for user in fixture_users() {
            for field in CREDENTIAL_FIELDS {
                assert!(user["login"].get(*field).is_some(), "fixture should carry login.{field}");
            }
            let normalized = norm(&user).unwrap();
            for field in CREDENTIAL_FIELDS {
                assert!(normalized.payload["login"].get(*field).is_none(), "login.{field} not stripped");
            }
            assert_eq!(normalized.payload["login"]["uuid"], user["login"]["uuid"]);
            assert_eq!(normalized.payload["login"]["username"], user["login"]["username"]);
            assert_eq!(normalized.payload["location"], user["location"]);
        }
    }

    #[test]
    fn numeric_and_string_postcodes_become_text() {
        let mut user = fixture_users()[0].clone();
        for (postcode, expected) in [
            (json!(72764), Some("72764")),
            (json!("72764"), Some("72764")),
            (json!(1234.0), Some("1234")),
            (json!("SW1A 2AA"), Some("SW1A 2AA")),
            (json!(""), None),
            (Value::Null, None),
        ] {
            user["location"]["postcode"] = postcode;
            assert_eq!(norm(&user).unwrap().event.post_code.as_deref(), expected);
        }
    }

    #[test]
    fn street_number_accepts_numeric_strings_and_ignores_garbage() {
        let mut user = fixture_users()[0].clone();
        for (number, expected) in
            [(json!("42"), Some(42)), (json!(7.0), Some(7)), (json!("x"), None), (json!(1e12), None)]
        {
            user["location"]["street"]["number"] = number;
            assert_eq!(norm(&user).unwrap().event.street_number, expected);
        }
        user["location"]["street"] = json!("8929 valwood pkwy");
        let event = norm(&user).unwrap().event;
        assert_eq!((event.street_number, event.street_name.as_deref()), (Some(8929), Some("valwood pkwy")));
    }

    #[test]
    fn unparseable_coordinates_are_none_not_rejections() {
        let mut user = fixture_users()[0].clone();
        user["location"]["coordinates"] = json!({"latitude": "north-ish", "longitude": 12.5});
        let event = norm(&user).unwrap().event;
        assert_eq!((event.latitude, event.longitude), (None, Some(12.5)));
    }

    #[test]
    fn null_id_value_is_fine() {
        let mut user = fixture_users()[1].clone();
        user["id"] = json!({"name": "", "value": null});
        assert!(norm(&user).is_ok());
    }

    #[test]
    fn missing_sections_give_none() {
        let mut user = fixture_users()[0].clone();
        let object = user.as_object_mut().unwrap();
        for section in ["location", "dob", "registered", "picture", "phone", "cell", "id", "nat", "gender"] {
            object.remove(section);
        }
        user["name"].as_object_mut().unwrap().remove("title");
        let event = norm(&user).unwrap().event;
        assert_eq!(
            (event.street_number, &event.street_name, &event.city, &event.post_code, event.latitude),
            (None, &None, &None, &None, None)
        );
        assert_eq!((event.dob, event.registered_date, &event.picture, &event.nat), (None, None, &None, &None));
        assert_eq!((&event.gender, &event.title), (&None, &None));
        assert_eq!(event.first_name, "Harper");
    }

    #[test]
    fn bad_required_fields_are_rejected_naming_the_field() {
        let base = fixture_users()[0].clone();
        let reject = |edit: &dyn Fn(&mut Value)| {
            let mut user = base.clone();
            edit(&mut user);
            norm(&user).unwrap_err()
        };
        assert!(reject(&|u| u["login"]["uuid"] = json!("not-a-uuid")).contains("login.uuid"));
        assert!(reject(&|u| {
            u["login"].as_object_mut().unwrap().remove("uuid");
        })
        .contains("login.uuid"));
        assert!(reject(&|u| u["email"] = json!("harper.example.com")).contains("email"));
        assert!(reject(&|u| u["email"] = json!("a@b@c")).contains("email"));
        assert!(reject(&|u| u["email"] = json!("@example.com")).contains("email"));
        assert!(reject(&|u| u["dob"]["date"] = json!("19/04/1987")).contains("dob.date"));
        assert!(reject(&|u| u["registered"]["date"] = json!(12)).contains("registered.date"));
        assert!(reject(&|u| u["name"]["first"] = json!("  ")).contains("name.first"));
        assert!(reject(&|u| {
            u["name"].as_object_mut().unwrap().remove("last");
        })
        .contains("name.last"));
        assert!(reject(&|u| u["login"]["username"] = Value::Null).contains("login.username"));
        assert!(norm(&json!([1, 2])).unwrap_err().contains("not a JSON object"));
    }

    #[test]
    fn refused_records_come_back_without_credentials() {
        let mut user = fixture_users()[0].clone();
        user["email"] = json!("no-at-sign");
        let refused = normalize(user.clone(), "randomuser", now(), now()).unwrap_err();
        assert!(refused.reason.contains("email"), "{}", refused.reason);
        strip_credentials(&mut user);
        assert_eq!(refused.payload, user);
        assert!(refused.payload["login"].get("password").is_none());
    }

    #[test]
    fn strip_credentials_keeps_uuid_and_username() {
        let mut user = json!({"login": {"uuid": "u", "username": "n", "password": "p", "salt": "s",
            "md5": "m", "sha1": "h", "sha256": "h2"}, "password": "top-level stays"});
        strip_credentials(&mut user);
        assert_eq!(user, json!({"login": {"uuid": "u", "username": "n"}, "password": "top-level stays"}));
        strip_credentials_everywhere(&mut user);
        assert_eq!(user, json!({"login": {"uuid": "u", "username": "n"}}));
    }
}
