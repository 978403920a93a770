//! Least privilege, checked against RabbitMQ itself: with host h1's credentials, as `initiator -o
//! decl_users` made them, every route to another host's queue is tried, and each must be refused
//! by the broker or lead nowhere; what a subscriber needs stays allowed. The other tests run the
//! subscriber's whole job (retries, dead letters, dedupe, results) under these users
//! (`*_as_host_users` in retry.rs and options.rs).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::future::Future;
use std::os::unix::fs::PermissionsExt;
use std::pin::Pin;

use anyhow::{bail, Context, Result};
use common::{ready_env, As, DbKind, Env, DLQ};
use lapin::options::{
    BasicConsumeOptions, BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions,
    ExchangeBindOptions, ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions,
    QueueDeclareOptions, QueueDeleteOptions, QueuePurgeOptions,
};
use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};

/// What the broker made of one try.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Verdict {
    /// Refused with ACCESS_REFUSED (403).
    Refused,
    /// Refused with PRECONDITION_FAILED (406): a user_id that is not the connection's.
    NotThatUser,
    /// Done, and no queue took the message (mandatory publish returned).
    Unroutable,
    /// Done.
    Allowed,
}

/// A user's connection to the test's vhost, as its conn.yml names it.
async fn connect_as(env: &Env, dir: &str) -> Result<(Connection, String)> {
    let path = env.path("hosts").join(dir).join("conn.yml");
    let conn: serde_yaml::Value = serde_yaml::from_str(&std::fs::read_to_string(&path)?)?;
    let mq = conn.get("mq").context("mq")?;
    let field = |key: &str| -> Result<String> {
        let value = mq.get(key).with_context(|| format!("mq.{key}"))?;
        Ok(match value {
            serde_yaml::Value::Number(n) => n.to_string(),
            other => other.as_str().context("a string")?.to_owned(),
        })
    };
    let enc = |s: String| utf8_percent_encode(&s, NON_ALPHANUMERIC).to_string();
    let user = field("user")?;
    let url = format!(
        "amqp://{}:{}@{}:{}/{}",
        enc(user.clone()),
        enc(field("pass")?),
        field("host")?,
        field("port")?,
        enc(field("vhost")?)
    );
    let connection = Connection::connect(&url, ConnectionProperties::default()).await?;
    Ok((connection, user))
}

/// The verdict on `result`: refused by the broker, or done.
fn verdict<T>(result: std::result::Result<T, lapin::Error>) -> Result<Verdict> {
    match result {
        Ok(_) => Ok(Verdict::Allowed),
        Err(e) => match e.kind() {
            lapin::ErrorKind::ProtocolError(p)
                if *p.kind() == AMQPErrorKind::Soft(AMQPSoftError::ACCESSREFUSED) =>
            {
                Ok(Verdict::Refused)
            }
            lapin::ErrorKind::ProtocolError(p)
                if *p.kind() == AMQPErrorKind::Soft(AMQPSoftError::PRECONDITIONFAILED) =>
            {
                Ok(Verdict::NotThatUser)
            }
            _ => bail!("neither done nor refused: {e}"),
        },
    }
}

/// Publishes mandatory with confirms and waits for the broker's answer. A refused publish closes
/// the channel; the confirm (or, failing that, the next call) says why.
async fn publish(
    channel: &Channel,
    exchange: &str,
    key: &str,
    properties: BasicProperties,
) -> Result<Verdict> {
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let options = BasicPublishOptions {
        mandatory: true,
        ..BasicPublishOptions::default()
    };
    let sent = channel
        .basic_publish(exchange.into(), key.into(), options, b"{}", properties)
        .await;
    let confirm = match sent {
        Ok(pending) => pending.await,
        Err(e) => Err(e),
    };
    match confirm {
        Ok(confirm) => match confirm.take_message() {
            Some(_) => Ok(Verdict::Unroutable),
            // The confirm may have raced the channel's close: ask something of the channel.
            None => verdict(channel.basic_qos(1, Default::default()).await),
        },
        Err(e) => verdict(Err::<(), _>(e)),
    }
}

fn wait_queue_args(dlx: &str, dlrk: &str) -> FieldTable {
    let mut args = FieldTable::default();
    args.insert("x-message-ttl".into(), AMQPValue::LongLongInt(1));
    args.insert("x-expires".into(), AMQPValue::LongLongInt(60_000));
    args.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString(dlx.into()),
    );
    args.insert(
        "x-dead-letter-routing-key".into(),
        AMQPValue::LongString(dlrk.into()),
    );
    args
}

type Try<'a> = Pin<Box<dyn Future<Output = Result<Verdict>> + 'a>>;

#[tokio::test]
async fn a_host_user_cannot_reach_another_host_by_any_route() -> Result<()> {
    let env = ready_env(DbKind::Sqlite, As::HostUsers).await?;
    // The admin makes what an attacker would aim at: h2's wait queues on both routes.
    let admin = env.vhost.connect().await?;
    let setup = admin.create_channel().await?;
    let declare = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    for (queue, dlx) in [("h2.wait.1000", "h2.retry"), ("h2.retry.1000", "")] {
        setup
            .queue_declare(queue.into(), declare, wait_queue_args(dlx, "h2"))
            .await?;
    }
    // And its held queue, where its retries wait on a cluster.
    let mut quorum = FieldTable::default();
    quorum.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    setup
        .queue_declare("h2.qwait".into(), declare, quorum.clone())
        .await?;
    let (h1, h1_user) = connect_as(&env, "h1").await?;
    let operator_user = format!("operator@{}", env.vhost.name);

    let headers_for_h2 = || {
        let mut h = FieldTable::default();
        h.insert("unique_key".into(), AMQPValue::LongString("h2".into()));
        h.insert("common_key".into(), AMQPValue::LongString("dev".into()));
        BasicProperties::default().with_headers(h)
    };
    let plain = BasicProperties::default;
    let ch = || async { Ok::<_, anyhow::Error>(h1.create_channel().await?) };
    let durable = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };

    // Each try on a channel of its own: a refusal closes the channel it came on.
    let mut tries: Vec<(String, Verdict, Try<'_>)> = Vec::new();
    macro_rules! attempt {
        ($name:expr, $expected:expr, $body:expr) => {
            tries.push(($name.to_string(), $expected, Box::pin($body)));
        };
    }

    // Reading another host's messages.
    attempt!("consume h2", Verdict::Refused, async {
        verdict(
            ch().await?
                .basic_consume(
                    "h2".into(),
                    "x".into(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await,
        )
    });
    attempt!("basic.get from h2", Verdict::Refused, async {
        verdict(
            ch().await?
                .basic_get("h2".into(), BasicGetOptions::default())
                .await,
        )
    });
    attempt!("purge h2", Verdict::Refused, async {
        verdict(
            ch().await?
                .queue_purge("h2".into(), QueuePurgeOptions::default())
                .await,
        )
    });
    attempt!(
        "consume h2's wait queue h2.wait.1000",
        Verdict::Refused,
        async {
            verdict(
                ch().await?
                    .basic_consume(
                        "h2.wait.1000".into(),
                        "x".into(),
                        BasicConsumeOptions::default(),
                        FieldTable::default(),
                    )
                    .await,
            )
        }
    );
    attempt!(
        "consume h2's held queue h2.qwait",
        Verdict::Refused,
        async {
            verdict(
                ch().await?
                    .basic_consume(
                        "h2.qwait".into(),
                        "x".into(),
                        BasicConsumeOptions::default(),
                        FieldTable::default(),
                    )
                    .await,
            )
        }
    );
    attempt!("consume the dead-letter queue", Verdict::Refused, async {
        verdict(
            ch().await?
                .basic_consume(
                    DLQ.into(),
                    "x".into(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await,
        )
    });

    // Publishing toward h2.
    attempt!(
        "publish to the headers exchange with h2's pairs",
        Verdict::Refused,
        async { publish(&ch().await?, "pqx.test", "", headers_for_h2()).await }
    );
    attempt!(
        "publish through the default exchange to h2",
        Verdict::Refused,
        async { publish(&ch().await?, "", "h2", plain()).await }
    );
    attempt!(
        "publish through the default exchange to h2.wait.1000",
        Verdict::Refused,
        async { publish(&ch().await?, "", "h2.wait.1000", plain()).await }
    );
    attempt!(
        "publish through the default exchange to h2.qwait",
        Verdict::Refused,
        async { publish(&ch().await?, "", "h2.qwait", plain()).await }
    );
    attempt!(
        "publish to its own retry exchange keyed h2.qwait",
        Verdict::Unroutable,
        async { publish(&ch().await?, "h1.retry", "h2.qwait", plain()).await }
    );
    attempt!(
        "publish through the default exchange to h2.retry.1000",
        Verdict::Refused,
        async { publish(&ch().await?, "", "h2.retry.1000", plain()).await }
    );
    attempt!(
        "publish through the default exchange to its own queue h1",
        Verdict::Refused,
        async { publish(&ch().await?, "", "h1", plain()).await }
    );
    attempt!(
        "publish to the delayed exchange (original retries go back to the headers exchange)",
        Verdict::Refused,
        async { publish(&ch().await?, "pqx.test.delayed", "", headers_for_h2()).await }
    );
    attempt!("publish to h2's retry exchange", Verdict::Refused, async {
        publish(&ch().await?, "h2.retry", "h2", plain()).await
    });
    for exchange in [
        "amq.direct",
        "amq.fanout",
        "amq.topic",
        "amq.headers",
        "amq.match",
    ] {
        attempt!(
            format!("publish to {exchange}"),
            Verdict::Refused,
            async move { publish(&ch().await?, exchange, "h2", headers_for_h2()).await }
        );
    }
    attempt!(
        "publish to the dead-letter exchange (lands in the dead-letter queue only)",
        Verdict::Allowed,
        async { publish(&ch().await?, "pqx.test.dlx", "h2", headers_for_h2()).await }
    );
    attempt!(
        "publish to the reply exchange keyed h2",
        Verdict::Unroutable,
        async { publish(&ch().await?, "pqx.test.reply", "h2", plain()).await }
    );
    attempt!(
        "publish to its own retry exchange keyed h2",
        Verdict::Unroutable,
        async { publish(&ch().await?, "h1.retry", "h2", plain()).await }
    );
    attempt!(
        "publish a result claiming to be the operator (user_id)",
        Verdict::NotThatUser,
        async {
            let as_operator = plain().with_user_id(operator_user.as_str().into());
            publish(&ch().await?, "pqx.test.reply", "x", as_operator).await
        }
    );

    // Declaring and deleting.
    attempt!("declare h2 again", Verdict::Refused, async {
        verdict(
            ch().await?
                .queue_declare("h2".into(), durable, FieldTable::default())
                .await,
        )
    });
    attempt!(
        "declare a queue of its own choosing",
        Verdict::Refused,
        async {
            verdict(
                ch().await?
                    .queue_declare("mine".into(), durable, FieldTable::default())
                    .await,
            )
        }
    );
    attempt!(
        "declare h2's wait queue h2.wait.2000",
        Verdict::Refused,
        async {
            verdict(
                ch().await?
                    .queue_declare(
                        "h2.wait.2000".into(),
                        durable,
                        wait_queue_args("h2.retry", "h2"),
                    )
                    .await,
            )
        }
    );
    attempt!(
        "declare its wait queue dead-lettering to the default exchange keyed h2",
        Verdict::Refused,
        async {
            verdict(
                ch().await?
                    .queue_declare("h1.wait.7".into(), durable, wait_queue_args("", "h2"))
                    .await,
            )
        }
    );
    attempt!(
        "declare its wait queue dead-lettering to the headers exchange",
        Verdict::Refused,
        async {
            verdict(
                ch().await?
                    .queue_declare("h1.wait.8".into(), durable, wait_queue_args("pqx.test", ""))
                    .await,
            )
        }
    );
    attempt!(
        "declare its wait queue dead-lettering to the delayed exchange",
        Verdict::Refused,
        async {
            verdict(
                ch().await?
                    .queue_declare(
                        "h1.wait.9".into(),
                        durable,
                        wait_queue_args("pqx.test.delayed", ""),
                    )
                    .await,
            )
        }
    );
    attempt!(
        "declare its wait queue dead-lettering to h2's retry exchange",
        Verdict::Refused,
        async {
            verdict(
                ch().await?
                    .queue_declare(
                        "h1.wait.10".into(),
                        durable,
                        wait_queue_args("h2.retry", "h2"),
                    )
                    .await,
            )
        }
    );
    attempt!(
        "declare its held queue dead-lettering to the headers exchange",
        Verdict::Refused,
        async {
            let mut args = wait_queue_args("pqx.test", "");
            args.insert(
                "x-queue-type".into(),
                AMQPValue::LongString("quorum".into()),
            );
            verdict(
                ch().await?
                    .queue_declare("h1.qwait".into(), durable, args)
                    .await,
            )
        }
    );
    attempt!(
        "declare h2's held queue h2.qwait",
        Verdict::Refused,
        async {
            verdict(
                ch().await?
                    .queue_declare("h2.qwait".into(), durable, quorum.clone())
                    .await,
            )
        }
    );
    attempt!("declare an exchange", Verdict::Refused, async {
        verdict(
            ch().await?
                .exchange_declare(
                    "mine".into(),
                    ExchangeKind::Fanout,
                    ExchangeDeclareOptions::default(),
                    FieldTable::default(),
                )
                .await,
        )
    });
    attempt!(
        "declare an exchange of a wait queue's name, alternate exchange the headers exchange",
        Verdict::Refused,
        async {
            let mut args = FieldTable::default();
            args.insert(
                "alternate-exchange".into(),
                AMQPValue::LongString("pqx.test".into()),
            );
            verdict(
                ch().await?
                    .exchange_declare(
                        "h1.wait.11".into(),
                        ExchangeKind::Fanout,
                        ExchangeDeclareOptions::default(),
                        args,
                    )
                    .await,
            )
        }
    );
    for queue in ["h2", "h1", DLQ, "h2.wait.1000", "h2.qwait"] {
        attempt!(
            format!("delete queue {queue}"),
            Verdict::Refused,
            async move {
                verdict(
                    ch().await?
                        .queue_delete(queue.into(), QueueDeleteOptions::default())
                        .await,
                )
            }
        );
    }
    for exchange in [
        "pqx.test",
        "h1.retry",
        "h2.retry",
        "pqx.test.dlx",
        "pqx.test.reply",
    ] {
        attempt!(
            format!("delete exchange {exchange}"),
            Verdict::Refused,
            async move {
                verdict(
                    ch().await?
                        .exchange_delete(exchange.into(), ExchangeDeleteOptions::default())
                        .await,
                )
            }
        );
    }

    // Binding.
    attempt!(
        "bind h2 to its own retry exchange",
        Verdict::Refused,
        async {
            verdict(
                ch().await?
                    .queue_bind(
                        "h2".into(),
                        "h1.retry".into(),
                        "x".into(),
                        QueueBindOptions::default(),
                        FieldTable::default(),
                    )
                    .await,
            )
        }
    );
    attempt!(
        "bind its own queue h1 to its retry exchange by another key",
        Verdict::Refused,
        async {
            verdict(
                ch().await?
                    .queue_bind(
                        "h1".into(),
                        "h1.retry".into(),
                        "x".into(),
                        QueueBindOptions::default(),
                        FieldTable::default(),
                    )
                    .await,
            )
        }
    );
    attempt!(
        "unbind its own queue h1 from its retry exchange",
        Verdict::Refused,
        async {
            verdict(
                ch().await?
                    .queue_unbind(
                        "h1".into(),
                        "h1.retry".into(),
                        "h1".into(),
                        FieldTable::default(),
                    )
                    .await,
            )
        }
    );
    attempt!(
        "bind h2's wait queue to its own retry exchange",
        Verdict::Refused,
        async {
            verdict(
                ch().await?
                    .queue_bind(
                        "h2.wait.1000".into(),
                        "h1.retry".into(),
                        "x".into(),
                        QueueBindOptions::default(),
                        FieldTable::default(),
                    )
                    .await,
            )
        }
    );
    attempt!(
        "bind the headers exchange to its own retry exchange",
        Verdict::Refused,
        async {
            verdict(
                ch().await?
                    .exchange_bind(
                        "pqx.test".into(),
                        "h1.retry".into(),
                        "x".into(),
                        ExchangeBindOptions::default(),
                        FieldTable::default(),
                    )
                    .await,
            )
        }
    );
    attempt!(
        "bind h2's retry exchange to its own retry exchange",
        Verdict::Refused,
        async {
            verdict(
                ch().await?
                    .exchange_bind(
                        "h2.retry".into(),
                        "h1.retry".into(),
                        "x".into(),
                        ExchangeBindOptions::default(),
                        FieldTable::default(),
                    )
                    .await,
            )
        }
    );
    attempt!(
        "bind the dead-letter queue to the headers exchange",
        Verdict::Refused,
        async {
            verdict(
                ch().await?
                    .queue_bind(
                        DLQ.into(),
                        "pqx.test".into(),
                        "".into(),
                        QueueBindOptions::default(),
                        FieldTable::default(),
                    )
                    .await,
            )
        }
    );

    for exchange in ["amq.rabbitmq.log", "amq.rabbitmq.trace"] {
        attempt!(
            format!("bind its wait queue to {exchange} (the broker's own)"),
            Verdict::Refused,
            async move {
                let channel = ch().await?;
                channel
                    .queue_declare(
                        "h1.wait.13".into(),
                        durable,
                        wait_queue_args("h1.retry", "h1"),
                    )
                    .await?;
                verdict(
                    channel
                        .queue_bind(
                            "h1.wait.13".into(),
                            exchange.into(),
                            "#".into(),
                            QueueBindOptions::default(),
                            FieldTable::default(),
                        )
                        .await,
                )
            }
        );
    }

    // What a subscriber does stays allowed, and leads back to h1 only.
    attempt!("consume its own queue h1", Verdict::Allowed, async {
        verdict(
            ch().await?
                .basic_consume(
                    "h1".into(),
                    "x".into(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await,
        )
    });
    attempt!(
        "declare its wait queue h1.wait.500 back through its retry exchange",
        Verdict::Allowed,
        async {
            verdict(
                ch().await?
                    .queue_declare(
                        "h1.wait.500".into(),
                        durable,
                        wait_queue_args("h1.retry", "h1"),
                    )
                    .await,
            )
        }
    );
    attempt!(
        "bind its wait queue to its retry exchange",
        Verdict::Allowed,
        async {
            verdict(
                ch().await?
                    .queue_bind(
                        "h1.wait.500".into(),
                        "h1.retry".into(),
                        "h1.wait.500".into(),
                        QueueBindOptions::default(),
                        FieldTable::default(),
                    )
                    .await,
            )
        }
    );
    attempt!("declare its wait queue dead-lettering through its retry exchange keyed h2 (routes nowhere)", Verdict::Allowed, async {
        let channel = ch().await?;
        channel.queue_declare("h1.wait.12".into(), durable, wait_queue_args("h1.retry", "h2")).await?;
        channel.queue_bind("h1.wait.12".into(), "h1.retry".into(), "h1.wait.12".into(), QueueBindOptions::default(), FieldTable::default()).await?;
        publish(&channel, "h1.retry", "h1.wait.12", plain()).await
    });

    let mut wrong = Vec::new();
    for (name, expected, attempt) in tries {
        let got = attempt.await.with_context(|| name.clone())?;
        println!("{name}: {got:?}");
        if got != expected {
            wrong.push(format!("{name}: expected {expected:?}, got {got:?}"));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");

    // Nothing reached h2 or its wait queues; the dead-letter queue holds the one dead letter h1
    // may send, and the broker says it came from h1's user.
    for queue in ["h2", "h2.wait.1000", "h2.retry.1000"] {
        assert_eq!(env.vhost.queue_len(queue).await?, 0, "{queue}");
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(
        env.vhost.queue_len("h2").await?,
        0,
        "nothing expired into h2"
    );
    let dead = env.vhost.take(DLQ, 5).await?.context("the dead letter")?;
    assert_eq!(dead.data, b"{}");
    assert!(env.vhost.take(DLQ, 1).await?.is_none());
    let _ = h1.close(200, "".into()).await;

    // The management API: nothing for a host's user.
    let api = pqx_util::MqApi::new(pqx_util::ApiEndpoint::new(
        &common::mq_host(),
        env.vhost.broker.api_port,
        &h1_user,
        &password_of(&env, "h1")?,
        &env.vhost.name,
    ))?;
    let listed = api.queues().await.map(|_| ()).unwrap_err().to_string();
    assert!(listed.contains("401"), "{listed}");
    let _ = admin.close(200, "".into()).await;
    Ok(())
}

fn password_of(env: &Env, dir: &str) -> Result<String> {
    let path = env.path("hosts").join(dir).join("conn.yml");
    let conn: serde_yaml::Value = serde_yaml::from_str(&std::fs::read_to_string(path)?)?;
    Ok(conn["mq"]["pass"].as_str().context("mq.pass")?.to_owned())
}

#[tokio::test]
async fn decl_users_writes_private_files_that_name_only_their_host() -> Result<()> {
    let mut env = common::env(DbKind::Sqlite).await?;
    env.init()?;
    let out = env.use_host_users()?;
    let vhost = env.vhost.name.clone();
    assert!(
        out.contains(&format!("user h1@{vhost} on vhost {vhost}: consumes h1; publishes retries to h1.retry, dead letters to pqx.test.dlx, results to pqx.test.reply -> hosts/h1")),
        "{out}"
    );
    assert!(
        out.contains(&format!("user operator@{vhost} on vhost {vhost}")),
        "{out}"
    );
    for dir in ["h1", "h2", "h3", "operator"] {
        let dir = env.path("hosts").join(dir);
        assert_eq!(std::fs::metadata(&dir)?.permissions().mode() & 0o777, 0o700);
        for file in ["conn.yml", "init.yml"] {
            let mode = std::fs::metadata(dir.join(file))?.permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{}", dir.join(file).display());
        }
    }
    let h1_conn = std::fs::read_to_string(env.path("hosts/h1/conn.yml"))?;
    let h1_init = std::fs::read_to_string(env.path("hosts/h1/init.yml"))?;
    let h2_pass = password_of(&env, "h2")?;
    assert!(
        !h1_conn.contains(&h2_pass) && !h1_init.contains("h2"),
        "{h1_conn}\n{h1_init}"
    );
    assert!(h1_init.contains("queue: h1"), "{h1_init}");
    let operator_init = std::fs::read_to_string(env.path("hosts/operator/init.yml"))?;
    assert!(
        operator_init.contains(&format!("user: h2@{vhost}")) && !operator_init.contains(&h2_pass),
        "{operator_init}"
    );
    assert!(
        !h1_conn.contains("mq_api"),
        "a host has no use for the management API"
    );
    let h1_pass = password_of(&env, "h1")?;
    assert_eq!(h1_pass.len(), 32);
    // The passwords are in their files only: not in what initiator printed or logged.
    assert!(!out.contains(&h1_pass) && !out.contains(&h2_pass));
    for entry in std::fs::read_dir(env.path("logs"))? {
        let log = std::fs::read_to_string(entry?.path())?;
        assert!(!log.contains(&h1_pass) && !log.contains(&h2_pass), "{log}");
    }

    // Again: the same users, the same passwords, the same files.
    let again = env.ok("initiator", &["-o", "decl_users", "--out-dir", "hosts"])?;
    assert_eq!(again, out);
    assert_eq!(password_of(&env, "h1")?, h1_pass);

    // The operator's files work for inspector (the management API, read) too.
    let insp = env.ok("inspector", &["-o", "insp"])?;
    assert!(insp.contains("h1.retry"), "{insp}");

    // rectifier removes them; a second time there is nothing to remove.
    let removed = env.ok("rectifier", &["-o", "del_users"])?;
    assert!(
        removed.contains(&format!("deleted user h1@{vhost}")),
        "{removed}"
    );
    let none = env.ok("rectifier", &["-o", "del_users"])?;
    assert!(
        none.contains(&format!("user h1@{vhost}: not there")),
        "{none}"
    );
    Ok(())
}

#[tokio::test]
async fn users_that_are_not_pqxs_are_left_alone() -> Result<()> {
    let env = common::env(DbKind::Sqlite).await?;
    env.init()?;
    // init.yml names the administrator pqx runs as for h1: refused before anything changes.
    env.write(
        "init.yml",
        &common::INIT_YML.replace(
            "kv: { unique_key: h1, common_key: dev }",
            &format!(
                "kv: {{ unique_key: h1, common_key: dev }}\n    user: {}",
                common::MQ_USER
            ),
        ),
    )?;
    let out = env.run("initiator", &["-o", "decl_users"])?;
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.trim(),
        format!("initiator: error: user {}: not changed: it is the user initiator runs as (conn.yml); name another user in init.yml", common::MQ_USER)
    );
    assert!(!env.path("hosts").exists(), "nothing was written");
    let refused = env.run("rectifier", &["-o", "del_users"])?;
    assert_eq!(refused.status.code(), Some(1));
    // The pqx user still works.
    env.ok("initiator", &["-o", "decl_x"])?;
    Ok(())
}

#[tokio::test]
async fn a_host_cannot_answer_for_another_hosts_command() -> Result<()> {
    let env = ready_env(DbKind::Sqlite, As::HostUsers).await?;
    // No subscriber on h2: the publisher waits for h2's result, and h1 answers in its stead.
    let task = env.write(
        "h2.json",
        r#"{"mailing_to":[{"unique_key":"h2"}],"cmd":{"Bash":{"cmd":["true"]}}}"#,
    )?;
    let task = task.to_str().context("task path")?;
    let publisher = env
        .command("publisher")
        .args(["-o", "pub", "--wait", "5", "-t", task])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let command = env
        .vhost
        .take("h2", 10)
        .await?
        .context("the command for h2")?;
    let id = command
        .properties
        .message_id()
        .clone()
        .context("message id")?;
    let reply_to = command.properties.reply_to().clone().context("reply_to")?;
    let forged = pqx_app::Reply {
        message_id: Some(id.to_string()),
        queue: "h2".into(),
        host: "h2".into(),
        attempt: 1,
        success: true,
        exit_code: 0,
        result: "succeeded".into(),
        stdout: String::new(),
        stderr: String::new(),
    };
    let body = serde_json::to_vec(&forged)?;
    let (h1, h1_user) = connect_as(&env, "h1").await?;
    for sender in [Some(h1_user.as_str()), None] {
        let mut properties = BasicProperties::default();
        if let Some(user) = sender {
            properties = properties.with_user_id(user.into());
        }
        let channel = h1.create_channel().await?;
        channel
            .basic_publish(
                "pqx.test.reply".into(),
                reply_to.as_str().into(),
                BasicPublishOptions::default(),
                &body,
                properties,
            )
            .await?
            .await?;
    }
    let out = publisher.wait_with_output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(!stdout.contains("result "), "{stdout}");
    let vhost = &env.vhost.name;
    assert!(
        stderr.contains(&format!(
            "a result for queue h2 sent by broker user h1@{vhost}, not by h2@{vhost}: ignored"
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains("a result for queue h2 that does not say which broker user sent it"),
        "{stderr}"
    );
    assert!(
        stderr.contains("publisher: error: 1 of 1 results did not come within 5s"),
        "{stderr}"
    );
    let _ = h1.close(200, "".into()).await;
    Ok(())
}

/// Asks the recorders, as the user of `connection`, and returns their answer (JSON).
async fn ask_recorders(
    connection: &Connection,
    user_id: Option<&str>,
    request: serde_json::Value,
) -> Result<serde_json::Value> {
    use futures_util::StreamExt;
    let channel = connection.create_channel().await?;
    let no_ack = BasicConsumeOptions {
        no_ack: true,
        ..BasicConsumeOptions::default()
    };
    let mut answers = channel
        .basic_consume(
            "amq.rabbitmq.reply-to".into(),
            "".into(),
            no_ack,
            FieldTable::default(),
        )
        .await?;
    let mut properties = BasicProperties::default()
        .with_reply_to("amq.rabbitmq.reply-to".into())
        .with_correlation_id("1".into());
    if let Some(user) = user_id {
        properties = properties.with_user_id(user.into());
    }
    channel
        .basic_publish(
            "pqx.test.records".into(),
            "".into(),
            BasicPublishOptions::default(),
            &serde_json::to_vec(&request)?,
            properties,
        )
        .await?;
    let answer = tokio::time::timeout(std::time::Duration::from_secs(20), answers.next())
        .await
        .context("no answer from the recorders in 20 s")?
        .context("the answers ended")??;
    let _ = channel.close(200, "".into()).await;
    Ok(serde_json::from_slice(&answer.data)?)
}

#[tokio::test]
async fn through_the_recorders_a_host_keeps_its_own_records_alone() -> Result<()> {
    use common::Records;
    let env = ready_env(DbKind::Postgres, As::HostUsers).await?;
    let _recorder = env.recorder()?;
    // h1 holds no database credentials: its records go through the broker.
    let h1_text = common::records_through_recorders(&env, "h1")?;
    assert!(!h1_text.contains("postgres"), "{h1_text}");
    let sub = env.subscriber("h1")?;
    let out = env.ok(
        "publisher",
        &[
            "-o",
            "pub",
            "--wait",
            "20",
            "-t",
            env.write(
                "h1.json",
                r#"{"mailing_to":[{"unique_key":"h1"}],"cmd":{"Bash":{"cmd":["echo kept"]}}}"#,
            )?
            .to_str()
            .context("path")?,
        ],
    )?;
    assert!(out.contains("1 of 1 results: 1 succeeded"), "{out}");
    let h1_attempts = env.store().await?.attempts(None, 10).await?;
    assert_eq!(h1_attempts.len(), 1, "{h1_attempts:#?}");
    let result = common::ended(&h1_attempts[0]);
    assert_eq!(result.stdout.as_deref(), Some("kept\n"));

    // An attempt of h2's, as the database has it.
    let store = env.store().await?;
    let command =
        pqx_app::Command::from_json(r#"{"mailing_to":[],"cmd":{"Bash":{"cmd":["true"]}}}"#)?;
    let h2_attempt = store
        .record_start(&pqx_app::AttemptStart {
            command: &command,
            message_id: Some("m-h2"),
            queue: "h2",
            host: "node-2",
            attempt: 1,
        })
        .await?;

    let (h1, h1_user) = connect_as(&env, "h1").await?;
    let start_for = |queue: &str| {
        serde_json::json!({"op": "record_start", "start": {
            "command": {"mailing_to": [], "cmd": {"Bash": {"cmd": ["true"]}}},
            "message_id": "forged", "queue": queue, "host": "node-1", "attempt": 1}})
    };
    let outcome = serde_json::json!({"success": true, "exit_code": 0, "summary": "forged",
        "stdout": "", "stderr": "", "ended_at": "2026-01-01T00:00:00Z"});
    let tries = [
        // Records in h2's name.
        (
            Some(h1_user.as_str()),
            start_for("h2"),
            "may not ask for the records of queue \"h2\"",
        ),
        (
            Some(h1_user.as_str()),
            serde_json::json!({"op": "attempts_here", "message_id": "m-h2", "queue": "h2"}),
            "may not ask for the records of queue \"h2\"",
        ),
        // The end of h2's attempt, claimed as h1's.
        (
            Some(h1_user.as_str()),
            serde_json::json!({"op": "record_end", "queue": "h1", "history_id": h2_attempt, "outcome": outcome}),
            &format!("attempt {h2_attempt} is not one of queue \"h1\""),
        ),
        // Without saying who asks.
        (None, start_for("h1"), "the request names no user_id"),
        // Not a request.
        (
            Some(h1_user.as_str()),
            serde_json::json!({"op": "drop_tables"}),
            "not a record request",
        ),
    ];
    for (user, request, why) in tries {
        let answer = ask_recorders(&h1, user, request.clone()).await?;
        assert_eq!(answer["answer"], "failed", "{request}: {answer}");
        assert_eq!(answer["refused"], true, "{request}: {answer}");
        let said = answer["why"].as_str().unwrap_or_default();
        assert!(said.contains(why), "{request}: {said}");
    }
    // Nothing of it was written: h1's one attempt, and h2's, unended.
    let all = store.attempts(None, 100).await?;
    assert_eq!(all.len(), 2, "{all:#?}");
    assert!(all
        .iter()
        .all(|a| a.history.message_id.as_deref() != Some("forged")));
    let h2 = all
        .iter()
        .find(|a| a.history.id == h2_attempt)
        .context("h2's attempt")?;
    assert!(h2.result.is_none(), "{h2:#?}");
    // What h1 may ask for its own queue, it gets.
    let own = serde_json::json!({"op": "attempts_here", "message_id": h1_attempts[0].history.message_id, "queue": "h1"});
    let answer = ask_recorders(&h1, Some(&h1_user), own).await?;
    assert_eq!(answer["answer"], "attempts", "{answer}");
    assert_eq!(answer["attempts"], serde_json::json!([[1, 0]]), "{answer}");
    let _ = h1.close(200, "".into()).await;
    drop(sub);
    Ok(())
}
