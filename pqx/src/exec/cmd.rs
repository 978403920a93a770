//! What a task asks to run (its `cmd`), in the original PQX's JSON form: an externally tagged enum
//! whose variant names and fields are the wire format. How each becomes a process is in
//! `process.rs`; an `Http` command is sent by `http.rs`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::InvalidField;

/// What to run. JSON names and fields are the original PQX's; `Python` and `Http` are new and
/// follow the same externally tagged form. Optional fields may be left out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub enum Cmd {
    /// `ping -c COUNT ADDR`; succeeds when replies come back.
    Ping {
        addr: String,
        /// Echo requests to send (default [`crate::exec::DEFAULT_PING_COUNT`]; the original
        /// pinged forever).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        count: Option<u32>,
    },
    /// `bash -c CMD[0] CMD[1..]`: the first element is the script, the rest become `$0`, `$1`, ...
    Bash { cmd: Vec<String> },
    /// `ssh USER@IP CMD...`, non-interactive (key or agent authentication only).
    Ssh {
        ip: String,
        user: String,
        cmd: Vec<String>,
        /// The ssh port (default: the client's configuration, usually 22).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        port: Option<u16>,
    },
    /// `ssh` with a password, given to sshpass through its environment, never on a command line.
    /// `pass` may be `${VAR}`, read from the subscriber's environment.
    Sshpass {
        ip: String,
        user: String,
        pass: String,
        cmd: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        port: Option<u16>,
    },
    /// `conda run -n ENV --live-stream python -u SCRIPT` in DIR (conda, mamba or micromamba).
    CondaPython {
        env: String,
        dir: String,
        script: String,
    },
    /// `python3 -u SCRIPT ARGS...` in DIR, or the virtualenv's python when `venv` is given.
    Python {
        dir: String,
        script: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        args: Vec<String>,
        /// A virtualenv directory: its `bin/python` runs the script.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        venv: Option<String>,
    },
    /// `docker exec CONTAINER CMD...` (or `podman exec`, see
    /// [`crate::exec::CONTAINER_ENGINE_VAR`]).
    DockerExec { container: String, cmd: Vec<String> },
    /// An HTTP request; it succeeds when the response status is 2xx.
    Http {
        /// GET, POST, PUT, ... (case does not matter).
        method: String,
        url: String,
        #[serde(
            default,
            skip_serializing_if = "BTreeMap::is_empty",
            deserialize_with = "pqx_util::unique_keys::map"
        )]
        headers: BTreeMap<String, String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        body: Option<String>,
    },
}

impl Cmd {
    /// The variant's JSON name, for logs and error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Cmd::Ping { .. } => "Ping",
            Cmd::Bash { .. } => "Bash",
            Cmd::Ssh { .. } => "Ssh",
            Cmd::Sshpass { .. } => "Sshpass",
            Cmd::CondaPython { .. } => "CondaPython",
            Cmd::DockerExec { .. } => "DockerExec",
            Cmd::Python { .. } => "Python",
            Cmd::Http { .. } => "Http",
        }
    }

    /// A copy fit for records and logs: secrets replaced by `***` (an Sshpass password, Http
    /// headers that carry credentials, credentials written into an Http URL).
    pub fn redacted(&self) -> Cmd {
        match self {
            Cmd::Http {
                method,
                url,
                headers,
                body,
            } => Cmd::Http {
                method: method.clone(),
                url: pqx_util::redact_url(url),
                headers: headers
                    .iter()
                    .map(|(name, value)| {
                        let value = if is_credential_header(name) {
                            "***".to_owned()
                        } else {
                            value.clone()
                        };
                        (name.clone(), value)
                    })
                    .collect(),
                body: body.clone(),
            },
            Cmd::Sshpass {
                ip,
                user,
                cmd,
                port,
                ..
            } => Cmd::Sshpass {
                ip: ip.clone(),
                user: user.clone(),
                pass: "***".into(),
                cmd: cmd.clone(),
                port: *port,
            },
            other => other.clone(),
        }
    }

    /// Checks what can be checked before publishing: no empty command lists or names, a count of
    /// at least one ping, an HTTP method that exists.
    pub fn validate(&self) -> Result<(), InvalidField> {
        let required: &[(&str, bool)] = match self {
            Cmd::Ping { addr, count } => {
                if *count == Some(0) {
                    return Err(self.invalid("count", "must be at least 1"));
                }
                &[("addr", addr.is_empty())]
            }
            Cmd::Bash { cmd } => &[("cmd", cmd.is_empty())],
            Cmd::Ssh { ip, user, cmd, .. } | Cmd::Sshpass { ip, user, cmd, .. } => &[
                ("ip", ip.is_empty()),
                ("user", user.is_empty()),
                ("cmd", cmd.is_empty()),
            ],
            Cmd::CondaPython { env, script, .. } => {
                &[("env", env.is_empty()), ("script", script.is_empty())]
            }
            Cmd::DockerExec { container, cmd } => {
                &[("container", container.is_empty()), ("cmd", cmd.is_empty())]
            }
            Cmd::Python { script, .. } => &[("script", script.is_empty())],
            Cmd::Http { method, url, .. } => {
                if reqwest::Method::from_bytes(method.to_ascii_uppercase().as_bytes()).is_err() {
                    return Err(self.invalid("method", format!("{method:?} is not an HTTP method")));
                }
                &[("url", url.is_empty())]
            }
        };
        match required.iter().find(|(_, empty)| *empty) {
            Some((field, _)) => Err(self.invalid(field, "must not be empty")),
            None => Ok(()),
        }
    }

    /// An error about `cmd.<Kind>.<field>`.
    pub(crate) fn invalid(&self, field: &str, problem: impl Into<String>) -> InvalidField {
        InvalidField::new(format!("cmd.{}.{field}", self.kind()), problem)
    }
}

/// Whether an HTTP header carries a credential, to be redacted like a password.
fn is_credential_header(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    matches!(
        name.as_str(),
        "authorization" | "proxy-authorization" | "cookie"
    ) || ["token", "secret", "api-key", "apikey", "password"]
        .iter()
        .any(|part| name.contains(part))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_original_json() {
        let cmd: Cmd = serde_json::from_str(
            r#"{"CondaPython":{"env":"py310","dir":"$HOME/Code/pqx/scripts","script":"print_csv_in_line.py"}}"#,
        )
        .unwrap();
        assert_eq!(
            cmd,
            Cmd::CondaPython {
                env: "py310".into(),
                dir: "$HOME/Code/pqx/scripts".into(),
                script: "print_csv_in_line.py".into(),
            }
        );
    }

    #[test]
    fn unknown_variant_and_field_are_named() {
        let err = serde_json::from_str::<Cmd>(r#"{"Bsh":{"cmd":["x"]}}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown variant `Bsh`"), "{err}");
        let err = serde_json::from_str::<Cmd>(r#"{"Bash":{"cmd":["x"],"shell":"zsh"}}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `shell`"), "{err}");
    }

    #[test]
    fn http_method_is_checked() {
        let cmd: Cmd =
            serde_json::from_str(r#"{"Http":{"method":"FE TCH","url":"http://127.0.0.1/"}}"#)
                .unwrap();
        assert_eq!(
            cmd.validate().unwrap_err().to_string(),
            "cmd.Http.method: \"FE TCH\" is not an HTTP method"
        );
    }

    #[test]
    fn empty_fields_are_named() {
        let cases = [
            (r#"{"Bash":{"cmd":[]}}"#, "cmd.Bash.cmd: must not be empty"),
            (
                r#"{"Ssh":{"ip":"h","user":"","cmd":["true"]}}"#,
                "cmd.Ssh.user: must not be empty",
            ),
            (
                r#"{"DockerExec":{"container":"","cmd":["true"]}}"#,
                "cmd.DockerExec.container: must not be empty",
            ),
            (
                r#"{"Ping":{"addr":"h","count":0}}"#,
                "cmd.Ping.count: must be at least 1",
            ),
        ];
        for (json, want) in cases {
            let cmd: Cmd = serde_json::from_str(json).unwrap();
            assert_eq!(cmd.validate().unwrap_err().to_string(), want, "{json}");
        }
        let fine: Cmd = serde_json::from_str(r#"{"Ping":{"addr":"h"}}"#).unwrap();
        assert_eq!(fine.validate(), Ok(()));
    }

    #[test]
    fn redaction_hides_the_password_only() {
        let cmd = Cmd::Sshpass {
            ip: "127.0.0.1".into(),
            user: "u".into(),
            pass: "hunter2".into(),
            cmd: vec!["true".into()],
            port: Some(2222),
        };
        let shown = serde_json::to_string(&cmd.redacted()).unwrap();
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains(r#""pass":"***""#), "{shown}");
        assert!(shown.contains(r#""port":2222"#), "{shown}");
    }

    #[test]
    fn http_credentials_are_redacted() {
        let cmd: Cmd = serde_json::from_str(
            r#"{"Http":{"method":"GET","url":"https://u:hunter2@h/x?token=hunter2&a=1",
                "headers":{"Authorization":"Bearer hunter2","X-Api-Key":"hunter2","Accept":"text/plain"}}}"#,
        )
        .unwrap();
        let shown = serde_json::to_string(&cmd.redacted()).unwrap();
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains(r#""Accept":"text/plain""#), "{shown}");
        assert!(shown.contains("token=***&a=1"), "{shown}");
    }
}
