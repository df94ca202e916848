//! The lint tests, one crate (`cargo test --test lint`): `stackproof lint` as a user runs
//! it (`cli`), one test per check on a broken copy of the default stack (`stack`), and
//! the real-world corpus (`realworld`). Helpers in `support`.

mod support;

mod alerts;
mod cli;
mod realworld;
mod stack;
mod wide;
