fn main() {
    eprintln!("sluice: launcher not built yet");
    std::process::exit(2);
}
