//! `evolve`: the command-line shell over [`evolve::Service`].

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
