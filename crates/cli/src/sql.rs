//! What `joblake query` checks of an analyst's SQL before DuckDB sees it.

/// Whether `sql` holds no statement at all: only blanks, semicolons and comments (`-- ...`
/// to the end of a line, `/* ... */`). DuckDB answers such SQL with an error that names no
/// cause ("Unknown error code"), so `query` says what is wrong itself.
pub fn holds_no_statement(sql: &str) -> bool {
    let mut rest = sql;
    loop {
        rest = rest.trim_start_matches(|c: char| c.is_whitespace() || c == ';');
        if let Some(after) = rest.strip_prefix("--") {
            rest = after.split_once('\n').map_or("", |(_, next)| next);
        } else if let Some(after) = rest.strip_prefix("/*") {
            rest = after.split_once("*/").map_or("", |(_, next)| next);
        } else {
            return rest.is_empty();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sql_of_blanks_semicolons_and_comments_holds_no_statement() {
        for sql in [
            "",
            "   ",
            ";",
            " ; ;\n",
            "-- only a comment",
            "/* a */ -- b\n ;",
        ] {
            assert!(holds_no_statement(sql), "{sql:?}");
        }
        for sql in [
            "SELECT 1",
            "-- count\nSELECT count(*) FROM jobs",
            "/* x */ SELECT '--'",
            "; SELECT 1",
            "/* unclosed",
        ] {
            assert_eq!(holds_no_statement(sql), sql == "/* unclosed", "{sql:?}");
        }
    }
}
