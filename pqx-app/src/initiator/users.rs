//! `initiator -o decl_users`: one broker user per host queue, allowed only what that host's
//! subscriber does (`crate::access`), and one operator user; and a ready conn.yml and init.yml for
//! each (`host_files.rs`), so that ops copy one directory to each machine.
//!
//! Passwords come from init.yml (`${VAR}` allowed); otherwise the one in the conn.yml written
//! before for that user is kept, so that running it again changes nothing; otherwise one is
//! generated. A user that is not pqx's to change (the one initiator runs as, an administrator, one
//! with rights on another vhost) is refused before anything is changed.

use std::path::PathBuf;

use base64::Engine;
use clap::Args;
use pqx_util::{ApiEndpoint, MqApi, Secret};

use super::host_files::{Account, HostFiles};
use crate::access::{self, Permissions, OPERATOR_TAGS};
use crate::{Conn, Error, InitConfig, Result};

/// Where `decl_users` writes the hosts' files, and how the hosts reach the broker.
#[derive(Debug, Clone, Args)]
pub struct UsersArgs {
    /// With decl_users: the directory to write each host's conn.yml and init.yml in
    /// (`<dir>/<queue>/`, and `<dir>/operator/` for the operator), readable by its owner only
    #[arg(long, global = true, value_name = "DIR", default_value = "hosts")]
    pub out_dir: PathBuf,
    /// With decl_users: the broker's host names as the hosts reach them (default: the hosts
    /// conn.yml names): one for every node, or one per node (comma-separated, in conn.yml's order)
    #[arg(long, global = true, value_name = "HOST", value_delimiter = ',')]
    pub broker_host: Vec<String>,
}

/// One user to make sure of.
struct Planned {
    user: String,
    /// The host queue it is for; `None` for the operator.
    queue: Option<String>,
    pass: Option<Secret>,
    permissions: Permissions,
    tags: &'static [&'static str],
}

/// Makes sure of every host's user and the operator's, with their permissions, and writes their
/// files.
pub async fn declare(
    conn: &Conn,
    conn_path: &std::path::Path,
    init: &InitConfig,
    args: &UsersArgs,
) -> Result<()> {
    let (api, admin) = admin_api(conn)?;
    let vhost = api.vhost().to_owned();
    let planned = plan(init, &vhost);
    for user in &planned {
        check_ours(&api, &user.user, &admin).await?;
    }
    let files = HostFiles::new(
        &args.out_dir,
        conn_path,
        &conn.mq_endpoints,
        &args.broker_host,
    )?;
    for user in planned {
        let pass = match user.pass {
            Some(pass) => pass,
            None => files
                .kept_password(user.queue.as_deref(), &user.user)
                .map_or_else(generate_password, Ok)?,
        };
        api.put_user(&user.user, pass.expose(), user.tags).await?;
        let p = &user.permissions;
        api.set_permissions(&user.user, &p.configure, &p.write, &p.read)
            .await?;
        let account = Account {
            user: &user.user,
            pass: &pass,
        };
        let dir = match &user.queue {
            Some(queue) => files.write_host(init, queue, account)?,
            None => files.write_operator(init, conn, account)?,
        };
        let what = match &user.queue {
            Some(queue) => format!(
                "consumes {queue}; publishes retries to {}, dead letters to {}, results to {}",
                pqx::mq::host_retry_exchange_name(queue),
                init.dead_letter_exchange(),
                init.reply_exchange()
            ),
            None => format!(
                "publishes to {} and the host queues; results through {}; management API (read)",
                init.header_exchange,
                init.reply_exchange()
            ),
        };
        println!(
            "{}",
            pqx_util::escape_control(&format!(
                "user {} on vhost {vhost}: {what} -> {}",
                user.user,
                dir.display()
            ))
        );
    }
    Ok(())
}

/// The management API on conn.yml's vhost, and the user conn.yml reaches the broker as: what
/// users are made and removed with, and the user they must not be.
pub fn admin_api(conn: &Conn) -> Result<(MqApi, String)> {
    let api = MqApi::new(ApiEndpoint {
        vhost: conn.mq_vhost.clone(),
        ..conn.api.clone()
    })?;
    let admin = conn.mq_endpoints.first().map(|e| e.user.clone());
    Ok((api, admin.unwrap_or_default()))
}

/// The users of `init` on `vhost`: each host queue's, then the operator's.
fn plan(init: &InitConfig, vhost: &str) -> Vec<Planned> {
    let mut planned: Vec<Planned> = init
        .header_queues
        .iter()
        .map(|q| Planned {
            user: q.user_on(vhost),
            queue: Some(q.queue.clone()),
            pass: q.pass.clone(),
            permissions: access::host(init, &q.queue),
            tags: &[],
        })
        .collect();
    planned.push(Planned {
        user: crate::Account::operator_on(init.operator.as_ref(), vhost),
        queue: None,
        pass: init.operator.as_ref().and_then(|o| o.pass.clone()),
        permissions: access::operator(init),
        tags: OPERATOR_TAGS,
    });
    planned
}

/// The users of `init` on `vhost`, by name: what `rectifier -o del_users` removes.
pub fn names(init: &InitConfig, vhost: &str) -> Vec<String> {
    plan(init, vhost).into_iter().map(|p| p.user).collect()
}

/// Fails unless user `name` is pqx's to make, change or remove on this vhost: not the user
/// initiator runs as, not an administrator, and with rights on no other vhost.
pub async fn check_ours(api: &MqApi, name: &str, admin: &str) -> Result<()> {
    let taken = |why: String| Error::UserTaken {
        user: name.to_owned(),
        why,
    };
    if name == admin {
        return Err(taken("it is the user initiator runs as (conn.yml)".into()));
    }
    let Some(found) = api.user(name).await? else {
        return Ok(());
    };
    if found.tags.iter().any(|t| t == "administrator") {
        return Err(taken("it is an administrator".into()));
    }
    let elsewhere: Vec<String> = api
        .vhosts_of(name)
        .await?
        .into_iter()
        .filter(|v| v != api.vhost())
        .collect();
    if !elsewhere.is_empty() {
        return Err(taken(format!(
            "it has rights on another vhost ({})",
            elsewhere.join(", ")
        )));
    }
    Ok(())
}

/// 24 random bytes, as 32 URL-safe characters.
fn generate_password() -> Result<Secret> {
    let bytes = pqx_util::random_bytes::<24>()?;
    Ok(Secret::new(
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_passwords_are_long_and_differ() {
        let (a, b) = (generate_password().unwrap(), generate_password().unwrap());
        assert_eq!(a.expose().len(), 32);
        assert_ne!(a, b);
    }

    #[test]
    fn each_host_and_the_operator_get_a_user_named_by_default_after_the_vhost() {
        let init: InitConfig = serde_yaml::from_str(
            "header_exchange: x\noperator: {user: ops}\nheader_queues:\n  - {queue: h1, kv: {k: a}}\n  - {queue: h2, kv: {k: b}, user: web-2}\n",
        )
        .unwrap();
        assert_eq!(names(&init, "fleet"), ["h1@fleet", "web-2", "ops"]);
        let no_operator: InitConfig =
            serde_yaml::from_str("header_exchange: x\nheader_queues: []\n").unwrap();
        assert_eq!(names(&no_operator, "/"), ["operator@/"]);
    }
}
