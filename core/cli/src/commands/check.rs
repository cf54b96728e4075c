//! `criu check`.

use std::process::ExitCode;

use anyhow::Result;

use crate::args::Options;

pub fn run(_opts: &Options) -> Result<ExitCode> {
    super::not_supported("check", "the engine part behind it is being written")
}
