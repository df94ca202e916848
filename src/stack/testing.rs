//! Helpers of the unit tests that read stacks: the default stack, and a copy of it with
//! one file edited.

use super::Stack;
use std::path::Path;

const DEFAULT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/stack");

pub fn default_stack() -> Stack {
    Stack::load(Path::new(DEFAULT)).unwrap()
}

/// A copy of the default stack with `edit` applied to one file (which it must change).
pub fn edited(file: &str, edit: impl Fn(String) -> String) -> (tempfile::TempDir, Stack) {
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(Path::new(DEFAULT), tmp.path());
    let p = tmp.path().join(file);
    let text = std::fs::read_to_string(&p).unwrap();
    let new = edit(text.clone());
    assert_ne!(new, text, "the edit changed nothing in {file}");
    std::fs::write(&p, new).unwrap();
    let s = Stack::load(tmp.path()).unwrap();
    (tmp, s)
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}
