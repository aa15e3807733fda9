//! Typed setting values: each is parsed once, when the config loads, so the code never handles
//! a string it must check again. Their parse errors name the accepted values.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Implements `Deserialize`/`Serialize` through `FromStr`/`Display`, so a bad value's error is
/// the parse message.
macro_rules! string_serde {
    ($ty:ty) => {
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
    };
}

/// An enum of named values: `ALL`, `as_str`, `FromStr` (the error lists the accepted names),
/// `Display` and serde through them.
macro_rules! named_enum {
    ($(#[$doc:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $name {
            $($variant),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                Self::ALL.iter().copied().find(|v| v.as_str() == s).ok_or_else(|| {
                    format!("`{s}` is not one of {}", Self::ALL.iter().map(|v| v.as_str()).collect::<Vec<_>>().join(", "))
                })
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
        string_serde!($name);
    };
}

named_enum! {
    /// Compression of produced Kafka batches (librdkafka's `compression.type`).
    Compression { None => "none", Gzip => "gzip", Snappy => "snappy", Lz4 => "lz4", Zstd => "zstd" }
}

named_enum! {
    /// Compatibility level of a registry subject, as the registry API names it.
    Compatibility {
        None => "NONE",
        Backward => "BACKWARD",
        BackwardTransitive => "BACKWARD_TRANSITIVE",
        Forward => "FORWARD",
        ForwardTransitive => "FORWARD_TRANSITIVE",
        Full => "FULL",
        FullTransitive => "FULL_TRANSITIVE",
    }
}

/// Where a new consumer (the Spark query, the local engine's group) starts reading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartingOffsets {
    Earliest,
    Latest,
    /// Spark's per-partition JSON (`{"topic":{"0":23,"1":-2}}`); the local engine treats it
    /// as `earliest` (its group's committed offsets decide).
    Offsets(String),
}

impl StartingOffsets {
    /// Spark's `startingOffsets` option.
    pub fn spark_option(&self) -> &str {
        match self {
            StartingOffsets::Earliest => "earliest",
            StartingOffsets::Latest => "latest",
            StartingOffsets::Offsets(json) => json,
        }
    }

    /// librdkafka's `auto.offset.reset` for a group without committed offsets.
    pub fn auto_offset_reset(&self) -> &'static str {
        match self {
            StartingOffsets::Latest => "latest",
            StartingOffsets::Earliest | StartingOffsets::Offsets(_) => "earliest",
        }
    }
}

impl FromStr for StartingOffsets {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "earliest" => Ok(StartingOffsets::Earliest),
            "latest" => Ok(StartingOffsets::Latest),
            json if json.trim_start().starts_with('{') => serde_json::from_str::<serde_json::Value>(json)
                .map(|_| StartingOffsets::Offsets(json.to_string()))
                .map_err(|e| format!("`{json}` is not valid JSON: {e}")),
            other => Err(format!("`{other}` must be earliest, latest or a JSON offsets object")),
        }
    }
}

impl fmt::Display for StartingOffsets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.spark_option())
    }
}
string_serde!(StartingOffsets);

/// A duration written with its unit, as Spark writes intervals: `"2 seconds"`, `"500
/// milliseconds"`, `"1 minute"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interval(pub Duration);

impl Interval {
    /// The interval in Spark's syntax (milliseconds, exact).
    pub fn spark(self) -> String {
        format!("{} milliseconds", self.0.as_millis())
    }
}

impl FromStr for Interval {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let mut parts = s.split_whitespace();
        let bad =
            || format!("`{s}` is not an interval such as \"2 seconds\" (units: milliseconds, seconds, minutes, hours)");
        let (Some(n), Some(unit), None) = (parts.next(), parts.next(), parts.next()) else { return Err(bad()) };
        let n: u64 = n.parse().map_err(|_| bad())?;
        let ms = match unit.trim_end_matches('s') {
            "millisecond" => 1,
            "second" => 1_000,
            "minute" => 60_000,
            "hour" => 3_600_000,
            _ => return Err(bad()),
        };
        Ok(Interval(Duration::from_millis(n.saturating_mul(ms))))
    }
}

impl fmt::Display for Interval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.spark())
    }
}
string_serde!(Interval);

/// `host:port`, where the host may be a name (`cassandra:9042` under compose) or an IP.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostPort {
    pub host: String,
    pub port: u16,
}

impl FromStr for HostPort {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("`{s}` is not host:port");
        let (host, port) = s.rsplit_once(':').ok_or_else(bad)?;
        let port = port.parse().map_err(|_| bad())?;
        if host.is_empty() {
            return Err(bad());
        }
        Ok(HostPort { host: host.to_string(), port })
    }
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}
string_serde!(HostPort);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_parse_once_and_print_back() {
        assert_eq!("lz4".parse::<Compression>(), Ok(Compression::Lz4));
        assert!("brotli".parse::<Compression>().unwrap_err().contains("none, gzip, snappy, lz4, zstd"));
        assert_eq!("BACKWARD".parse::<Compatibility>().map(|c| c.as_str()), Ok("BACKWARD"));
        assert!("backward".parse::<Compatibility>().is_err());
        assert_eq!("latest".parse::<StartingOffsets>().map(|o| o.auto_offset_reset()), Ok("latest"));
        let json: StartingOffsets = r#"{"t":{"0":5}}"#.parse().expect("json offsets");
        assert_eq!((json.spark_option(), json.auto_offset_reset()), (r#"{"t":{"0":5}}"#, "earliest"));
        assert!("{oops".parse::<StartingOffsets>().is_err());
        assert_eq!("2 seconds".parse::<Interval>(), Ok(Interval(Duration::from_secs(2))));
        assert_eq!("1 minute".parse::<Interval>().map(Interval::spark), Ok("60000 milliseconds".into()));
        assert!("2 fortnights".parse::<Interval>().is_err() && "soon".parse::<Interval>().is_err());
        assert_eq!("cassandra:9042".parse::<HostPort>().map(|h| h.to_string()), Ok("cassandra:9042".into()));
        assert!("cassandra".parse::<HostPort>().is_err() && ":9042".parse::<HostPort>().is_err());
    }
}
