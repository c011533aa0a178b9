//! Numbers and durations as people read them in a gate's reasons: "1,240", "4m30s".

use std::time::Duration;

/// A count rounded to a whole number, with thousands separators: 12000 → "12,000".
pub(crate) fn count(value: f64) -> String {
    let rounded = value.round();
    let digits = format!("{}", rounded.abs() as u64);
    let mut grouped = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if rounded < 0.0 {
        grouped.push('-');
    }
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    grouped
}

/// A duration in its largest units, seconds at finest: "45s", "4m", "1h30m", "2d3h";
/// under a second, milliseconds: "200ms".
pub(crate) fn duration(duration: Duration) -> String {
    if duration < Duration::from_secs(1) {
        return format!("{}ms", duration.as_millis());
    }
    let mut seconds = duration.as_secs();
    let mut text = String::new();
    for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
        if seconds >= size {
            text.push_str(&format!("{}{unit}", seconds / size));
            seconds %= size;
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_have_thousands_separators() {
        assert_eq!(count(0.0), "0");
        assert_eq!(count(800.0), "800");
        assert_eq!(count(1240.4), "1,240");
        assert_eq!(count(12_000.0), "12,000");
        assert_eq!(count(1_234_567.0), "1,234,567");
        assert_eq!(count(-5000.0), "-5,000");
    }

    #[test]
    fn durations_use_their_largest_units() {
        assert_eq!(duration(Duration::from_millis(200)), "200ms");
        assert_eq!(duration(Duration::from_secs(45)), "45s");
        assert_eq!(duration(Duration::from_secs(240)), "4m");
        assert_eq!(duration(Duration::from_secs(270)), "4m30s");
        assert_eq!(duration(Duration::from_secs(5400)), "1h30m");
        assert_eq!(duration(Duration::from_secs(183_600)), "2d3h");
    }
}
