use clap::Parser;

fn main() {
    let args = badgateway_exporter::cli::Args::parse();
    let diagnosing = args.command.is_some();
    match badgateway_exporter::cli::run(args) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("badgateway_exporter: {e:#}");
            // A diagnosis says 0, 1 and 2 about the host; 3 is "could not run".
            std::process::exit(if diagnosing { 3 } else { 1 });
        }
    }
}
