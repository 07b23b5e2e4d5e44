//! `cgocore`: the command line (core-analyzer/src/cli.rs).
fn main() -> std::process::ExitCode {
    std::process::ExitCode::from(cgocore::cli::main_with(std::env::args_os()))
}
