//! DuckDB is linked from its official prebuilt `libduckdb.so` unless the `bundled` feature
//! compiles it in. Without the library a build would fail at the linker with `cannot find
//! -lduckdb`; this says instead what to run.
fn main() {
    println!("cargo:rerun-if-env-changed=DUCKDB_LIB_DIR");
    if std::env::var_os("CARGO_FEATURE_BUNDLED").is_some() {
        return;
    }
    let lib = std::env::var_os("DUCKDB_LIB_DIR")
        .filter(|d| !d.is_empty())
        .map(|d| std::path::PathBuf::from(d).join("libduckdb.so"));
    let problem = match &lib {
        None => "DUCKDB_LIB_DIR is not set".to_string(),
        Some(lib) if !lib.is_file() => format!("{} is missing", lib.display()),
        Some(_) => return,
    };
    eprintln!(
        "joblake links DuckDB 1.5.5's prebuilt libduckdb.so, and {problem}.\n\
         Build through make (`make build`, `make test`), which fetches the library once, checks \
         it and sets DUCKDB_LIB_DIR; or run `make duckdb-lib` and set \
         DUCKDB_LIB_DIR=~/.cache/joblake/duckdb-1.5.5-r.5; or compile DuckDB into the binary \
         with `make dist` (--features bundled, about 80 minutes on 2 cores)."
    );
    std::process::exit(1);
}
