//! Lenient reading of one row: field name -> raw JSON value, each known field parsed into its
//! typed value, everything else kept verbatim for `_extra`.

use std::borrow::Cow;
use std::fmt;

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

/// An object key, borrowed from the row text unless it had escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

/// The fields of one JSON object in the order they appear, duplicates included.
pub(crate) struct RawFields<'a>(pub(crate) Vec<Field<'a>>);

/// One field of a row: its name, its raw JSON text, and what the reader made of it (kept
/// beside it, so a row costs one allocation for its fields, not three).
pub(crate) struct Field<'a> {
    key: Cow<'a, str>,
    raw: &'a RawValue,
    state: Taken,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Taken {
    No,
    Yes,
    /// Taken, but its value did not convert: it goes to `_extra`.
    Mismatched,
}

impl<'de> Deserialize<'de> for RawFields<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct FieldsVisitor;
        impl<'de> Visitor<'de> for FieldsVisitor {
            type Value = RawFields<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::with_capacity(map.size_hint().unwrap_or(24));
                while let Some((k, v)) = map.next_entry::<Key<'de>, &'de RawValue>()? {
                    out.push(Field {
                        key: k.0,
                        raw: v,
                        state: Taken::No,
                    });
                }
                Ok(RawFields(out))
            }
        }
        d.deserialize_map(FieldsVisitor)
    }
}

/// What kind of JSON value a raw text holds, for reject reasons.
pub(crate) fn json_kind(raw: &str) -> &'static str {
    match raw.trim_start().as_bytes().first() {
        Some(b'{') => "an object",
        Some(b'[') => "an array",
        Some(b'"') => "a string",
        Some(b't' | b'f') => "a boolean",
        Some(b'n') => "null",
        Some(_) => "a number",
        None => "empty",
    }
}

/// Reads the fields of one row by source name, recording what it could not place.
pub(crate) struct RowReader<'a> {
    fields: Vec<Field<'a>>,
}

/// What a row left over: the `_extra` text and the counts behind it.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Leftovers {
    pub(crate) extra: Option<String>,
    pub(crate) unknown: u64,
    pub(crate) mismatched: u64,
}

impl<'a> RowReader<'a> {
    pub(crate) fn new(fields: RawFields<'a>) -> Self {
        RowReader { fields: fields.0 }
    }

    /// The first not yet taken value of field `name`, without taking it.
    pub(crate) fn peek(&self, name: &str) -> Option<&'a RawValue> {
        self.position(name).map(|i| self.fields[i].raw)
    }

    fn position(&self, name: &str) -> Option<usize> {
        self.fields
            .iter()
            .position(|f| f.state == Taken::No && f.key == name)
    }

    /// Takes field `name` and converts it; a JSON null is `None`; a failed conversion is `None`
    /// and the raw value goes to `_extra`.
    fn take<T>(&mut self, name: &str, convert: impl FnOnce(&'a str) -> Option<T>) -> Option<T> {
        let i = self.position(name)?;
        let field = &mut self.fields[i];
        field.state = Taken::Yes;
        let raw = field.raw.get();
        if raw == "null" {
            return None;
        }
        let value = convert(raw);
        if value.is_none() {
            field.state = Taken::Mismatched;
        }
        value
    }

    /// A string field.
    pub(crate) fn utf8(&mut self, name: &str) -> Option<Cow<'a, str>> {
        self.take(name, plain_str)
    }

    /// A list-of-strings field; null elements stay null.
    pub(crate) fn utf8_list(&mut self, name: &str) -> Option<Vec<Option<String>>> {
        self.take(name, |raw| {
            serde_json::from_str::<Vec<Option<String>>>(raw).ok()
        })
    }

    /// A number field (integers and floats alike).
    pub(crate) fn float64(&mut self, name: &str) -> Option<f64> {
        self.take(name, |raw| {
            serde_json::from_str::<f64>(raw)
                .ok()
                .filter(|v| v.is_finite())
        })
    }

    /// A whole-number field (a float with no fraction is taken too).
    pub(crate) fn int64(&mut self, name: &str) -> Option<i64> {
        self.take(name, |raw| {
            serde_json::from_str::<i64>(raw).ok().or_else(|| {
                serde_json::from_str::<f64>(raw)
                    .ok()
                    .filter(|v| v.fract() == 0.0 && v.abs() < 9.0e15)
                    .map(|v| v as i64)
            })
        })
    }

    /// A field read by `convert` from its raw JSON text (nested values); `None` from
    /// `convert` keeps the value, as text, in `_extra`.
    pub(crate) fn with<T>(
        &mut self,
        name: &str,
        convert: impl FnOnce(&'a str) -> Option<T>,
    ) -> Option<T> {
        self.take(name, convert)
    }

    /// A boolean field.
    pub(crate) fn boolean(&mut self, name: &str) -> Option<bool> {
        self.take(name, |raw| serde_json::from_str::<bool>(raw).ok())
    }

    /// A date field (see [`parse_date`]).
    pub(crate) fn date(&mut self, name: &str) -> Option<NaiveDate> {
        self.take(name, |raw| parse_date(&plain_str(raw)?))
    }

    /// A timestamp field (see [`parse_timestamp`]).
    pub(crate) fn timestamp(&mut self, name: &str) -> Option<DateTime<Utc>> {
        self.take(name, |raw| parse_timestamp(&plain_str(raw)?))
    }

    /// Everything not placed in a column, as `_extra` JSON text in row order.
    pub(crate) fn finish(self) -> Leftovers {
        let mut out = Leftovers::default();
        let mut text = String::new();
        let mut used: Vec<String> = Vec::new();
        for Field { key, raw, state } in &self.fields {
            match state {
                Taken::Yes => continue,
                Taken::Mismatched => out.mismatched += 1,
                Taken::No => out.unknown += 1,
            }
            // A repeated field keeps every value: later ones get a `#2`, `#3`, ... suffix.
            let mut name = key.to_string();
            let mut n = 1;
            while used.contains(&name) {
                n += 1;
                name = format!("{key}#{n}");
            }
            text.push(if text.is_empty() { '{' } else { ',' });
            // Serialising a str into JSON text cannot fail; fall back to an empty key if it did.
            text.push_str(&serde_json::to_string(&name).unwrap_or_else(|_| "\"\"".into()));
            text.push(':');
            text.push_str(raw.get());
            used.push(name);
        }
        if !text.is_empty() {
            text.push('}');
            out.extra = Some(text);
        }
        out
    }
}

/// The text of a JSON string value (`raw` is valid JSON, as serde_json checked it): borrowed
/// when it has no escapes, which is nearly every value, so most fields skip a second pass of
/// the JSON parser; `None` when `raw` is not a string.
fn plain_str(raw: &str) -> Option<Cow<'_, str>> {
    match raw.as_bytes() {
        [b'"', inner @ .., b'"'] if !inner.contains(&b'\\') => {
            Some(Cow::Borrowed(&raw[1..raw.len() - 1]))
        }
        _ => serde_json::from_str::<Cow<'_, str>>(raw).ok(),
    }
}

/// Parses a date: `YYYY-MM-DD`, or a timestamp whose date part (as written) is taken.
pub fn parse_date(s: &str) -> Option<NaiveDate> {
    let s = s.trim();
    // The common shape first, without chrono's format parser (what that parser makes of it).
    if let [y0, y1, y2, y3, b'-', m0, m1, b'-', d0, d1] = *s.as_bytes() {
        let digits = [y0, y1, y2, y3, m0, m1, d0, d1];
        if digits.iter().all(u8::is_ascii_digit) {
            let n = |ds: &[u8]| ds.iter().fold(0u32, |n, d| n * 10 + u32::from(d - b'0'));
            return NaiveDate::from_ymd_opt(
                n(&digits[..4]) as i32,
                n(&digits[4..6]),
                n(&digits[6..]),
            );
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Some(d);
    }
    if let Ok(dt) = DateTime::parse_from_rfc3339(s) {
        return Some(dt.date_naive());
    }
    parse_naive_datetime(s).map(|dt| dt.date())
}

/// Parses a timestamp: RFC 3339 with `Z` or an offset (converted to UTC), or
/// `YYYY-MM-DD[ T]HH:MM:SS[.fff]` without a zone (taken as UTC).
pub fn parse_timestamp(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if let Ok(dt) = DateTime::parse_from_rfc3339(s) {
        return Some(dt.with_timezone(&Utc));
    }
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%d %H:%M:%S%.f%z"] {
        if let Ok(dt) = DateTime::parse_from_str(s, fmt) {
            return Some(dt.with_timezone(&Utc));
        }
    }
    parse_naive_datetime(s).map(|dt| dt.and_utc())
}

fn parse_naive_datetime(s: &str) -> Option<NaiveDateTime> {
    ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"]
        .into_iter()
        .find_map(|fmt| NaiveDateTime::parse_from_str(s, fmt).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn ts(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s)
            .single()
            .expect("valid")
    }

    #[test]
    fn timestamps() {
        let t = ts(2026, 3, 15, 12, 30, 0);
        for s in [
            "2026-03-15T12:30:00Z",
            "2026-03-15T12:30:00.000Z",
            "2026-03-15T14:30:00+02:00",
            "2026-03-15T07:30:00-05:00",
            "2026-03-15 12:30:00",
            "2026-03-15T12:30:00",
            "2026-03-15T12:30:00+0000",
            "2026-03-15 12:30:00Z",
        ] {
            assert_eq!(parse_timestamp(s), Some(t), "{s}");
        }
        assert_eq!(
            parse_timestamp("2026-03-15T12:30:00.123456Z"),
            Some(t + chrono::Duration::microseconds(123_456))
        );
        assert_eq!(
            parse_timestamp("2026-03-15 12:30:00.5"),
            Some(t + chrono::Duration::milliseconds(500))
        );
        for bad in [
            "2026-03-15",
            "15/03/2026 12:30",
            "yesterday",
            "",
            "1710500000000",
        ] {
            assert_eq!(parse_timestamp(bad), None, "{bad}");
        }
    }

    #[test]
    fn dates() {
        let d = NaiveDate::from_ymd_opt(2026, 3, 15).expect("valid");
        for s in [
            "2026-03-15",
            "2026-03-15T00:00:00Z",
            "2026-03-15T23:00:00-05:00",
            "2026-03-15 08:00:00",
        ] {
            assert_eq!(parse_date(s), Some(d), "{s}");
        }
        for bad in [
            "03/15/2026",
            "15.03.2026",
            "March 15, 2026",
            "2026-02-30",
            "20260315",
            "",
        ] {
            assert_eq!(parse_date(bad), None, "{bad}");
        }
    }

    #[test]
    fn reader_keeps_duplicates_and_escaped_keys() {
        let text = r#"{"a":1,"b\u0021":"x","a":2,"c":null}"#;
        let fields: RawFields<'_> = serde_json::from_str(text).expect("object");
        assert!(matches!(fields.0[0].key, Cow::Borrowed(_)));
        assert!(matches!(fields.0[1].key, Cow::Owned(_)));
        let mut r = RowReader::new(fields);
        assert_eq!(r.float64("a"), Some(1.0));
        assert_eq!(r.utf8("b!"), Some("x".into()));
        let left = r.finish();
        assert_eq!(left.extra.as_deref(), Some(r#"{"a":2,"c":null}"#));
        assert_eq!(left.unknown, 2);
        assert_eq!(left.mismatched, 0);
    }
}
