//! `inspector serve`, used as a person uses it: in a real headless Chromium (Debian's chromium and
//! chromedriver, which scripts/test-tools.sh installs), driven through WebDriver. Each page is
//! opened, a command published during the test appears and ends without a reload, a running
//! command's output is followed, a dead letter is re-driven with its button, and a database that
//! goes away is a banner that goes away by itself. A screenshot of each page is saved under
//! target/screenshots/. The HTTP rules (token, Host, the request header) are tried with abuse.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use anyhow::{bail, Context, Result};
use common::{ready_env, As, DbKind, Env, Records, Subscriber};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

/// A chromedriver of our own on a free port, and a headless Chromium session through it.
struct Browser {
    client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    async fn start() -> Result<Self> {
        for program in ["/usr/bin/chromium", "/usr/bin/chromedriver"] {
            if !std::path::Path::new(program).exists() {
                bail!("{program} is missing: run scripts/test-tools.sh (installs chromium and chromium-driver)");
            }
        }
        let port = common::free_port()?;
        let mut driver = Command::new("/usr/bin/chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting chromedriver")?;
        let profile = tempfile::tempdir()?;
        let caps = json!({"goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-quic", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--window-size=1280,900",
                format!("--user-data-dir={}", profile.path().display())],
        }});
        let caps = caps.as_object().cloned().context("capabilities")?;
        // chromedriver is spoken to in plain HTTP; the connector still wants a TLS provider.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let deadline = common::Deadline::after_secs(30);
        let client = loop {
            let connected = ClientBuilder::rustls()?
                .capabilities(caps.clone())
                .connect(&format!("http://127.0.0.1:{port}"))
                .await;
            match connected {
                Ok(client) => break client,
                Err(e) => {
                    if deadline.passed() {
                        let _ = driver.kill();
                        bail!("no WebDriver session with chromedriver: {e}");
                    }
                    deadline.tick(|| "chromedriver".into()).await?;
                }
            }
        };
        Ok(Self {
            client,
            driver,
            _profile: profile,
        })
    }

    /// Runs `js` (an expression) in the page.
    async fn eval(&self, js: &str) -> Result<Value> {
        Ok(self
            .client
            .execute(&format!("return ({js});"), vec![])
            .await?)
    }

    /// Polls `js` until it is true.
    async fn wait_until(&self, js: &str, what: &str, secs: u64) -> Result<()> {
        let deadline = common::Deadline::after_secs(secs);
        loop {
            if self.eval(js).await? == json!(true) {
                return Ok(());
            }
            let text = self
                .eval("document.body ? document.body.innerText : ''")
                .await?;
            deadline
                .tick(|| {
                    format!(
                        "{what}; the page says:\n{}",
                        text.as_str().unwrap_or_default()
                    )
                })
                .await?;
        }
    }

    /// Clicks the element `css` picks, as a person does; again if a live update replaced it
    /// between finding and clicking.
    async fn click(&self, css: &str) -> Result<()> {
        let mut tries = 0;
        loop {
            let clicked = match self.client.find(Locator::Css(css)).await {
                Ok(element) => element.click().await,
                Err(e) => Err(e),
            };
            match clicked {
                Ok(()) => return Ok(()),
                Err(e) if tries < 5 && e.to_string().contains("stale element") => tries += 1,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// The text of the element `css` picks.
    async fn text(&self, css: &str) -> Result<String> {
        let js = format!("document.querySelector({}).innerText", json!(css));
        let text = self.eval(&js).await?;
        Ok(text.as_str().unwrap_or_default().to_owned())
    }

    async fn screenshot(&self, name: &str) -> Result<PathBuf> {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .parent()
            .context("target/")?
            .join("screenshots");
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(format!("dashboard-{name}.png"));
        std::fs::write(&path, self.client.screenshot().await?)?;
        Ok(path)
    }

    async fn close(mut self) {
        let _ = self.client.clone().close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// `inspector -o serve` in the environment, and its address.
fn serve(env: &Env, extra: &[&str]) -> Result<(Subscriber, String)> {
    let port = common::free_port()?;
    let bind = format!("127.0.0.1:{port}");
    let mut command = env.command("inspector");
    command.args(["-o", "serve", "--bind", &bind]).args(extra);
    let server = Subscriber::start(command, env.path("serve.log"), None)?;
    let deadline = common::Deadline::after_secs(30);
    while std::net::TcpStream::connect(&bind).is_err() {
        deadline.tick_blocking(|| format!("the dashboard did not listen: {}", server.log()))?;
    }
    Ok((server, format!("http://{bind}")))
}

fn task(env: &Env, name: &str, body: &str) -> Result<String> {
    let path = env.write(name, body)?;
    let ids = env.publish(&path)?;
    ids.into_iter().next().context("a message id")
}

fn bash(queue: &str, script: &str) -> String {
    json!({"mailing_to": [{"unique_key": queue}], "cmd": {"Bash": {"cmd": [script]}}}).to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn hosts_attempts_and_a_followed_message_are_live_in_a_real_browser() -> Result<()> {
    let env = ready_env(DbKind::Sqlite, As::HostUsers).await?;
    let _h1 = env.subscriber("h1")?;
    let failed = task(&env, "fail.json", &bash("h1", "echo broken >&2; exit 3"))?;
    env.wait_attempts(&failed, 30, |a| common::count_ended(a) == 1)
        .await?;
    let (_server, url) = serve(&env, &[])?;
    let browser = Browser::start().await?;
    let b = &browser;

    hosts_page(b, &url, &failed).await?;
    attempts_page(b, &env, &url).await?;
    follow_page(b, &env, &url).await?;
    escapes_page(b, &env, &url).await?;
    browser.close().await;
    Ok(())
}

/// The hosts page: who is down, what failed.
async fn hosts_page(b: &Browser, url: &str, failed: &str) -> Result<()> {
    // Hosts: h2 and h3 have no subscriber and say so; h1 failed in the last hour.
    b.client.goto(&format!("{url}/")).await?;
    b.wait_until(
        "document.querySelectorAll('article.host.down').length === 2",
        "h2 and h3 down",
        30,
    )
    .await?;
    let h1 = b
        .eval("document.querySelector('article.host[data-queue=h1]').className")
        .await?;
    assert_eq!(h1, "host failing", "h1 listens and failed in the last hour");
    let tile = b
        .eval("document.querySelector('[data-tile=down] b').textContent")
        .await?;
    assert_eq!(tile, "2");
    let failures = b
        .eval("document.querySelector('table.attempts').innerText")
        .await?;
    assert!(failures.as_str().unwrap().contains(failed), "{failures}");
    println!("screenshot: {}", b.screenshot("hosts").await?.display());

    Ok(())
}

/// The attempts page: live, and its filters checked.
async fn attempts_page(b: &Browser, env: &Env, url: &str) -> Result<()> {
    // Attempts: a command published now appears and ends on the open page, which is not reloaded.
    b.client.goto(&format!("{url}/attempts?queue=h1")).await?;
    b.wait_until(
        "document.querySelector('table.attempts') !== null",
        "the attempts table",
        30,
    )
    .await?;
    b.eval("(window.pqxNotReloaded = true)").await?;
    let echo = task(env, "echo.json", &bash("h1", "echo hello"))?;
    b.wait_until(
        &format!("document.querySelector('tr[data-message-id=\"{echo}\"][data-status=succeeded]') !== null"),
        "the new command, succeeded, on the open page",
        30,
    )
    .await?;
    assert_eq!(b.eval("window.pqxNotReloaded === true").await?, json!(true));
    println!("screenshot: {}", b.screenshot("attempts").await?.display());

    // A filter that does not parse is said on the page.
    b.client
        .goto(&format!("{url}/attempts?since=yesterday-ish"))
        .await?;
    let problem = b.text("p.problem").await?;
    assert!(problem.starts_with("since: "), "{problem}");

    Ok(())
}

/// A running message followed line by line, then its result.
async fn follow_page(b: &Browser, env: &Env, url: &str) -> Result<()> {
    // One message: a running command's lines appear as it prints them, then its result.
    let slow = task(
        env,
        "slow.json",
        &bash(
            "h1",
            "echo first-line; sleep 1; echo second-line >&2; sleep 4; echo last-line",
        ),
    )?;
    env.wait_attempts(&slow, 30, |a| a.len() == 1).await?;
    b.client.goto(&format!("{url}/messages/{slow}")).await?;
    b.wait_until(
        "(document.getElementById('live-output') || {textContent: ''}).textContent.includes('h1| second-line')",
        "the second line, live",
        30,
    )
    .await?;
    let running = env.attempts(&slow).await?;
    assert!(running[0].result.is_none(), "the line came while it ran");
    println!(
        "screenshot: {}",
        b.screenshot("message-following").await?.display()
    );
    b.wait_until(
        "document.querySelector('article.attempt[data-status=succeeded]') !== null",
        "the result, without a reload",
        30,
    )
    .await?;
    let flash = b.text("#flash").await?;
    assert!(flash.contains("exit status 0"), "{flash}");
    let out = b
        .eval("document.querySelector('pre.output.stdout').textContent")
        .await?;
    assert_eq!(out, "first-line\nlast-line\n");

    Ok(())
}

/// What commands print is text; an unknown message is said so.
async fn escapes_page(b: &Browser, env: &Env, url: &str) -> Result<()> {
    // What a command prints is shown as text: its markup and escapes do nothing.
    let evil = task(
        env,
        "evil.json",
        &bash(
            "h1",
            r#"printf '<b id=bold>bold</b><img src=x onerror="window.pwned=1"><script>window.pwned=2</script>\033[31mred\n'"#,
        ),
    )?;
    env.wait_attempts(&evil, 30, |a| common::count_ended(a) == 1)
        .await?;
    b.client.goto(&format!("{url}/messages/{evil}")).await?;
    let shown = b
        .eval("document.querySelector('pre.output.stdout').textContent")
        .await?;
    assert!(
        shown
            .as_str()
            .unwrap()
            .starts_with("<b id=bold>bold</b><img src=x")
            && shown.as_str().unwrap().contains("</script>\\x1b[31mred"),
        "{shown}"
    );
    assert_eq!(b.eval("document.getElementById('bold') === null && document.querySelector('main img') === null && window.pwned === undefined").await?, json!(true));
    println!("screenshot: {}", b.screenshot("message").await?.display());

    // An unknown message is said so.
    b.client.goto(&format!("{url}/messages/no-such-id")).await?;
    let said = b.text("main p.empty").await?;
    assert!(
        said.contains("No attempt of this message is recorded"),
        "{said}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_letter_is_redriven_with_its_button() -> Result<()> {
    let env = ready_env(DbKind::Sqlite, As::HostUsers).await?;
    let _h1 = env.subscriber("h1")?;
    let mark = env.path("ran-once");
    // Fails the first time (no retry left: dead-lettered), succeeds once sent back.
    let flaky = task(
        &env,
        "flaky.json",
        &bash(
            "h1",
            &format!("test -e {0} || {{ touch {0}; exit 4; }}", mark.display()),
        ),
    )?;
    let deadline = common::Deadline::after_secs(30);
    while env.vhost.queue_len(common::DLQ).await? < 1 {
        deadline
            .tick(|| "waiting for the dead letter".into())
            .await?;
    }
    let (_server, url) = serve(&env, &[])?;
    let browser = Browser::start().await?;
    let b = &browser;
    b.client.goto(&format!("{url}/dlq")).await?;
    b.wait_until(
        &format!("document.querySelector('button[data-message-id=\"{flaky}\"]') !== null"),
        "the dead letter and its button",
        30,
    )
    .await?;
    let reason = b.text("td.reason").await?;
    assert!(
        reason.contains("exit code 4") || reason.contains("exit 4"),
        "{reason}"
    );
    println!(
        "screenshot: {}",
        b.screenshot("dead-letters").await?.display()
    );

    b.click(&format!("button[data-message-id=\"{flaky}\"]"))
        .await?;
    b.wait_until(
        "document.querySelector('main p.empty[data-total=\"0\"]') !== null",
        "an empty dead-letter queue",
        30,
    )
    .await?;
    let flash = b.text("#flash").await?;
    assert!(flash.contains("Re-drove 1, left 0"), "{flash}");
    assert!(flash.contains("sent back to queue h1"), "{flash}");
    println!(
        "screenshot: {}",
        b.screenshot("dead-letters-redriven").await?.display()
    );
    let attempts = env
        .wait_attempts(&flaky, 30, |a| common::count_ended(a) == 2)
        .await?;
    assert_eq!(
        common::ended(&attempts[1]).exit_code,
        0,
        "ran again, and succeeded"
    );
    assert_eq!(env.vhost.queue_len(common::DLQ).await?, 0);
    browser.close().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_database_or_broker_away_is_a_banner_that_goes_away_by_itself() -> Result<()> {
    let env = ready_env(DbKind::Postgres, As::Admin).await?;
    let _h1 = env.subscriber("h1")?;
    let done = task(&env, "ok.json", &bash("h1", "true"))?;
    env.wait_attempts(&done, 30, |a| common::count_ended(a) == 1)
        .await?;
    // The dashboard reaches the database through a proxy this test cuts.
    let mut db = url::Url::parse(&env.db.url)?;
    let upstream = (
        db.host_str().context("host")?.to_owned(),
        db.port().unwrap_or(5432),
    );
    let proxy = common::TcpProxy::start(upstream).await?;
    db.set_port(Some(proxy.port)).ok().context("port")?;
    let password = db.password().unwrap_or_default().to_owned();
    let api = common::TcpProxy::start((common::mq_host(), env.vhost.broker.api_port)).await?;
    env.write(
        "conn.yml",
        &format!(
            "mq:\n  host: {host}\n  port: {amqp}\n  user: {user}\n  pass: {pass}\n  vhost: {vhost}\n\
             mq_api:\n  host: 127.0.0.1\n  port: {api}\n  user: {user}\n  pass: {pass}\n  vhost: {vhost}\n\
             db:\n  url: \"{db}\"\n",
            host = common::mq_host(),
            amqp = env.vhost.broker.amqp_port,
            user = common::MQ_USER,
            pass = common::MQ_PASS,
            vhost = env.vhost.name,
            api = api.port,
        ),
    )?;

    let (_server, url) = serve(&env, &[])?;
    let browser = Browser::start().await?;
    let b = &browser;
    b.client.goto(&format!("{url}/attempts")).await?;
    b.wait_until(
        &format!("document.querySelector('tr[data-message-id=\"{done}\"]') !== null"),
        "the attempt",
        30,
    )
    .await?;
    proxy.cut();
    b.wait_until(
        "(document.querySelector('.banner') || {textContent: ''}).textContent.includes('The database cannot be reached')",
        "the banner",
        60,
    )
    .await?;
    let banner = b.text(".banner").await?;
    assert!(banner.contains(":***@"), "{banner}");
    assert!(
        password.is_empty() || !banner.contains(&format!(":{password}@")),
        "the password is not shown: {banner}"
    );
    println!(
        "screenshot: {}",
        b.screenshot("database-away").await?.display()
    );
    proxy.restore();
    b.wait_until(
        &format!("document.querySelector('.banner') === null && document.querySelector('tr[data-message-id=\"{done}\"]') !== null"),
        "the page back by itself",
        60,
    )
    .await?;

    // The broker's management API away: the hosts page says so, and comes back.
    b.client.goto(&format!("{url}/")).await?;
    b.wait_until(
        "document.querySelector('article.host[data-queue=h1]') !== null",
        "the hosts",
        30,
    )
    .await?;
    api.cut();
    b.wait_until(
        "(document.querySelector('.banner') || {textContent: ''}).textContent.includes('The broker cannot be reached')",
        "the broker's banner",
        60,
    )
    .await?;
    let banner = b.text(".banner").await?;
    assert!(banner.contains("The broker cannot be reached"), "{banner}");
    assert!(
        !banner.contains(&format!(":{}@", common::MQ_PASS)),
        "{banner}"
    );
    println!(
        "screenshot: {}",
        b.screenshot("broker-away").await?.display()
    );
    api.restore();
    b.wait_until(
        "document.querySelector('.banner') === null && document.querySelector('article.host[data-queue=h1]') !== null",
        "the hosts back by themselves",
        60,
    )
    .await?;
    browser.close().await;
    Ok(())
}

/// The HTTP rules, tried the way a hostile page or a neighbour on the network would.
#[tokio::test]
async fn the_dashboard_answers_only_whom_it_should() -> Result<()> {
    let env = ready_env(DbKind::Sqlite, As::HostUsers).await?;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;

    // Another address than loopback, with no token: refused before listening.
    let out = env.run("inspector", &["-o", "serve", "--bind", "0.0.0.0:0"])?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("an address that is not loopback needs a token (--token-file FILE"),
        "{stderr}"
    );
    env.write("short-token", "tooshort\n")?;
    let out = env.run("inspector", &["-o", "serve", "--token-file", "short-token"])?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("the dashboard token in short-token a token needs at least 16 characters"),
        "{stderr}"
    );

    let (_open, url) = serve(&env, &[])?;
    // DNS rebinding: a page on another name that resolves here is not answered.
    let rebound = http
        .get(format!("{url}/api/hosts"))
        .header("Host", "evil.example:80")
        .send()
        .await?;
    assert_eq!(rebound.status(), 403);
    // A cross-site form cannot re-drive: no X-Pqx-Request header.
    let forged = http
        .post(format!("{url}/api/dlq/redrive"))
        .header("Content-Type", "application/json")
        .body(r#"{"all": true}"#)
        .send()
        .await?;
    assert_eq!(forged.status(), 403);
    // The API is the --json of the CLI.
    let api: Value = http
        .get(format!("{url}/api/hosts"))
        .send()
        .await?
        .json()
        .await?;
    let cli: Value = serde_json::from_str(&env.ok("inspector", &["-o", "hosts", "--json"])?)?;
    let queues = |doc: &Value| {
        doc["hosts"]
            .as_array()
            .map(|h| h.iter().map(|h| h["queue"].clone()).collect::<Vec<_>>())
    };
    assert_eq!(queues(&api), queues(&cli));
    assert_eq!(queues(&api).map(|q| q.len()), Some(3));
    let page = http.get(format!("{url}/")).send().await?;
    let csp = page.headers()["content-security-policy"]
        .to_str()?
        .to_owned();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    let bad = http
        .get(format!("{url}/api/attempts?status=lost"))
        .send()
        .await?;
    assert_eq!(bad.status(), 400);
    let body: Value = bad.json().await?;
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .starts_with("status: \"lost\""),
        "{body}"
    );
    let wrong = http
        .post(format!("{url}/api/dlq/redrive"))
        .header("X-Pqx-Request", "1")
        .body(r#"{"message_id": "nope"}"#)
        .send()
        .await?;
    assert_eq!(wrong.status(), 404);

    Ok(())
}

/// With a token (from a file: never on the command line), nothing is answered without it.
#[tokio::test]
async fn with_a_token_nothing_is_answered_without_it() -> Result<()> {
    let env = ready_env(DbKind::Sqlite, As::HostUsers).await?;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let token = "s3cret-dashboard-token-0123";
    env.write("token", &format!("{token}\n"))?;
    let (server, url) = serve(&env, &["--token-file", "token"])?;
    let none = http.get(format!("{url}/api/hosts")).send().await?;
    assert_eq!(none.status(), 401);
    let page = http.get(format!("{url}/")).send().await?;
    assert_eq!(page.headers()["location"], "/login");
    let guessed = http
        .get(format!("{url}/api/hosts"))
        .bearer_auth("s3cret-dashboard-token-0124")
        .send()
        .await?;
    assert_eq!(guessed.status(), 401);
    let bearer = http
        .get(format!("{url}/api/hosts"))
        .bearer_auth(token)
        .send()
        .await?;
    assert_eq!(bearer.status(), 200);
    let login = http
        .post(format!("{url}/login"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(format!("token={token}"))
        .send()
        .await?;
    assert_eq!(login.status(), 303);
    let cookie = login.headers()["set-cookie"].to_str()?.to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let session = cookie.split(';').next().unwrap().to_owned();
    let signed_in = http
        .get(format!("{url}/"))
        .header("Cookie", &session)
        .send()
        .await?;
    assert_eq!(signed_in.status(), 200);
    let refused = http
        .post(format!("{url}/login"))
        .body("token=guess-guess-guess-guess")
        .send()
        .await?;
    assert_eq!(refused.status(), 401);
    for line in common::all_cmdlines() {
        assert!(
            !line.contains(token),
            "the token is in a process list: {line}"
        );
    }
    assert!(!server.log().contains(token));
    Ok(())
}
