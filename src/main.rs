use clap::Parser;
use kubeharden::cli::{self, args::Cli};
use kubeharden::error::Error;

fn main() {
    // clap's own usage errors exit 2, as the contract's usage errors do.
    let parsed = Cli::parse();
    let json = parsed.global.output == cli::args::OutputFormat::Json;
    let code = match cli::run(parsed) {
        Ok(code) => code,
        Err(e) => report(&e, json),
    };
    std::process::exit(code);
}

fn report(e: &Error, json: bool) -> i32 {
    eprintln!("kubeharden: {e}");
    if json {
        println!(
            "{}",
            serde_json::json!({"error": e.to_string(), "exit_code": e.exit_code()})
        );
    }
    e.exit_code()
}
