fn main() {
    // --- replay subcommand (ccid_sim::replay) ---
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("replay") {
        std::process::exit(ccid_sim::replay::cli(&args[1..]));
    }
    // --- end of replay subcommand ---
}
