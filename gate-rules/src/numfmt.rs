//! Number formatting shared by messages and reports: never rounds a value before it is compared,
//! only when it is printed, and prints 26/80 as 3.25, not 3.3.

/// Up to three decimals, trailing zeros trimmed ("3.125", "5.5", "2").
pub(crate) fn num(x: f64) -> String {
    trimmed(x, 3)
}

/// Up to four decimals, for training losses ("0.7732").
pub(crate) fn loss(x: f64) -> String {
    trimmed(x, 4)
}

/// Signed change for trend columns: "+1", "-2", "=" for no change.
pub(crate) fn trend(x: f64) -> String {
    let text = num(x);
    match text.as_str() {
        "0" => "=".to_owned(),
        t if t.starts_with('-') => text,
        _ => format!("+{text}"),
    }
}

/// Signed percentage with one decimal ("-35.8%").
pub(crate) fn pct(x: f64) -> String {
    let text = trimmed(x, 1);
    if text.starts_with('-') || text == "0" { format!("{text}%") } else { format!("+{text}%") }
}

/// p-values: four significant-looking decimals, or "< 0.0001".
pub(crate) fn p(x: f64) -> String {
    if x < 0.0001 { "< 0.0001".to_owned() } else { trimmed(x, 4) }
}

fn trimmed(x: f64, decimals: usize) -> String {
    if !x.is_finite() {
        return "n/a".to_owned();
    }
    let text = format!("{x:.decimals$}");
    let text = if text.contains('.') { text.trim_end_matches('0').trim_end_matches('.').to_owned() } else { text };
    if text == "-0" { "0".to_owned() } else { text }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(num(26.0 / 80.0 * 10.0), "3.25");
        assert_eq!(num(25.0 / 80.0 * 10.0), "3.125");
        assert_eq!(num(2.0), "2");
        assert_eq!(num(-0.0001), "0");
        assert_eq!(loss(0.77321), "0.7732");
        assert_eq!(trend(1.0), "+1");
        assert_eq!(trend(-2.0), "-2");
        assert_eq!(trend(0.0), "=");
        assert_eq!(pct(-35.78), "-35.8%");
        assert_eq!(p(2.0 / 256.0), "0.0078");
        assert_eq!(num(f64::NAN), "n/a");
    }
}
