//! What every benchmark prints its results with: markdown table rows (as BENCHMARKS.md records
//! them), nearest-rank percentiles and durations in fixed units.
//!
//! One file for all the benches of the workspace. The e2e benches reach it as
//! `nethouse_e2e::bench_table`; the benches of crates this one depends on (the plugin's,
//! NetHouse's, the extender's) cannot depend on it back, so they include the file with
//! `#[path = "../../tests/src/bench_table.rs"] mod table;`, as the test PKI is shared.
//! Only std, so it compiles wherever it is included.

use std::time::Duration;

/// One table row: `| a | b |`.
pub fn row(cells: &[String]) {
    println!("| {} |", cells.join(" | "));
}

/// A table's header row and the separator row under it.
pub fn header(cells: &[String]) {
    row(cells);
    row(&vec!["---".to_string(); cells.len()]);
}

/// The nearest-rank `p` percentile (0 < p <= 1) of `sorted`, which is sorted ascending; zero
/// when there are no samples, so a section that measured nothing still prints its table.
pub fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

/// `1.23 ms`
pub fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// `1235 ms`, for what takes seconds.
pub fn whole_ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

/// `12.3 µs`
pub fn us(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

// Imports inside the test: the benches that include this file compile it with cfg(test) but
// without the test harness, which drops the test and would leave module-level imports unused.
#[cfg(test)]
mod tests {
    #[test]
    fn percentiles_and_units() {
        use super::{ms, pct, us, whole_ms};
        use std::time::Duration;
        let v: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(pct(&v, 0.5), Duration::from_millis(50));
        assert_eq!(pct(&v, 0.99), Duration::from_millis(99));
        assert_eq!(pct(&v, 1.0), Duration::from_millis(100));
        assert_eq!(pct(&v[..3], 0.5), Duration::from_millis(2));
        assert_eq!(pct(&v[..1], 0.01), Duration::from_millis(1));
        assert_eq!(pct(&[], 0.5), Duration::ZERO);
        let d = Duration::from_micros(1_234_567);
        assert_eq!(
            (ms(d), whole_ms(d), us(Duration::from_nanos(12_345))),
            ("1234.57 ms".into(), "1235 ms".into(), "12.3 µs".into())
        );
    }
}
