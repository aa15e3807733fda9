//! Spark Connect authentication on the launcher's side: the token in the state folder's
//! secrets, and the token interceptor (cluster/java/, built by `make deps`) on the server.
//!
//! Spark 3.5's Connect server listens on every interface (it has no bind-address setting; 4.x
//! has `spark.connect.grpc.binding.address`). The interceptor therefore does two things: it
//! refuses calls from non-loopback peers (PERMISSION_DENIED) and calls without the right
//! `authorization: Bearer <token>` (UNAUTHENTICATED). The token reaches it as a file path in
//! an environment variable, never on a command line, so it shows in no log, `ps` or Spark UI.

use std::path::{Path, PathBuf};

use pipeline_core::Config;

use crate::layout::{absolute, Layout};
use crate::process::Launch;
use crate::services::{write_secret, ServiceError};

/// The interceptor's class, for `spark.connect.grpc.interceptor.classes`.
pub const INTERCEPTOR_CLASS: &str = "pipeline.connect.TokenInterceptor";
/// Where `make deps` (cluster/scripts/connect-auth.sh) puts the interceptor, under the artifacts.
pub const INTERCEPTOR_JAR: &str = "spark/auth/pipeline-connect-auth.jar";
/// Environment variables the interceptor reads.
pub const TOKEN_FILE_ENV: &str = "PIPELINE_CONNECT_TOKEN_FILE";
/// The token itself (docker-compose); the launcher passes the file instead.
pub const TOKEN_ENV: &str = "PIPELINE_CONNECT_TOKEN";
pub const LOOPBACK_ONLY_ENV: &str = "PIPELINE_CONNECT_LOOPBACK_ONLY";

/// The interceptor jar of this layout.
pub fn interceptor_jar(layout: &Layout) -> PathBuf {
    layout.artifacts.join(INTERCEPTOR_JAR)
}

/// The token file, created with a fresh random token (mode 0600) when it does not exist yet
/// (with `spark.connect_token` when that override is set). An existing file is kept, so
/// clients and a restarted server agree; an unreadable or invalid one, or one that differs
/// from the override, is an error.
pub fn ensure_token(config: &Config) -> Result<PathBuf, ServiceError> {
    // Relative paths resolve against the working directory, like the state folder's.
    let file = absolute(&config.connect_token_file());
    let invalid = |e: pipeline_core::connect::ConnectUrlError| ServiceError::Config(e.to_string());
    let wanted = pipeline_core::connect::client_token(config).map_err(invalid)?;
    match pipeline_core::connect::read_token(&file).map_err(invalid)? {
        Some(existing) => match wanted {
            Some(w) if w != existing => Err(ServiceError::Config(format!(
                "PIPELINE__SPARK__CONNECT_TOKEN differs from the token in {}; unset it or remove the file",
                file.display()
            ))),
            _ => Ok(file),
        },
        None => {
            write_secret(&file, &wanted.unwrap_or_else(random_token))?;
            Ok(file)
        }
    }
}

/// 43 characters of letters and digits: about 256 bits.
fn random_token() -> String {
    use rand::distr::{Alphanumeric, SampleString};
    Alphanumeric.sample_string(&mut rand::rng(), 43)
}

/// The Connect server's settings for the interceptor: its class, and its jar on the driver's
/// class path after the connector jars.
pub fn spark_conf(layout: &Layout, driver_class_path: &str) -> Vec<(&'static str, String)> {
    vec![
        ("spark.driver.extraClassPath", format!("{driver_class_path}:{}", interceptor_jar(layout).to_string_lossy())),
        ("spark.connect.grpc.interceptor.classes", INTERCEPTOR_CLASS.to_string()),
    ]
}

/// The environment the interceptor reads its token file and peer policy from: calls from
/// other hosts are refused while the services bind to a loopback `cluster.host`.
pub fn server_env(launch: Launch, token_file: &Path, host: &str) -> Launch {
    let loopback = host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
    launch.env(TOKEN_FILE_ENV, token_file.to_string_lossy()).env(LOOPBACK_ONLY_ENV, loopback.to_string())
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    #[test]
    fn a_token_is_created_once_private_and_kept() {
        use std::os::unix::fs::PermissionsExt;
        let state = std::env::temp_dir().join(format!("pipeline-auth-test-{}", uuid::Uuid::new_v4()));
        let mut config = Config::defaults();
        config.cluster.state_dir = state.clone();
        let file = ensure_token(&config).unwrap();
        assert_eq!(file, state.join("secrets/spark-connect.token"));
        let token = fs::read_to_string(&file).unwrap();
        assert_eq!(token.len(), 43);
        assert_eq!(fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(ensure_token(&config).unwrap(), file);
        assert_eq!(fs::read_to_string(&file).unwrap(), token, "an existing token is kept");
        assert_ne!(random_token(), token);
        fs::remove_dir_all(state).unwrap();
    }
}
