//! Terminal output: colour that appears only on a terminal (`anstream` strips it
//! elsewhere, and honours `NO_COLOR` / `CLICOLOR_FORCE`), aligned tables, and times and
//! durations written for people.

use super::error::CliError;
use super::shapes::{Usage, UsageExt};
use anstyle::{AnsiColor, Style};
use serde_json::Value;
use std::io::{IsTerminal, Write};
use std::time::{SystemTime, UNIX_EPOCH};

/// Standard output, with styles kept on a terminal and stripped elsewhere.
pub struct Printer {
    out: anstream::AutoStream<std::io::StdoutLock<'static>>,
}

impl Default for Printer {
    fn default() -> Self {
        Self::new()
    }
}

impl Printer {
    /// A printer to standard output.
    pub fn new() -> Self {
        Self {
            out: anstream::AutoStream::auto(std::io::stdout().lock()),
        }
    }

    /// Writes `text` and a newline, and flushes, so lines appear as they happen.
    pub fn line(&mut self, text: &str) -> Result<(), CliError> {
        writeln!(self.out, "{}", super::terminal::clean(text))?;
        self.out.flush()?;
        Ok(())
    }

    /// Writes a block of text as it is (it ends with a newline when it should).
    pub fn block(&mut self, text: &str) -> Result<(), CliError> {
        self.out
            .write_all(super::terminal::clean(text).as_bytes())?;
        self.out.flush()?;
        Ok(())
    }

    /// Writes `v` as indented JSON: the `--json` output of every read command.
    pub fn json<T: serde::Serialize + ?Sized>(&mut self, v: &T) -> Result<(), CliError> {
        let text = serde_json::to_string_pretty(v).map_err(|e| CliError::InvalidJson {
            path: "output".into(),
            reason: e.to_string(),
        })?;
        self.line(&text)
    }

    /// Writes `v` as one line of JSON (a stream of events, one per line).
    pub fn json_line(&mut self, v: &Value) -> Result<(), CliError> {
        self.line(&v.to_string())
    }
}

/// Whether standard error is a terminal: where progress bars may be drawn.
pub fn stderr_is_terminal() -> bool {
    std::io::stderr().is_terminal()
}

/// Writes one error line (and any detail lines) to standard error.
pub fn report_error(e: &CliError) {
    let mut err = anstream::stderr().lock();
    let red = Style::new().fg_color(Some(AnsiColor::Red.into())).bold();
    // Nothing useful can be done if standard error itself is gone.
    let clean = super::terminal::clean;
    let _ = writeln!(err, "{red}error:{red:#} {}", clean(&e.to_string()));
    for line in e.detail_lines() {
        let _ = writeln!(err, "{}", clean(&line));
    }
}

/// `text` in `style` (plain where styles are stripped).
pub fn paint(style: Style, text: &str) -> String {
    format!("{style}{text}{style:#}")
}

/// Bold, for headings and names.
pub fn bold(text: &str) -> String {
    paint(Style::new().bold(), text)
}

/// Dim, for what matters least.
pub fn dim(text: &str) -> String {
    paint(Style::new().dimmed(), text)
}

/// The style of a task or run state: failures stand out, successes are calm.
pub fn state_style(state: &str) -> Style {
    let colour = |c: AnsiColor| Style::new().fg_color(Some(c.into()));
    match state {
        "succeeded" => colour(AnsiColor::Green),
        "failed" => colour(AnsiColor::Red).bold(),
        "running" => colour(AnsiColor::Cyan),
        "cancelled" | "lost" => colour(AnsiColor::Yellow),
        "skipped" | "pending" | "stopped" => Style::new().dimmed(),
        "draining" => colour(AnsiColor::Magenta),
        _ => Style::new(),
    }
}

/// A state word in its style.
pub fn state(state: &str) -> String {
    paint(state_style(state), state)
}

/// One cell of a [`Table`]: its text, and the style it is shown in.
pub struct Cell {
    text: String,
    style: Style,
}

impl Cell {
    /// A plain cell.
    pub fn plain(text: impl Into<String>) -> Self {
        Self::styled(text, Style::new())
    }

    /// A cell shown in `style`.
    pub fn styled(text: impl Into<String>, style: Style) -> Self {
        Self {
            text: text.into(),
            style,
        }
    }

    /// A state, in its style.
    pub fn state(text: &str) -> Self {
        Self::styled(text, state_style(text))
    }
}

/// Rows under headers, columns aligned on the text (styles do not count toward width).
pub struct Table {
    headers: Vec<&'static str>,
    rows: Vec<Vec<Cell>>,
}

impl Table {
    /// An empty table with these column headers.
    pub fn new(headers: &[&'static str]) -> Self {
        Self {
            headers: headers.to_vec(),
            rows: Vec::new(),
        }
    }

    /// Adds a row; it should have one cell per header.
    pub fn row(&mut self, cells: Vec<Cell>) {
        self.rows.push(cells);
    }

    /// The table as text, one line per row, each ending with a newline.
    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, c) in row.iter().enumerate() {
                if let Some(w) = widths.get_mut(i) {
                    *w = (*w).max(c.text.chars().count());
                }
            }
        }
        let header_style = Style::new().bold();
        let mut out = String::new();
        let headers: Vec<Cell> = self
            .headers
            .iter()
            .map(|h| Cell::styled(*h, header_style))
            .collect();
        for row in std::iter::once(&headers).chain(&self.rows) {
            let last = row.len().saturating_sub(1);
            for (i, c) in row.iter().enumerate() {
                let pad = if i == last {
                    0
                } else {
                    widths[i] - c.text.chars().count() + 2
                };
                out.push_str(&paint(c.style, &c.text));
                out.push_str(&" ".repeat(pad));
            }
            // Empty trailing cells leave padding that nobody should have to see (or diff).
            out.truncate(out.trim_end_matches(' ').len());
            out.push('\n');
        }
        out
    }
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// A length of time, as short as stays readable: `850ms`, `1.25s`, `2m03s`, `1h02m`.
pub fn duration(ms: i64) -> String {
    let ms = ms.max(0);
    match ms {
        0..1_000 => format!("{ms}ms"),
        1_000..60_000 => format!("{:.2}s", ms as f64 / 1000.0),
        60_000..3_600_000 => format!("{}m{:02}s", ms / 60_000, ms / 1000 % 60),
        _ => format!("{}h{:02}m", ms / 3_600_000, ms / 60_000 % 60),
    }
}

/// How long something took from `start` to `end` (or until now if it has not ended).
pub fn span(start: Option<i64>, end: Option<i64>) -> String {
    match (start, end) {
        (Some(s), Some(e)) => duration(e - s),
        (Some(s), None) => format!("{}…", duration(now_ms() - s)),
        _ => "-".into(),
    }
}

/// How long ago `at` was: `12s ago`, `5m ago`, `3h ago`, `2d ago`.
pub fn ago(at: Option<i64>) -> String {
    let Some(at) = at else {
        return "-".into();
    };
    let s = (now_ms() - at).max(0) / 1000;
    match s {
        0..60 => format!("{s}s ago"),
        60..3_600 => format!("{}m ago", s / 60),
        3_600..86_400 => format!("{}h ago", s / 3_600),
        _ => format!("{}d ago", s / 86_400),
    }
}

/// A moment as UTC date and time: `2025-11-22 08:00:00.120Z`.
pub fn timestamp(ms: Option<i64>) -> String {
    let Some(ms) = ms else {
        return "-".into();
    };
    let (days, in_day) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02} {}Z", clock(in_day))
}

/// Time of day (UTC) only: `08:00:00.120`.
pub fn time_of_day(ms: Option<i64>) -> String {
    ms.map_or_else(|| "-".into(), |ms| clock(ms.rem_euclid(86_400_000)))
}

fn clock(in_day_ms: i64) -> String {
    let s = in_day_ms / 1000;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        s / 3600,
        s / 60 % 60,
        s % 60,
        in_day_ms % 1000
    )
}

/// Year, month and day of a count of days since 1970-01-01 (proleptic Gregorian),
/// after Howard Hinnant's `civil_from_days`; saves a date-time dependency.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// A count with thousands separated: `12,345`.
pub fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A count of tokens, short: `850`, `1.2k`, `12k`, `4.1M`.
pub fn tokens(n: u64) -> String {
    match n {
        0..1_000 => n.to_string(),
        1_000..10_000 => format!("{:.1}k", n as f64 / 1e3),
        10_000..1_000_000 => format!("{:.0}k", n as f64 / 1e3),
        1_000_000..10_000_000 => format!("{:.1}M", n as f64 / 1e6),
        _ => format!("{:.0}M", n as f64 / 1e6),
    }
}

/// Dollars with the digits that matter: `$12.40`, `$0.25`, `$0.042`, `$0.000042`.
pub fn cost(usd: f64) -> String {
    if usd <= 0.0 || !usd.is_finite() {
        "$0".into()
    } else if usd >= 100.0 {
        format!("${usd:.0}")
    } else if usd >= 1.0 {
        format!("${usd:.2}")
    } else if usd < 0.000_001 {
        "<$0.000001".into()
    } else {
        // Two significant digits, at least cents, written out without trailing zeros.
        let decimals = (1 - usd.log10().floor() as i64).clamp(2, 6) as usize;
        let text = format!("{usd:.decimals$}");
        let (whole, fraction) = text.split_once('.').unwrap_or((&text, ""));
        let mut fraction = fraction.trim_end_matches('0').to_owned();
        while fraction.len() < 2 {
            fraction.push('0');
        }
        format!("${whole}.{fraction}")
    }
}

/// Usage in a table cell: `160 tok · $0.000042`, `-` when there is none.
pub fn usage_cell(usage: Option<&Usage>) -> String {
    match usage {
        Some(u) if !u.is_zero() => {
            let tok = format!("{} tok", tokens(u.tokens()));
            if u.cost_usd > 0.0 {
                format!("{tok} · {}", cost(u.cost_usd))
            } else {
                tok
            }
        }
        _ => "-".into(),
    }
}

/// Usage spelled out: `120 in + 40 out tokens · $0.000042`.
pub fn usage_long(u: &Usage) -> String {
    format!(
        "{} in + {} out tokens · {}",
        grouped(u.input_tokens),
        grouped(u.output_tokens),
        cost(u.cost_usd)
    )
}

/// Compact JSON up to this many characters stays on one line.
const ONE_LINE_JSON: usize = 72;

/// `v` as JSON, every line prefixed by `indent`: on one line when short, indented when not.
pub fn indented_json(v: &Value, indent: &str) -> String {
    let compact = v.to_string();
    if compact.chars().count() <= ONE_LINE_JSON {
        return format!("{indent}{compact}");
    }
    let text = serde_json::to_string_pretty(v).unwrap_or(compact);
    text.lines()
        .map(|l| format!("{indent}{l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_stay_short_and_readable() {
        assert_eq!(duration(0), "0ms");
        assert_eq!(duration(850), "850ms");
        assert_eq!(duration(1_250), "1.25s");
        assert_eq!(duration(123_000), "2m03s");
        assert_eq!(duration(3_720_000), "1h02m");
    }

    #[test]
    fn timestamps_are_utc_calendar_dates() {
        assert_eq!(timestamp(Some(0)), "1970-01-01 00:00:00.000Z");
        assert_eq!(
            timestamp(Some(1_763_798_400_120)),
            "2025-11-22 08:00:00.120Z"
        );
        assert_eq!(timestamp(Some(951_782_400_000)), "2000-02-29 00:00:00.000Z");
    }

    #[test]
    fn usage_reads_short_in_cells_and_in_full_elsewhere() {
        let u = Usage {
            input_tokens: 120,
            output_tokens: 40,
            cost_usd: 0.000_042,
        };
        assert_eq!(usage_cell(Some(&u)), "160 tok · $0.000042");
        assert_eq!(usage_long(&u), "120 in + 40 out tokens · $0.000042");
        assert_eq!(usage_cell(None), "-");
        assert_eq!(usage_cell(Some(&Usage::default())), "-");
        let tokens_only = Usage {
            input_tokens: 9_000,
            output_tokens: 3_400,
            cost_usd: 0.0,
        };
        assert_eq!(usage_cell(Some(&tokens_only)), "12k tok");
        assert_eq!(
            usage_long(&Usage {
                input_tokens: 1_234_567,
                output_tokens: 0,
                cost_usd: 12.4
            }),
            "1,234,567 in + 0 out tokens · $12.40"
        );
    }

    #[test]
    fn costs_keep_the_digits_that_matter() {
        assert_eq!(cost(0.0), "$0");
        assert_eq!(cost(0.0042), "$0.0042");
        assert_eq!(cost(0.042), "$0.042");
        assert_eq!(cost(0.25), "$0.25");
        assert_eq!(cost(0.5), "$0.50");
        assert_eq!(cost(0.0001), "$0.0001");
        assert_eq!(cost(0.0123), "$0.012");
        assert_eq!(cost(3.5), "$3.50");
        assert_eq!(cost(250.0), "$250");
        assert_eq!(cost(1e-9), "<$0.000001");
        assert_eq!(tokens(999), "999");
        assert_eq!(tokens(1_234), "1.2k");
        assert_eq!(tokens(4_100_000), "4.1M");
        assert_eq!(grouped(1_000), "1,000");
        assert_eq!(grouped(999), "999");
    }

    #[test]
    fn tables_align_on_text_not_on_styles() {
        let mut t = Table::new(&["ID", "STATE"]);
        t.row(vec![Cell::plain("a"), Cell::state("failed")]);
        t.row(vec![Cell::plain("long-id"), Cell::plain("ok")]);
        let plain: String = anstream::adapter::strip_str(&t.render()).to_string();
        assert_eq!(plain, "ID       STATE\na        failed\nlong-id  ok\n");
    }
}
