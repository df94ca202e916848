//! `stackproof drill --alert NAME / --all`: prove alerts live without paging anyone.
//! Each chosen alerting rule the host exporter can cause gets a drill twin
//! ([`twins`]), loaded for the drill's duration through a confirmed reload; the host
//! exporter is faulted for real ([`host::fault_file`], or stopped), the real alerts the
//! fault drives are silenced for as long as their expressions can stay true; every twin
//! must fire, be delivered to stackproof's own receiver and resolve within bounds from
//! the configuration ([`plan`]). The other rules are reported with their offline proof
//! (`lint::proof`) and the reason they are not caused live. docs/design.md "Every alert
//! proven".

pub mod cleanup;
pub mod host;
pub mod plan;
pub mod report;
pub mod run;
pub mod twins;

pub use cleanup::recover;
pub use plan::plan;
pub use report::{render_text, LiveReport};
pub use run::{run, Options};
