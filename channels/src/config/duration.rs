//! Go `time.Duration` strings, as Fabric stores them in channel config values.
//!
//! `BatchTimeout.timeout` and the etcdraft `Options.tick_interval` are written by Go's
//! `Duration.String()` ("2s", "500ms", "1m30s") and read with `time.ParseDuration`. GridLedger
//! keeps durations as integer milliseconds (units in names), so this module converts both ways:
//! formatting must reproduce Go's spelling exactly (the bytes end up in hashed config), and
//! parsing must accept everything Go accepts that a real network may have written.

use thiserror::Error;

/// Why a duration string could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DurationError {
    /// The string is empty.
    #[error("empty duration")]
    Empty,
    /// A negative duration where only non-negative ones make sense.
    #[error("negative duration {0:?}")]
    Negative(String),
    /// Not Go duration syntax (`[0-9]+(\.[0-9]*)?(ns|us|µs|ms|s|m|h)`, repeated).
    #[error("invalid duration {input:?}: {reason}")]
    Invalid {
        /// The string as given.
        input: String,
        /// What was wrong with it.
        reason: &'static str,
    },
    /// The duration does not fit in 64 bits of nanoseconds (Go's own limit).
    #[error("duration {0:?} is too large")]
    Overflow(String),
}

const NANOS_PER_MILLI: u128 = 1_000_000;

/// Parses a Go duration string into whole milliseconds (sub-millisecond parts are truncated).
///
/// Accepts the units `ns`, `us`, `µs`, `μs`, `ms`, `s`, `m`, `h`, fractions ("1.5s") and
/// sequences ("1m30s"); "0" alone means zero. Negative durations are rejected.
pub fn parse_go_duration_ms(input: &str) -> Result<u64, DurationError> {
    let nanos = parse_go_duration_nanos(input)?;
    u64::try_from(nanos / NANOS_PER_MILLI).map_err(|_| DurationError::Overflow(input.to_string()))
}

/// Parses a Go duration string into nanoseconds, with Go's limit of `i64::MAX` nanoseconds.
fn parse_go_duration_nanos(input: &str) -> Result<u128, DurationError> {
    let invalid = |reason| DurationError::Invalid {
        input: input.to_string(),
        reason,
    };
    let mut rest = input;
    if let Some(stripped) = rest.strip_prefix('+') {
        rest = stripped;
    } else if rest.starts_with('-') {
        return Err(DurationError::Negative(input.to_string()));
    }
    if rest.is_empty() {
        return Err(DurationError::Empty);
    }
    if rest == "0" {
        return Ok(0);
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (int_part, after_int) = rest.split_at(int_len);
        let (frac_part, after_number) = match after_int.strip_prefix('.') {
            Some(after_dot) => {
                let frac_len = after_dot.bytes().take_while(u8::is_ascii_digit).count();
                after_dot.split_at(frac_len)
            }
            None => ("", after_int),
        };
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(invalid("expected a number"));
        }
        let unit_len = after_number
            .char_indices()
            .find(|&(_, c)| c == '.' || c.is_ascii_digit())
            .map_or(after_number.len(), |(i, _)| i);
        let (unit, after_unit) = after_number.split_at(unit_len);
        let unit_nanos: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60 * 1_000_000_000,
            "h" => 3_600 * 1_000_000_000,
            "" => return Err(invalid("missing unit")),
            _ => return Err(invalid("unknown unit")),
        };
        let whole: u128 = if int_part.is_empty() {
            0
        } else {
            int_part
                .parse()
                .map_err(|_| DurationError::Overflow(input.to_string()))?
        };
        let mut amount = whole
            .checked_mul(unit_nanos)
            .ok_or_else(|| DurationError::Overflow(input.to_string()))?;
        // The fraction contributes frac / 10^digits of the unit; digits beyond nanosecond
        // precision cannot matter, so only the first 30 are read (10^30 * 3.6e12 fits u128).
        let mut scale: u128 = 1;
        let mut frac_value: u128 = 0;
        for digit in frac_part.bytes().take(30) {
            frac_value = frac_value * 10 + u128::from(digit - b'0');
            scale *= 10;
        }
        amount += frac_value * unit_nanos / scale;
        total = total
            .checked_add(amount)
            .ok_or_else(|| DurationError::Overflow(input.to_string()))?;
        if total > i64::MAX as u128 {
            return Err(DurationError::Overflow(input.to_string()));
        }
        rest = after_unit;
    }
    Ok(total)
}

/// Formats whole milliseconds exactly as Go's `time.Duration.String()` does: "0s", "500ms",
/// "2s", "1.5s", "1m30s", "2h0m0s".
pub fn format_go_duration_ms(ms: u64) -> String {
    if ms == 0 {
        return "0s".to_string();
    }
    if ms < 1_000 {
        return format!("{ms}ms");
    }
    let hours = ms / 3_600_000;
    let minutes = (ms / 60_000) % 60;
    let seconds = (ms / 1_000) % 60;
    let millis = ms % 1_000;
    let mut seconds_text = seconds.to_string();
    if millis != 0 {
        let frac = format!("{millis:03}");
        seconds_text.push('.');
        seconds_text.push_str(frac.trim_end_matches('0'));
    }
    if hours > 0 {
        format!("{hours}h{minutes}m{seconds_text}s")
    } else if minutes > 0 {
        format!("{minutes}m{seconds_text}s")
    } else {
        format!("{seconds_text}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_go() {
        assert_eq!(format_go_duration_ms(0), "0s");
        assert_eq!(format_go_duration_ms(1), "1ms");
        assert_eq!(format_go_duration_ms(500), "500ms");
        assert_eq!(format_go_duration_ms(2_000), "2s");
        assert_eq!(format_go_duration_ms(1_500), "1.5s");
        assert_eq!(format_go_duration_ms(1_050), "1.05s");
        assert_eq!(format_go_duration_ms(60_000), "1m0s");
        assert_eq!(format_go_duration_ms(90_000), "1m30s");
        assert_eq!(format_go_duration_ms(3_600_000), "1h0m0s");
        assert_eq!(format_go_duration_ms(3_723_004), "1h2m3.004s");
    }

    #[test]
    fn parses_what_go_writes() {
        for ms in [
            0, 1, 500, 999, 1_000, 1_500, 2_000, 60_000, 90_000, 3_723_004,
        ] {
            assert_eq!(parse_go_duration_ms(&format_go_duration_ms(ms)), Ok(ms));
        }
        assert_eq!(parse_go_duration_ms("1.5h"), Ok(5_400_000));
        assert_eq!(parse_go_duration_ms("250000us"), Ok(250));
        assert_eq!(parse_go_duration_ms("1500000ns"), Ok(1));
        assert_eq!(parse_go_duration_ms(".5s"), Ok(500));
        assert_eq!(parse_go_duration_ms("+2s"), Ok(2_000));
    }

    #[test]
    fn rejects_malformed_durations() {
        assert_eq!(parse_go_duration_ms(""), Err(DurationError::Empty));
        assert!(matches!(
            parse_go_duration_ms("-1s"),
            Err(DurationError::Negative(_))
        ));
        assert!(matches!(
            parse_go_duration_ms("2"),
            Err(DurationError::Invalid { .. })
        ));
        assert!(matches!(
            parse_go_duration_ms("2 s"),
            Err(DurationError::Invalid { .. })
        ));
        assert!(matches!(
            parse_go_duration_ms("2d"),
            Err(DurationError::Invalid { .. })
        ));
        assert!(matches!(
            parse_go_duration_ms("s"),
            Err(DurationError::Invalid { .. })
        ));
        assert!(matches!(
            parse_go_duration_ms("3000000h"),
            Err(DurationError::Overflow(_))
        ));
    }
}
