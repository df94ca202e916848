//! `/api/health` follows the database (pkg/api/health.go, http_server.go
//! `apiHealthHandler`; README "Health"): 503 with `database: failing` when
//! the probe fails, the verdict cached for 5 seconds; a data dir that cannot
//! be created stops the start.

mod common;

use std::time::Duration;

use common::*;

const START: Duration = Duration::from_secs(10);

#[tokio::test]
async fn health_answers_503_when_the_database_fails() {
    let t = Tree::new();
    let parent = tempfile::tempdir().unwrap();
    let data = parent.path().join("data");
    let g = spawn_binary(&t, &[("GF_PATHS_DATA", data.to_str().unwrap())]);
    let url = format!("http://{}/api/health", g.wait_addr(START));
    let r = reqwest::get(&url).await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["database"], "ok");

    // the volume goes away under the running server
    std::fs::remove_dir_all(&data).unwrap();
    let started = std::time::Instant::now();
    wait_for(Duration::from_secs(8), "health to fail", || {
        let url = url.clone();
        async move { reqwest::get(&url).await.unwrap().status().as_u16() == 503 }
    })
    .await;
    assert!(started.elapsed() <= Duration::from_secs(6), "the verdict is cached 5 s at most");
    let r = reqwest::get(&url).await.unwrap();
    assert_eq!(r.status().as_u16(), 503);
    assert_eq!(r.headers()["content-type"], "application/json; charset=UTF-8");
    let text = r.text().await.unwrap();
    assert_eq!(text, format!("{{\n  \"commit\": \"{}\",\n  \"database\": \"failing\",\n  \"version\": \"12.0.2\"\n}}", grafana_double::COMMIT));
    // /healthz only says the web server runs
    let r = reqwest::get(url.replace("/api/health", "/healthz")).await.unwrap();
    assert_eq!((r.status().as_u16(), r.text().await.unwrap()), (200, "Ok".to_string()));

    // the data dir comes back: health recovers after the cache expires
    std::fs::create_dir_all(&data).unwrap();
    let db = grafana_double::db::Db::new(Some(&data));
    db.save(&grafana_double::state::Store::default()).unwrap();
    wait_for(Duration::from_secs(8), "health to recover", || {
        let url = url.clone();
        async move { reqwest::get(&url).await.unwrap().status().as_u16() == 200 }
    })
    .await;
}

#[test]
fn a_data_dir_that_cannot_be_created_stops_the_start() {
    let t = Tree::new();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    let data = file.join("data");
    let mut g = spawn_binary(&t, &[("GF_PATHS_DATA", data.to_str().unwrap())]);
    let status = g.wait_exit(START);
    assert!(!status.success());
    assert!(g.stdout().contains(&format!("GF_PATHS_DATA='{}' is not writable.", data.display())), "run.sh's warning: {}", g.stdout());
    assert!(g.stderr().contains("failed to create data directory"), "{}", g.stderr());
    assert!(!g.stdout().contains("HTTP Server Listen"));
}
