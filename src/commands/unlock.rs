//! `stackproof unlock`: release a lock left by a crashed deploy.

use crate::error::Result;
use crate::hosts::Host;
use crate::output::Format;
use crate::remote::lock::{unlock, who, LockInfo};
use crate::remote::{layout, Ssh};
use serde::Serialize;

#[derive(Serialize)]
struct UnlockOutput {
    released: bool,
    lock: Option<LockInfo>,
}

pub async fn run(host: &Host, format: Format) -> Result<i32> {
    let ssh = Ssh::connect(host).await?;
    let st = layout::state(&ssh).await?;
    let released = if st.lock.is_some() { unlock(&ssh, None).await? } else { false };
    let entry = serde_json::json!({"event": "unlock", "at": chrono::Utc::now().to_rfc3339(), "by": who(), "released": st.lock});
    let _ = layout::journal(&ssh, &entry).await;
    ssh.close().await;
    match format {
        Format::Json => {
            let lock = st.lock.and_then(|l| serde_json::from_str::<LockInfo>(&l).ok());
            println!("{}", serde_json::to_string(&UnlockOutput { released, lock }).expect("serializable"))
        }
        Format::Text => println!("{}", if released { format!("lock on {} released", host.name) } else { format!("no lock on {}", host.name) }),
    }
    Ok(0)
}
