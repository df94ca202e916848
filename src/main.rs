use clap::Parser;
use stackproof::cli::{run, Cli};
use stackproof::output::Format;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        // --help, --version and usage errors in text: clap's own output and exit code (2).
        Err(e) if !e.use_stderr() || !stackproof::cli::wants_json(&args) => e.exit(),
        Err(e) => {
            println!("{}", stackproof::cli::parse_error_json(&e));
            std::process::exit(2);
        }
    };
    let format = cli.command.common().format;
    tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_env("STACKPROOF_LOG")).with_writer(std::io::stderr).init();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    let code = match rt.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            match format {
                Format::Json => println!("{}", e.to_json()),
                Format::Text => {
                    eprintln!("error: {e}");
                    let hint = e.hint();
                    if !hint.is_empty() {
                        eprintln!("  hint: {hint}");
                    }
                }
            }
            e.exit_code()
        }
    };
    // Drop the runtime without waiting on blocked tasks (e.g. stdin readers).
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    std::process::exit(code);
}
