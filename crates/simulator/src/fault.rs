//! Injectable faults: the grammar `[api:]kind[=arg][@when]` and which fault
//! fires on which request.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use rand::RngExt;
use rand_chacha::ChaCha8Rng;

/// Which of the two simulated APIs a request went to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Api {
    Jobo,
    Sentrion,
    /// Jobo's company profiles (`GET /api/companies/{id}`).
    Companies,
}

impl Api {
    pub fn name(self) -> &'static str {
        match self {
            Api::Jobo => "jobo",
            Api::Sentrion => "sentrion",
            Api::Companies => "companies",
        }
    }
}

/// What a fault does to the request it fires on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum FaultKind {
    TooMany(u64),
    TooManyBare,
    Unavailable(u64),
    /// A plain error status: 500, 502, 504, 408, 402, 401, 403 or 422.
    Status(u16),
    Reset,
    Timeout(u64),
    Slow(u64),
    Truncate,
    NonJson,
    DeadCursor,
    Restart,
    Problem,
    LegacyHeaders,
    /// A 422 whose message carries terminal escape sequences and control characters.
    Escapes,
    /// A 200 of about 1 MB that inflates to 1 GiB (`Content-Encoding: gzip`).
    GzipBomb,
    /// Bad data in an otherwise good page (see `mutate.rs`).
    Data(DataFault),
}

/// Bad data the real APIs have been seen to send, served inside a 200.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DataFault {
    /// Fields no schema knows.
    Unknown,
    /// A numeric field sent as text (and a list as a string).
    Drift,
    /// Every field null but the row's handle; and one row null throughout.
    Nulls,
    /// Descriptions of 100 kB.
    BigText,
    /// A lone UTF-16 surrogate escape (`\ud800`) in a string.
    BadUtf8,
    /// Dates and times in other formats (day first, epoch seconds, offsets).
    OddDates,
    /// No rows, yet `has_more` with a cursor to go on from.
    EmptyMore,
    /// The cursor sent back unchanged.
    RepeatCursor,
    /// The cursor the request before carried sent back: two pages in a loop (A → B → A).
    CycleCursor,
    /// Sentrion only: a `search_after` that starts the scan over, a new one each time (never
    /// the same twice), so the same rows come forever, past the `total_jobs_found` it gives.
    Rewind,
}

impl FaultKind {
    fn jobo_only(self) -> bool {
        matches!(
            self,
            FaultKind::Restart | FaultKind::Problem | FaultKind::LegacyHeaders
        )
    }

    /// The name used in `/_sim/log`.
    pub fn name(self) -> String {
        match self {
            FaultKind::TooMany(_) => "429".into(),
            FaultKind::TooManyBare => "429-bare".into(),
            FaultKind::Unavailable(_) => "503".into(),
            FaultKind::Status(s) => s.to_string(),
            FaultKind::Reset => "reset".into(),
            FaultKind::Timeout(_) => "timeout".into(),
            FaultKind::Slow(_) => "slow".into(),
            FaultKind::Truncate => "truncate".into(),
            FaultKind::NonJson => "nonjson".into(),
            FaultKind::DeadCursor => "dead_cursor".into(),
            FaultKind::Restart => "restart".into(),
            FaultKind::Problem => "problem".into(),
            FaultKind::LegacyHeaders => "legacy_headers".into(),
            FaultKind::Escapes => "escapes".into(),
            FaultKind::GzipBomb => "gzipbomb".into(),
            FaultKind::Data(d) => format!("{d:?}").to_lowercase(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum When {
    At(u64),
    From(u64),
    Range(u64, u64),
    Percent(f64),
}

#[derive(Debug, Clone, PartialEq)]
struct FaultItem {
    api: Option<Api>,
    kind: FaultKind,
    when: When,
    text: String,
}

/// A set of faults to inject, parsed from `[api:]kind[=arg][@when]` items.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FaultPlan {
    items: Vec<FaultItem>,
}

impl FaultPlan {
    /// True when no fault is planned.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Decides which faults fire on the `n`th (1-based) request to `api`;
    /// every `%P` item draws from `rng` so a seeded run repeats exactly.
    pub(crate) fn fire(&self, api: Api, n: u64, rng: &mut ChaCha8Rng) -> Fired {
        let mut fired = Fired::default();
        for item in &self.items {
            let for_api = match item.api {
                Some(a) => a == api,
                None => api == Api::Jobo || !item.kind.jobo_only(),
            };
            if !for_api {
                continue;
            }
            let hit = match item.when {
                When::At(k) => n == k,
                When::From(k) => n >= k,
                When::Range(a, b) => (a..=b).contains(&n),
                When::Percent(p) => rng.random_bool((p / 100.0).clamp(0.0, 1.0)),
            };
            if !hit {
                continue;
            }
            fired.names.push(item.kind.name());
            match item.kind {
                FaultKind::Timeout(s) => fired.delay += Duration::from_secs(s),
                FaultKind::Slow(ms) => fired.delay += Duration::from_millis(ms),
                FaultKind::Problem => fired.problem = true,
                FaultKind::LegacyHeaders => fired.legacy_headers = true,
                FaultKind::Data(d) => fired.data.push(d),
                k if fired.terminal.is_none() => fired.terminal = Some(k),
                _ => {}
            }
        }
        fired
    }
}

/// The message of the `escapes` fault: what a hostile server could write to a terminal (clear
/// the screen, set the window title, colour, overwrite the line, reverse the text).
pub(crate) const ESCAPES: &str = "Request rejected\x1b[2J\x1b[H\x1b]0;pwned\x07\x1b[31m \
                                  red\x1b[0m\r\nerror: none, all fine \u{202e}gnp.exe";

/// The faults that fired on one request.
#[derive(Debug, Default)]
pub(crate) struct Fired {
    /// The fault that replaces the normal answer, if any (the first listed wins).
    pub terminal: Option<FaultKind>,
    pub delay: Duration,
    pub problem: bool,
    pub legacy_headers: bool,
    /// Bad data to put into the page served.
    pub data: Vec<DataFault>,
    pub names: Vec<String>,
}

impl Fired {
    /// The log's `fault` field: every fired fault, joined with `+`.
    pub fn label(&self) -> Option<String> {
        (!self.names.is_empty()).then(|| self.names.join("+"))
    }
}

impl fmt::Display for FaultPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let texts: Vec<&str> = self.items.iter().map(|i| i.text.as_str()).collect();
        f.write_str(&texts.join(","))
    }
}

impl FromStr for FaultPlan {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_faults(s)
    }
}

/// Parses a fault spec: comma-separated `[api:]kind[=arg][@when]` items, where
/// `when` is `@N`, `@N+`, `@N-M` or `%P`; the error names the offending item.
pub fn parse_faults(spec: &str) -> Result<FaultPlan, String> {
    let mut items = Vec::new();
    for raw in spec.split(',') {
        let text = raw.trim();
        if text.is_empty() {
            continue;
        }
        items.push(parse_item(text).map_err(|e| format!("fault item {text:?}: {e}"))?);
    }
    Ok(FaultPlan { items })
}

fn parse_item(text: &str) -> Result<FaultItem, String> {
    let (api, rest) = match text.split_once(':') {
        Some(("jobo", rest)) => (Some(Api::Jobo), rest),
        Some(("sentrion", rest)) => (Some(Api::Sentrion), rest),
        Some(("companies", rest)) => (Some(Api::Companies), rest),
        Some((other, _)) => {
            return Err(format!(
                "unknown api {other:?} (expected jobo, sentrion or companies)"
            ));
        }
        None => (None, text),
    };
    let (kind_part, when) = if let Some((k, w)) = rest.split_once('@') {
        (k, parse_when(w)?)
    } else if let Some((k, p)) = rest.split_once('%') {
        let p: f64 = p
            .parse()
            .map_err(|_| format!("bad probability {p:?} (expected %P with P in 0..=100)"))?;
        if !(0.0..=100.0).contains(&p) {
            return Err(format!("probability {p} is outside 0..=100"));
        }
        (k, When::Percent(p))
    } else {
        (rest, When::At(1))
    };
    let (name, arg) = match kind_part.split_once('=') {
        Some((n, a)) => {
            let a: u64 = a
                .parse()
                .map_err(|_| format!("bad argument {a:?} (expected a whole number)"))?;
            (n, Some(a))
        }
        None => (kind_part, None),
    };
    let no_arg = |k: FaultKind| match arg {
        Some(_) => Err(format!("{name} takes no argument")),
        None => Ok(k),
    };
    let kind = match name {
        "429" => FaultKind::TooMany(arg.unwrap_or(1)),
        "429-bare" => no_arg(FaultKind::TooManyBare)?,
        "503" => FaultKind::Unavailable(arg.unwrap_or(5)),
        "500" | "502" | "504" | "408" | "402" | "401" | "403" | "422" => {
            let code = name.parse().map_err(|_| format!("bad status {name}"))?;
            no_arg(FaultKind::Status(code))?
        }
        "reset" => no_arg(FaultKind::Reset)?,
        "timeout" => FaultKind::Timeout(arg.unwrap_or(30)),
        "slow" => FaultKind::Slow(arg.unwrap_or(2000)),
        "truncate" => no_arg(FaultKind::Truncate)?,
        "nonjson" => no_arg(FaultKind::NonJson)?,
        "dead_cursor" => no_arg(FaultKind::DeadCursor)?,
        "restart" => no_arg(FaultKind::Restart)?,
        "problem" => no_arg(FaultKind::Problem)?,
        "legacy_headers" => no_arg(FaultKind::LegacyHeaders)?,
        "escapes" => no_arg(FaultKind::Escapes)?,
        "gzipbomb" => no_arg(FaultKind::GzipBomb)?,
        "unknown" => no_arg(FaultKind::Data(DataFault::Unknown))?,
        "drift" => no_arg(FaultKind::Data(DataFault::Drift))?,
        "nulls" => no_arg(FaultKind::Data(DataFault::Nulls))?,
        "bigtext" => no_arg(FaultKind::Data(DataFault::BigText))?,
        "badutf8" => no_arg(FaultKind::Data(DataFault::BadUtf8))?,
        "odddates" => no_arg(FaultKind::Data(DataFault::OddDates))?,
        "emptymore" => no_arg(FaultKind::Data(DataFault::EmptyMore))?,
        "repeatcursor" => no_arg(FaultKind::Data(DataFault::RepeatCursor))?,
        "cyclecursor" => no_arg(FaultKind::Data(DataFault::CycleCursor))?,
        "rewind" => no_arg(FaultKind::Data(DataFault::Rewind))?,
        other => {
            return Err(format!(
                "unknown kind {other:?} (expected one of 429, 429-bare, 503, 500, 502, 504, 408, \
                 reset, timeout, slow, truncate, nonjson, dead_cursor, restart, 402, 401, 403, \
                 422, problem, legacy_headers, escapes, gzipbomb, unknown, drift, nulls, bigtext, badutf8, \
                 odddates, emptymore, repeatcursor, cyclecursor, rewind)"
            ));
        }
    };
    if kind == FaultKind::Data(DataFault::Rewind) && api != Some(Api::Sentrion) {
        return Err("rewind exists only on the Sentrion API: write sentrion:rewind".into());
    }
    if kind.jobo_only() && api == Some(Api::Sentrion) {
        return Err(format!("{name} exists only on the Jobo API"));
    }
    Ok(FaultItem {
        api,
        kind,
        when,
        text: text.to_string(),
    })
}

fn parse_when(w: &str) -> Result<When, String> {
    let num = |s: &str| -> Result<u64, String> {
        match s.parse::<u64>() {
            Ok(n) if n >= 1 => Ok(n),
            _ => Err(format!(
                "bad request number {s:?} in @{w} (expected @N, @N+ or @N-M, N >= 1)"
            )),
        }
    };
    if let Some(n) = w.strip_suffix('+') {
        Ok(When::From(num(n)?))
    } else if let Some((a, b)) = w.split_once('-') {
        let (a, b) = (num(a)?, num(b)?);
        if b < a {
            return Err(format!("empty range @{w}"));
        }
        Ok(When::Range(a, b))
    } else {
        Ok(When::At(num(w)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn parses_the_grammar() {
        let p = parse_faults("jobo:429=3@2, sentrion:503@4+,500@2-3,slow=10%50,reset").unwrap();
        assert_eq!(p.items.len(), 5);
        assert_eq!(p.items[0].kind, FaultKind::TooMany(3));
        assert_eq!(p.items[0].when, When::At(2));
        assert_eq!(p.items[1].kind, FaultKind::Unavailable(5));
        assert_eq!(p.items[1].when, When::From(4));
        assert_eq!(p.items[2].when, When::Range(2, 3));
        assert_eq!(p.items[3].when, When::Percent(50.0));
        assert_eq!(p.items[4].when, When::At(1));
        assert_eq!(
            p.to_string(),
            "jobo:429=3@2,sentrion:503@4+,500@2-3,slow=10%50,reset"
        );
        assert!(parse_faults("").unwrap().is_empty());
    }

    #[test]
    fn rejects_bad_items_by_name() {
        for bad in [
            "teapot",
            "jobo:500@0",
            "foo:500",
            "500=3",
            "429=x",
            "500@3-2",
            "sentrion:restart",
            "slow%200",
        ] {
            let err = parse_faults(&format!("500,{bad}")).unwrap_err();
            assert!(err.contains(bad), "{err}");
        }
    }

    #[test]
    fn fires_on_the_right_requests() {
        let p = parse_faults("jobo:500@2,503@3+,slow=5@1,sentrion:408@2-3").unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let f = p.fire(Api::Jobo, 1, &mut rng);
        assert!(f.terminal.is_none());
        assert_eq!(f.delay, Duration::from_millis(5));
        assert_eq!(
            p.fire(Api::Jobo, 2, &mut rng).terminal,
            Some(FaultKind::Status(500))
        );
        assert_eq!(
            p.fire(Api::Jobo, 7, &mut rng).terminal,
            Some(FaultKind::Unavailable(5))
        );
        assert_eq!(
            p.fire(Api::Sentrion, 2, &mut rng).terminal,
            Some(FaultKind::Status(408))
        );
        // Unscoped items apply to both APIs, and the first listed wins.
        assert_eq!(
            p.fire(Api::Sentrion, 3, &mut rng).terminal,
            Some(FaultKind::Unavailable(5))
        );
        let unscoped_restart = parse_faults("restart@1+").unwrap();
        assert!(
            unscoped_restart
                .fire(Api::Sentrion, 1, &mut rng)
                .terminal
                .is_none()
        );
    }
}
