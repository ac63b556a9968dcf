//! The box's configuration file (TOML, `/etc/intercom/intercom.toml` by default).
//!
//! Every key is optional; a missing default file means all defaults. Unknown keys and
//! bad values are rejected with an error naming the key and the file.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Where the box looks for its configuration when `--config` is not given.
pub const DEFAULT_PATH: &str = "/etc/intercom/intercom.toml";

/// The TCP port of the signaling channel unless configured.
pub const DEFAULT_TCP_PORT: u16 = 7300;

/// A configuration that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read the config file {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Not TOML, an unknown key or a wrong type (the parser's message names the key).
    #[error("config file {path}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's error.
        #[source]
        source: toml::de::Error,
    },
    /// A value out of range.
    #[error("config file {path}: key `{key}`: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The key.
        key: &'static str,
        /// What is wrong and what is allowed.
        reason: String,
    },
}

/// The box's settings.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Board profile: a built-in name or a path.
    pub board: String,
    /// The name shown on the display and announced on the LAN.
    pub device_name: String,
    /// TCP port of the signaling channel.
    pub tcp_port: u16,
    /// STUN servers (`stun:host:port`); none by default, so no traffic leaves the LAN.
    pub stun_servers: Vec<String>,
    /// Seconds a room stays open without a successful join.
    pub room_expiry_secs: u64,
    /// Whether the QR code carries the PIN.
    pub qr_includes_pin: bool,
    /// Network interfaces for discovery and the QR code's addresses (`eth0`, `wlan0`,
    /// `lo`); empty = every interface.
    pub lan_interfaces: Vec<String>,
    /// Whether phones may pair over Bluetooth LE while a room is open (on boards that
    /// have Bluetooth).
    pub bluetooth: bool,
    /// The online mode's rendezvous, a magic-wormhole mailbox server (`ws://…/v1` or
    /// `wss://…/v1`); none by default: LAN and Bluetooth only.
    pub rendezvous_url: Option<String>,
    /// A PEM file of the CA a `wss://` rendezvous's certificate must chain to (a
    /// self-hosted server); without it, the system's roots.
    pub rendezvous_ca: Option<PathBuf>,
    /// TURN servers that may relay a call's media when no direct path exists; none by
    /// default, so media never goes through a server.
    pub turn_servers: Vec<TurnConfig>,
    /// An HTTPS origin serving the web client (`web/`): the QR code becomes a link into
    /// it that a phone's camera opens; none: the `intercom:` form.
    pub web_client_url: Option<String>,
    /// Cancel the speaker's echo in the microphone. Unset: the board's profile decides
    /// (on where the microphone hears the speaker, see `[audio] speakerphone`).
    pub echo_cancellation: Option<bool>,
    /// Suppress steady background noise (a street, a fan) in the microphone. Unset: the
    /// board's profile decides, as for `echo_cancellation`.
    pub noise_suppression: Option<bool>,
}

/// One TURN server: `[[turn_servers]]` with `urls` and either a long-term `username` +
/// `credential`, or coturn's REST `secret` (`use-auth-secret`), from which the box makes
/// a fresh time-limited credential for each call.
#[derive(Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TurnConfig {
    /// `turn:host:port?transport=udp` (or `turns:`) URLs.
    pub urls: Vec<String>,
    /// The user name (long-term), or the name put in REST credentials (default
    /// `intercom`).
    pub username: Option<String>,
    /// The long-term password.
    pub credential: Option<String>,
    /// The shared REST secret.
    pub secret: Option<String>,
}

impl std::fmt::Debug for TurnConfig {
    // Passwords and secrets are not for logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TurnConfig")
            .field("urls", &self.urls)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            board: "sim".into(),
            device_name: "intercom".into(),
            tcp_port: DEFAULT_TCP_PORT,
            stun_servers: Vec::new(),
            room_expiry_secs: 300,
            qr_includes_pin: true,
            lan_interfaces: Vec::new(),
            bluetooth: true,
            rendezvous_url: None,
            rendezvous_ca: None,
            turn_servers: Vec::new(),
            web_client_url: None,
            echo_cancellation: None,
            noise_suppression: None,
        }
    }
}

impl Config {
    /// Loads `path`, or the default file; a missing default file gives the defaults.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let (path, explicit) = match path {
            Some(p) => (p.to_path_buf(), true),
            None => (PathBuf::from(DEFAULT_PATH), false),
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => Config::parse(&text, &path),
            Err(e) if !explicit && e.kind() == std::io::ErrorKind::NotFound => {
                Ok(Config::default())
            }
            Err(source) => Err(ConfigError::Read { path, source }),
        }
    }

    /// Parses and validates configuration text; `path` names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|source| ConfigError::Parse {
            path: path.into(),
            source,
        })?;
        config.validate(path)?;
        Ok(config)
    }

    /// How long a room stays open.
    pub fn room_expiry(&self) -> Duration {
        Duration::from_secs(self.room_expiry_secs)
    }

    fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid = |key, reason: String| ConfigError::Invalid {
            path: path.into(),
            key,
            reason,
        };
        let name_len = self.device_name.chars().count();
        if !(1..=32).contains(&name_len) || self.device_name.chars().any(char::is_control) {
            return Err(invalid(
                "device_name",
                "must be 1 to 32 printable characters".into(),
            ));
        }
        if self.tcp_port == 0 {
            return Err(invalid("tcp_port", "must be 1 to 65535".into()));
        }
        if !(30..=3600).contains(&self.room_expiry_secs) {
            return Err(invalid(
                "room_expiry_secs",
                format!("{} is outside 30 to 3600 seconds", self.room_expiry_secs),
            ));
        }
        if let Some(bad) = self
            .lan_interfaces
            .iter()
            .find(|i| i.is_empty() || i.len() > 15 || i.contains(['/', ' ']))
        {
            return Err(invalid(
                "lan_interfaces",
                format!("{bad:?} is not a network interface name"),
            ));
        }
        if let Some(url) = &self.rendezvous_url {
            let rest = url
                .strip_prefix("wss://")
                .or_else(|| url.strip_prefix("ws://"));
            if rest.is_none_or(|r| r.is_empty() || r.contains(char::is_whitespace)) {
                return Err(invalid(
                    "rendezvous_url",
                    format!("{url:?} is not a ws:// or wss:// URL (e.g. \"wss://rendezvous.example.org:4000/v1\")"),
                ));
            }
        }
        for server in &self.stun_servers {
            let rest = server
                .strip_prefix("stun:")
                .or_else(|| server.strip_prefix("stuns:"));
            let ok = rest.is_some_and(|r| {
                !r.is_empty() && !r.starts_with(':') && !r.contains(char::is_whitespace)
            });
            if !ok {
                return Err(invalid(
                    "stun_servers",
                    format!("{server:?} is not a STUN URL like \"stun:stun.example.org:3478\""),
                ));
            }
        }
        if let Some(url) = &self.web_client_url {
            // What an invitation link may start with (the pairing core reads it back the
            // same way); config is a leaf and checks it itself.
            let ok = url.strip_prefix("https://").is_some_and(|rest| {
                !rest.is_empty()
                    && !rest.starts_with('/')
                    && !url.contains('#')
                    && !url.chars().any(|c| c.is_whitespace() || c.is_control())
            });
            if !ok {
                return Err(invalid(
                    "web_client_url",
                    format!("{url:?} is not an https:// URL without a # part (e.g. \"https://intercom.example.org/\")"),
                ));
            }
        }
        for turn in &self.turn_servers {
            let bad_url = turn.urls.iter().find(|u| {
                let rest = u.strip_prefix("turn:").or_else(|| u.strip_prefix("turns:"));
                rest.is_none_or(|r| r.is_empty() || r.starts_with(':') || r.contains(' '))
            });
            if turn.urls.is_empty() || bad_url.is_some() {
                return Err(invalid(
                    "turn_servers",
                    format!(
                        "{:?} is not a TURN URL like \"turn:turn.example.org:3478?transport=udp\"",
                        bad_url.map(String::as_str).unwrap_or("")
                    ),
                ));
            }
            match (&turn.username, &turn.credential, &turn.secret) {
                (Some(_), Some(_), None) | (_, None, Some(_)) => {}
                _ => {
                    return Err(invalid(
                        "turn_servers",
                        "each server needs either username and credential, or secret".into(),
                    ))
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, String> {
        Config::parse(text, Path::new("/etc/intercom/test.toml"))
            .map_err(|e| crate::errors::chain(&e))
    }

    #[test]
    fn empty_file_gives_defaults() {
        assert_eq!(parse("").unwrap(), Config::default());
        assert_eq!(Config::default().tcp_port, 7300);
        assert!(Config::default().stun_servers.is_empty());
    }

    #[test]
    fn full_file_parses() {
        let c = parse(
            "board = \"rpi4-ssd1306\"\ndevice_name = \"Front door\"\ntcp_port = 7400\n\
             stun_servers = [\"stun:stun.example.org:3478\"]\nroom_expiry_secs = 120\n\
             qr_includes_pin = false\n",
        )
        .unwrap();
        assert_eq!(c.device_name, "Front door");
        assert_eq!(c.room_expiry(), Duration::from_secs(120));
        assert!(!c.qr_includes_pin);
    }

    #[test]
    fn unknown_key_is_named_with_the_file() {
        let err = parse("tcp_prot = 7300\n").unwrap_err();
        assert!(
            err.contains("tcp_prot") && err.contains("test.toml"),
            "{err}"
        );
    }

    #[test]
    fn bad_values_are_named_with_the_file() {
        for (text, key) in [
            ("tcp_port = 0", "tcp_port"),
            ("tcp_port = 70000", "tcp_port"),
            ("tcp_port = \"x\"", "tcp_port"),
            ("room_expiry_secs = 5", "room_expiry_secs"),
            ("device_name = \"\"", "device_name"),
            ("stun_servers = [\"example.org\"]", "stun_servers"),
            (
                "rendezvous_url = \"http://rv.example.org/v1\"",
                "rendezvous_url",
            ),
            (
                "[[turn_servers]]\nurls = [\"stun:x.org\"]\nsecret = \"s\"",
                "turn_servers",
            ),
            (
                "[[turn_servers]]\nurls = [\"turn:x.org\"]\ncredential = \"c\"",
                "turn_servers",
            ),
            (
                "[[turn_servers]]\nurls = []\nsecret = \"s\"",
                "turn_servers",
            ),
        ] {
            let err = parse(text).unwrap_err();
            assert!(
                err.contains(key) && err.contains("test.toml"),
                "{text}: {err}"
            );
        }
    }

    #[test]
    fn turn_servers_take_long_term_or_rest_credentials_and_hide_them() {
        let c = parse(
            "[[turn_servers]]\nurls = [\"turn:turn.example.org:3478?transport=udp\"]\n\
             username = \"door\"\ncredential = \"hunter2\"\n\
             [[turn_servers]]\nurls = [\"turns:turn.example.org:5349\"]\nsecret = \"s3cret\"\n",
        )
        .unwrap();
        assert_eq!(c.turn_servers.len(), 2);
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("s3cret"),
            "{shown}"
        );
    }

    #[test]
    fn missing_default_file_means_defaults_but_missing_explicit_file_is_an_error() {
        let err = Config::load(Some(Path::new("/nonexistent/intercom.toml"))).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/intercom.toml"));
        if !Path::new(DEFAULT_PATH).exists() {
            assert_eq!(Config::load(None).unwrap(), Config::default());
        }
    }
}
