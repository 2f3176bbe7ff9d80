//! What a run says before and after its load, as k6 does: the start banner (what was
//! launched, where, and where its results go) and the totals line (elapsed, VUs,
//! iterations and iterations/s). Plain text: they go to logs as they are.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use barrage_common::duration::format_duration;
use barrage_common::report::ScenarioProgress;
use barrage_common::scenario::TestPlan;
use barrage_common::schedule::plan;
use barrage_common::summary::escape_controls as esc;

/// One agent as the banner shows it.
pub struct BannerAgent<'a> {
    /// Its name.
    pub name: &'a str,
    /// Its address; empty for the embedded agent.
    pub addr: &'a str,
    /// Its share of the load (0..1).
    pub share: f64,
}

/// The start banner: execution, test file, outputs, scenarios (executor, VUs, start,
/// duration) and agents with their shares; `t0` is the planned start.
pub fn banner(
    test: &TestPlan,
    agents: &[BannerAgent<'_>],
    outputs: &[String],
    t0: SystemTime,
) -> String {
    let plans: Vec<_> = test.scenarios.iter().map(plan).collect();
    let max_vus: u64 = plans.iter().map(|p| p.max_vus).sum();
    let end = plans.iter().map(|p| p.hard_end).max().unwrap_or_default();
    let execution = if agents.iter().all(|a| a.addr.is_empty()) {
        "local (embedded agent)".to_string()
    } else {
        format!("distributed ({} agents)", agents.len())
    };
    let output = if outputs.is_empty() {
        "-".to_string()
    } else {
        outputs.join(", ")
    };
    let mut out = format!(
        "     execution: {execution}\n        script: {}\n        output: {}\n        \
         start: {}\n\n     scenarios: (100.00%) {} scenario{}, {max_vus} max VUs, {} max \
         duration (incl. graceful stop):\n",
        esc(&test.file.display().to_string()),
        esc(&output),
        rfc3339(t0),
        plans.len(),
        if plans.len() == 1 { "" } else { "s" },
        format_duration(end),
    );
    for p in &plans {
        let vus = if p.initial_vus == p.max_vus {
            format!("{} VUs", p.max_vus)
        } else {
            format!("{}..{} VUs", p.initial_vus, p.max_vus)
        };
        let what = match (p.expected_iterations, p.peak_rate_per_sec) {
            (Some(n), Some(r)) => format!(", {n} iterations, up to {r:.2} iterations/s"),
            (Some(n), None) => format!(", {n} iterations"),
            (None, Some(r)) => format!(", up to {r:.2} iterations/s"),
            (None, None) => String::new(),
        };
        out.push_str(&format!(
            "              * {}: {}, {vus}{what}, start {}, duration {} (hard end {})\n",
            esc(&p.name),
            p.executor,
            format_duration(p.start),
            format_duration(p.end.saturating_sub(p.start)),
            format_duration(p.hard_end),
        ));
    }
    out.push_str("\n        agents:");
    for a in agents {
        let addr = if a.addr.is_empty() {
            String::new()
        } else {
            format!(" ({})", esc(a.addr))
        };
        out.push_str(&format!(
            "\n              * {}{addr}: {:.2}%",
            esc(a.name),
            a.share * 100.0
        ));
    }
    out.push('\n');
    out
}

/// The totals line k6 ends its progress with, plus iterations/s:
/// `running (01m02.5s), 0/10 VUs, 620 complete and 0 interrupted iterations, 9.92 iterations/s`.
pub fn totals_line(progress: &[ScenarioProgress], elapsed: Duration) -> String {
    let sum =
        |f: fn(&ScenarioProgress) -> u64| progress.iter().fold(0u64, |n, p| n.saturating_add(f(p)));
    let (active, allocated) = (sum(|p| p.active_vus), sum(|p| p.allocated_vus));
    let (done, interrupted) = (sum(|p| p.iterations), sum(|p| p.interrupted));
    let secs = elapsed.as_secs_f64();
    let rate = if secs > 0.0 { done as f64 / secs } else { 0.0 };
    let t = elapsed.as_millis();
    format!(
        "running ({:02}m{:02}.{}s), {active}/{allocated} VUs, {done} complete and {interrupted} \
         interrupted iterations, {rate:.2} iterations/s",
        t / 60_000,
        (t / 1000) % 60,
        (t / 100) % 10
    )
}

/// `t` as RFC 3339 in UTC, to the second (`2026-12-02T03:00:07Z`).
fn rfc3339(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's civil_from_days.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_utc_rfc3339() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let t = UNIX_EPOCH + Duration::from_secs(1_796_180_407);
        assert_eq!(rfc3339(t), "2026-12-02T03:00:07Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn the_totals_line_says_what_k6_says_and_the_rate() {
        let p = |iterations, interrupted, active, allocated| ScenarioProgress {
            scenario: "s".into(),
            iterations,
            interrupted,
            active_vus: active,
            allocated_vus: allocated,
            ..Default::default()
        };
        let line = totals_line(
            &[p(600, 1, 0, 8), p(20, 0, 0, 2)],
            Duration::from_millis(62_500),
        );
        assert_eq!(
            line,
            "running (01m02.5s), 0/10 VUs, 620 complete and 1 interrupted iterations, 9.92 iterations/s"
        );
    }
}
