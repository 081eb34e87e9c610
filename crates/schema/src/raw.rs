//! A page's rows exactly as the API sent them, kept as spans of the one buffer they came in.
//!
//! A page of 100 jobs is about 150 kB of rows of about 1.4 kB each. Holding each row in an
//! allocation of its own (`Box<RawValue>`) cost the fetch loop a `malloc` per row (a row is
//! past glibc's per-thread cache, so each one took the arena's lock) and the thread that
//! dropped the page a `free` per row. A page's rows are now one shared buffer, the response
//! body itself, and the span of each row in it. The buffer is checked to be UTF-8 once, as a
//! whole, when it is read (`ByteString`), so that neither the JSON parser nor a reader of a
//! row checks it again.

use std::fmt;
use std::ops::Range;

use bytestring::ByteString;
use serde_json::value::RawValue;

/// The rows of one page, each the JSON text of one value exactly as it was sent.
#[derive(Clone, Default)]
pub struct RawRows {
    /// The buffer the rows lie in (a response body, a staged record, or their copy).
    text: ByteString,
    /// Each row's place in `text`, in page order; each was cut from a `&str` in it, so it
    /// starts and ends on a character.
    spans: Vec<Range<usize>>,
}

impl RawRows {
    /// `rows`, which serde_json borrowed from `body` (a field `#[serde(borrow)] Vec<&RawValue>`
    /// deserialized from it), as spans of `body`: no row is copied. Should a row not lie in
    /// `body` after all, the rows are copied into a buffer of their own instead.
    pub fn borrowed(body: &ByteString, rows: &[&RawValue]) -> RawRows {
        let base = body.as_ptr() as usize;
        let mut spans = Vec::with_capacity(rows.len());
        for row in rows {
            let text = row.get();
            let start = (text.as_ptr() as usize).wrapping_sub(base);
            if start > body.len() || body.len() - start < text.len() {
                return RawRows::copied(rows.iter().map(|r| r.get()));
            }
            spans.push(start..start + text.len());
        }
        RawRows {
            text: body.clone(),
            spans,
        }
    }

    /// Rows copied into one buffer of their own (a company profile, a test's rows).
    pub fn copied<'a>(rows: impl IntoIterator<Item = &'a str>) -> RawRows {
        let mut text = String::new();
        let mut spans = Vec::new();
        for row in rows {
            spans.push(text.len()..text.len() + row.len());
            text.push_str(row);
        }
        RawRows {
            text: ByteString::from(text),
            spans,
        }
    }

    /// The rows of `array`, the JSON text of an array (a staged page read back), as spans of it.
    pub fn parse_array(array: ByteString) -> Result<RawRows, serde_json::Error> {
        let rows: Vec<&RawValue> = serde_json::from_str(&array)?;
        Ok(RawRows::borrowed(&array, &rows))
    }

    /// How many rows there are.
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// Row `i`'s JSON text.
    pub fn get(&self, i: usize) -> Option<&str> {
        self.spans.get(i).map(|span| self.text_of(span))
    }

    /// The last row's JSON text.
    pub fn last(&self) -> Option<&str> {
        self.spans.last().map(|span| self.text_of(span))
    }

    /// Each row's JSON text, in page order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        self.spans.iter().map(|span| self.text_of(span))
    }

    /// The length of the rows' text, together.
    pub fn text_len(&self) -> usize {
        self.spans.iter().map(|span| span.len()).sum()
    }

    fn text_of(&self, span: &Range<usize>) -> &str {
        &self.text[span.clone()]
    }
}

impl fmt::Debug for RawRows {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl PartialEq for RawRows {
    fn eq(&self, other: &RawRows) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_spans_of_the_body_they_were_read_from() {
        #[derive(serde::Deserialize)]
        struct Envelope<'a> {
            #[serde(borrow)]
            rows: Vec<&'a RawValue>,
        }
        let body = ByteString::from_static(
            r#"{"rows": [ {"a": "x\u00e9y"} ,2,"caf\u00e9",[1, 2], "é"], "n": 1}"#,
        );
        let env: Envelope = serde_json::from_str(&body).unwrap();
        let rows = RawRows::borrowed(&body, &env.rows);
        assert_eq!(
            rows.iter().collect::<Vec<_>>(),
            [
                r#"{"a": "x\u00e9y"}"#,
                "2",
                r#""caf\u00e9""#,
                "[1, 2]",
                "\"é\""
            ]
        );
        // No copy: the rows lie in the body.
        assert_eq!(rows.text.as_ptr(), body.as_ptr());
        assert_eq!(rows.get(4), Some("\"é\""));
        assert_eq!(rows.get(5), None);
        assert_eq!(rows.text_len(), rows.iter().map(str::len).sum::<usize>());
    }

    #[test]
    fn rows_not_in_the_body_are_copied_and_a_staged_array_reads_back_the_same() {
        let elsewhere: Vec<Box<RawValue>> = vec![
            RawValue::from_string("{\"id\":1}".into()).unwrap(),
            RawValue::from_string("null".into()).unwrap(),
        ];
        let borrowed: Vec<&RawValue> = elsewhere.iter().map(|r| r.as_ref()).collect();
        let rows = RawRows::borrowed(&ByteString::from_static("[]"), &borrowed);
        assert_eq!(rows.iter().collect::<Vec<_>>(), ["{\"id\":1}", "null"]);

        let array = format!("[{}]", rows.iter().collect::<Vec<_>>().join(","));
        assert_eq!(RawRows::parse_array(ByteString::from(array)).unwrap(), rows);
        assert!(RawRows::parse_array(ByteString::from_static("[1,")).is_err());
        assert!(
            RawRows::parse_array(ByteString::from_static("[]"))
                .unwrap()
                .is_empty()
        );
    }
}
