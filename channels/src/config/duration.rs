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

const NANOS_PER_MILLI: u64 = 1_000_000;

/// Go's limit: a `time.Duration` is an `int64` count of nanoseconds.
const MAX_NANOS: u64 = i64::MAX as u64;

/// Parses a Go duration string into whole milliseconds (sub-millisecond parts are truncated).
///
/// Accepts the units `ns`, `us`, `µs`, `μs`, `ms`, `s`, `m`, `h`, fractions ("1.5s") and
/// sequences ("1m30s"); "0" alone means zero. Negative durations are rejected. Fractions are
/// scaled exactly as Go's `time.ParseDuration` scales them (digits beyond 63 bits are dropped,
/// the scaling is done in `f64`), so both read the same bytes as the same duration.
pub fn parse_go_duration_ms(input: &str) -> Result<u64, DurationError> {
    Ok(parse_go_duration_nanos(input)? / NANOS_PER_MILLI)
}

/// Parses a Go duration string into nanoseconds, with Go's limit of `i64::MAX` nanoseconds.
fn parse_go_duration_nanos(input: &str) -> Result<u64, DurationError> {
    let invalid = |reason| DurationError::Invalid {
        input: input.to_string(),
        reason,
    };
    let overflow = || DurationError::Overflow(input.to_string());
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
    let mut total: u64 = 0;
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
        let unit_nanos: u64 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60 * 1_000_000_000,
            "h" => 3_600 * 1_000_000_000,
            "" => return Err(invalid("missing unit")),
            _ => return Err(invalid("unknown unit")),
        };
        let whole = leading_int(int_part).ok_or_else(overflow)?;
        let mut amount = whole
            .checked_mul(unit_nanos)
            .filter(|&v| v <= MAX_NANOS)
            .ok_or_else(overflow)?;
        let (fraction, scale) = leading_fraction(frac_part);
        if fraction > 0 {
            // As Go: f64 keeps fractions of an hour nanosecond-accurate, and the product is at
            // most one unit (3.6e12 ns), so the conversion back cannot saturate.
            let nanos = (fraction as f64 * (unit_nanos as f64 / scale)) as u64;
            amount = amount
                .checked_add(nanos)
                .filter(|&v| v <= MAX_NANOS)
                .ok_or_else(overflow)?;
        }
        total = total
            .checked_add(amount)
            .filter(|&v| v <= MAX_NANOS)
            .ok_or_else(overflow)?;
        rest = after_unit;
    }
    Ok(total)
}

/// The integer part of a number, `None` when it exceeds Go's 2^63 bound.
fn leading_int(digits: &str) -> Option<u64> {
    digits.bytes().try_fold(0u64, |acc, digit| {
        acc.checked_mul(10)
            .and_then(|v| v.checked_add(u64::from(digit - b'0')))
            .filter(|&v| v <= 1 << 63)
    })
}

/// The fraction digits as Go's `leadingFraction` reads them: a value and its power-of-ten
/// scale, accumulating digits while the value fits in 63 bits and ignoring the rest (they are
/// far below a nanosecond). Never overflows, however long the fraction.
fn leading_fraction(digits: &str) -> (u64, f64) {
    let mut value: u64 = 0;
    let mut scale = 1.0f64;
    for digit in digits.bytes() {
        if value > MAX_NANOS / 10 {
            break;
        }
        let next = value * 10 + u64::from(digit - b'0');
        if next > 1 << 63 {
            break;
        }
        value = next;
        scale *= 10.0;
    }
    (value, scale)
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
    fn long_fractions_drop_precision_like_go_instead_of_overflowing() {
        // Thirty digits: Go keeps the first 18 (the 19th would pass 63 bits) and scales in
        // f64, where 0.999999999999999999 h rounds to exactly one hour.
        assert_eq!(
            parse_go_duration_ms("0.999999999999999999999999999999h"),
            Ok(3_600_000)
        );
        assert_eq!(
            parse_go_duration_ms("1.000000000000000000000000000001s"),
            Ok(1_000)
        );
        // Likewise 1.999…ms is 2ms to Go, however many nines follow.
        assert_eq!(
            parse_go_duration_ms(&format!("1.{}ms", "9".repeat(500))),
            Ok(2)
        );
        assert_eq!(parse_go_duration_ms("0.0000000001h"), Ok(0));
        assert_eq!(parse_go_duration_ms("2562047.78h"), Ok(9_223_372_008_000));
        assert!(matches!(
            parse_go_duration_ms("2562048h"),
            Err(DurationError::Overflow(_))
        ));
        assert!(matches!(
            parse_go_duration_ms(&format!("{}s", "9".repeat(40))),
            Err(DurationError::Overflow(_))
        ));
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
