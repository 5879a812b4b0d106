//! The `switchboard` binary. Everything is in the library ([`switchboard::cli::main`]), so a
//! brand's own binary that links its channel crates is this same file plus `use` lines.

fn main() -> std::process::ExitCode {
    switchboard::cli::main()
}
