fn main() -> std::process::ExitCode {
    decentcom::cli::main()
}
