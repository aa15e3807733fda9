//! The record model, defined once.
//!
//! [`UserEvent`] is the `users_created` Kafka event and [`CreatedUserRow`] the
//! `spark_streams.created_users` Cassandra row. Each struct is declared through the
//! [`record!`] macro, which also emits a `FIELDS` table describing every field's logical type
//! and nullability. Every other representation is *derived* from that table:
//!
//! | representation                  | function                |
//! |---------------------------------|-------------------------|
//! | Avro schema (schema registry)   | [`avro_schema`]         |
//! | Arrow schema (DataFusion)       | [`arrow_schema`]        |
//! | Spark DDL (`from_json`, tables) | [`spark_ddl`]           |
//! | CQL `CREATE TABLE`              | [`cql_create_table`]    |
//!
//! so the formats cannot drift apart; the unit tests below check them field by field.

mod avro;
mod field;
mod schemas;
#[cfg(test)]
mod tests;

use chrono::{DateTime, Utc};
use uuid::Uuid;

pub use avro::*;
pub use field::*;
pub use schemas::*;

/// Declares a record struct together with its `FIELDS` table and Avro conversions.
///
/// Field docs become the schema docs, so the struct is the one place to describe a field.
#[macro_export]
macro_rules! record {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $( #[doc = $doc:literal] pub $field:ident : $ty:ty, )*
        }
    ) => {
        $(#[$meta])*
        pub struct $name {
            $( #[doc = $doc] pub $field: $ty, )*
        }

        impl $name {
            /// Every field in declaration order: the source of all derived schemas.
            pub const FIELDS: &'static [$crate::model::Field] = &[
                $( $crate::model::Field {
                    name: stringify!($field),
                    ty: <$ty as $crate::model::Logical>::TYPE,
                    nullable: <$ty as $crate::model::Logical>::NULLABLE,
                    doc: $doc.trim_ascii(),
                }, )*
            ];

            /// The record as an Avro record value, fields in schema order.
            pub fn to_avro(&self) -> ::apache_avro::types::Value {
                ::apache_avro::types::Value::Record(vec![
                    $( (stringify!($field).to_string(), $crate::model::Logical::to_avro(&self.$field)), )*
                ])
            }

            /// Appends the record in Avro's binary encoding (fields in schema order): the same
            /// bytes as `apache_avro::to_avro_datum` of [`Self::to_avro`], without the value tree.
            pub fn encode_avro(&self, out: &mut Vec<u8>) {
                $( $crate::model::Logical::encode_avro(&self.$field, out); )*
            }

            /// Reads the record back from an Avro record value (fields looked up by name).
            pub fn from_avro(value: &::apache_avro::types::Value) -> Result<Self, $crate::model::FieldError> {
                let ::apache_avro::types::Value::Record(fields) = value else {
                    return Err($crate::model::FieldError { field: "<record>", reason: "not an Avro record".into() });
                };
                let get = |name: &'static str| -> Result<&::apache_avro::types::Value, $crate::model::FieldError> {
                    fields.iter().find(|(n, _)| n == name).map(|(_, v)| v)
                        .ok_or($crate::model::FieldError { field: name, reason: "missing".into() })
                };
                Ok(Self {
                    $( $field: {
                        let field = stringify!($field);
                        match get(field) {
                            Ok(v) => <$ty as $crate::model::Logical>::from_avro(v)
                                .map_err(|reason| $crate::model::FieldError { field, reason })?,
                            // A field absent from the writer's schema is null if it may be.
                            Err(e) if <$ty as $crate::model::Logical>::NULLABLE =>
                                <$ty as $crate::model::Logical>::from_avro(&::apache_avro::types::Value::Null)
                                    .map_err(|_| e)?,
                            Err(e) => return Err(e),
                        }
                    }, )*
                })
            }
        }
    };
}

record! {
    /// A user profile as published on Kafka topic `users_created`.
    ///
    /// Normalised by the producer from a RandomUser API record (or the synthetic source).
    /// Credentials (`login.password`, `salt`, `md5`, `sha1`, `sha256`) never reach it.
    #[derive(Debug, Clone, PartialEq)]
    pub struct UserEvent {
        /// User id: RandomUser `login.uuid`; also the Kafka key.
        pub id: Uuid,
        /// `male` or `female` as the API reports it.
        pub gender: Option<String>,
        /// Title such as Mr, Ms, Mademoiselle.
        pub title: Option<String>,
        /// Given name.
        pub first_name: String,
        /// Family name.
        pub last_name: String,
        /// Street number.
        pub street_number: Option<i32>,
        /// Street name.
        pub street_name: Option<String>,
        /// City.
        pub city: Option<String>,
        /// State, province or region.
        pub state: Option<String>,
        /// Country name.
        pub country: Option<String>,
        /// Postal code as text (the API sends a number for some nationalities).
        pub post_code: Option<String>,
        /// Latitude in degrees.
        pub latitude: Option<f64>,
        /// Longitude in degrees.
        pub longitude: Option<f64>,
        /// UTC offset such as +9:30.
        pub timezone_offset: Option<String>,
        /// E-mail address.
        pub email: String,
        /// Login name.
        pub username: String,
        /// Date of birth.
        pub dob: Option<DateTime<Utc>>,
        /// When the user registered.
        pub registered_date: Option<DateTime<Utc>>,
        /// Phone number.
        pub phone: Option<String>,
        /// Mobile number.
        pub cell: Option<String>,
        /// URL of the large picture.
        pub picture: Option<String>,
        /// Two-letter nationality code such as US or FR.
        pub nat: Option<String>,
        /// Where the record came from: randomuser or synthetic.
        pub source: String,
        /// When the producer fetched or generated the record.
        pub fetched_at: DateTime<Utc>,
        /// When the producer published the event.
        pub produced_at: DateTime<Utc>,
    }
}

record! {
    /// A row of `spark_streams.created_users`: the seed's columns plus enrichment.
    #[derive(Debug, Clone, PartialEq)]
    pub struct CreatedUserRow {
        /// Primary key: the user id.
        pub id: Uuid,
        /// Given name.
        pub first_name: String,
        /// Family name.
        pub last_name: String,
        /// Gender.
        pub gender: Option<String>,
        /// E-mail address.
        pub email: String,
        /// Login name.
        pub username: String,
        /// Phone number.
        pub phone: Option<String>,
        /// Postal address: number street, city, state, country.
        pub address: Option<String>,
        /// Postal code as text.
        pub post_code: Option<String>,
        /// Date of birth.
        pub dob: Option<DateTime<Utc>>,
        /// When the user registered.
        pub registered_date: Option<DateTime<Utc>>,
        /// URL of the large picture.
        pub picture: Option<String>,
        /// Event time: when the producer fetched the record.
        pub timestamp: DateTime<Utc>,
        /// Age in whole years at processing time, from dob.
        pub age: Option<i32>,
        /// Domain part of the e-mail address, lower case.
        pub email_domain: Option<String>,
        /// Nationality code, upper case.
        pub nationality: Option<String>,
        /// When the producer published the event.
        pub produced_at: DateTime<Utc>,
        /// When the engine processed the event.
        pub processed_at: DateTime<Utc>,
        /// Which engine wrote the row: spark or datafusion.
        pub engine: String,
    }
}
