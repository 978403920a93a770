//! Command kinds through the whole path (publisher, broker, subscriber, records): captured output
//! in the record, secrets kept out of records and logs, and the subscriber's per-machine settings.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use anyhow::Result;
use common::{count_ended, ended, env, free_port, unique, DbKind, Records};

#[tokio::test]
async fn captured_output_is_recorded_and_shown() -> Result<()> {
    let env = env(DbKind::Sqlite).await?;
    env.init()?;
    let _sub = env.subscriber("h1")?;
    let task = env.write(
        "out.json",
        r#"{"mailing_to":[{"unique_key":"h1"}],"cmd":{"Bash":{"cmd":["echo out1; echo err1 >&2; echo out2; exit 1"]}}}"#,
    )?;
    let id = env.publish(&task)?.remove(0);
    let attempts = env.wait_attempts(&id, 30, |a| count_ended(a) == 1).await?;
    let result = ended(&attempts[0]);
    assert_eq!(result.stdout.as_deref(), Some("out1\nout2\n"));
    assert_eq!(result.stderr.as_deref(), Some("err1\n"));
    assert_eq!(result.summary(), "failed: exit code 1: err1");

    let shown = env.ok(
        "inspector",
        &["-o", "hist", "--message-id", &id, "--output"],
    )?;
    assert!(shown.contains("failed: exit code 1: err1"), "{shown}");
    assert!(shown.contains("stdout\nout1\nout2\n"), "{shown}");
    assert!(shown.contains("stderr\nerr1\n"), "{shown}");
    Ok(())
}

#[tokio::test]
async fn sshpass_passwords_stay_out_of_records_and_logs() -> Result<()> {
    let env = env(DbKind::Sqlite).await?;
    env.init()?;
    let from_env = unique("secret-from-env");
    let literal = unique("literal-secret");
    let sub = env.subscriber_with("h1", &[], &[("PQX_TEST_SSH_SECRET", from_env.as_str())])?;
    // Nothing listens on the port: the run fails, which is all this test needs of ssh.
    let port = free_port()?;
    let mut ids = Vec::new();
    for pass in ["${PQX_TEST_SSH_SECRET}", literal.as_str()] {
        let task = env.write(
            "ssh.json",
            &format!(
                r#"{{"mailing_to":[{{"unique_key":"h1"}}],"cmd":{{"Sshpass":{{"ip":"127.0.0.1","port":{port},"user":"nobody","pass":"{pass}","cmd":["true"]}}}}}}"#
            ),
        )?;
        ids.push(env.publish(&task)?.remove(0));
    }
    for id in &ids {
        let attempts = env.wait_attempts(id, 60, |a| count_ended(a) == 1).await?;
        let history = &attempts[0].history;
        assert!(
            history.cmd.to_string().contains(r#""pass":"***""#),
            "{}",
            history.cmd
        );
        let result = ended(&attempts[0]);
        assert!(
            result.summary().contains("Connection refused"),
            "{}",
            result.summary()
        );
        for secret in [&from_env, &literal] {
            assert!(!history.cmd.to_string().contains(secret.as_str()));
            assert!(!result.summary().contains(secret.as_str()));
            assert!(!result
                .stderr
                .as_deref()
                .unwrap_or("")
                .contains(secret.as_str()));
        }
    }
    let mut logs = sub.log();
    for file in std::fs::read_dir(env.path("logs"))?.flatten() {
        logs.push_str(&std::fs::read_to_string(file.path())?);
    }
    assert!(logs.contains(&ids[1]), "the logs were read");
    assert!(
        !logs.contains(&from_env) && !logs.contains(&literal),
        "a password reached the logs"
    );
    Ok(())
}

#[tokio::test]
async fn conda_python_runs_conda_as_documented() -> Result<()> {
    // conda cannot be installed here; a stand-in named conda on the subscriber's PATH records how it
    // is called, which is what pqx is responsible for.
    let env = env(DbKind::Sqlite).await?;
    env.init()?;
    let bin = env.path("bin");
    let work = env.path("work");
    std::fs::create_dir_all(&bin)?;
    std::fs::create_dir_all(&work)?;
    let conda = bin.join("conda");
    std::fs::write(
        &conda,
        "#!/bin/sh\necho \"args: $*\"\necho \"cwd: $(pwd)\"\n",
    )?;
    std::fs::set_permissions(&conda, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    let path = format!("{}:{}", bin.display(), std::env::var("PATH")?);
    let vars = [
        ("PATH", path.as_str()),
        ("PQX_TEST_WORK", work.to_str().unwrap()),
    ];
    let _sub = env.subscriber_with("h1", &[], &vars)?;
    let task = env.write(
        "conda.json",
        r#"{"mailing_to":[{"unique_key":"h1"}],"cmd":{"CondaPython":{"env":"py310","dir":"${PQX_TEST_WORK}","script":"job.py"}}}"#,
    )?;
    let id = env.publish(&task)?.remove(0);
    let attempts = env.wait_attempts(&id, 30, |a| count_ended(a) == 1).await?;
    let result = ended(&attempts[0]);
    assert_eq!(result.summary(), "succeeded");
    let want = format!(
        "args: run -n py310 --live-stream python -u job.py\ncwd: {}\n",
        work.display()
    );
    assert_eq!(result.stdout.as_deref(), Some(want.as_str()));
    Ok(())
}

#[tokio::test]
async fn subscriber_settings_are_checked_and_used() -> Result<()> {
    let env = env(DbKind::Sqlite).await?;
    env.init()?;
    let out = env
        .command("subscriber")
        .args(["-q", "h1"])
        .env("PQX_CONTAINER_ENGINE", "rkt")
        .output()?;
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("subscriber: error: PQX_CONTAINER_ENGINE: \"rkt\" is not docker or podman"),
        "{err}"
    );

    let out = env
        .command("subscriber")
        .args(["-q", "h1"])
        .env("PQX_SSH_CONFIG", "/nonexistent/ssh_config")
        .output()?;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("subscriber: error: PQX_SSH_CONFIG: /nonexistent/ssh_config is not a file"),
        "{err}"
    );

    // A machine without a container engine: a clear result, not a crash, and the subscriber goes
    // on. Its PATH holds no docker or podman (the subscriber itself is started by its full path).
    let empty = env.path("empty-path");
    std::fs::create_dir_all(&empty)?;
    let _sub = env.subscriber_with("h1", &[], &[("PATH", empty.to_str().unwrap())])?;
    let task = env.write(
        "docker.json",
        r#"{"mailing_to":[{"unique_key":"h1"}],"cmd":{"DockerExec":{"container":"web","cmd":["true"]}}}"#,
    )?;
    let id = env.publish(&task)?.remove(0);
    let attempts = env.wait_attempts(&id, 30, |a| count_ended(a) == 1).await?;
    assert_eq!(
        ended(&attempts[0]).summary(),
        "failed: not started: DockerExec needs docker or podman on PATH; neither was found"
    );
    assert_eq!(ended(&attempts[0]).exit_code, 127);
    let next = env.publish(&env.write(
        "echo.json",
        r#"{"mailing_to":[{"unique_key":"h1"}],"cmd":{"Http":{"method":"GET","url":"http://127.0.0.1:1/"}}}"#,
    )?)?;
    let attempts = env
        .wait_attempts(&next[0], 30, |a| count_ended(a) == 1)
        .await?;
    assert_eq!(ended(&attempts[0]).exit_code, 127, "the subscriber went on");
    Ok(())
}
