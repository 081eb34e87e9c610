//! The derived job id: Sentrion jobs carry no id, so one is hashed from their stable handles.
//! The recipe is written down in `schemas/jobs.md`; a change to it changes every id.

use sha2::{Digest, Sha256};
use url::Url;

/// Separator between the parts of a fields-based handle (ASCII unit separator).
pub const UNIT_SEPARATOR: char = '\u{1f}';

/// Query parameters dropped by [`normalize_url`]: every `utm_*`, plus these.
pub const TRACKING_PARAMS: [&str; 4] = ["gclid", "fbclid", "mc_cid", "mc_eid"];

fn is_tracking(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    key.starts_with("utm_") || TRACKING_PARAMS.contains(&key.as_str())
}

/// Normalises a job or apply URL so that variants of one link compare equal; `None` if blank.
///
/// Trim; parse; scheme and host lowercase, default port dropped (done by the parser);
/// fragment dropped; tracking parameters dropped, the rest sorted by name then value;
/// trailing slashes of the path removed (a bare `/` stays). Text that does not parse as an
/// absolute URL is used trimmed and lowercased.
pub fn normalize_url(text: &str) -> Option<String> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    let Ok(mut url) = Url::parse(text) else {
        return Some(text.to_lowercase());
    };
    url.set_fragment(None);
    if url.query().is_some() {
        let mut pairs: Vec<(String, String)> = url
            .query_pairs()
            .into_owned()
            .filter(|(k, _)| !is_tracking(k))
            .collect();
        pairs.sort();
        if pairs.is_empty() {
            url.set_query(None);
        } else {
            let query = url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(&pairs)
                .finish();
            url.set_query(Some(&query));
        }
    }
    if !url.cannot_be_a_base() {
        let path = url.path();
        let trimmed = path.trim_end_matches('/');
        if trimmed.len() != path.len() {
            let trimmed = if trimmed.is_empty() { "/" } else { trimmed }.to_owned();
            url.set_path(&trimmed);
        }
    }
    Some(url.to_string())
}

/// Joins city, state and country into the location part of a fields-based handle; `None` if all blank.
pub fn job_location(
    city: Option<&str>,
    state: Option<&str>,
    country: Option<&str>,
) -> Option<String> {
    let parts = [city, state, country].map(norm_part);
    if parts.iter().all(String::is_empty) {
        return None;
    }
    Some(parts.join(&UNIT_SEPARATOR.to_string()))
}

fn norm_part(part: Option<&str>) -> String {
    part.map(|s| s.trim().to_lowercase()).unwrap_or_default()
}

fn hashed(kind: &str, text: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(kind.as_bytes());
    hasher.update(text.as_bytes());
    let digest = hasher.finalize();
    let mut id = String::with_capacity(34);
    id.push_str("j_");
    for byte in digest.iter().take(16) {
        id.push(char::from(HEX[usize::from(byte >> 4)]));
        id.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    id
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// The deterministic id of a job from its stable handles; `None` when every handle is blank.
///
/// `location` is the output of [`job_location`]; `post_date` is `YYYY-MM-DD` when the date parsed.
/// id = `"j_"` + first 32 hex chars of SHA-256(kind + text), where kind/text is the first of:
/// `"url:"` + normalised job URL, `"apply:"` + normalised apply URL, or `"fields:"` +
/// company, title, location, post date (each trimmed and lowercased, joined by U+001F).
pub fn job_id(
    job_url: Option<&str>,
    apply_url: Option<&str>,
    company: Option<&str>,
    title: Option<&str>,
    location: Option<&str>,
    post_date: Option<&str>,
) -> Option<String> {
    if let Some(url) = job_url.and_then(normalize_url) {
        return Some(hashed("url:", &url));
    }
    if let Some(url) = apply_url.and_then(normalize_url) {
        return Some(hashed("apply:", &url));
    }
    let parts = [company, title, location, post_date].map(norm_part);
    if parts.iter().all(String::is_empty) {
        return None;
    }
    Some(hashed("fields:", &parts.join(&UNIT_SEPARATOR.to_string())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn by_url(u: &str) -> Option<String> {
        job_id(Some(u), None, None, None, None, None)
    }

    #[test]
    fn normalisation() {
        let cases = [
            (
                "  HTTPS://WWW.LinkedIn.com:443/jobs/view/3847562910/?utm_source=x&b=2&a=1&gclid=z#top ",
                "https://www.linkedin.com/jobs/view/3847562910?a=1&b=2",
            ),
            ("http://example.com:80", "http://example.com/"),
            ("http://example.com:8080/x//", "http://example.com:8080/x"),
            ("https://example.com/?utm_medium=a", "https://example.com/"),
            (
                "https://example.com/Path/Case",
                "https://example.com/Path/Case",
            ),
            ("www.Example.com/Jobs/1", "www.example.com/jobs/1"),
            (
                "https://x.com/a?FBCLID=1&mc_cid=2&mc_eid=3&UTM_x=4&ref=5",
                "https://x.com/a?ref=5",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(normalize_url(input).as_deref(), Some(want), "{input}");
        }
        assert_eq!(normalize_url("   "), None);
    }

    #[test]
    fn same_job_same_id() {
        let base = by_url("https://www.linkedin.com/jobs/view/3847562910");
        assert!(base.is_some());
        for variant in [
            "https://WWW.LINKEDIN.COM/jobs/view/3847562910",
            "https://www.linkedin.com/jobs/view/3847562910#apply",
            "https://www.linkedin.com/jobs/view/3847562910?utm_source=feed&utm_campaign=x",
            "https://www.linkedin.com/jobs/view/3847562910/",
            "HTTPS://www.linkedin.com:443/jobs/view/3847562910/?fbclid=abc#x",
            " https://www.linkedin.com/jobs/view/3847562910 ",
        ] {
            assert_eq!(by_url(variant), base, "{variant}");
        }
        // The job URL wins over everything else.
        assert_eq!(
            job_id(
                Some("https://www.linkedin.com/jobs/view/3847562910"),
                Some("https://careers.techcorp.com/apply/98765"),
                Some("TechCorp"),
                None,
                None,
                None
            ),
            base
        );
    }

    #[test]
    fn different_jobs_different_ids() {
        let ids = [
            by_url("https://www.linkedin.com/jobs/view/3847562910"),
            by_url("https://www.linkedin.com/jobs/view/3847562911"),
            by_url("https://www.linkedin.com/jobs/view/3847562910?currentJobId=1"),
            by_url("https://www.linkedin.com/Jobs/view/3847562910"),
            job_id(
                None,
                Some("https://www.linkedin.com/jobs/view/3847562910"),
                None,
                None,
                None,
                None,
            ),
            job_id(None, None, Some("TechCorp"), Some("Engineer"), None, None),
            job_id(
                None,
                None,
                Some("TechCorp"),
                Some("Engineer"),
                None,
                Some("2026-03-15"),
            ),
            job_id(None, None, Some("TechCorp Engineer"), None, None, None),
        ];
        for (i, a) in ids.iter().enumerate() {
            assert!(a.is_some());
            for b in &ids[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }

    #[test]
    fn fields_handle_is_case_and_space_insensitive() {
        let loc = job_location(
            Some("San Francisco"),
            Some("California"),
            Some("United States"),
        );
        let loc2 = job_location(
            Some(" san francisco"),
            Some("CALIFORNIA "),
            Some("united states"),
        );
        assert_eq!(loc, loc2);
        assert_eq!(
            job_id(
                None,
                None,
                Some("TechCorp Inc."),
                Some("Senior Software Engineer"),
                loc.as_deref(),
                Some("2026-03-15")
            ),
            job_id(
                None,
                Some("  "),
                Some(" techcorp inc."),
                Some("SENIOR software engineer"),
                loc2.as_deref(),
                Some("2026-03-15")
            ),
        );
        assert_eq!(job_location(None, Some(" "), None), None);
        assert_eq!(job_id(None, Some(""), Some(" "), None, None, None), None);
    }

    /// The worked examples of `schemas/jobs.md`.
    #[test]
    fn documented_examples() {
        assert_eq!(
            by_url("https://www.linkedin.com/jobs/view/3847562910").as_deref(),
            Some(DOC_URL_EXAMPLE)
        );
        assert_eq!(
            job_id(
                None,
                Some("https://careers.techcorp.com/apply/98765/#x"),
                None,
                None,
                None,
                None
            )
            .as_deref(),
            Some(DOC_APPLY_EXAMPLE)
        );
        let loc = job_location(
            Some("San Francisco"),
            Some("California"),
            Some("United States"),
        );
        assert_eq!(
            job_id(
                None,
                None,
                Some("TechCorp Inc."),
                Some("Senior Software Engineer"),
                loc.as_deref(),
                Some("2026-03-15")
            )
            .as_deref(),
            Some(DOC_FIELDS_EXAMPLE)
        );
    }

    const DOC_URL_EXAMPLE: &str = "j_932499db17f215f199fa0f0bdce9a97a";
    const DOC_APPLY_EXAMPLE: &str = "j_50078e8b75598d4797b4d54fcca343dd";
    const DOC_FIELDS_EXAMPLE: &str = "j_3143e9c220655e8950d61805933a87c0";
}
