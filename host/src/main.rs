use std::process::ExitCode;

fn main() -> ExitCode {
    match vigil::cli::run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("vigil: {e:#}");
            ExitCode::from(1)
        }
    }
}
