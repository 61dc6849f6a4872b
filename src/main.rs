use clap::Parser;

/// Buffers cross threads on every request (parsed on a tokio worker, tokenised and freed on the
/// inference thread, answers built and freed back on tokio): glibc's arenas contended on that,
/// mimalloc's per-thread heaps and free lists do not (bench/FINDINGS.md has the profiles).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
