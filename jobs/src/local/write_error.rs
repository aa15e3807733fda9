//! Cassandra write errors, classified: transient ones (timeouts, node unavailable or
//! overloaded, broken connections) are retried with backoff; permanent ones (the statement or
//! its values no longer fit the table, missing grants) stop the engine, since retrying cannot
//! help and would only hide the stall.

use scylla::errors::{DbError, ExecutionError, PrepareError, RequestAttemptError};

/// What to do about a failed write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteErrorClass {
    /// Retry with backoff (the cluster is down, slow or busy).
    Transient,
    /// Stop: the same write will fail again until someone changes the table, grant or code.
    Permanent,
}

/// Classifies a write error. Anything not known to be permanent is transient: a wrong
/// "transient" costs a stall the retry log shows, a wrong "permanent" a needless stop.
pub fn classify(e: &ExecutionError) -> WriteErrorClass {
    use WriteErrorClass::{Permanent, Transient};
    match e {
        // The values do not serialize into the statement's column types.
        ExecutionError::BadQuery(_) => Permanent,
        ExecutionError::LastAttemptError(attempt) => classify_attempt(attempt),
        ExecutionError::PrepareError(PrepareError::AllAttemptsFailed { first_attempt }) => {
            classify_attempt(first_attempt)
        }
        _ => Transient,
    }
}

fn classify_attempt(e: &RequestAttemptError) -> WriteErrorClass {
    use WriteErrorClass::{Permanent, Transient};
    match e {
        RequestAttemptError::SerializationError(_) | RequestAttemptError::CqlRequestSerialization(_) => Permanent,
        RequestAttemptError::DbError(
            DbError::SyntaxError
            | DbError::Invalid
            | DbError::AlreadyExists { .. }
            | DbError::FunctionFailure { .. }
            | DbError::AuthenticationError
            | DbError::Unauthorized
            | DbError::ConfigError
            | DbError::ProtocolError,
            _,
        ) => Permanent,
        // The table was recreated under the statement (its id changed): the statement must be
        // prepared again, which only a restart does.
        RequestAttemptError::RepreparedIdChanged { .. } => Permanent,
        _ => Transient,
    }
}

/// The column a permanent error is about, when its message names exactly one of `columns`
/// (e.g. Cassandra's "Undefined column name age in table ks.t").
pub fn column_named(message: &str, columns: &[&'static str]) -> Option<&'static str> {
    let words: Vec<&str> = message.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).collect();
    let mut named = columns.iter().filter(|c| words.contains(c));
    match (named.next(), named.next()) {
        (Some(one), None) => Some(one),
        _ => None,
    }
}

/// Unit tests build errors by hand: no server can be made to answer `Unauthorized` here.
#[cfg(test)]
mod tests {
    use super::*;
    use scylla::errors::BadQuery;

    fn db(e: DbError) -> ExecutionError {
        ExecutionError::LastAttemptError(RequestAttemptError::DbError(e, "message".into()))
    }

    #[test]
    fn schema_query_and_grant_errors_are_permanent() {
        for e in [DbError::Invalid, DbError::SyntaxError, DbError::Unauthorized, DbError::ConfigError] {
            assert_eq!(classify(&db(e.clone())), WriteErrorClass::Permanent, "{e:?}");
        }
        let bad = ExecutionError::BadQuery(BadQuery::ValuesTooLongForKey(70_000, 65_535));
        assert_eq!(classify(&bad), WriteErrorClass::Permanent);
        let prepare = ExecutionError::PrepareError(PrepareError::AllAttemptsFailed {
            first_attempt: RequestAttemptError::DbError(DbError::Invalid, "Undefined column name age".into()),
        });
        assert_eq!(classify(&prepare), WriteErrorClass::Permanent);
    }

    #[test]
    fn timeouts_unavailability_and_overload_are_transient() {
        use scylla::errors::{BrokenConnectionErrorKind, WriteType};
        use scylla::statement::Consistency;
        use std::net::{IpAddr, Ipv4Addr};
        let transient = [
            db(DbError::Overloaded),
            db(DbError::IsBootstrapping),
            db(DbError::Unavailable { consistency: Consistency::One, required: 1, alive: 0 }),
            db(DbError::WriteTimeout {
                consistency: Consistency::One,
                received: 0,
                required: 1,
                write_type: WriteType::Simple,
            }),
            ExecutionError::RequestTimeout(std::time::Duration::from_secs(5)),
            ExecutionError::EmptyPlan,
            ExecutionError::LastAttemptError(RequestAttemptError::BrokenConnectionError(
                BrokenConnectionErrorKind::KeepaliveTimeout(IpAddr::V4(Ipv4Addr::LOCALHOST)).into(),
            )),
        ];
        for e in transient {
            assert_eq!(classify(&e), WriteErrorClass::Transient, "{e:?}");
        }
    }

    #[test]
    fn the_column_is_named_only_when_unambiguous() {
        let columns = ["id", "age", "email", "email_domain"];
        assert_eq!(column_named("Undefined column name age in table it_ks_1.created_users", &columns), Some("age"));
        assert_eq!(column_named("Undefined column name email_domain in table ks.t", &columns), Some("email_domain"));
        assert_eq!(column_named("Invalid value for age or email", &columns), None);
        assert_eq!(column_named("Keyspace ks does not exist", &columns), None);
    }
}
