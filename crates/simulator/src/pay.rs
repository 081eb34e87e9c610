//! The pay simulated postings quote, in the shapes real postings have: a year, an hour, a
//! month, a day or a week; a range, a single "from" or "up to" figure; amounts written
//! `$150,000`, `£45K`, `USD 150000` or `€60.000`; the structured `Salary From`/`Salary To`
//! with or without the text, the text without them, and text with no figure at all
//! ("Competitive"). Each posting keeps the period it was drawn with (its ground truth) and
//! its wording, so a repost quotes its raised pay the same way.

use rand::RngExt;
use rand_chacha::ChaCha8Rng;

/// A salary figure: the docs' own examples show both integers and floats.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Salary {
    Int(i64),
    Float(f64),
}

impl Salary {
    pub fn to_json(self) -> serde_json::Value {
        match self {
            Salary::Int(i) => serde_json::json!(i),
            Salary::Float(f) => serde_json::json!(f),
        }
    }

    pub fn value(self) -> f64 {
        match self {
            Salary::Int(i) => i as f64,
            Salary::Float(f) => f,
        }
    }
}

/// The period a posting quotes its pay for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Period {
    Hour,
    Day,
    Week,
    Month,
    Year,
}

/// How often postings quote each period, in percent.
const PERIODS: &[(Period, u32)] = &[
    (Period::Year, 60),
    (Period::Hour, 15),
    (Period::Month, 15),
    (Period::Day, 5),
    (Period::Week, 5),
];

impl Period {
    /// The name `salary_period` gives it.
    pub fn name(self) -> &'static str {
        match self {
            Period::Hour => "hour",
            Period::Day => "day",
            Period::Week => "week",
            Period::Month => "month",
            Period::Year => "year",
        }
    }

    /// Periods in a year (schemas/jobs.md: 40 hours a week, 5 days a week, 52 weeks).
    fn per_year(self) -> f64 {
        match self {
            Period::Hour => 2080.0,
            Period::Day => 260.0,
            Period::Week => 52.0,
            Period::Month => 12.0,
            Period::Year => 1.0,
        }
    }

    /// What amounts for this period are rounded to, as postings round them.
    fn step(self) -> f64 {
        match self {
            Period::Hour => 0.5,
            Period::Day => 5.0,
            Period::Week => 10.0,
            Period::Month => 50.0,
            Period::Year => 1000.0,
        }
    }

    /// The ways postings word this period, each with how they write the amounts.
    fn wordings(self) -> &'static [(&'static str, Amounts)] {
        match self {
            Period::Year => &[
                ("/year", Amounts::Symbol),
                (" per annum", Amounts::Kilo),
                (" annually", Amounts::Code),
                ("", Amounts::Symbol),
                (" p.a.", Amounts::European),
                (" a year", Amounts::Symbol),
            ],
            Period::Hour => &[
                (" an hour", Amounts::Symbol),
                ("/hr", Amounts::Symbol),
                (" per hour", Amounts::Code),
            ],
            Period::Month => &[
                (" per month", Amounts::Symbol),
                ("/month", Amounts::European),
                (" monthly", Amounts::Code),
            ],
            Period::Day => &[(" per day", Amounts::Symbol), (" daily", Amounts::Symbol)],
            Period::Week => &[(" per week", Amounts::Symbol), (" weekly", Amounts::Code)],
        }
    }
}

/// How a posting writes an amount.
#[derive(Debug, Clone, Copy)]
enum Amounts {
    /// `$150,000`, `$22.50`
    Symbol,
    /// `£45K`
    Kilo,
    /// `USD 150000`
    Code,
    /// `€60.000`, `€22,50`
    European,
}

impl Amounts {
    fn write(self, v: f64, symbol: &str, code: &str) -> String {
        let whole = v.trunc() as i64;
        let cents = ((v - v.trunc()) * 100.0).round() as i64;
        match self {
            Amounts::Symbol if cents != 0 => format!("{symbol}{}.{cents:02}", grouped(whole, ',')),
            Amounts::Symbol => format!("{symbol}{}", grouped(whole, ',')),
            Amounts::Kilo => format!("{symbol}{}K", whole / 1000),
            Amounts::Code => format!("{code} {v}"),
            Amounts::European if cents != 0 => {
                format!("{symbol}{},{cents:02}", grouped(whole, '.'))
            }
            Amounts::European => format!("{symbol}{}", grouped(whole, '.')),
        }
    }
}

/// `n` with its thousands grouped by `sep`.
pub(crate) fn grouped(n: i64, sep: char) -> String {
    let digits = n.abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(sep);
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

/// The pay of one posting: its period (the ground truth `salary_period` should find), how
/// it is worded, and its currency's symbol and code.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pay {
    pub period: Period,
    wording: usize,
    symbol: &'static str,
    code: &'static str,
}

/// A posting's salary fields as drawn.
#[derive(Debug, Clone, Default)]
pub(crate) struct Drawn {
    pub from: Option<Salary>,
    pub to: Option<Salary>,
    pub currency: Option<String>,
    pub text: Option<String>,
    pub pay: Option<Pay>,
    /// `from` and `to` as drawn, before a posting that words them drops them from the fields.
    pub figures: (Option<f64>, Option<f64>),
}

/// Free text that names no figure.
const NO_FIGURE: &[&str] = &[
    "Competitive",
    "DOE",
    "Negotiable",
    "Competitive salary + equity",
];

/// Draws a new posting's salary in a place paying in `code` (written `symbol`), whose
/// yearly pay is `scale` times a US one: 65 % of postings quote pay, 7 % only free text.
pub(crate) fn draw(
    rng: &mut ChaCha8Rng,
    code: &'static str,
    symbol: &'static str,
    scale: i64,
) -> Drawn {
    if !rng.random_bool(0.65) {
        let text = rng
            .random_bool(0.2)
            .then(|| NO_FIGURE[rng.random_range(0..NO_FIGURE.len())].to_string());
        return Drawn {
            text,
            ..Drawn::default()
        };
    }
    let mut roll = rng.random_range(0..100u32);
    let period = PERIODS
        .iter()
        .find(|(_, p)| {
            let hit = roll < *p;
            roll = roll.saturating_sub(*p);
            hit
        })
        .map_or(Period::Year, |(p, _)| *p);
    let pay = Pay {
        period,
        wording: rng.random_range(0..period.wordings().len()),
        symbol,
        code,
    };
    let yearly_from = rng.random_range(30..200i64) * 1000 * scale;
    let yearly_to = yearly_from + rng.random_range(5..80i64) * 1000 * scale;
    let as_int = rng.random_bool(0.5);
    let amount = |yearly: i64| pay.amount(yearly as f64 / period.per_year(), as_int);
    let shape = rng.random_range(0..20);
    let mut from = (shape != 0).then(|| amount(yearly_from));
    let mut to = (shape != 1 && shape != 2).then(|| amount(yearly_to));
    let currency = rng.random_bool(0.95).then(|| code.to_string());
    // Pay by the year may come as figures alone; other periods are worded, and some
    // postings word their pay without the figures in the structured fields.
    let figures = (from.map(Salary::value), to.map(Salary::value));
    let text = if period != Period::Year || rng.random_bool(0.7) {
        let text = pay.text(from, to);
        if rng.random_bool(0.1) {
            (from, to) = (None, None);
        }
        text
    } else {
        None
    };
    Drawn {
        from,
        to,
        currency,
        text,
        pay: Some(pay),
        figures,
    }
}

impl Pay {
    /// `v` rounded as postings of this period round it.
    fn amount(&self, v: f64, as_int: bool) -> Salary {
        let step = self.period.step();
        let v = ((v / step).round() * step).max(step);
        if as_int && v.fract() == 0.0 {
            Salary::Int(v as i64)
        } else {
            Salary::Float(v)
        }
    }

    /// The figures raised by about 5 %, as a repost raises them.
    pub fn raised(&self, s: Salary) -> Salary {
        self.amount(
            s.value() * 1.05 + self.period.step(),
            matches!(s, Salary::Int(_)),
        )
    }

    /// The text of `from` and `to` in this posting's wording.
    pub fn text(&self, from: Option<Salary>, to: Option<Salary>) -> Option<String> {
        let (suffix, amounts) = self.period.wordings()[self.wording];
        let a = |s: Salary| amounts.write(s.value(), self.symbol, self.code);
        Some(match (from, to) {
            (Some(f), Some(t)) => format!("{} - {}{suffix}", a(f), a(t)),
            (Some(f), None) => format!("From {}{suffix}", a(f)),
            (None, Some(t)) => format!("Up to {}{suffix}", a(t)),
            (None, None) => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn every_period_and_wording_is_served() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let drawn: Vec<Drawn> = (0..5000).map(|_| draw(&mut rng, "USD", "$", 1)).collect();
        let texts: Vec<&str> = drawn.iter().filter_map(|d| d.text.as_deref()).collect();
        for needle in [
            "/year",
            " per annum",
            " annually",
            " p.a.",
            " a year",
            " an hour",
            "/hr",
            " per hour",
            " per month",
            "/month",
            " monthly",
            " per day",
            " daily",
            " per week",
            " weekly",
            "Competitive",
            "From ",
            "Up to ",
            "K per annum",
            "USD ",
        ] {
            assert!(
                texts.iter().any(|t| t.contains(needle)),
                "no {needle:?} in {texts:?}"
            );
        }
        // Figures alone (no text), and text alone (no figures).
        assert!(drawn.iter().any(|d| d.text.is_none() && d.from.is_some()));
        assert!(
            drawn
                .iter()
                .any(|d| d.text.is_some() && d.from.is_none() && d.to.is_none() && d.pay.is_some())
        );
        // Only pay by the year comes without words.
        for d in &drawn {
            if let (Some(pay), None) = (d.pay, &d.text) {
                assert_eq!(pay.period, Period::Year, "{d:?}");
            }
        }
    }

    #[test]
    fn amounts_are_written_as_postings_write_them() {
        let pay = |period, wording| Pay {
            period,
            wording,
            symbol: "€",
            code: "EUR",
        };
        let s = |v: f64| Some(Salary::Float(v));
        assert_eq!(
            pay(Period::Year, 4).text(s(60000.0), s(70000.0)).unwrap(),
            "€60.000 - €70.000 p.a."
        );
        assert_eq!(
            pay(Period::Year, 1).text(s(45000.0), None).unwrap(),
            "From €45K per annum"
        );
        assert_eq!(
            pay(Period::Hour, 1).text(None, s(22.5)).unwrap(),
            "Up to €22.50/hr"
        );
        assert_eq!(
            pay(Period::Month, 1).text(s(4500.5), None).unwrap(),
            "From €4.500,50/month"
        );
        assert_eq!(
            pay(Period::Hour, 2).text(s(22.5), s(30.0)).unwrap(),
            "EUR 22.5 - EUR 30 per hour"
        );
        let raised = pay(Period::Hour, 0).raised(Salary::Float(22.5));
        assert_eq!(raised.value(), 24.0);
    }
}
