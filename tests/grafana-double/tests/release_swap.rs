//! Provisioning across a release swap (README "Dashboards"; Grafana's
//! pkg/services/provisioning/dashboards/file_reader.go `walkDisk` and
//! pkg/api/dashboard.go): the provider path goes through a `current`
//! symlink; swapping it makes every stored file path vanish, so the next scan
//! deletes every dashboard before saving the files again as new rows, and
//! `provisionedExternalId` is computed against the path as it resolves when
//! the API is asked.

mod common;

use std::path::Path;

use common::*;
use serde_json::{json, Value};

fn swap(root: &Path, release: &str) {
    let tmp = root.join("current.new");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(Path::new("releases").join(release), &tmp).unwrap();
    std::fs::rename(&tmp, root.join("current")).unwrap();
}

/// Two releases, `current` pointing at the first, one provider on
/// `<root>/current/dashboards` that never polls by itself (scans are driven
/// with the reload endpoint).
fn releases() -> Tree {
    let t = Tree::new();
    for r in ["1", "2"] {
        t.write(&format!("releases/{r}/dashboards/node.json"), r#"{"uid": "node", "title": "Node"}"#);
    }
    t.write("releases/1/dashboards/old.json", r#"{"uid": "old", "title": "Only in release 1"}"#);
    swap(t.root(), "1");
    t.write(
        "provisioning/dashboards/default.yaml",
        &format!(
            "apiVersion: 1\nproviders:\n  - name: default\n    updateIntervalSeconds: 3600\n    options:\n      path: {}\n",
            t.root().join("current/dashboards").display()
        ),
    );
    t
}

async fn dash(g: &InProc, uid: &str) -> (u16, Value) {
    g.get(&format!("/api/dashboards/uid/{uid}")).await
}

#[tokio::test]
async fn a_swap_deletes_then_saves_and_the_external_id_follows_the_symlink_at_once() {
    let t = releases();
    let g = start_in_process(&t, &[]).await;
    g.wait_provisioned().await;
    let (s, before) = dash(&g, "node").await;
    assert_eq!(s, 200);
    assert_eq!(before["meta"]["provisionedExternalId"], "node.json");
    assert_eq!(before["dashboard"]["version"], 1);

    swap(t.root(), "2");
    // no scan yet: the stored path is release 1's, the provider path now resolves to release 2
    let (_, now) = dash(&g, "node").await;
    assert_eq!(now["meta"]["provisionedExternalId"], "../../1/dashboards/node.json");
    assert_eq!(now["dashboard"]["id"], before["dashboard"]["id"]);

    let (s, body) = g.post("/api/admin/provisioning/dashboards/reload", &json!({})).await;
    assert_eq!((s, body), (200, json!({"message": "Dashboards config reloaded"})));
    let (s, after) = dash(&g, "node").await;
    assert_eq!(s, 200);
    assert_ne!(after["dashboard"]["id"], before["dashboard"]["id"], "deleted, then saved as a new row");
    assert_eq!(after["dashboard"]["version"], 1, "a new row starts at version 1");
    assert_eq!(after["meta"]["provisionedExternalId"], "node.json");
    assert_eq!(dash(&g, "old").await.0, 404, "a file only in the old release is gone with it");
    let logs = g.logs();
    assert_eq!(logs.iter().filter(|l| l.contains("msg=\"deleting provisioned dashboard, missing on disk\"")).count(), 2, "{logs:#?}");
}

#[tokio::test]
async fn an_unchanged_scan_keeps_the_row_and_a_changed_file_updates_it() {
    let t = releases();
    let g = start_in_process(&t, &[]).await;
    g.wait_provisioned().await;
    let (_, first) = dash(&g, "node").await;
    g.post("/api/admin/provisioning/dashboards/reload", &json!({})).await;
    let (_, same) = dash(&g, "node").await;
    assert_eq!((same["dashboard"]["id"].clone(), same["dashboard"]["version"].clone()), (first["dashboard"]["id"].clone(), json!(1)));
    t.write("releases/1/dashboards/node.json", r#"{"uid": "node", "title": "Node v2"}"#);
    g.post("/api/admin/provisioning/dashboards/reload", &json!({})).await;
    let (_, changed) = dash(&g, "node").await;
    assert_eq!((changed["dashboard"]["id"].clone(), changed["dashboard"]["version"].clone()), (first["dashboard"]["id"].clone(), json!(2)));
    assert_eq!(changed["dashboard"]["title"], "Node v2");
}

#[tokio::test]
async fn deletion_disabled_only_unprovisions() {
    let t = releases();
    t.write(
        "provisioning/dashboards/default.yaml",
        &format!(
            "apiVersion: 1\nproviders:\n  - name: default\n    disableDeletion: true\n    updateIntervalSeconds: 3600\n    options:\n      path: {}\n",
            t.root().join("current/dashboards").display()
        ),
    );
    let g = start_in_process(&t, &[]).await;
    g.wait_provisioned().await;
    swap(t.root(), "2");
    g.post("/api/admin/provisioning/dashboards/reload", &json!({})).await;
    let (s, old) = dash(&g, "old").await;
    assert_eq!((s, old["meta"]["provisioned"].as_bool(), old["meta"]["provisionedExternalId"].as_str()), (200, Some(false), Some("")));
}
