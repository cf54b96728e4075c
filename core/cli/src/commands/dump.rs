//! `criu dump`.

use std::process::ExitCode;

use anyhow::Result;

use crate::args::Options;

pub fn run(_opts: &Options) -> Result<ExitCode> {
    super::not_supported("dump", "the engine part behind it is being written")
}
