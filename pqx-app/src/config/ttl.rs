//! init.yml's `dead_message_ttl`: how long a dead letter is kept. A bare number is milliseconds, as
//! in the original PQX (its template's 43200000 is 12 hours), so that its init.yml keeps its
//! meaning; a number with a unit (`7d`, `12h`, `30m`, `90s`, `500ms`) says it plainly.

use std::fmt;
use std::time::Duration;

use pqx::mq::MAX_TTL_MS;
use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

/// A dead letter's time to live, within the broker's range (at most 2^32-1 ms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeadMessageTtl(Duration);

impl DeadMessageTtl {
    /// The TTL in milliseconds, as the broker's `x-message-ttl` takes it.
    pub fn millis(self) -> u32 {
        u32::try_from(self.0.as_millis()).unwrap_or(u32::MAX)
    }

    fn checked(duration: Duration, given: &dyn fmt::Display) -> Result<Self, String> {
        if duration.as_millis() > u128::from(MAX_TTL_MS) {
            return Err(format!(
                "{given} is out of range: at most {MAX_TTL_MS} ms (49.7 days, the broker's longest TTL)"
            ));
        }
        Ok(Self(duration))
    }
}

impl fmt::Display for DeadMessageTtl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

const EXPECTED: &str =
    "milliseconds (43200000 is 12 hours) or a number with a unit: 7d, 12h, 30m, 90s, 500ms";

struct TtlVisitor;

impl Visitor<'_> for TtlVisitor {
    type Value = DeadMessageTtl;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(EXPECTED)
    }

    fn visit_u64<E: de::Error>(self, ms: u64) -> Result<Self::Value, E> {
        DeadMessageTtl::checked(Duration::from_millis(ms), &ms).map_err(E::custom)
    }

    fn visit_i64<E: de::Error>(self, ms: i64) -> Result<Self::Value, E> {
        match u64::try_from(ms) {
            Ok(ms) => self.visit_u64(ms),
            Err(_) => Err(E::custom(format!("{ms} is negative: expected {EXPECTED}"))),
        }
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
        let text = text.trim();
        if let Ok(ms) = text.parse::<u64>() {
            return self.visit_u64(ms);
        }
        let duration = humantime::parse_duration(text).map_err(|e| {
            E::custom(format!(
                "{text:?} is not a duration ({e}): expected {EXPECTED}"
            ))
        })?;
        DeadMessageTtl::checked(duration, &text).map_err(E::custom)
    }
}

impl<'de> Deserialize<'de> for DeadMessageTtl {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(TtlVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<u32, String> {
        serde_yaml::from_str::<DeadMessageTtl>(yaml)
            .map(DeadMessageTtl::millis)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn a_bare_number_is_milliseconds_as_in_the_original() {
        assert_eq!(parse("43200000"), Ok(43_200_000));
        assert_eq!(parse("\"600\""), Ok(600));
        assert_eq!(parse("0"), Ok(0));
    }

    #[test]
    fn units_say_what_they_mean() {
        assert_eq!(parse("7d"), Ok(604_800_000));
        assert_eq!(parse("12h"), Ok(43_200_000));
        assert_eq!(parse("90s"), Ok(90_000));
        assert_eq!(parse("500ms"), Ok(500));
        assert_eq!(parse("1h 30m"), Ok(5_400_000));
    }

    #[test]
    fn out_of_range_or_not_a_duration_is_refused_with_what_is_expected() {
        let max = MAX_TTL_MS;
        assert_eq!(parse(&max.to_string()), Ok(u32::MAX));
        let over = parse(&(max + 1).to_string()).unwrap_err();
        assert!(
            over.contains("out of range: at most 4294967295 ms"),
            "{over}"
        );
        assert!(parse("50d").unwrap_err().contains("out of range"));
        let bad = parse("soon").unwrap_err();
        assert!(
            bad.contains("\"soon\" is not a duration") && bad.contains("7d, 12h"),
            "{bad}"
        );
        assert!(parse("-5").unwrap_err().contains("-5 is negative"));
        assert!(parse("1.5").unwrap_err().contains("milliseconds"));
    }
}
