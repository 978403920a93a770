//! Keeping credentials out of what is shown: a URL's password, whether it is given as user info
//! (`postgres://u:secret@h/db`, `http://u:secret@h/api`) or as a query parameter
//! (`postgres://h/db?password=secret`, `?token=...`), is replaced by `***`.

/// Query parameters whose value is a credential: any name containing one of these.
const SECRET_PARAMS: [&str; 6] = ["pass", "pwd", "secret", "token", "key", "auth"];

/// `url` with its password replaced by `***`, for messages and logs.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (before_query, query) = match rest.split_once('?') {
        Some((before, query)) => (before, Some(query)),
        None => (rest, None),
    };
    let (authority, path) = match before_query.find('/') {
        Some(i) => before_query.split_at(i),
        None => (before_query, ""),
    };
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:***@{host}"),
            None => authority.to_owned(),
        },
        None => authority.to_owned(),
    };
    let mut shown = format!("{scheme}://{authority}{path}");
    if let Some(query) = query {
        let params: Vec<String> = query.split('&').map(redact_param).collect();
        shown.push('?');
        shown.push_str(&params.join("&"));
    }
    shown
}

fn redact_param(param: &str) -> String {
    match param.split_once('=') {
        Some((name, _)) if is_secret(name) => format!("{name}=***"),
        _ => param.to_owned(),
    }
}

fn is_secret(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    SECRET_PARAMS.iter().any(|s| name.contains(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_of_password_is_redacted() {
        let cases = [
            ("postgres://u:secret@h:1/d", "postgres://u:***@h:1/d"),
            ("postgres://u:p@ss@h:1/d", "postgres://u:***@h:1/d"),
            ("http://u:secret@h:15672/api", "http://u:***@h:15672/api"),
            (
                "postgres://h/d?user=u&password=secret&sslmode=require",
                "postgres://h/d?user=u&password=***&sslmode=require",
            ),
            ("amqp://h/v?auth_token=secret", "amqp://h/v?auth_token=***"),
            ("http://h/x?ApiKey=secret&a=b", "http://h/x?ApiKey=***&a=b"),
            ("postgres://u@h:1/d", "postgres://u@h:1/d"),
            ("sqlite://pqx.db?mode=rwc", "sqlite://pqx.db?mode=rwc"),
            (
                "amqp://u:s%2Fcret@h:5672/v?frame_max=1",
                "amqp://u:***@h:5672/v?frame_max=1",
            ),
            ("not a url", "not a url"),
        ];
        for (url, shown) in cases {
            assert_eq!(redact_url(url), shown, "{url}");
            assert!(!redact_url(url).contains("secret"), "{url}");
        }
    }
}
