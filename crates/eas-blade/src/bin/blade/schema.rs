//! `blade schema`: the JSON Schema of the service description (also committed as
//! docs/service.schema.json).

use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct SchemaArgs {}

pub fn main(_args: SchemaArgs) -> anyhow::Result<ExitCode> {
    print!("{}", eas_config::schema_text());
    Ok(ExitCode::SUCCESS)
}
