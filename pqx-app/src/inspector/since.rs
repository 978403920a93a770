//! `--since`: how far back, as a duration (`1h`, `90m`, `2d`) or a time (`2026-11-23T10:00`,
//! `2026-11-23T10:00:00Z`, `2026-11-23`; without a zone, UTC, as the records show times).

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};

/// Parses `--since`, relative to `now`.
pub fn parse_since_at(text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    let text = text.trim();
    if let Ok(ago) = humantime::parse_duration(text) {
        let ago =
            chrono::Duration::from_std(ago).map_err(|_| format!("{text:?} is too long ago"))?;
        return now
            .checked_sub_signed(ago)
            .ok_or_else(|| format!("{text:?} is too long ago"));
    }
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Ok(at.with_timezone(&Utc));
    }
    for format in [
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(at) = NaiveDateTime::parse_from_str(text, format) {
            return Ok(at.and_utc());
        }
    }
    if let Ok(day) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(day.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc());
    }
    Err(format!(
        "{text:?} is neither a duration (1h, 30m, 2d) nor a time (2026-11-23T10:00, UTC unless it says +02:00 or Z)"
    ))
}

/// Parses `--since`, relative to now (clap's value parser).
pub fn parse_since(text: &str) -> Result<DateTime<Utc>, String> {
    parse_since_at(text, Utc::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_times_are_taken_and_the_rest_named() {
        let now = DateTime::parse_from_rfc3339("2026-11-23T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let at = |t: &str| parse_since_at(t, now).map(|d| d.to_rfc3339());
        assert_eq!(at("1h").unwrap(), "2026-11-23T11:00:00+00:00");
        assert_eq!(at("90m").unwrap(), "2026-11-23T10:30:00+00:00");
        assert_eq!(at("2026-11-23T10:00").unwrap(), "2026-11-23T10:00:00+00:00");
        assert_eq!(
            at("2026-11-23T10:00:00+02:00").unwrap(),
            "2026-11-23T08:00:00+00:00"
        );
        assert_eq!(at("2026-11-22").unwrap(), "2026-11-22T00:00:00+00:00");
        let error = at("yesterday").unwrap_err();
        assert!(
            error.starts_with("\"yesterday\" is neither a duration"),
            "{error}"
        );
        assert!(at("2026-13-01").is_err());
    }
}
