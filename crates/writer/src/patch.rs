//! A staged page's checkpoint as a change to the previous page's, so that a checkpoint
//! holding a long list (a backfill's windows, the profiles `enrich` found gone) is not written
//! whole with every page: the list's few changes are.
//!
//! A patch is JSON, one of:
//! - `{"=": v}`: the value is `v`;
//! - `{"{": {key: patch, …}, "-": [key, …]}`: an object with those keys changed (or added)
//!   and those removed, the others as they were;
//! - `{"[": [drop, keep, [item, …]]}`: an array that is the old one's `keep` items from
//!   `drop` on, then the items given (a queue worked from the front, a list grown at the end).

use serde_json::{Map, Value, json};

/// The patch that turns `old` into `new`.
pub(crate) fn diff(old: &Value, new: &Value) -> Value {
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            let changed: Map<String, Value> = b
                .iter()
                .filter(|(k, v)| a.get(*k) != Some(*v))
                .map(|(k, v)| {
                    let patch = match a.get(k) {
                        Some(was) => diff(was, v),
                        None => json!({ "=": v }),
                    };
                    (k.clone(), patch)
                })
                .collect();
            let removed: Vec<&String> = a.keys().filter(|k| !b.contains_key(*k)).collect();
            if removed.is_empty() {
                json!({ "{": changed })
            } else {
                json!({ "{": changed, "-": removed })
            }
        }
        (Value::Array(a), Value::Array(b)) => match kept_run(a, b) {
            Some((drop, keep)) => json!({ "[": [drop, keep, &b[keep..]] }),
            None => json!({ "=": new }),
        },
        _ => json!({ "=": new }),
    }
}

/// Where `new` starts with a run of `old`'s items that reaches `old`'s end: `(drop, keep)`
/// with `new[..keep] == old[drop..]`, the longest such run.
fn kept_run(old: &[Value], new: &[Value]) -> Option<(usize, usize)> {
    (0..old.len())
        .map(|drop| (drop, old.len() - drop))
        .find(|&(drop, keep)| keep <= new.len() && new[..keep] == old[drop..])
}

/// `base` with `patch` applied; an error says what did not fit.
pub(crate) fn apply(base: &Value, patch: &Value) -> Result<Value, String> {
    let edit = patch
        .as_object()
        .ok_or_else(|| format!("a patch must be an object, not {patch}"))?;
    if let Some(v) = edit.get("=") {
        return Ok(v.clone());
    }
    if let Some(changed) = edit.get("{") {
        let mut out = base
            .as_object()
            .cloned()
            .ok_or("an object patch over a value that is not an object")?;
        if let Some(removed) = edit.get("-").and_then(Value::as_array) {
            for k in removed {
                out.remove(k.as_str().ok_or("a removed key that is not a string")?);
            }
        }
        for (k, p) in changed
            .as_object()
            .ok_or("an object patch's changes must be an object")?
        {
            let was = out.get(k).cloned().unwrap_or(Value::Null);
            out.insert(k.clone(), apply(&was, p)?);
        }
        return Ok(Value::Object(out));
    }
    if let Some(spec) = edit.get("[") {
        let old = base
            .as_array()
            .ok_or("an array patch over a value that is not an array")?;
        let parts = spec.as_array().filter(|p| p.len() == 3);
        let (drop, keep, add) = match parts.map(|p| (p[0].as_u64(), p[1].as_u64(), p[2].as_array()))
        {
            Some((Some(d), Some(k), Some(a))) => (d as usize, k as usize, a),
            _ => return Err(format!("a malformed array patch {spec}")),
        };
        let kept = old
            .get(drop..drop.saturating_add(keep))
            .ok_or("an array patch keeps items the array does not have")?;
        return Ok(Value::Array(kept.iter().chain(add).cloned().collect()));
    }
    Err(format!("an unknown patch {patch}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(old: Value, new: Value) -> Value {
        let patch = diff(&old, &new);
        assert_eq!(apply(&old, &patch).unwrap(), new, "patch {patch}");
        patch
    }

    #[test]
    fn a_backfill_checkpoint_moving_on_by_a_window_is_written_as_the_change() {
        let windows: Vec<Value> = (0..1000)
            .map(|i| json!({"from": format!("2026-01-{i:04}"), "to": "x", "expected_rows": i}))
            .collect();
        let old = json!({"watermark": null, "backfill": {"windows": windows, "planned": 1000,
                         "scan": {"cursor": "a", "pages": 3}}});
        let mut new = old.clone();
        new["backfill"]["windows"] = Value::Array(windows[1..].to_vec());
        new["backfill"]["scan"]["cursor"] = json!("b");
        new["backfill"]["scan"]["pages"] = json!(4);
        let patch = round_trip(old.clone(), new);
        let (full, small) = (old.to_string().len(), patch.to_string().len());
        assert!(
            small < 200,
            "{small} bytes for a {full}-byte checkpoint: {patch}"
        );
    }

    #[test]
    fn a_growing_list_of_gone_profiles_is_written_as_what_was_added() {
        let gone: Map<String, Value> = (0..5000)
            .map(|i| (format!("c{i:05}"), json!("2026-11-28")))
            .collect();
        let old = json!({"not_found": gone, "next": "c5000"});
        let mut new = old.clone();
        new["not_found"]["c09999"] = json!("2026-11-28");
        new["next"] = json!("c5001");
        let patch = round_trip(old, new);
        assert!(patch.to_string().len() < 120, "{patch}");
    }

    #[test]
    fn every_kind_of_change_round_trips() {
        round_trip(json!({"a": 1}), json!({"a": 1}));
        round_trip(
            json!({"a": 1, "b": [1, 2]}),
            json!({"b": [1, 2, 3], "c": null}),
        );
        round_trip(json!([1, 2, 3]), json!([3, 4]));
        round_trip(json!([1, 2, 3]), json!([9]));
        round_trip(json!([1, 2]), json!([]));
        round_trip(json!([1, 2]), json!([1, 2]));
        round_trip(json!([]), json!([1]));
        round_trip(json!(null), json!({"a": 1}));
        round_trip(
            json!({"a": {"b": {"c": 1}}}),
            json!({"a": {"b": {"c": 2, "d": 3}}}),
        );
        round_trip(json!("x"), json!(7));
    }

    #[test]
    fn a_patch_that_does_not_fit_its_base_is_an_error() {
        assert!(apply(&json!([1]), &json!({"[": [0, 5, []]})).is_err());
        assert!(apply(&json!(1), &json!({"{": {}})).is_err());
        assert!(apply(&json!(1), &json!({"?": 1})).is_err());
        assert!(apply(&json!([1]), &json!({"[": [0, "x", []]})).is_err());
    }
}
