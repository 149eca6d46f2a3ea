//! `--at TIME` and timestamps in output (cli.md: RFC 3339, or `YYYY-MM-DD HH:MM[:SS]` local).

use crate::error::{Error, Result};
use chrono::{DateTime, Local, NaiveDateTime, SecondsFormat, TimeZone, Utc};

/// Parse a TIME argument into milliseconds since the epoch.
pub fn parse_time(s: &str) -> Result<i64> {
    let t = s.trim();
    if let Ok(dt) = DateTime::parse_from_rfc3339(t) {
        return Ok(dt.timestamp_millis());
    }
    for fmt in ["%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M"] {
        if let Ok(naive) = NaiveDateTime::parse_from_str(t, fmt) {
            return match Local.from_local_datetime(&naive) {
                chrono::LocalResult::Single(dt) => Ok(dt.timestamp_millis()),
                // A repeated hour at a DST change: take the earlier instant.
                chrono::LocalResult::Ambiguous(a, _) => Ok(a.timestamp_millis()),
                chrono::LocalResult::None => Err(Error::usage(format!(
                    "--at {s:?}: that local time does not exist (a daylight-saving gap)"
                ))),
            };
        }
    }
    Err(Error::usage(format!(
        "--at {s:?}: not a time; use RFC 3339 (2026-11-20T10:00:00Z, 2026-11-20T11:00:00+01:00) \
         or local 'YYYY-MM-DD HH:MM[:SS]'"
    )))
}

/// RFC 3339 UTC with milliseconds, as every JSON time field.
pub fn fmt_time(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .map(|d| d.to_rfc3339_opts(SecondsFormat::Millis, true))
        .unwrap_or_else(|| ms.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_with_offset_is_the_same_instant() {
        assert_eq!(
            parse_time("2026-11-20T11:00:00+01:00").unwrap(),
            parse_time("2026-11-20T10:00:00Z").unwrap()
        );
    }

    #[test]
    fn local_forms_parse_and_garbage_is_a_usage_error() {
        assert!(parse_time("2026-11-20 10:00").is_ok());
        assert!(parse_time("2026-11-20 10:00:30").is_ok());
        for bad in ["yesterday", "2026-13-01 10:00", "2026-11-20T25:00:00Z", ""] {
            assert_eq!(parse_time(bad).unwrap_err().exit_code(), 2, "{bad}");
        }
    }
}
