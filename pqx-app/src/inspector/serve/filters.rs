//! The attempts page's filters, from its query string: the same as `inspector hist`'s options,
//! checked the same way, and said back when one does not parse.

use clap::ValueEnum;
use serde::Deserialize;

use crate::inspector::since::parse_since;
use crate::{Status, Wanted};

/// As the query string gives them; an empty field is no filter (what an empty form sends).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Filters {
    pub message_id: Option<String>,
    pub queue: Option<String>,
    pub host: Option<String>,
    pub status: Option<String>,
    pub since: Option<String>,
    pub limit: Option<String>,
}

fn given(field: &Option<String>) -> Option<String> {
    field
        .as_deref()
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

impl Filters {
    /// What they pick and how many, or what is wrong with one of them.
    pub fn wanted(&self, default_limit: u64) -> Result<(Wanted, u64), String> {
        let status = match given(&self.status) {
            None => None,
            Some(s) => Some(Status::from_str(&s, true).map_err(|_| {
                format!(
                    "status: {s:?} is not one of running, succeeded, failed, skipped, cancelled"
                )
            })?),
        };
        let since = match given(&self.since) {
            None => None,
            Some(s) => Some(parse_since(&s).map_err(|e| format!("since: {e}"))?),
        };
        let limit = match given(&self.limit) {
            None => default_limit,
            Some(l) => l
                .parse::<u64>()
                .ok()
                .filter(|n| (1..=10_000).contains(n))
                .ok_or_else(|| format!("limit: {l:?} is not a number from 1 to 10000"))?,
        };
        let wanted = Wanted {
            message_id: given(&self.message_id),
            queue: given(&self.queue),
            host: given(&self.host),
            status,
            since,
        };
        Ok((wanted, limit))
    }

    /// The query string that gives them again (for the live updates of the same page).
    pub fn query(&self) -> String {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        let fields = [
            ("message_id", &self.message_id),
            ("queue", &self.queue),
            ("host", &self.host),
            ("status", &self.status),
            ("since", &self.since),
            ("limit", &self.limit),
        ];
        for (name, value) in fields {
            if let Some(v) = given(value) {
                q.append_pair(name, &v);
            }
        }
        q.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_are_checked_as_hist_checks_them() {
        let f = |status: &str, since: &str, limit: &str| Filters {
            status: Some(status.into()),
            since: Some(since.into()),
            limit: Some(limit.into()),
            ..Filters::default()
        };
        let (wanted, limit) = f("FAILED", "1h", "").wanted(50).unwrap();
        assert_eq!((wanted.status, limit), (Some(Status::Failed), 50));
        assert!(wanted.since.is_some());
        let (wanted, _) = f("", " ", "").wanted(50).unwrap();
        assert_eq!((wanted.status, wanted.since), (None, None));
        assert!(f("lost", "", "")
            .wanted(50)
            .unwrap_err()
            .starts_with("status: \"lost\""));
        assert!(f("", "yesterday-ish", "")
            .wanted(50)
            .unwrap_err()
            .starts_with("since: "));
        assert!(f("", "", "0")
            .wanted(50)
            .unwrap_err()
            .starts_with("limit: \"0\""));
        let q = Filters {
            queue: Some("h1 & h2".into()),
            host: Some(String::new()),
            ..Filters::default()
        };
        assert_eq!(q.query(), "queue=h1+%26+h2");
    }
}
