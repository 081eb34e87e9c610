//! `joblake` finds the prebuilt `libduckdb.so` it links in its own directory (`make build` puts
//! a copy there), from any working directory and without `LD_LIBRARY_PATH`. A binary with
//! DuckDB compiled in (`--features bundled`, `make dist`) needs no library.
fn main() {
    if std::env::var_os("CARGO_FEATURE_BUNDLED").is_none() {
        println!("cargo:rustc-link-arg=-Wl,-rpath,$ORIGIN");
    }
}
