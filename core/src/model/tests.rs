//! Field-by-field checks of every derived schema.

use super::*;
use apache_avro::{types::Value as AvroValue, Schema};

use super::schemas::quote_cql;

fn sample_event() -> UserEvent {
    let t = |s: &str| DateTime::parse_from_rfc3339(s).map(|d| d.with_timezone(&Utc)).ok();
    UserEvent {
        id: Uuid::parse_str("7a0eed16-9430-4d68-901f-c0d4c1c3bf00").unwrap_or_default(),
        gender: Some("female".into()),
        title: Some("Mademoiselle".into()),
        first_name: "Zoé".into(),
        last_name: "Lefèvre".into(),
        street_number: Some(4962),
        street_name: Some("Rue Principale".into()),
        city: Some("Lyon".into()),
        state: None,
        country: Some("France".into()),
        post_code: Some("69001".into()),
        latitude: Some(45.76),
        longitude: Some(4.83),
        timezone_offset: Some("+1:00".into()),
        email: "zoe.lefevre@example.com".into(),
        username: "bluecat123".into(),
        dob: t("1902-03-04T05:06:07.123Z"),
        registered_date: t("2015-01-02T03:04:05.678Z"),
        phone: Some("01-23-45-67-89".into()),
        cell: None,
        picture: Some("https://randomuser.me/api/portraits/women/1.jpg".into()),
        nat: Some("FR".into()),
        source: "synthetic".into(),
        fetched_at: t("2026-11-28T00:00:00Z").unwrap_or_default(),
        produced_at: t("2026-11-28T00:00:01.5Z").unwrap_or_default(),
    }
}

#[test]
fn avro_schema_parses_and_matches_fields() {
    let schema = Schema::parse(&event_avro_schema()).expect("derived Avro schema must parse");
    let Schema::Record(record) = &schema else { panic!("not a record schema") };
    let names: Vec<&str> = record.fields.iter().map(|f| f.name.as_str()).collect();
    let expected: Vec<&str> = UserEvent::FIELDS.iter().map(|f| f.name).collect();
    assert_eq!(names, expected);
    for (avro, field) in record.fields.iter().zip(UserEvent::FIELDS) {
        assert_eq!(matches!(avro.schema, Schema::Union(_)), field.nullable, "nullability of {}", field.name);
    }
}

#[test]
fn event_roundtrips_through_avro_binary() {
    let schema = Schema::parse(&event_avro_schema()).expect("schema");
    let event = sample_event();
    let bytes = apache_avro::to_avro_datum(&schema, event.to_avro()).expect("encode");
    let decoded = apache_avro::from_avro_datum(&schema, &mut bytes.as_slice(), None).expect("decode");
    assert_eq!(UserEvent::from_avro(&decoded), Ok(event));
}

#[test]
fn direct_encoding_equals_apache_avro() {
    let schema = Schema::parse(&event_avro_schema()).expect("schema");
    let full = sample_event();
    let empty = UserEvent {
        gender: None,
        title: None,
        street_number: None,
        street_name: None,
        city: None,
        country: None,
        post_code: None,
        latitude: None,
        longitude: None,
        timezone_offset: None,
        dob: None,
        registered_date: None,
        phone: None,
        picture: None,
        nat: None,
        first_name: String::new(),
        ..full.clone()
    };
    let extremes = UserEvent {
        street_number: Some(i32::MIN),
        latitude: Some(-0.0),
        longitude: Some(f64::MAX),
        dob: DateTime::from_timestamp_micros(-2_208_988_800_000_001),
        registered_date: DateTime::from_timestamp_micros(i64::MAX / 1000),
        first_name: "Олександра 李 ✓".repeat(40),
        ..full.clone()
    };
    for event in [full, empty, extremes] {
        let mut direct = Vec::new();
        event.encode_avro(&mut direct);
        let reference = apache_avro::to_avro_datum(&schema, event.to_avro()).expect("encode");
        assert_eq!(direct, reference, "{event:?}");
        assert!(decode_avro_fields(UserEvent::FIELDS, &direct).is_ok());
    }
    for n in [i64::MIN, i64::MAX, -1, 0, 1 << 40] {
        let mut out = Vec::new();
        encode_avro_long(n, &mut out);
        assert_eq!(decode_avro_long(&mut out.as_slice()), Ok(n));
    }
}

#[test]
fn direct_decoding_reads_back_every_field() {
    let event = sample_event();
    let mut datum = Vec::new();
    event.encode_avro(&mut datum);
    let cells = decode_avro_fields(UserEvent::FIELDS, &datum).expect("decode");
    assert_eq!(cells.len(), UserEvent::FIELDS.len());
    assert_eq!(cells[0], Cell::Text("7a0eed16-9430-4d68-901f-c0d4c1c3bf00"));
    assert_eq!(cells[3], Cell::Text("Zoé"));
    assert_eq!(cells[5], Cell::Int(4962));
    assert_eq!(cells[8], Cell::Null);
    assert_eq!(cells[11], Cell::Double(45.76));
    let dob = event.dob.map(|d| d.timestamp_micros()).unwrap_or_default();
    assert_eq!(cells[16], Cell::Timestamp(dob));
    assert_eq!(cells[19], Cell::Null);

    // Every truncation is an error naming a field, never a panic.
    for cut in 0..datum.len() {
        let err = decode_avro_fields(UserEvent::FIELDS, &datum[..cut]).unwrap_err();
        assert!(err.starts_with("field `"), "{err}");
    }
    let mut longer = datum.clone();
    longer.push(0);
    assert_eq!(decode_avro_fields(UserEvent::FIELDS, &longer).unwrap_err(), "1 trailing byte(s) after the Avro record");
    let mut bad_branch = datum.clone();
    bad_branch[37] = 4; // gender's union branch, after the 36-character id and its length
    assert!(decode_avro_fields(UserEvent::FIELDS, &bad_branch).unwrap_err().contains("union branch 2"));
    assert!(decode_avro_fields(UserEvent::FIELDS, &[0xFF; 11]).unwrap_err().contains("longer than 10 bytes"));
}

#[test]
fn zigzag_longs_match_the_spec_examples() {
    for (n, bytes) in [(0, vec![0]), (-1, vec![1]), (1, vec![2]), (-64, vec![0x7f]), (64, vec![0x80, 0x01])] {
        let mut out = Vec::new();
        encode_avro_long(n, &mut out);
        assert_eq!(out, bytes, "{n}");
        assert_eq!(decode_avro_long(&mut out.as_slice()), Ok(n));
    }
}

#[test]
#[cfg(feature = "arrow")]
fn arrow_schema_agrees_field_by_field() {
    let arrow = arrow_schema(UserEvent::FIELDS);
    assert_eq!(arrow.fields().len(), UserEvent::FIELDS.len());
    for (a, f) in arrow.fields().iter().zip(UserEvent::FIELDS) {
        assert_eq!((a.name().as_str(), a.data_type(), a.is_nullable()), (f.name, &f.ty.arrow(), f.nullable));
    }
}

#[test]
fn spark_ddl_lists_every_field_with_its_type() {
    let ddl = spark_ddl(UserEvent::FIELDS);
    let parts: Vec<&str> = ddl.split(", ").collect();
    assert_eq!(parts.len(), UserEvent::FIELDS.len());
    assert_eq!(parts[0], "id STRING NOT NULL");
    assert!(parts.contains(&"dob TIMESTAMP"));
    assert!(parts.contains(&"street_number INT"));
}

#[test]
fn cql_table_has_every_row_column_and_quotes_reserved_words() {
    let cql = cql_create_table("ks", "t", CreatedUserRow::FIELDS);
    assert!(cql.starts_with("CREATE TABLE IF NOT EXISTS ks.t (id uuid, "));
    assert!(cql.contains("\"timestamp\" timestamp"));
    assert!(cql.ends_with("PRIMARY KEY (id))"));
    for f in CreatedUserRow::FIELDS {
        assert!(cql.contains(&format!("{} {}", quote_cql(f.name), f.ty.cql())), "missing {}", f.name);
    }
}

#[test]
fn cql_insert_binds_every_column_in_order() {
    let cql = cql_insert("ks", "t", CreatedUserRow::FIELDS);
    assert!(cql.starts_with("INSERT INTO ks.t (id, first_name, "));
    assert!(cql.contains("\"timestamp\""));
    assert_eq!(cql.matches('?').count(), CreatedUserRow::FIELDS.len());
}

#[test]
fn seed_columns_are_kept() {
    let seed = [
        "id",
        "first_name",
        "last_name",
        "gender",
        "email",
        "username",
        "phone",
        "address",
        "post_code",
        "dob",
        "registered_date",
        "picture",
        "timestamp",
    ];
    for name in seed {
        assert!(CreatedUserRow::FIELDS.iter().any(|f| f.name == name), "seed column {name} missing");
    }
}

#[test]
fn missing_nullable_field_reads_as_none_but_missing_required_field_fails() {
    let full = sample_event().to_avro();
    let AvroValue::Record(fields) = full else { panic!() };
    let without = |name: &str| AvroValue::Record(fields.iter().filter(|(n, _)| n != name).cloned().collect());
    assert_eq!(UserEvent::from_avro(&without("cell")).map(|e| e.cell), Ok(None));
    assert_eq!(UserEvent::from_avro(&without("email")).err().map(|e| e.field), Some("email"));
}
