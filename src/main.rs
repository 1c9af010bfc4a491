use clap::Parser;

fn main() {
    let args = badgateway_exporter::cli::Args::parse();
    if let Err(e) = badgateway_exporter::cli::run(args) {
        eprintln!("badgateway_exporter: {e:#}");
        std::process::exit(1);
    }
}
