//! The `blade` command. Each subcommand lives in its own module with its own clap `Args`.
//!
//! Two front doors: Blade's own plugin command line (`blade --mode eas_plugin --optimize_for
//! cpu|gpu`) and subcommands (`blade validate`, `blade schema`, `blade data inspect`, `blade
//! run`, `blade bench`).

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod bench;
mod data;
mod plugin;
mod run;
mod schema;
mod validate;

#[derive(Parser, Debug)]
#[command(
    name = "blade",
    version,
    about = "Optimize and serve models like the PAI-Blade EAS plugin"
)]
#[command(args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    plugin: plugin::PluginArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Validate a service description and print every diagnostic.
    Validate(validate::ValidateArgs),
    /// Print the JSON Schema of the service description.
    Schema(schema::SchemaArgs),
    /// Auxiliary data files (.npy, .npz, .pth).
    #[command(subcommand)]
    Data(data::DataCommand),
    /// Run a model (original or optimized) on every sample of an aux-data file.
    Run(run::RunArgs),
    /// Measure a model's latency.
    Bench(bench::BenchArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Validate(a)) => validate::main(a),
        Some(Command::Schema(a)) => schema::main(a),
        Some(Command::Data(c)) => data::main(c),
        Some(Command::Run(a)) => run::main(a),
        Some(Command::Bench(a)) => bench::main(a),
        None => plugin::main(cli.plugin),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
