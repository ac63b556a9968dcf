//! TURN credentials for one call, from the configured servers: long-term ones as they
//! are, coturn's REST ones (`use-auth-secret`) made fresh: the user name is
//! `<expiry unix time>:<name>` and the password base64(HMAC-SHA1(secret, user name)), so
//! a credential seen on the wire stops working a day later.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use hmac::{Hmac, Mac};

use crate::call::TurnServer;
use crate::config::TurnConfig;

/// How long a REST credential stays valid: a call longer than this keeps its
/// allocation (refreshes need no new credential), only a new call needs a new one.
const REST_VALID: Duration = Duration::from_secs(24 * 3600);

/// The servers with credentials for a call starting at `now`.
pub(super) fn servers(config: &[TurnConfig], now: SystemTime) -> Vec<TurnServer> {
    config
        .iter()
        .map(|t| {
            let (username, credential) = match (&t.secret, &t.credential) {
                (Some(secret), _) => {
                    rest_credential(secret, t.username.as_deref().unwrap_or("intercom"), now)
                }
                (None, credential) => (
                    t.username.clone().unwrap_or_default(),
                    credential.clone().unwrap_or_default(),
                ),
            };
            TurnServer {
                urls: t.urls.clone(),
                username,
                credential,
            }
        })
        .collect()
}

fn rest_credential(secret: &str, name: &str, now: SystemTime) -> (String, String) {
    let expiry = (now + REST_VALID)
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let username = format!("{expiry}:{name}");
    // HMAC takes a key of any length.
    let mut mac =
        Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes()).expect("HMAC accepts any key length");
    mac.update(username.as_bytes());
    let password = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    (username, password)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rest_credentials_follow_coturns_scheme() {
        // Worked by hand with `printf '%s' '1700086400:intercom' | openssl dgst -sha1
        // -hmac secret -binary | base64`.
        let at = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let config = TurnConfig {
            urls: vec!["turn:192.0.2.1:3478".into()],
            username: None,
            credential: None,
            secret: Some("secret".into()),
        };
        let s = &servers(&[config], at)[0];
        assert_eq!(s.username, "1700086400:intercom");
        assert_eq!(s.credential, "BwQELfOPf0eHDgeeM9tblyuybPk=");
    }

    #[test]
    fn long_term_credentials_pass_through() {
        let config = TurnConfig {
            urls: vec!["turn:192.0.2.1:3478".into()],
            username: Some("door".into()),
            credential: Some("pw".into()),
            secret: None,
        };
        let s = &servers(&[config], SystemTime::now())[0];
        assert_eq!((s.username.as_str(), s.credential.as_str()), ("door", "pw"));
    }
}
