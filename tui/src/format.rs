//! Number formatting shared by the views.

/// A rate in bytes per second, shown as bytes (`12.3K/s`) or bits
/// (`98.4Kb/s`), SI prefixes either way.
pub fn rate(bytes_per_sec: f64, bits: bool) -> String {
    let (v, unit) = if bits {
        (bytes_per_sec * 8.0, "b/s")
    } else {
        (bytes_per_sec, "B/s")
    };
    format!("{}{unit}", si(v))
}

/// A byte count: `1.5M`.
pub fn bytes(n: u64) -> String {
    format!("{}B", si(n as f64))
}

/// 1234 -> `1.2K`, 12 -> `12`.
pub fn si(v: f64) -> String {
    const P: [&str; 6] = ["", "K", "M", "G", "T", "P"];
    let mut v = v.max(0.0);
    let mut i = 0;
    while v >= 1000.0 && i + 1 < P.len() {
        v /= 1000.0;
        i += 1;
    }
    if i == 0 {
        format!("{v:.0}")
    } else if v < 10.0 {
        format!("{v:.1}{}", P[i])
    } else {
        format!("{v:.0}{}", P[i])
    }
}

/// A text sparkline of the last `width` values, scaled to their maximum.
pub fn sparkline(
    values: impl DoubleEndedIterator<Item = u64> + ExactSizeIterator,
    width: usize,
) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let vals: Vec<u64> = values
        .rev()
        .take(width)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    let max = vals.iter().copied().max().unwrap_or(0);
    let mut s: String = " ".repeat(width.saturating_sub(vals.len()));
    for v in vals {
        if max == 0 || v == 0 {
            s.push(' ');
        } else {
            let i = ((v as f64 / max as f64) * 7.0).round() as usize;
            s.push(BARS[i.min(7)]);
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(rate(0.0, false), "0B/s");
        assert_eq!(rate(1234.0, false), "1.2KB/s");
        assert_eq!(rate(1234.0, true), "9.9Kb/s");
        assert_eq!(rate(25_000_000.0, false), "25MB/s");
        assert_eq!(bytes(999), "999B");
        assert_eq!(sparkline([0u64, 1, 2, 4, 8].into_iter(), 6), "  ▂▃▅█");
    }
}
