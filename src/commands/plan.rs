//! `stackproof plan`: what a deploy would change on the host (nothing is changed).

use crate::deploy::pipeline::make_plan;
use crate::deploy::LocalFiles;
use crate::error::Result;
use crate::hosts::Host;
use crate::output::Format;
use crate::remote::Conn;
use crate::stack::Stack;

pub async fn run(stack: &Stack, host: &Host, format: Format) -> Result<i32> {
    let (stack, secrets) = crate::paging::deployed(stack, host)?;
    let stack = &stack;
    let local = LocalFiles::read(stack)?;
    let conn = Conn::open(host).await?;
    let planned = make_plan(&conn, stack, &local, &secrets).await;
    conn.ssh.close().await;
    let (plan, _) = planned?;
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&plan).expect("serializable")),
        Format::Text => print!("{}", plan.render()),
    }
    Ok(0)
}
