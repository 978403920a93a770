//! Each `cmd` variant run for real on this machine, against real local peers: exit status, captured
//! output, the timeout, and each way it can fail.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use anyhow::Result;
use pqx::exec::{execute, CancellationToken, Cmd, OutputStream, RunEnd, RunReport, Settings};
use pqx_testkit::{all_cmdlines, free_port, HttpServer, Sshd};

/// Runs a command given as JSON; returns the report and the lines handed to the log.
async fn exec(
    json: &str,
    settings: &Settings,
    timeout: Option<Duration>,
) -> (RunReport, Vec<String>) {
    let cmd: Cmd = serde_json::from_str(json).unwrap();
    cmd.validate().unwrap();
    let mut lines = Vec::new();
    let report = execute(
        &cmd,
        settings,
        timeout,
        &CancellationToken::new(),
        |stream, line| lines.push(format!("{}: {line}", stream.as_str())),
    )
    .await;
    (report, lines)
}

fn ssh_settings(sshd: &Sshd) -> Settings {
    Settings {
        ssh_config: Some(sshd.client_config()),
        ..Settings::default()
    }
}

#[tokio::test]
async fn ping_is_bounded_and_succeeds_on_replies() {
    let (report, lines) = exec(
        r#"{"Ping":{"addr":"127.0.0.1","count":2}}"#,
        &Settings::default(),
        None,
    )
    .await;
    assert!(report.success(), "{}", report.summary());
    assert!(
        report
            .stdout
            .text()
            .contains("2 packets transmitted, 2 received"),
        "{}",
        report.stdout.text()
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("stdout: PING 127.0.0.1")),
        "{lines:?}"
    );
}

#[tokio::test]
async fn bash_passes_arguments_and_exit_code() {
    let (report, lines) = exec(
        r#"{"Bash":{"cmd":["echo \"$0 $1\"; echo oops >&2; exit 4","first","second"]}}"#,
        &Settings::default(),
        None,
    )
    .await;
    assert_eq!(report.end, RunEnd::Exited(4));
    assert_eq!(report.summary(), "failed: exit code 4: oops");
    assert_eq!(lines, vec!["stdout: first second", "stderr: oops"]);
}

#[tokio::test]
async fn ssh_runs_with_a_key() -> Result<()> {
    let sshd = Sshd::start()?;
    let json = format!(
        r#"{{"Ssh":{{"ip":"127.0.0.1","port":{},"user":"{}","cmd":["echo remote-$USER; exit 3"]}}}}"#,
        sshd.port, sshd.user
    );
    let (report, _) = exec(&json, &ssh_settings(&sshd), Some(Duration::from_secs(30))).await;
    assert_eq!(
        report.end,
        RunEnd::Exited(3),
        "{} / sshd: {}",
        report.summary(),
        sshd.log()
    );
    assert_eq!(report.stdout.text(), format!("remote-{}\n", sshd.user));
    Ok(())
}

#[tokio::test]
async fn ssh_without_an_accepted_key_fails_at_once() -> Result<()> {
    let sshd = Sshd::start()?;
    let config = sshd.dir.path().join("no_key_config");
    std::fs::write(
        &config,
        format!(
            "Host *\n  IdentityFile /nonexistent/key\n  IdentitiesOnly yes\n  UserKnownHostsFile {}\n",
            sshd.dir.path().join("known_hosts2").display()
        ),
    )
    .unwrap();
    let settings = Settings {
        ssh_config: Some(config),
        ..Settings::default()
    };
    let json = format!(
        r#"{{"Ssh":{{"ip":"127.0.0.1","port":{},"user":"{}","cmd":["true"]}}}}"#,
        sshd.port, sshd.user
    );
    let started = std::time::Instant::now();
    let (report, _) = exec(&json, &settings, Some(Duration::from_secs(60))).await;
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "BatchMode: no prompt to hang on"
    );
    assert_eq!(report.exit_code(), 255);
    assert!(
        report.summary().contains("Permission denied"),
        "{}",
        report.summary()
    );
    Ok(())
}

#[tokio::test]
async fn sshpass_logs_in_with_a_password_never_shown_on_a_command_line() -> Result<()> {
    let sshd = Sshd::start()?;
    let json = format!(
        r#"{{"Sshpass":{{"ip":"127.0.0.1","port":{},"user":"{}","pass":"{}","cmd":["sleep 1; echo pw-ok"]}}}}"#,
        sshd.port, sshd.user, sshd.password
    );
    let settings = ssh_settings(&sshd);
    let run =
        tokio::spawn(async move { exec(&json, &settings, Some(Duration::from_secs(30))).await });
    // While it runs, no process shows the password in its command line.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut seen_sshpass = false;
    while !run.is_finished() && std::time::Instant::now() < deadline {
        let lines = all_cmdlines();
        seen_sshpass |= lines.iter().any(|l| l.starts_with("sshpass -e ssh"));
        assert!(
            !lines.iter().any(|l| l.contains(&sshd.password)),
            "password on a command line"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (report, _) = run.await.unwrap();
    assert!(seen_sshpass, "sshpass ran");
    assert!(
        report.success(),
        "{} / sshd: {}",
        report.summary(),
        sshd.log()
    );
    assert_eq!(report.stdout.text(), "pw-ok\n");
    Ok(())
}

#[tokio::test]
async fn sshpass_with_a_wrong_password_fails() -> Result<()> {
    let sshd = Sshd::start()?;
    let json = format!(
        r#"{{"Sshpass":{{"ip":"127.0.0.1","port":{},"user":"{}","pass":"wrong-password","cmd":["true"]}}}}"#,
        sshd.port, sshd.user
    );
    let (report, _) = exec(&json, &ssh_settings(&sshd), Some(Duration::from_secs(60))).await;
    assert_eq!(report.exit_code(), 255, "{}", report.summary());
    assert!(
        report
            .summary()
            .ends_with("Permission denied (publickey,password)."),
        "{}",
        report.summary()
    );
    Ok(())
}

#[tokio::test]
async fn ssh_session_is_killed_at_the_timeout() -> Result<()> {
    let sshd = Sshd::start()?;
    let marker = format!("pqx-ssh-timeout-{}", std::process::id());
    let json = format!(
        r#"{{"Ssh":{{"ip":"127.0.0.1","port":{},"user":"{}","cmd":["sleep 60; echo {marker}"]}}}}"#,
        sshd.port, sshd.user
    );
    let (report, _) = exec(&json, &ssh_settings(&sshd), Some(Duration::from_secs(2))).await;
    assert_eq!(
        report.end,
        RunEnd::TimedOut(Duration::from_secs(2)),
        "{}\nsshd: {}",
        report.summary(),
        sshd.log()
    );
    assert!(
        report.summary().starts_with("failed: timed out after 2s"),
        "{}",
        report.summary()
    );
    let clients: Vec<String> = all_cmdlines()
        .into_iter()
        .filter(|l| l.starts_with("ssh ") && l.contains(&marker))
        .collect();
    assert!(
        clients.is_empty(),
        "the ssh client outlived the timeout: {clients:?}"
    );
    Ok(())
}

#[tokio::test]
async fn python_runs_in_a_virtualenv_with_arguments() {
    let dir = tempfile::tempdir().unwrap();
    let venv = dir.path().join("venv");
    let status = std::process::Command::new("python3")
        .args(["-m", "venv", "--without-pip"])
        .arg(&venv)
        .status()
        .unwrap();
    assert!(status.success(), "python3 -m venv");
    std::fs::write(
        dir.path().join("job.py"),
        "import os, sys\nprint('prefix', sys.prefix)\nprint('args', sys.argv[1:])\nprint('cwd', os.getcwd())\n",
    )
    .unwrap();
    let json = format!(
        r#"{{"Python":{{"dir":"{}","script":"job.py","args":["a b","--home=${{HOME}}"],"venv":"{}"}}}}"#,
        dir.path().display(),
        venv.display()
    );
    let (report, _) = exec(&json, &Settings::default(), None).await;
    assert!(report.success(), "{}", report.summary());
    let out = report.stdout.text();
    let home = std::env::var("HOME").unwrap();
    assert!(out.contains(&format!("prefix {}", venv.display())), "{out}");
    assert!(
        out.contains(&format!("args ['a b', '--home={home}']")),
        "{out}"
    );
    assert!(
        out.contains(&format!("cwd {}", dir.path().display())),
        "{out}"
    );
}

#[tokio::test]
async fn python_failure_names_the_exception() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad.py"), "print('before')\n1 / 0\n").unwrap();
    let json = format!(
        r#"{{"Python":{{"dir":"{}","script":"bad.py"}}}}"#,
        dir.path().display()
    );
    let (report, _) = exec(&json, &Settings::default(), None).await;
    assert_eq!(report.exit_code(), 1);
    assert_eq!(
        report.summary(),
        "failed: exit code 1: ZeroDivisionError: division by zero"
    );
    assert_eq!(report.stdout.text(), "before\n");

    let json = r#"{"Python":{"dir":"/nonexistent/pqx","script":"job.py"}}"#;
    let (report, _) = exec(json, &Settings::default(), None).await;
    assert_eq!(
        report.summary(),
        "failed: not started: directory /nonexistent/pqx does not exist"
    );
}

#[tokio::test]
async fn conda_python_without_conda_says_so() {
    let has_conda = ["conda", "mamba", "micromamba"].iter().any(|p| {
        std::process::Command::new("which")
            .arg(p)
            .output()
            .is_ok_and(|o| o.status.success())
    });
    let json = r#"{"CondaPython":{"env":"py310","dir":"/tmp","script":"job.py"}}"#;
    let (report, _) = exec(json, &Settings::default(), None).await;
    if !has_conda {
        assert_eq!(
            report.summary(),
            "failed: not started: CondaPython needs conda, mamba or micromamba on PATH; none was found"
        );
    } else {
        // With a conda but no env py310, conda itself says so.
        assert!(!report.success(), "{}", report.summary());
    }
}

#[tokio::test]
async fn docker_exec_without_an_engine_says_so() {
    let json = r#"{"DockerExec":{"container":"pqx-test-missing","cmd":["true"]}}"#;
    let missing = Settings {
        container_engine: Some("pqx-no-such-engine".into()),
        ..Settings::default()
    };
    let (report, _) = exec(json, &missing, None).await;
    assert_eq!(
        report.summary(),
        "failed: not started: pqx-no-such-engine is not installed (not found on PATH)"
    );
    assert_eq!(report.exit_code(), 127);
    // An engine that is there but has no such container says so itself.
    let on_path = |p: &str| {
        std::process::Command::new("which")
            .arg(p)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if on_path("podman") {
        let podman = Settings {
            container_engine: Some("podman".into()),
            ..Settings::default()
        };
        let (report, _) = exec(json, &podman, Some(Duration::from_secs(60))).await;
        assert!(!report.success());
        assert!(
            report.summary().contains("pqx-test-missing"),
            "{}",
            report.summary()
        );
    }
    // Without a setting, docker is used when it is on PATH.
    if on_path("docker") {
        let (report, _) = exec(json, &Settings::default(), Some(Duration::from_secs(60))).await;
        let summary = report.summary();
        assert!(!report.success());
        assert!(
            summary.contains("pqx-test-missing")
                || summary.contains("Cannot connect to the Docker daemon"),
            "{summary}"
        );
    }
}

#[tokio::test]
async fn http_succeeds_on_2xx_only() -> Result<()> {
    let server = HttpServer::start()?;
    let get = |path: &str| {
        format!(
            r#"{{"Http":{{"method":"get","url":"{}"}}}}"#,
            server.url(path)
        )
    };
    let (ok, lines) = exec(&get("/status/204"), &Settings::default(), None).await;
    assert!(ok.success());
    assert_eq!(ok.summary(), "succeeded: HTTP 204 No Content");
    assert_eq!(ok.exit_code(), 0);
    assert!(lines.is_empty(), "204 has no body: {lines:?}");

    let (created, lines) = exec(&get("/status/201"), &Settings::default(), None).await;
    assert!(created.success());
    assert_eq!(lines, vec!["stdout: status 201"]);

    let (failed, _) = exec(&get("/status/503"), &Settings::default(), None).await;
    assert!(!failed.success());
    assert_eq!(failed.summary(), "failed: HTTP 503 Service Unavailable");
    assert_eq!(failed.exit_code(), 503);
    assert_eq!(failed.stdout.text(), "status 503\n");
    Ok(())
}

#[tokio::test]
async fn http_sends_method_headers_and_body() -> Result<()> {
    let server = HttpServer::start()?;
    let json = format!(
        r#"{{"Http":{{"method":"POST","url":"{}","headers":{{"X-Token":"${{HOME}}"}},"body":"hello"}}}}"#,
        server.url("/echo")
    );
    let (report, _) = exec(&json, &Settings::default(), None).await;
    assert!(report.success(), "{}", report.summary());
    let home = std::env::var("HOME").unwrap();
    assert_eq!(
        report.stdout.text(),
        format!("method POST\ntoken {home}\nbody hello\n")
    );
    Ok(())
}

#[tokio::test]
async fn http_timeout_big_body_and_refused_connection() -> Result<()> {
    let server = HttpServer::start()?;
    let get = |url: String| format!(r#"{{"Http":{{"method":"GET","url":"{url}"}}}}"#);
    let (slow, _) = exec(
        &get(server.url("/slow")),
        &Settings::default(),
        Some(Duration::from_secs(1)),
    )
    .await;
    assert_eq!(slow.end, RunEnd::TimedOut(Duration::from_secs(1)));
    assert_eq!(slow.exit_code(), 124);

    let (big, _) = exec(&get(server.url("/big")), &Settings::default(), None).await;
    assert!(big.success());
    assert!(big.stdout.truncated());
    assert!(
        big.stdout
            .text()
            .ends_with("line 00074897\n[pqx: body cut after 1048576 bytes]\n"),
        "the body is read up to 1 MiB"
    );

    let port = free_port()?;
    let (refused, _) = exec(
        &get(format!("http://127.0.0.1:{port}/")),
        &Settings::default(),
        None,
    )
    .await;
    assert_eq!(refused.exit_code(), 127);
    assert!(
        refused.summary().contains("Connection refused"),
        "{}",
        refused.summary()
    );
    Ok(())
}

#[test]
fn output_stream_names() {
    assert_eq!(OutputStream::Stdout.as_str(), "stdout");
    assert_eq!(OutputStream::Stderr.as_str(), "stderr");
}
