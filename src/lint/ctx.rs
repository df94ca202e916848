//! What the checks of one file need to know about the stack around it. Shared by every
//! checker; it imports none of them.

use super::versions::Version;
use super::Source;
use crate::stack::manifest::Manifest;
use crate::stack::paths::FileList;
use std::collections::BTreeMap;
use std::path::PathBuf;

pub struct StackCtx {
    pub dir: PathBuf,
    pub manifest: Manifest,
    /// Every file of the stack.
    pub files: FileList,
    pub prometheus: Version,
    pub alertmanager: Version,
    pub node_exporter: Version,
    /// Listening port -> service name (`host_exporter` for the host exporter).
    pub ports: BTreeMap<u16, String>,
    /// Where the manifest is, for findings about it.
    pub manifest_src: Source,
}

impl StackCtx {
    pub fn display(&self, rel: &str) -> String {
        self.dir.join(rel).display().to_string()
    }

    pub fn read(&self, rel: &str) -> Option<Source> {
        Source::read(&self.dir.join(rel), self.display(rel)).ok()
    }
}
