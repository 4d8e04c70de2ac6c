use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct SchemaArgs {}

pub fn main(_args: SchemaArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`blade schema` is not implemented yet")
}
