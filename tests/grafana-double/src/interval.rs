//! Grafana's step and interval arithmetic for Prometheus queries
//! (behaviour of `pkg/promlib/models/query.go` and `pkg/tsdb/intervalv2`,
//! re-implemented; see README for what was and was not verified).

use std::time::Duration;

pub const SAFE_RESOLUTION: i64 = 11_000;

/// Parses Grafana interval strings: `15s`, `1m30s`, `500ms`, `1d`, `1w`, `1y`, optional leading `>`.
pub fn parse_interval(s: &str) -> Result<Duration, String> {
    let s = s.trim().trim_start_matches('>');
    if s.is_empty() {
        return Err("empty interval".into());
    }
    let mut total_ms: u128 = 0;
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let start = i;
        while i < bytes.len() && (bytes[i].is_ascii_digit() || bytes[i] == b'.') {
            i += 1;
        }
        let num: f64 = s[start..i].parse().map_err(|_| format!("time: invalid duration \"{s}\""))?;
        let ustart = i;
        while i < bytes.len() && bytes[i].is_ascii_alphabetic() {
            i += 1;
        }
        let unit_ms: f64 = match &s[ustart..i] {
            "ms" => 1.0,
            "s" => 1000.0,
            "m" => 60_000.0,
            "h" => 3_600_000.0,
            "d" => 86_400_000.0,
            "w" => 604_800_000.0,
            "y" => 31_536_000_000.0,
            _ => return Err(format!("time: unknown unit in duration \"{s}\"")),
        };
        total_ms += (num * unit_ms).round() as u128;
    }
    Ok(Duration::from_millis(total_ms as u64))
}

/// `gtime.FormatInterval`: the largest whole unit, e.g. `15s`, `1m`, `2h`.
pub fn format_interval(d: Duration) -> String {
    let ms = d.as_millis() as u64;
    const S: u64 = 1000;
    const M: u64 = 60 * S;
    const H: u64 = 60 * M;
    const D: u64 = 24 * H;
    const Y: u64 = 365 * D;
    if ms >= Y {
        format!("{}y", ms / Y)
    } else if ms >= D {
        format!("{}d", ms / D)
    } else if ms >= H {
        format!("{}h", ms / H)
    } else if ms >= M {
        format!("{}m", ms / M)
    } else if ms >= S {
        format!("{}s", ms / S)
    } else if ms >= 1 {
        format!("{ms}ms")
    } else {
        "1ms".into()
    }
}

/// Go's `time.Duration.String()` (millisecond precision is enough here):
/// `15s`, `1m0s`, `1h0m0s`, `1.5s`, `500ms`.
pub fn go_duration_string(d: Duration) -> String {
    let ms = d.as_millis() as u64;
    if ms == 0 {
        return "0s".into();
    }
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let h = ms / 3_600_000;
    let m = (ms % 3_600_000) / 60_000;
    let s_ms = ms % 60_000;
    let secs = if s_ms % 1000 == 0 {
        format!("{}s", s_ms / 1000)
    } else {
        let mut f = format!("{}.{:03}", s_ms / 1000, s_ms % 1000);
        while f.ends_with('0') {
            f.pop();
        }
        format!("{f}s")
    };
    if h > 0 {
        format!("{h}h{m}m{secs}")
    } else if m > 0 {
        format!("{m}m{secs}")
    } else {
        secs
    }
}

/// The interval calculator's rounding table (same thresholds as Grafana's `roundInterval`).
pub fn round_interval(d: Duration) -> Duration {
    let ms = d.as_millis() as u64;
    let table: &[(u64, u64)] = &[
        (10, 1),
        (15, 10),
        (35, 20),
        (75, 50),
        (150, 100),
        (350, 200),
        (750, 500),
        (1_500, 1_000),
        (3_500, 2_000),
        (7_500, 5_000),
        (12_500, 10_000),
        (17_500, 15_000),
        (25_000, 20_000),
        (45_000, 30_000),
        (90_000, 60_000),
        (210_000, 120_000),
        (450_000, 300_000),
        (750_000, 600_000),
        (1_050_000, 900_000),
        (1_500_000, 1_200_000),
        (2_700_000, 1_800_000),
        (5_400_000, 3_600_000),
        (9_000_000, 7_200_000),
        (16_200_000, 10_800_000),
        (32_400_000, 21_600_000),
        (86_400_000, 43_200_000),
        (172_800_000, 86_400_000),
        (604_800_000, 86_400_000),
        (1_814_400_000, 604_800_000),
    ];
    for (limit, value) in table {
        if ms <= *limit {
            return Duration::from_millis(*value);
        }
    }
    if ms < 3_628_800_000 {
        Duration::from_millis(2_592_000_000)
    } else {
        Duration::from_millis(31_536_000_000)
    }
}

fn is_variable_interval(s: &str) -> bool {
    matches!(s, "$__interval" | "${__interval}" | "$__rate_interval" | "${__rate_interval}" | "$__interval_ms" | "${__interval_ms}")
}

pub fn is_rate_interval(s: &str) -> bool {
    matches!(s, "$__rate_interval" | "${__rate_interval}")
}

/// `max(interval + scrape, 4 × scrape)`.
pub fn rate_interval(interval: Duration, scrape: Duration) -> Duration {
    std::cmp::max(interval + scrape, scrape * 4)
}

/// Inputs of the step calculation for one query.
pub struct StepInput<'a> {
    /// The query's `interval` (minimum step), possibly empty or a variable.
    pub query_interval: &'a str,
    /// The query's `intervalMs` (0 when absent).
    pub interval_ms: i64,
    /// The datasource's `jsonData.timeInterval` (scrape interval), possibly empty.
    pub ds_time_interval: &'a str,
    pub range_ms: i64,
    pub max_data_points: i64,
    pub interval_factor: i64,
}

/// Returns the step Grafana sends to Prometheus.
pub fn calculate_step(inp: &StepInput) -> Result<Duration, String> {
    let qi = if is_variable_interval(inp.query_interval) { "" } else { inp.query_interval };
    // gtime.GetIntervalFrom: query interval, else intervalMs, else datasource scrape interval, else 15s
    let min = if !qi.is_empty() && qi != "0s" {
        parse_interval(qi)?
    } else if inp.interval_ms > 0 {
        Duration::from_millis(inp.interval_ms as u64)
    } else if !inp.ds_time_interval.is_empty() {
        parse_interval(inp.ds_time_interval)?
    } else {
        Duration::from_secs(15)
    };
    let range = Duration::from_millis(inp.range_ms.max(0) as u64);
    let resolution = if inp.max_data_points > 0 { inp.max_data_points } else { 1500 };
    let raw = range / resolution as u32;
    let calculated = if raw < min { min } else { round_interval(raw) };
    let safe = round_interval(range / SAFE_RESOLUTION as u32);
    let mut adjusted = std::cmp::max(calculated, safe);
    if is_rate_interval(inp.query_interval) {
        let scrape = scrape_interval(inp)?;
        adjusted = rate_interval(adjusted, scrape);
        return Ok(adjusted);
    }
    let factor = if inp.interval_factor > 0 { inp.interval_factor } else { 1 };
    Ok(adjusted * factor as u32)
}

/// The scrape interval `$__rate_interval` is based on: the query's own
/// interval when it is a literal, else the datasource's, else 15 s.
pub fn scrape_interval(inp: &StepInput) -> Result<Duration, String> {
    let qi = inp.query_interval;
    if !qi.is_empty() && !is_variable_interval(qi) && qi != "0s" {
        return parse_interval(qi);
    }
    if !inp.ds_time_interval.is_empty() {
        return parse_interval(inp.ds_time_interval);
    }
    Ok(Duration::from_secs(15))
}

/// Replaces Grafana's server-side built-in variables; dashboard variables
/// (`$job`, …) are left as they are, as Grafana's backend does.
pub fn interpolate(expr: &str, step: Duration, range_ms: i64, rate: Duration) -> String {
    let range_s = ((range_ms as f64) / 1000.0).round() as i64;
    let pairs: Vec<(&str, String)> = vec![
        ("$__interval_ms", step.as_millis().to_string()),
        ("${__interval_ms}", step.as_millis().to_string()),
        ("$__interval", format_interval(step)),
        ("${__interval}", format_interval(step)),
        ("$__range_ms", range_ms.to_string()),
        ("${__range_ms}", range_ms.to_string()),
        ("$__range_s", range_s.to_string()),
        ("${__range_s}", range_s.to_string()),
        ("$__range", format!("{range_s}s")),
        ("${__range}", format!("{range_s}s")),
        ("$__rate_interval_ms", rate.as_millis().to_string()),
        ("${__rate_interval_ms}", rate.as_millis().to_string()),
        ("$__rate_interval", go_duration_string(rate)),
        ("${__rate_interval}", go_duration_string(rate)),
    ];
    let mut out = expr.to_string();
    for (k, v) in pairs {
        out = out.replace(k, &v);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(go_duration_string(Duration::from_secs(60)), "1m0s");
        assert_eq!(go_duration_string(Duration::from_secs(15)), "15s");
        assert_eq!(go_duration_string(Duration::from_secs(3600)), "1h0m0s");
        assert_eq!(go_duration_string(Duration::from_millis(1500)), "1.5s");
        assert_eq!(format_interval(Duration::from_secs(90)), "1m");
        assert_eq!(parse_interval("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_interval(">10s").unwrap(), Duration::from_secs(10));
    }

    #[test]
    fn step_and_rate_interval_like_the_facts_example() {
        // 15 min range, scrape 15 s, 1000 points: step 15 s, $__rate_interval = 1m0s (facts §3.8 example)
        let inp = StepInput { query_interval: "", interval_ms: 15_000, ds_time_interval: "15s", range_ms: 900_000, max_data_points: 1000, interval_factor: 1 };
        let step = calculate_step(&inp).unwrap();
        assert_eq!(step, Duration::from_secs(15));
        let rate = rate_interval(step, scrape_interval(&inp).unwrap());
        let e = interpolate("rate(x[$__rate_interval]) $__interval $__range $__range_s $__range_ms", step, 900_000, rate);
        assert_eq!(e, "rate(x[1m0s]) 15s 900s 900 900000");
    }

    #[test]
    fn variables_are_not_touched() {
        assert_eq!(interpolate("up{job=\"$job\"}", Duration::from_secs(15), 60_000, Duration::from_secs(60)), "up{job=\"$job\"}");
    }

    #[test]
    fn long_ranges_raise_the_step() {
        let inp = StepInput { query_interval: "", interval_ms: 0, ds_time_interval: "", range_ms: 7 * 86_400_000, max_data_points: 100, interval_factor: 1 };
        // 7d / 100 = 100.8 min -> rounds to 2h
        assert_eq!(calculate_step(&inp).unwrap(), Duration::from_secs(7200));
    }
}
