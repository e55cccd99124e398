fn main() -> std::process::ExitCode {
  alos::cli::main()
}
