//! Command kinds through the whole path (publisher, broker, subscriber, records): captured output
//! in the record, secrets kept out of records and logs, and the subscriber's per-machine settings.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{count_ended, ended, unique, Db, TestEnv};

#[tokio::test]
async fn captured_output_is_recorded_and_shown() {
    let env = TestEnv::new(Db::Sqlite).await;
    env.init();
    let _sub = env.subscriber("h1", &[]);
    let task = env.task(
        "out.json",
        r#"{"mailing_to":[{"unique_key":"h1"}],"cmd":{"Bash":{"cmd":["echo out1; echo err1 >&2; echo out2; exit 1"]}}}"#,
    );
    let id = env.publish(&task).remove(0);
    let attempts = env.wait_attempts(&id, 30, |a| count_ended(a) == 1).await;
    let result = ended(&attempts[0]);
    assert_eq!(result.stdout.as_deref(), Some("out1\nout2\n"));
    assert_eq!(result.stderr.as_deref(), Some("err1\n"));
    assert_eq!(result.result, "failed: exit code 1: err1");

    let shown = env.ok(
        "inspector",
        &["-o", "hist", "--message-id", &id, "--output"],
    );
    assert!(shown.contains("failed: exit code 1: err1"), "{shown}");
    assert!(shown.contains("stdout\nout1\nout2\n"), "{shown}");
    assert!(shown.contains("stderr\nerr1\n"), "{shown}");
}

#[tokio::test]
async fn sshpass_passwords_stay_out_of_records_and_logs() {
    let env = TestEnv::new(Db::Sqlite).await;
    env.init();
    let from_env = unique("secret-from-env");
    let literal = unique("literal-secret");
    let sub = env.subscriber("h1", &[("PQX_TEST_SSH_SECRET", from_env.as_str())]);
    // Nothing listens on the port: the run fails, which is all this test needs of ssh.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut ids = Vec::new();
    for pass in ["${PQX_TEST_SSH_SECRET}", literal.as_str()] {
        let task = env.task(
            "ssh.json",
            &format!(
                r#"{{"mailing_to":[{{"unique_key":"h1"}}],"cmd":{{"Sshpass":{{"ip":"127.0.0.1","port":{port},"user":"nobody","pass":"{pass}","cmd":["true"]}}}}}}"#
            ),
        );
        ids.push(env.publish(&task).remove(0));
    }
    for id in &ids {
        let attempts = env.wait_attempts(id, 60, |a| count_ended(a) == 1).await;
        let (history, _) = &attempts[0];
        assert!(history.cmd.contains(r#""pass":"***""#), "{}", history.cmd);
        let result = ended(&attempts[0]);
        assert!(
            result.result.contains("Connection refused"),
            "{}",
            result.result
        );
        for secret in [&from_env, &literal] {
            assert!(!history.cmd.contains(secret.as_str()));
            assert!(!result.result.contains(secret.as_str()));
            assert!(!result
                .stderr
                .as_deref()
                .unwrap_or("")
                .contains(secret.as_str()));
        }
    }
    let mut logs = sub.log();
    for file in std::fs::read_dir(env.path("logs")).unwrap().flatten() {
        logs.push_str(&std::fs::read_to_string(file.path()).unwrap());
    }
    assert!(logs.contains(&ids[1]), "the logs were read");
    assert!(
        !logs.contains(&from_env) && !logs.contains(&literal),
        "a password reached the logs"
    );
}

#[tokio::test]
async fn conda_python_runs_conda_as_documented() {
    // conda cannot be installed here; a stand-in named conda on the subscriber's PATH records how it
    // is called, which is what pqx is responsible for.
    let env = TestEnv::new(Db::Sqlite).await;
    env.init();
    let bin = env.path("bin");
    let work = env.path("work");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::create_dir_all(&work).unwrap();
    let conda = bin.join("conda");
    std::fs::write(
        &conda,
        "#!/bin/sh\necho \"args: $*\"\necho \"cwd: $(pwd)\"\n",
    )
    .unwrap();
    std::process::Command::new("chmod")
        .arg("+x")
        .arg(&conda)
        .status()
        .unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let _sub = env.subscriber(
        "h1",
        &[
            ("PATH", path.as_str()),
            ("PQX_TEST_WORK", work.to_str().unwrap()),
        ],
    );
    let task = env.task(
        "conda.json",
        r#"{"mailing_to":[{"unique_key":"h1"}],"cmd":{"CondaPython":{"env":"py310","dir":"${PQX_TEST_WORK}","script":"job.py"}}}"#,
    );
    let id = env.publish(&task).remove(0);
    let attempts = env.wait_attempts(&id, 30, |a| count_ended(a) == 1).await;
    let result = ended(&attempts[0]);
    assert_eq!(result.result, "succeeded");
    assert_eq!(
        result.stdout.as_deref(),
        Some(
            format!(
                "args: run -n py310 --live-stream python -u job.py\ncwd: {}\n",
                work.display()
            )
            .as_str()
        )
    );
}

#[tokio::test]
async fn subscriber_settings_are_checked_and_used() {
    let env = TestEnv::new(Db::Sqlite).await;
    env.init();
    let out = env
        .command("subscriber")
        .args(["-q", "h1"])
        .env("PQX_CONTAINER_ENGINE", "rkt")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("subscriber: error: PQX_CONTAINER_ENGINE=\"rkt\": expected docker or podman"),
        "{err}"
    );

    let out = env
        .command("subscriber")
        .args(["-q", "h1"])
        .env("PQX_SSH_CONFIG", "/nonexistent/ssh_config")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "subscriber: error: PQX_SSH_CONFIG names /nonexistent/ssh_config, which is not a file"
        ),
        "{err}"
    );

    // An engine that is not installed is a clear result, not a crash, and the subscriber goes on.
    let no_podman = std::process::Command::new("which")
        .arg("podman")
        .output()
        .is_ok_and(|o| !o.status.success());
    if no_podman {
        let _sub = env.subscriber("h1", &[("PQX_CONTAINER_ENGINE", "podman")]);
        let task = env.task(
            "docker.json",
            r#"{"mailing_to":[{"unique_key":"h1"}],"cmd":{"DockerExec":{"container":"web","cmd":["true"]}}}"#,
        );
        let id = env.publish(&task).remove(0);
        let attempts = env.wait_attempts(&id, 30, |a| count_ended(a) == 1).await;
        assert_eq!(
            ended(&attempts[0]).result,
            "failed: not started: podman is not installed (not found on PATH)"
        );
        assert_eq!(ended(&attempts[0]).exit_code, 127);
    }
}
