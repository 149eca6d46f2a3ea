use clap::error::ErrorKind;
use clap::Parser;
use kubeharden::cli::output::{print_out, say};
use kubeharden::cli::{self, args::Cli};
use kubeharden::error::Error;

fn main() {
    let parsed = match Cli::try_parse() {
        Ok(p) => p,
        Err(e) => std::process::exit(argument_error(e)),
    };
    let json = parsed.global.output == cli::args::OutputFormat::Json;
    let code = match cli::run(parsed) {
        Ok(code) => code,
        Err(e) => report(&e, json),
    };
    std::process::exit(code);
}

/// Whether the raw arguments ask for JSON, for errors found before they are parsed.
fn wants_json() -> bool {
    let args: Vec<String> = std::env::args().skip(1).collect();
    args.iter().enumerate().any(|(i, a)| {
        matches!(a.as_str(), "-ojson" | "-o=json" | "--output=json")
            || (matches!(a.as_str(), "-o" | "--output")
                && args.get(i + 1).map(String::as_str) == Some("json"))
    })
}

/// clap's own usage errors exit 2, as the contract's do; under `-o json` stdout still gets
/// exactly one JSON document.
fn argument_error(e: clap::Error) -> i32 {
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        e.exit();
    }
    let _ = e.print();
    if wants_json() {
        let first = e.to_string();
        let msg = first
            .lines()
            .next()
            .unwrap_or("usage error")
            .trim_start_matches("error: ");
        print_out(format_args!(
            "{}\n",
            serde_json::json!({"error": msg, "exit_code": 2})
        ));
    }
    2
}

/// Say the error on stderr (and, under `-o json`, as the one document on stdout). Neither
/// write may fail the process: the exit code is the one the error earned.
fn report(e: &Error, json: bool) -> i32 {
    say(e);
    if json {
        let mut doc = serde_json::json!({"error": e.to_string(), "exit_code": e.exit_code()});
        let warnings = cli::output::take_warnings();
        if !warnings.is_empty() {
            doc["warnings"] = warnings.into();
        }
        print_out(format_args!("{doc}\n"));
    }
    e.exit_code()
}
