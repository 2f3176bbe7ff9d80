//! `--out csv[=FILE|=fileName=F,timeFormat=T,saveInterval=D]`: k6's CSV rows, one per
//! series and second (see `point` for what a point of a merged second holds); the
//! aggregation's metadata goes into k6's `metadata` column as `key=value&...`.

use std::io::Write;
use std::time::SystemTime;

use super::point::k6_point;
use super::time::{rfc3339_nanos, unix_nanos, unix_secs};
use super::{Output, OutputContext, OutputError, Second, open_sink, write_error};

const NAME: &str = "csv";

/// k6 1.1's indexed system tags, the columns between `metric_value` and `extra_tags`.
pub(super) const TAG_COLUMNS: &[&str] = &[
    "check",
    "error",
    "error_code",
    "expected_response",
    "group",
    "method",
    "name",
    "proto",
    "scenario",
    "service",
    "status",
    "subproto",
    "tls_version",
    "url",
];

/// k6's `timeFormat` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TimeFormat {
    Unix,
    UnixMilli,
    UnixMicro,
    UnixNano,
    Rfc3339,
    Rfc3339Nano,
}

impl TimeFormat {
    fn parse(option: &str, v: &str) -> Result<TimeFormat, OutputError> {
        Ok(match v {
            "unix" => TimeFormat::Unix,
            "unix_milli" => TimeFormat::UnixMilli,
            "unix_micro" => TimeFormat::UnixMicro,
            "unix_nano" => TimeFormat::UnixNano,
            "rfc3339" => TimeFormat::Rfc3339,
            "rfc3339_nano" => TimeFormat::Rfc3339Nano,
            _ => {
                return Err(OutputError::Option {
                    output: NAME,
                    option: option.into(),
                    value: v.into(),
                    expected: "expected one of unix, unix_milli, unix_micro, unix_nano, \
                               rfc3339, rfc3339_nano"
                        .into(),
                });
            }
        })
    }

    fn format(self, t: SystemTime) -> String {
        let ns = unix_nanos(t);
        match self {
            TimeFormat::Unix => unix_secs(t).to_string(),
            TimeFormat::UnixMilli => (ns / 1_000_000).to_string(),
            TimeFormat::UnixMicro => (ns / 1_000).to_string(),
            TimeFormat::UnixNano => ns.to_string(),
            TimeFormat::Rfc3339 => {
                let s = rfc3339_nanos(t);
                match s.split_once('.') {
                    Some((whole, _)) => format!("{whole}Z"),
                    None => s,
                }
            }
            TimeFormat::Rfc3339Nano => rfc3339_nanos(t),
        }
    }
}

/// k6's `csv` output.
pub(super) struct Csv {
    path: String,
    out: Box<dyn Write + Send>,
    time_format: TimeFormat,
}

impl Csv {
    /// Reads `K6_CSV_FILENAME` and `K6_CSV_TIME_FORMAT`, then the argument (a file
    /// name, or k6's `fileName=...,timeFormat=...,saveInterval=...`), and writes the
    /// header. Without a file name, k6's `file.csv`.
    ///
    /// Fails on an unknown key or time format, or a file that cannot be created.
    pub(super) fn new(arg: Option<&str>, ctx: &OutputContext<'_>) -> Result<Csv, OutputError> {
        let mut file = ctx
            .env
            .get("K6_CSV_FILENAME")
            .cloned()
            .unwrap_or_else(|| "file.csv".into());
        let mut time_format = match ctx.env.get("K6_CSV_TIME_FORMAT") {
            Some(v) => TimeFormat::parse("K6_CSV_TIME_FORMAT", v)?,
            None => TimeFormat::Unix,
        };
        if let Some(v) = ctx.env.get("K6_CSV_SAVE_INTERVAL") {
            super::parse_duration(NAME, "K6_CSV_SAVE_INTERVAL", v)?;
        }
        match arg {
            Some(a) if !a.contains('=') => file = a.to_string(),
            Some(a) => {
                for pair in a.split(',') {
                    let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                    let bad = |expected: &str| OutputError::Option {
                        output: NAME,
                        option: k.to_string(),
                        value: v.to_string(),
                        expected: expected.to_string(),
                    };
                    if v.is_empty() {
                        return Err(bad("expected KEY=VALUE"));
                    }
                    match k {
                        "fileName" => file = v.to_string(),
                        "timeFormat" => time_format = TimeFormat::parse(k, v)?,
                        // Rows are written every second as the seconds arrive.
                        "saveInterval" => {
                            super::parse_duration(NAME, k, v)?;
                        }
                        _ => return Err(bad("expected fileName, timeFormat or saveInterval")),
                    }
                }
            }
            None => {}
        }
        let (path, mut out) = open_sink(NAME, Some(&file))?;
        let mut header: Vec<&str> = vec!["metric_name", "timestamp", "metric_value"];
        header.extend(TAG_COLUMNS);
        header.extend(["extra_tags", "metadata"]);
        let err = write_error(NAME, &path);
        writeln!(out, "{}", header.join(",")).map_err(&err)?;
        out.flush().map_err(err)?;
        Ok(Csv {
            path,
            out,
            time_format,
        })
    }
}

/// A field as Go's `encoding/csv` writes it: quoted when it holds a comma, a quote, a
/// line break or starts with a space, quotes doubled.
fn field(out: &mut String, f: &str) {
    let needs = f.contains([',', '"', '\r', '\n']) || f.starts_with([' ', '\t']) || f == r"\.";
    if needs {
        out.push('"');
        out.push_str(&f.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(f);
    }
}

impl Output for Csv {
    fn description(&self) -> String {
        format!("csv ({})", self.path)
    }

    async fn second(&mut self, second: &Second) -> Result<(), OutputError> {
        let time = self.time_format.format(second.time);
        let mut text = String::new();
        for p in &second.points {
            let Some(k6) = k6_point(&p.data) else {
                continue;
            };
            field(&mut text, &p.metric.name);
            text.push(',');
            text.push_str(&time);
            text.push(',');
            text.push_str(&format!("{:.6}", k6.value));
            for col in TAG_COLUMNS {
                text.push(',');
                field(&mut text, p.tags.get(col).unwrap_or_default());
            }
            let extra: Vec<String> = p
                .tags
                .iter()
                .filter(|(k, _)| !TAG_COLUMNS.contains(k) && *k != "vu" && *k != "iter")
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            text.push(',');
            field(&mut text, &extra.join("&"));
            let meta: Vec<String> = k6
                .metadata
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            text.push(',');
            field(&mut text, &meta.join("&"));
            text.push('\n');
        }
        let err = write_error(NAME, &self.path);
        self.out.write_all(text.as_bytes()).map_err(&err)?;
        self.out.flush().map_err(err)
    }

    async fn end(&mut self) -> Result<(), OutputError> {
        self.out.flush().map_err(write_error(NAME, &self.path))
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    #[test]
    fn fields_are_quoted_as_go_quotes_them() {
        let mut s = String::new();
        field(&mut s, "plain");
        s.push('|');
        field(&mut s, "a,b");
        s.push('|');
        field(&mut s, "say \"hi\"");
        s.push('|');
        field(&mut s, " lead");
        assert_eq!(s, "plain|\"a,b\"|\"say \"\"hi\"\"\"|\" lead\"");
    }

    #[test]
    fn time_formats_are_k6s() {
        let t = UNIX_EPOCH + Duration::new(1_796_179_813, 63_044_402);
        assert_eq!(TimeFormat::Unix.format(t), "1796179813");
        assert_eq!(TimeFormat::UnixMilli.format(t), "1796179813063");
        assert_eq!(TimeFormat::Rfc3339.format(t), "2026-12-02T02:50:13Z");
        assert!(TimeFormat::parse("timeFormat", "iso").is_err());
    }
}
