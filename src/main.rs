use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = textclf::cli::Cli::parse();
    match textclf::cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
