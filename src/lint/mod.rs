//! Offline preflight (placeholder until issue #4 lands its checks).

use crate::error::Result;
use crate::output::Format;
use std::path::PathBuf;

pub fn command(_paths: &[PathBuf], _with_promtool: bool, _format: Format) -> Result<i32> {
    Err(crate::error::Error::NotImplemented { what: "lint", issue: 4 })
}
